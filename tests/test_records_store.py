"""The SQL record store under its API: raw rows, schema versions, prefixes, several processes.

Behaviour every record store shares is in the conformance suite (tests/conformance/records_suite.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conformance.records_suite import make_commit, make_data_key, make_thread

from wf_pipeline.errors import RecordError
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.records import SCHEMA_VERSION
from wf_pipeline.records import RecordStore, open_record_store


@pytest.fixture
def store(record_store_url) -> Iterator[RecordStore]:
    opened = open_record_store(record_store_url.url, schema=record_store_url.schema)
    yield opened
    opened.close()


class RawSql:
    """Direct SQL on the store's database, to look under the API or tamper with rows."""

    def __init__(self, target) -> None:
        self.engine = sa.create_engine(target.url.replace("postgresql://", "postgresql+psycopg2://", 1))
        self.prefix = f'"{target.schema}".wf_' if target.schema else "wf_"

    def scalar(self, statement: str) -> object:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(statement.format(t=self.prefix))).scalar_one()

    def execute(self, statement: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(statement.format(t=self.prefix)))


@pytest.fixture
def raw_sql(record_store_url) -> Iterator[RawSql]:
    raw = RawSql(record_store_url)
    yield raw
    raw.engine.dispose()


# --- round trips ---------------------------------------------------------------------


# --- idempotence and transactions ----------------------------------------------------


def test_recommitting_the_same_turn_does_not_duplicate(store: RecordStore, raw_sql: RawSql) -> None:
    thread = make_thread()
    commit = make_commit(thread, frame_type="readme")

    store.commit_turn(commit)
    store.commit_turn(commit)

    for table in ("threads", "turns", "gates", "prompt_links", "artifact_links", "frames"):
        assert raw_sql.scalar(f"SELECT count(*) FROM {{t}}{table}") == (
            2 if table == "artifact_links" else 1
        ), table


# --- ordering and filters ------------------------------------------------------------


def test_save_thread_upserts(store: RecordStore, raw_sql: RawSql) -> None:
    thread = make_thread()
    store.save_thread(thread)
    finished = thread.model_copy(update={"status": "completed", "last_turn_seq": 4, "updated_at_ms": 9})

    store.save_thread(finished)

    assert store.get_thread(thread.thread_id) == finished
    assert store.get_thread("thread:missing") is None
    assert raw_sql.scalar("SELECT count(*) FROM {t}threads") == 1


# --- validation ----------------------------------------------------------------------


def test_a_corrupt_stored_row_is_an_integrity_error_on_read(store: RecordStore, raw_sql: RawSql) -> None:
    thread = make_thread()
    store.save_thread(thread)
    raw_sql.execute("UPDATE {t}threads SET status = 'bogus'")

    with pytest.raises(RecordError) as caught:
        store.get_thread(thread.thread_id)
    assert caught.value.code == "RECORD_INTEGRITY"


def test_opening_a_store_of_another_schema_version_fails(record_store_url, raw_sql: RawSql) -> None:
    open_record_store(record_store_url.url, schema=record_store_url.schema).close()
    raw_sql.execute(f"UPDATE {{t}}schema_meta SET value = '{SCHEMA_VERSION + 1}'")

    with pytest.raises(RecordError) as caught:
        open_record_store(record_store_url.url, schema=record_store_url.schema)
    assert caught.value.code == "RECORD_SCHEMA_MISMATCH"


def test_table_prefixes_isolate_stores_sharing_a_database(record_store_url) -> None:
    thread = make_thread()
    with open_record_store(record_store_url.url, schema=record_store_url.schema, table_prefix="a_") as first:
        first.save_thread(thread)
    with open_record_store(record_store_url.url, schema=record_store_url.schema, table_prefix="b_") as second:
        assert second.list_threads() == []
    with open_record_store(record_store_url.url, schema=record_store_url.schema, table_prefix="a_") as first:
        assert first.list_threads() == [thread]


# --- keyring ---------------------------------------------------------------------------


