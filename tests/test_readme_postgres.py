"""The README's PostgreSQL section works when pasted into a shell, and a bad set-up says why in one line.

The section's commands are read from README.md and run by bash against the local server
(throwaway database names, a temporary home); the databases are dropped afterwards.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import _reachable_postgres_url
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree

WF = REPO_ROOT / ".venv" / "bin" / "wf"
README = REPO_ROOT / "README.md"
SECTION = "## PostgreSQL instance"


def readme_section_commands() -> str:
    """The first ``sh`` block under the README's PostgreSQL heading, as written."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the PostgreSQL section has no sh block"
    return match.group(1)


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without any WF_, DAGSTER_ or PG setting, and a temporary home."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WF_", "DAGSTER_", "PG"))}
    env.update(WF_HOME=str(home / "wf-home"), WF_CONFIG_DIR=str(home / "user-config"))
    return env


@pytest.fixture
def server() -> sa.URL:
    url, problem = _reachable_postgres_url()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable: {problem}")
    return sa.make_url(url)


@pytest.fixture
def throwaway_names(server: sa.URL) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    names = (f"wf_readme_dagster_{suffix}", f"wf_readme_records_{suffix}")
    yield names
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_the_readme_postgres_section_runs_verbatim(tmp_path, server, throwaway_names):
    dagster_db, records_db = throwaway_names
    commands = readme_section_commands()
    # The only edits: throwaway database names, and the server of this machine's test set-up.
    replaced = commands.replace("DAGSTER_PG_DB=dagster", f"DAGSTER_PG_DB={dagster_db}")
    replaced = replaced.replace("RECORDS_DB=wf_records", f"RECORDS_DB={records_db}")
    replaced = replaced.replace("DAGSTER_PG_HOST=127.0.0.1", f"DAGSTER_PG_HOST={server.host}")
    replaced = replaced.replace("DAGSTER_PG_PORT=5432", f"DAGSTER_PG_PORT={server.port or 5432}")
    replaced = replaced.replace("DAGSTER_PG_USER=postgres", f"DAGSTER_PG_USER={server.username}")
    assert replaced.count(dagster_db) == 1 and replaced.count(records_db) == 1

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", replaced],
        cwd=REPO_ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "outputs written under" in result.stdout
    home = tmp_path / "wf-home"
    assert (home / "dagster" / "dagster.yaml").read_text() == (
        REPO_ROOT / "deploy" / "dagster-postgres.yaml"
    ).read_text()
    (out,) = (home / "out").glob("sample_repo~*")  # <WF_OUT>/<tree key>
    readmes = sorted(out.rglob("README.md"))
    assert len(readmes) == 8
    for name, sql in (
        (dagster_db, "SELECT count(*) FROM runs"),
        (records_db, "SELECT count(*) FROM wf_records.wf_threads"),
    ):
        engine = sa.create_engine(server.set(database=name))
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text(sql)).scalar_one() > 0, name
        finally:
            engine.dispose()


# --- a bad set-up is one line with a code ------------------------------------------------------


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _wf_with_postgres_instance(tmp_path: Path, **pg: str) -> subprocess.CompletedProcess:
    env = clean_env(tmp_path)
    dagster_home = Path(env["WF_HOME"]) / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text((REPO_ROOT / "deploy" / "dagster-postgres.yaml").read_text())
    env.update(pg)
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "sensors", tmp_path / "sensors")
    return subprocess.run(
        [str(WF), "run", "docs_writer_thread_v1", str(tree)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_coded_line(result: subprocess.CompletedProcess, code: str) -> str:
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"{code}: "), result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


FULL = {
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "postgres",
    "DAGSTER_PG_PASSWORD": "",
    "DAGSTER_PG_DB": "test",
}


def test_a_missing_dagster_pg_variable_is_named(tmp_path):
    settings = {key: value for key, value in FULL.items() if key != "DAGSTER_PG_PASSWORD"}
    stderr = _assert_one_coded_line(
        _wf_with_postgres_instance(tmp_path, **settings), "CONFIG_INSTANCE_ENV_MISSING"
    )
    assert "DAGSTER_PG_PASSWORD" in stderr


def test_an_unreachable_server_is_named_with_its_reason_quickly(tmp_path, refusing_port):
    result = _wf_with_postgres_instance(tmp_path, **{**FULL, "DAGSTER_PG_PORT": str(refusing_port)})
    stderr = _assert_one_coded_line(result, "CONFIG_INSTANCE_UNREACHABLE")
    assert f"127.0.0.1:{refusing_port}" in stderr and "refused" in stderr


@pytest.mark.postgres
def test_a_server_that_refuses_the_database_is_named_with_its_reason(tmp_path, server):
    missing = f"wf_no_such_db_{uuid.uuid4().hex[:8]}"
    settings = {
        **FULL,
        "DAGSTER_PG_HOST": server.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(server.port or 5432),
        "DAGSTER_PG_USER": server.username or "",
        "DAGSTER_PG_PASSWORD": "not-shown-anywhere",
        "DAGSTER_PG_DB": missing,
    }
    stderr = _assert_one_coded_line(
        _wf_with_postgres_instance(tmp_path, **settings), "CONFIG_INSTANCE_REFUSED"
    )
    assert missing in stderr and "does not exist" in stderr
    assert "not-shown-anywhere" not in stderr


@pytest.fixture
def password_refusing_server() -> Iterator[int]:
    """A loopback server that answers PostgreSQL's start-up as a server does for a wrong
    password: no TLS ('N'), then an ErrorResponse with SQLSTATE 28P01 (protocol 3.0)."""
    import struct
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def read_message(conn: socket.socket) -> bytes:
        (length,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
        return conn.recv(length - 4, socket.MSG_WAITALL)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                body = read_message(conn)
                if body[:4] == struct.pack("!I", 80877103):  # SSLRequest: refuse TLS, read the start-up
                    conn.sendall(b"N")
                    read_message(conn)
                fields = b"".join(
                    tag + text + b"\0"
                    for tag, text in (
                        (b"S", b"FATAL"),
                        (b"V", b"FATAL"),
                        (b"C", b"28P01"),
                        (b"M", b'password authentication failed for user "postgres"'),
                    )
                )
                payload = fields + b"\0"
                conn.sendall(b"E" + struct.pack("!I", len(payload) + 4) + payload)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_a_wrong_password_is_named_as_refused(tmp_path, password_refusing_server):
    settings = {
        **FULL,
        "DAGSTER_PG_PORT": str(password_refusing_server),
        "DAGSTER_PG_PASSWORD": "wrong-secret",
    }
    stderr = _assert_one_coded_line(
        _wf_with_postgres_instance(tmp_path, **settings), "CONFIG_INSTANCE_REFUSED"
    )
    assert "password authentication failed" in stderr
    assert "wrong-secret" not in stderr
