"""A fresh database on the real PostgreSQL server for end-to-end runs.

Dagster's instance (from the shipped deploy/dagster-postgres.yaml) and the record store
(in its own schema) both live in that database, which is dropped afterwards. Under
``CI=true`` an unreachable server fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import _reachable_postgres_url
from e2e_support import REPO_ROOT, isolated_settings

from wf_pipeline.settings import SETTINGS_VARIABLES, Settings

DEPLOYED_INSTANCE_YAML = REPO_ROOT / "deploy" / "dagster-postgres.yaml"
RECORDS_SCHEMA = "wf_records"


@dataclass(frozen=True)
class PostgresDatabase:
    """One database created for one test."""

    server_url: sa.URL
    name: str

    @property
    def url(self) -> sa.URL:
        return self.server_url.set(database=self.name)

    def scalar(self, sql: str) -> object:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(sql)).scalar_one()
        finally:
            engine.dispose()


@contextmanager
def fresh_database() -> Iterator[PostgresDatabase]:
    url, problem = _reachable_postgres_url()
    if url is None:
        message = f"PostgreSQL unreachable: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server_url = sa.make_url(url)
    name = f"wf_dagster_test_{uuid.uuid4().hex[:12]}"
    # CREATE/DROP DATABASE cannot run inside a transaction.
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield PostgresDatabase(server_url, name)
    finally:
        with admin.connect() as conn:
            # FORCE: pooled connections of the instance and the steps may still be open.
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def postgres_settings(monkeypatch, home: Path, database: PostgresDatabase, **extra_env: str) -> Settings:
    """Settings of a home whose Dagster instance and records are in ``database``.

    The instance is configured the way a user does it: the shipped dagster.yaml copied
    into DAGSTER_HOME and the DAGSTER_PG_* variables it reads.
    """
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    isolated_settings(monkeypatch, home)
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copyfile(DEPLOYED_INSTANCE_YAML, dagster_home / "dagster.yaml")
    server = database.server_url
    variables = {
        "DAGSTER_PG_HOST": server.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(server.port or 5432),
        "DAGSTER_PG_USER": server.username or "",
        "DAGSTER_PG_PASSWORD": server.password or "",
        "DAGSTER_PG_DB": database.name,
        "WF_RECORDS_URL": database.url.render_as_string(hide_password=False),
        "WF_RECORDS_SCHEMA": RECORDS_SCHEMA,
        **extra_env,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env(os.environ)