def test_a_tampered_data_key_row_is_an_integrity_error(store: RecordStore, raw_sql: RawSql) -> None:
    key = make_data_key("a")
    store.claim_data_keys([key])
    raw_sql.execute("UPDATE {t}data_keys SET kek_id = ''")

    for read in (lambda: store.claim_data_keys([key]), lambda: store.data_keys_for([key.artifact_id])):
        with pytest.raises(RecordError) as caught:
            read()
        assert caught.value.code == "RECORD_INTEGRITY"


def test_claims_read_every_row_back_where_inserts_return_nothing(store, monkeypatch) -> None:
    first = make_data_key("a")
    store.claim_data_keys([first])
    # As on SQLite before 3.35, which has no INSERT ... RETURNING.
    monkeypatch.setattr(store._engine.dialect, "insert_returning", False)
    late, new = make_data_key("a", wrapped_key=b"late"), make_data_key("b")

    assert store.claim_data_keys([late, new]) == {first.artifact_id: first, new.artifact_id: new}
    assert store.count_data_keys() == {first.kek_id: 2}


def test_sqlite_keeps_data_keys_in_their_key_order(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    open_record_store(url).close()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ddl = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'wf_data_keys'")).scalar_one()
    engine.dispose()
    assert "WITHOUT ROWID" in ddl  # a rewrap page, in artifact_id order, writes neighbouring pages


# --- several processes ---------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from wf_pipeline.metadata.records import ThreadRecord, TurnRecord, thread_id_for, turn_record_id_for
    from wf_pipeline.records import TurnCommit, open_record_store

    url, schema, worker, turns = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
    store = open_record_store(url, schema=schema)
    thread_id = thread_id_for("wf", "node:" + worker)
    thread = ThreadRecord(thread_id=thread_id, workflow_id="wf", target_node_id="node:" + worker,
                          status="running", created_at_ms=1, updated_at_ms=1)
    for seq in range(1, turns + 1):
        turn = TurnRecord(turn_record_id=turn_record_id_for("wf", thread_id, f"t{seq}", 1), thread_id=thread_id,
                          turn_id=f"t{seq}", turn_seq=seq, attempt=1, status="completed", started_at_ms=seq)
        store.commit_turn(TurnCommit(thread=thread, turn=turn))
    store.close()
    """
)


def test_several_processes_share_one_store(record_store_url) -> None:
    workers, turns = 4, 15
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                record_store_url.url,
                record_store_url.schema or "",
                f"w{i}",
                str(turns),
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr

    with open_record_store(record_store_url.url, schema=record_store_url.schema) as store:
        threads = store.list_threads(workflow_id="wf")
        assert len(threads) == workers
        assert all(len(store.turns_for_thread(t.thread_id)) == turns for t in threads)


CLAIMER = textwrap.dedent(
    """
    import hashlib, sys
    from wf_pipeline.metadata.canonical import digest_text
    from wf_pipeline.metadata.records import DataKeyRecord
    from wf_pipeline.records import open_record_store

    url, schema, worker = sys.argv[1], sys.argv[2] or None, sys.argv[3]
    store = open_record_store(url, schema=schema)
    keys = [DataKeyRecord(artifact_id=digest_text(f"shared-{n}"), artifact_class="output", kek_id="kek-" + worker,
                          wrapped_key=f"{worker}/{n}".encode(), created_at_ms=1) for n in range(300)]
    for start in range(0, 300, 50):
        claimed = store.claim_data_keys(keys[start : start + 50])
        for artifact_id, key in sorted(claimed.items()):
            print(artifact_id, key.kek_id, key.wrapped_key.hex())
    store.close()
    """
)


def test_processes_claiming_the_same_artifacts_all_get_the_stored_keys(record_store_url) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, record_store_url.url, record_store_url.schema or "", f"w{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        outputs.append(sorted(stdout.splitlines()))

    with open_record_store(record_store_url.url, schema=record_store_url.schema) as store:
        stored = store.data_keys_for(digest_text(f"shared-{n}") for n in range(300))
    expected = [f"{aid} {key.kek_id} {key.wrapped_key.hex()}" for aid, key in sorted(stored.items())]
    assert len(stored) == 300
    assert outputs == [expected] * 3
