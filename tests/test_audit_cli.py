"""`wf audit list|verify|export` as a user runs them: real processes, a home over SQLite or PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from e2e_support import REPO_ROOT

from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.records import open_record_store
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.security.audit import AuditEvent, append_audit_event, event_hash_of
from wf_pipeline.security.audit_key import AuditKey, AuditKeySource, audit_key, audit_key_source
from wf_pipeline.settings import Settings

WF = REPO_ROOT / ".venv" / "bin" / "wf"
HOUR_MS = 3_600_000

pytestmark = pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")


@dataclass(frozen=True)
class Home:
    """An isolated home whose records live at ``url`` (and ``schema``)."""

    root: Path
    url: str
    schema: str | None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
        env.update(
            WF_HOME=str(self.root), WF_CONFIG_DIR=str(self.root / "user-config"), WF_RECORDS_URL=self.url
        )
        if self.schema:
            env["WF_RECORDS_SCHEMA"] = self.schema
        return env

    def wf(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(WF), *args], cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=300
        )

    def records(self) -> RecordStore:
        return open_record_store(self.url, schema=self.schema)

    def key(self, store: RecordStore) -> AuditKeySource:
        """The home's audit key for appends to ``store``, as its commands find it (made on first use)."""
        return audit_key_source(Settings.from_env(self.env()), store)

    def key_id(self) -> str:
        """The id of the key the home holds (made by an earlier append)."""
        found = audit_key(Settings.from_env(self.env()))
        assert found is not None
        return found.key_id

    def raw(self, *statements: str) -> None:
        """Run SQL past the append-only triggers, as the database's owner can."""
        engine = sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg2://", 1))
        table = f'"{self.schema}".wf_audit_events' if self.schema else "wf_audit_events"
        try:
            with engine.begin() as conn:
                if self.schema:
                    conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                else:
                    conn.exec_driver_sql("DROP TRIGGER IF EXISTS wf_audit_events_no_update")
                    conn.exec_driver_sql("DROP TRIGGER IF EXISTS wf_audit_events_no_delete")
                for statement in statements:
                    conn.exec_driver_sql(statement.format(table=table))
        finally:
            engine.dispose()


@pytest.fixture
def home(record_store_url, tmp_path) -> Home:
    root = tmp_path / "home"
    root.mkdir()
    return Home(root, record_store_url.url, record_store_url.schema)


def record(store: RecordStore, key: AuditKeySource, n: int, *, at_ms: int, deny: bool = False) -> AuditEvent:
    return append_audit_event(
        store,
        key=key,
        requester="id-auditor",
        grant_id=f"grant-{n % 2}",
        reason_code="incident_review",
        scope={"workflow_id": "docs_writer_thread_v1", "thread_id": f"thread:{n}"},
        artifact_ids=(digest_text(f"context {n}"), digest_text(f"prompt {n}")),
        outcome="deny" if deny else "allow",
        code="GRANT_OUT_OF_SCOPE" if deny else None,
        bytes=0 if deny else 640 + n,
        policy_version="2026-01",
        now_ms=at_ms,
    )


def test_list_shows_ids_digests_and_codes_and_filters_by_time_and_grant(home) -> None:
    now = now_ms()
    with home.records() as store:
        old = [record(store, home.key(store), n, at_ms=now - 5 * HOUR_MS) for n in (1, 2)]
        new = [
            record(store, home.key(store), 3, at_ms=now),
            record(store, home.key(store), 4, at_ms=now, deny=True),
        ]

    table = home.wf("audit", "list")
    assert table.returncode == 0, table.stderr
    for event in [*old, *new]:
        assert event.event_id in table.stdout and event.event_hash[:19] in table.stdout
    assert "GRANT_OUT_OF_SCOPE" in table.stdout and "4 events, 1 denied" in table.stdout

    listed = json.loads(home.wf("audit", "list", "--since", "1h", "--json").stdout)
    assert [e["event_id"] for e in listed["events"]] == [e.event_id for e in new]
    assert listed["events"][1] == new[1].to_dict()
    by_grant = json.loads(home.wf("audit", "list", "--grant", "grant-1", "--limit", "1", "--json").stdout)
    assert [e["seq"] for e in by_grant["events"]] == [1]

    bad = home.wf("audit", "list", "--since", "yesterday")
    assert bad.returncode == 1 and bad.stderr.startswith("METADATA_BAD_DURATION: ")


