from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest
import sqlalchemy as sa

# The moto server (S3 and KMS on loopback) and a fresh bucket per test, for every test module.
from s3_support import moto_server, s3_bucket  # noqa: F401

# The shared test server trusts local connections; which role exists depends on the machine.
POSTGRES_URLS = (
    "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg2://root@127.0.0.1:5432/test",
)


_TEST_HOME_KEY = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Point WF_HOME at a temporary folder for the whole session (each xdist worker its own).

    wf's default home is ~/.wf, shared with the user's own runs; a test that forgets to
    isolate its settings must never read or write there. DAGSTER_HOME then follows WF_HOME.
    """
    home = tempfile.mkdtemp(prefix="wf-test-home-")
    config.stash[_TEST_HOME_KEY] = home
    os.environ["WF_HOME"] = home
    os.environ.pop("DAGSTER_HOME", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    home = config.stash.get(_TEST_HOME_KEY, None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


class RecordStoreTarget(NamedTuple):
    """Where a test's record store lives: pass ``url`` and ``schema`` to open_record_store."""

    backend: str
    url: str
    schema: str | None


def _reachable_postgres_url() -> tuple[str | None, str]:
    candidates = (
        [os.environ["WF_TEST_POSTGRES_URL"]] if os.environ.get("WF_TEST_POSTGRES_URL") else POSTGRES_URLS
    )
    problems = []
    for url in candidates:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return url, ""
        except sa.exc.DBAPIError as exc:
            problems.append(f"{engine.url.render_as_string(hide_password=True)}: {exc.orig}")
        finally:
            engine.dispose()
    return None, "; ".join(problems)


@contextmanager
def record_store_location(kind: str, tmp_path) -> Iterator[RecordStoreTarget]:
    """A fresh, empty record store location of ``kind`` ("sqlite" or "postgres").

    On PostgreSQL a new schema, dropped afterwards; an unreachable server skips the test
    (fails it under CI=true).
    """
    if kind == "sqlite":
        yield RecordStoreTarget("sqlite", f"sqlite:///{tmp_path / 'records' / 'records.db'}", None)
        return
    url, problem = _reachable_postgres_url()
    if url is None:
        message = f"PostgreSQL unreachable: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    schema = f"wf_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield RecordStoreTarget("postgres", url, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def record_store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[RecordStoreTarget]:
    """A fresh, empty record store location on each backend (a new schema per test on PostgreSQL)."""
    with record_store_location(request.param, tmp_path) as target:
        yield target


@pytest.fixture(autouse=True, scope="session")
def _builtin_workflows() -> None:
    """Register the built-in workflows (gates, offline turns, output sinks) as the CLI and Dagster do."""
    from wf_pipeline.workflows import load_builtin_workflows

    load_builtin_workflows()
