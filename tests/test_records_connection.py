"""Opening record stores: URLs, options, SQLite sharing settings and unreachable servers."""

from __future__ import annotations

import socket
import sqlite3

import pytest
from sqlalchemy.engine import make_url

from wf_pipeline.errors import RecordError
from wf_pipeline.metadata.records import ThreadRecord
from wf_pipeline.records import open_record_store
from wf_pipeline.records.connection import parse_url


def a_thread() -> ThreadRecord:
    return ThreadRecord(
        thread_id="thread:1",
        workflow_id="wf",
        target_node_id="node:1",
        status="pending",
        created_at_ms=1,
        updated_at_ms=1,
    )


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user@localhost/db",
        "not a url at all",
        "",
        "http://example.com/records",
        "postgres+asyncpg://h/db",
    ],
)
def test_unsupported_or_garbled_urls_are_rejected(url: str) -> None:
    with pytest.raises(RecordError) as caught:
        open_record_store(url)
    assert caught.value.code == "RECORD_BAD_URL"


def test_postgresql_urls_use_psycopg2() -> None:
    assert parse_url("postgresql://u@db.example:5432/wf").drivername == "postgresql+psycopg2"
    assert parse_url("postgresql+psycopg2://u@db.example/wf").drivername == "postgresql+psycopg2"
    assert parse_url("sqlite+pysqlite:////tmp/x.db").drivername == "sqlite"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_postgres_is_unavailable_without_leaking_the_password() -> None:
    password = "pw-Sup3r-s3cret"
    with pytest.raises(RecordError) as caught:
        open_record_store(f"postgresql://wf:{password}@127.0.0.1:{free_port()}/wf")

    assert caught.value.code == "RECORD_UNAVAILABLE"
    assert password not in str(caught.value)
    assert password not in repr(caught.value.details)


def test_sqlite_file_that_cannot_be_created_is_unavailable(tmp_path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's folder should be")

    with pytest.raises(RecordError) as caught:
        open_record_store(f"sqlite:///{blocker / 'records.db'}")
    assert caught.value.code == "RECORD_UNAVAILABLE"


def test_sqlite_path_that_is_a_directory_is_unavailable(tmp_path) -> None:
    with pytest.raises(RecordError) as caught:
        open_record_store(f"sqlite:///{tmp_path}")
    assert caught.value.code == "RECORD_UNAVAILABLE"


def test_sqlite_store_creates_its_folder_and_uses_wal(tmp_path) -> None:
    path = tmp_path / "deep" / "er" / "records.db"
    with open_record_store(f"sqlite:///{path}") as store:
        store.save_thread(a_thread())

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert (
            conn.execute("SELECT value FROM wf_schema_meta WHERE key = 'schema_version'").fetchone()[0] == "1"
        )


def test_in_memory_sqlite_store_keeps_data_for_its_lifetime() -> None:
    with open_record_store("sqlite://") as store:
        store.save_thread(a_thread())
        assert store.get_thread("thread:1") == a_thread()


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("sqlite://", {"schema": "wf_test"}),
        ("postgresql://u@127.0.0.1/db", {"schema": "Bad-Schema"}),
        ("postgresql://u@127.0.0.1/db", {"schema": "x; DROP TABLE y"}),
        ("sqlite://", {"table_prefix": "wf-"}),
        ("sqlite://", {"table_prefix": '"; --'}),
    ],
)
def test_bad_schema_or_prefix_is_rejected_before_connecting(url: str, options: dict[str, str]) -> None:
    with pytest.raises(RecordError) as caught:
        open_record_store(url, **options)
    assert caught.value.code == "RECORD_BAD_OPTION"


def test_store_url_masks_the_password(record_store_url) -> None:
    if record_store_url.backend == "sqlite":
        pytest.skip("SQLite URLs carry no password")
    # Trust authentication ignores the password, so the store opens with it in the URL.
    url = make_url(record_store_url.url).set(password="hunter2-secret")
    with open_record_store(
        url.render_as_string(hide_password=False), schema=record_store_url.schema
    ) as store:
        store.save_thread(a_thread())
        assert "hunter2-secret" not in store.url
        assert store.url.startswith("postgresql+psycopg2://")