def test_verify_passes_untouched_and_names_each_broken_position(home) -> None:
    now = now_ms()
    with home.records() as store:
        for n in range(1, 9):
            record(store, home.key(store), n, at_ms=now + n, deny=n % 3 == 0)

    verified = home.wf("audit", "verify", "--json")
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert (report["ok"], report["events"], report["head_seq"], report["problems"]) == (True, 8, 8, [])
    assert (report["sealed_checked"], report["unsealed"]) == (True, 0)
    assert report["key_id"] == home.key_id()
    assert "audit trail verifies: 8 events" in home.wf("audit", "verify").stdout
    assert f"seals checked with audit key {report['key_id']}" in home.wf("audit", "verify").stdout

    home.raw(
        "DELETE FROM {table} WHERE seq = 2",
        "UPDATE {table} SET bytes = 1 WHERE seq = 5",
        "UPDATE {table} SET seq = 100 WHERE seq = 6",
        "UPDATE {table} SET seq = 6 WHERE seq = 7",
        "UPDATE {table} SET seq = 7 WHERE seq = 100",
    )

    broken = home.wf("audit", "verify")
    assert broken.returncode == 1
    assert broken.stderr.startswith("AUDIT_CHAIN_BROKEN: ")
    assert "deleted at 2; altered at 5, 6, 7; reordered at 6, 7, 8" in " ".join(broken.stderr.split())
    as_json = home.wf("audit", "verify", "--json")
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "AUDIT_CHAIN_BROKEN"
    assert {(p["seq"], p["kind"]) for p in error["details"]["problems"]} == {
        (2, "deleted"),
        (5, "altered"),
        (6, "altered"),
        (7, "altered"),
        (6, "reordered"),
        (7, "reordered"),
        (8, "reordered"),
    }


def test_export_feeds_the_audit_events_table_once_and_witnesses_the_head(home) -> None:
    now = now_ms()
    with home.records() as store:
        events = [record(store, home.key(store), n, at_ms=now + n, deny=n == 2) for n in (1, 2, 3)]

    first = json.loads(home.wf("audit", "export", "--json").stdout)
    assert (first["exported"], first["after_seq"], first["head_seq"]) == (3, 0, 3)
    with home.records() as store:
        events.append(record(store, home.key(store), 4, at_ms=now + 4))
    again = json.loads(home.wf("audit", "export", "--json").stdout)
    assert (again["exported"], again["after_seq"], again["head_seq"]) == (1, 3, 4)

    query = home.wf(
        "telemetry",
        "query",
        "select seq, event_id, outcome, code, bytes, event_hash, date from audit_events order by seq",
        "--json",
    )
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)["rows"]
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (e.seq, e.event_id, e.outcome, e.code, e.bytes, e.event_hash) for e in events
    ]

    # The newest events cut off the end of the database's trail: the Parquet copy saw them.
    home.raw("DELETE FROM {table} WHERE seq >= 3")
    cut = home.wf("audit", "verify", "--json")
    assert cut.returncode == 1
    problems = json.loads(cut.stdout)["error"]["details"]["problems"]
    assert [(p["seq"], p["kind"], p["count"]) for p in problems] == [(3, "deleted", 2)]


def test_a_damaged_parquet_copy_and_undecodable_arguments_get_codes(home) -> None:
    now = now_ms()
    with home.records() as store:
        for n in (1, 2):
            record(store, home.key(store), n, at_ms=now + n)
    assert home.wf("audit", "export").returncode == 0
    copy = max(
        (home.root / "telemetry" / "audit_events").rglob("*.parquet"), key=lambda p: p.stat().st_mtime_ns
    )
    copy.write_bytes(b"garbage\n")

    export = home.wf("audit", "export")
    assert export.returncode == 1
    assert export.stderr.startswith("TELEMETRY_FILE_UNREADABLE: ")
    verify = home.wf("audit", "verify", "--json")
    assert verify.returncode == 0, verify.stderr
    assert json.loads(verify.stdout)["witness_error"]["code"] == "TELEMETRY_FILE_UNREADABLE"
    assert "head NOT checked" in home.wf("audit", "verify").stdout

    # Undecodable bytes on the command line (os.fsencode turns them back into raw bytes).
    listed = subprocess.run(
        [str(WF), "audit", "list", "--grant", os.fsdecode(b"\xff")],
        cwd=home.root,
        env=home.env(),
        capture_output=True,
        timeout=300,
    )
    assert listed.returncode == 1 and listed.stderr.startswith(b"GRANT_MALFORMED: ")
    shown = subprocess.run(
        [str(WF), "metadata", "show", os.fsdecode(b"node:\xff")],
        cwd=home.root,
        env=home.env(),
        capture_output=True,
        timeout=300,
    )
    assert shown.returncode == 1 and shown.stderr.startswith(b"METADATA_TARGET_NOT_FOUND: ")


def test_verify_catches_a_rewritten_tail_with_the_homes_key_and_says_when_it_has_none(home) -> None:
    now = now_ms()
    with home.records() as store:
        events = [record(store, home.key(store), n, at_ms=now + n) for n in range(1, 7)]
    # Event 4 onward rewritten by someone who can write the database: hashes recomputed,
    # seals made with a key of their own under the home's (public) key id.
    forger = AuditKey(b"f" * 32, "forger")
    prev = events[2].event_hash
    statements = []
    for event in events[3:]:
        fields = event.to_dict() | {"prev_hash": prev}
        if event.seq == 4:
            fields["bytes"] = 1
        fields["event_hash"] = prev = event_hash_of(fields)
        statements.append(
            f"UPDATE {{table}} SET bytes = {fields['bytes']}, prev_hash = '{fields['prev_hash']}', "
            f"event_hash = '{fields['event_hash']}', seal = '{forger.seal(fields['event_hash'])}' "
            f"WHERE seq = {event.seq}"
        )
    home.raw(*statements)

    broken = home.wf("audit", "verify", "--json")
    assert broken.returncode == 1, broken.stdout
    error = json.loads(broken.stdout)["error"]
    assert error["code"] == "AUDIT_CHAIN_BROKEN" and error["details"]["sealed_checked"] is True
    assert [(p["seq"], p["kind"]) for p in error["details"]["problems"]] == [
        (n, "altered") for n in (4, 5, 6)
    ]
    assert "altered at 4, 5, 6" in " ".join(home.wf("audit", "verify").stderr.split())

    # Another home's key: every event is reported once, as one run naming both key ids.
    env_key = "A" * 43 + "="  # base64 of 32 zero-ish bytes: a valid key that is not the home's
    wrong = subprocess.run(
        [str(WF), "audit", "verify", "--json"],
        cwd=home.root,
        env=home.env() | {"WF_AUDIT_KEY": env_key},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wrong.returncode == 1
    problems = json.loads(wrong.stdout)["error"]["details"]["problems"]
    assert [(p["seq"], p["kind"], p["count"]) for p in problems] == [(1, "altered", 6)]
    assert home.key_id() in problems[0]["detail"]

    # Without the key the rewrite is invisible, and the report says seals were not checked.
    (home.root / "keys" / "audit.key").unlink()
    unkeyed = home.wf("audit", "verify", "--json")
    assert unkeyed.returncode == 0, unkeyed.stderr
    assert (json.loads(unkeyed.stdout)["sealed_checked"], json.loads(unkeyed.stdout)["key_id"]) == (
        False,
        None,
    )
    assert "seals NOT checked" in home.wf("audit", "verify").stdout
    assert not (home.root / "keys" / "audit.key").exists()  # verify never makes a key


def test_verify_with_the_key_reports_a_trail_stripped_of_every_seal(home) -> None:
    now = now_ms()
    with home.records() as store:
        events = [record(store, home.key(store), n, at_ms=now + n) for n in range(1, 6)]
    # Event 3 onward rewritten with recomputed hashes, then every seal and key id cleared.
    prev = events[1].event_hash
    statements = []
    for event in events[2:]:
        fields = event.to_dict() | {"prev_hash": prev}
        if event.seq == 3:
            fields["bytes"] = 1
        fields["event_hash"] = prev = event_hash_of(fields)
        statements.append(
            f"UPDATE {{table}} SET bytes = {fields['bytes']}, prev_hash = '{fields['prev_hash']}', "
            f"event_hash = '{fields['event_hash']}' WHERE seq = {event.seq}"
        )
    home.raw(*statements, "UPDATE {table} SET seal = NULL, seal_key_id = NULL")

    broken = home.wf("audit", "verify", "--json")
    assert broken.returncode == 1, broken.stdout
    details = json.loads(broken.stdout)["error"]["details"]
    assert details["sealed_checked"] is True
    assert [(p["seq"], p["kind"], p["count"]) for p in details["problems"]] == [(1, "altered", 5)]
    assert "altered at 1" in " ".join(home.wf("audit", "verify").stderr.split())
    # Without the key the stripped seals are only counted.
    (home.root / "keys" / "audit.key").unlink()
    unkeyed = home.wf("audit", "verify", "--json")
    assert unkeyed.returncode == 0 and json.loads(unkeyed.stdout)["unsealed"] == 5
    assert "5 events without a seal" in home.wf("audit", "verify").stdout


def test_a_limit_past_a_64_bit_integer_is_a_usage_error(home) -> None:
    # Unicode digits (Arabic-Indic, full-width) and underscores are no whole number here either.
    for limit in ("9223372036854775808", str(10**30), "0", "\u0661", "\uff15", "1_0", "+5"):
        done = home.wf("audit", "list", "--limit", limit)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and "--limit" in done.stderr
    largest = home.wf("audit", "list", "--limit", "9223372036854775807", "--json")
    assert largest.returncode == 0, largest.stderr


def test_a_since_written_with_non_ascii_digits_is_a_bad_duration(home) -> None:
    done = home.wf("audit", "list", "--since", "\u0661h")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("METADATA_BAD_DURATION: ")


def test_the_store_refuses_a_limit_past_a_64_bit_integer_with_a_code(home) -> None:
    from wf_pipeline.errors import RecordError

    with home.records() as store, pytest.raises(RecordError) as caught:
        store.audit_records(limit=2**63)
    assert caught.value.code == "RECORD_INVALID"


@pytest.mark.parametrize("action", ["verify", "list", "export"])
def test_a_records_file_that_is_no_database_is_a_record_code(tmp_path, action: str) -> None:
    root = tmp_path / "home"
    root.mkdir()
    (root / "records.db").write_bytes(b"this is not a SQLite database, only text long enough " * 4)
    home = Home(root, f"sqlite:///{root / 'records.db'}", None)

    done = home.wf("audit", action)

    assert done.returncode == 1
    assert done.stderr.startswith("RECORD_UNAVAILABLE: "), done.stderr[-600:]
    assert "Traceback" not in done.stderr
