"""The audit trail: a sealed hash chain that verifies untouched and names each deleted, altered or reordered event.

Tampering is done the way someone with the database's owner rights would: raw SQL, with
the append-only triggers dropped (SQLite) or bypassed by a superuser (PostgreSQL's
``session_replication_role = replica``). The triggers themselves are tested from a
plain connection.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import RecordStoreTarget

from wf_pipeline.errors import SecurityError
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.records import AuditEventRecord
from wf_pipeline.records import MemoryRecordStore, open_record_store
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.security.audit import (
    GENESIS_HASH,
    AuditEvent,
    append_audit_event,
    audit_events,
    event_hash_of,
    verify_audit_chain,
)
from wf_pipeline.security.audit_key import (
    AuditKey,
    audit_key,
    audit_key_source,
    home_audit_key,
    trail_key,
)
from wf_pipeline.settings import Settings

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
KEY = AuditKey(bytes(range(32)), "test key")
OTHER_KEY = AuditKey(bytes(range(32, 64)), "another home's key")


def append(
    records: RecordStore, n: int, *, outcome: str = "allow", grant_id: str | None = "grant-a"
) -> AuditEvent:
    """The n-th test event: an allow returning n bytes, or a denial with its code."""
    deny = outcome == "deny"
    return append_audit_event(
        records,
        key=KEY,
        requester=f"id-reader-{n % 3}",
        grant_id=grant_id,
        reason_code="incident_review",
        scope={"workflow_id": "docs_writer_thread_v1", "thread_id": f"thread:{n}", "turns": [1, 4]},
        artifact_ids=(digest_text(f"payload {n}"),),
        outcome=outcome,  # type: ignore[arg-type]
        code="GRANT_EXPIRED" if deny else None,
        bytes=0 if deny else 100 + n,
        policy_version="2026-01",
        now_ms=T0 + 1_000 * n,
    )


def fill(records: RecordStore, count: int) -> list[AuditEvent]:
    return [append(records, n, outcome="deny" if n % 4 == 0 else "allow") for n in range(1, count + 1)]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request, tmp_path) -> Iterator[RecordStore]:
    if request.param == "memory":
        yield MemoryRecordStore()
        return
    from conftest import record_store_location

    with record_store_location(request.param, tmp_path) as target:
        with open_record_store(target.url, schema=target.schema) as store:
            yield store


def test_an_untouched_trail_verifies_and_links_each_event_to_the_one_before(any_store) -> None:
    appended = fill(any_store, 9)

    report = verify_audit_chain(any_store)

    assert report.ok and report.problems == ()
    assert (report.events, report.head_seq, report.head_hash) == (9, 9, appended[-1].event_hash)
    assert [e.seq for e in appended] == list(range(1, 10))
    assert appended[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.event_hash for a, b in zip(appended, appended[1:]))
    assert all(event_hash_of(e) == e.event_hash for e in appended)
    assert audit_events(any_store) == appended
    assert verify_audit_chain(any_store, page=2) == report
    assert verify_audit_chain(MemoryRecordStore()).ok  # an empty trail too
    assert (report.sealed_checked, report.key_id, report.unsealed) == (False, None, 0)
    assert all(e.seal == KEY.seal(e.event_hash) and e.seal_key_id == KEY.key_id for e in appended)
    sealed = verify_audit_chain(any_store, key=KEY)
    assert sealed.ok and (sealed.sealed_checked, sealed.key_id, sealed.unsealed) == (True, KEY.key_id, 0)
    assert sealed.to_dict()["sealed_checked"] is True and report.to_dict()["sealed_checked"] is False
    assert verify_audit_chain(any_store, key=KEY, page=2) == sealed


def test_events_read_back_as_appended_and_filter_by_time_grant_and_position(any_store) -> None:
    first = append(any_store, 1)
    denied = append(any_store, 2, outcome="deny", grant_id="grant-b")
    third = append(any_store, 3)

    assert denied.outcome == "deny" and denied.code == "GRANT_EXPIRED" and denied.bytes == 0
    assert dict(first.scope) == {
        "workflow_id": "docs_writer_thread_v1",
        "thread_id": "thread:1",
        "turns": [1, 4],
    }
    assert first.artifact_ids == (digest_text("payload 1"),)
    assert first.event_id.startswith("aud-") and len(first.event_id) == 36
    assert audit_events(any_store, since_ms=T0 + 2_000) == [denied, third]
    assert audit_events(any_store, grant_id="grant-b") == [denied]
    assert audit_events(any_store, after_seq=1, limit=1) == [denied]
    assert first.to_dict()["artifact_ids"] == [digest_text("payload 1")]


# --- tampering ------------------------------------------------------------------------------


def _engine(target: RecordStoreTarget) -> sa.Engine:
    return sa.create_engine(target.url.replace("postgresql://", "postgresql+psycopg2://", 1))


def _table(target: RecordStoreTarget) -> str:
    return f'"{target.schema}".wf_audit_events' if target.schema else "wf_audit_events"


@contextmanager
def owner_connection(target: RecordStoreTarget) -> Iterator[sa.Connection]:
    """A connection that writes past the append-only triggers, as the database's owner can."""
    engine = _engine(target)
    try:
        with engine.begin() as conn:
            if target.backend == "sqlite":
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS wf_audit_events_no_update")
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS wf_audit_events_no_delete")
            else:
                # Superuser only: triggers do not fire for this transaction.
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            yield conn
    finally:
        engine.dispose()


@pytest.fixture
def sql_target(record_store_url) -> RecordStoreTarget:
    return record_store_url


def test_deleted_altered_and_reordered_events_are_reported_with_their_positions(sql_target) -> None:
    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        events = fill(store, 12)
    table = _table(sql_target)
    rehashed = events[10].to_dict() | {"requester": "id-someone-else"}
    with owner_connection(sql_target) as conn:
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE seq = 4")
        conn.exec_driver_sql(
            f"UPDATE {table} SET requester = 'id-someone-else', outcome = 'allowed' WHERE seq = 6"
        )
        # Reorder: events 8 and 9 trade places (through a free seq, as seq is the primary key).
        conn.exec_driver_sql(f"UPDATE {table} SET seq = 1000 WHERE seq = 8")
        conn.exec_driver_sql(f"UPDATE {table} SET seq = 8 WHERE seq = 9")
        conn.exec_driver_sql(f"UPDATE {table} SET seq = 9 WHERE seq = 1000")
        # Altered and re-hashed, so the event agrees with itself: its successor no longer links to it.
        conn.execute(
            sa.text(f"UPDATE {table} SET requester = :who, event_hash = :hash WHERE seq = 11"),
            {"who": "id-someone-else", "hash": event_hash_of(rehashed)},
        )

    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        report = verify_audit_chain(store)
        paged = verify_audit_chain(store, page=3)

    assert not report.ok
    assert report.positions("deleted") == [4, 11]
    assert report.positions("altered") == [6, 8, 9]
    assert report.positions("reordered") == [8, 9, 10]
    assert (report.events, report.head_seq) == (11, 12)
    assert paged == report


def test_a_schema_version_this_release_does_not_write_is_reported_altered(sql_target) -> None:
    # event_hash does not cover schema_version (old trails must keep verifying), so the
    # check is on its value: 1 is what this release writes.
    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        fill(store, 8)
    table = _table(sql_target)
    with owner_connection(sql_target) as conn:
        conn.exec_driver_sql(f"UPDATE {table} SET schema_version = 99 WHERE seq = 7")
        conn.exec_driver_sql(f"UPDATE {table} SET schema_version = 0 WHERE seq = 2")

    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        report = verify_audit_chain(store, key=KEY)
        paged = verify_audit_chain(store, key=KEY, page=3)

    assert not report.ok
    assert [(p.seq, p.kind) for p in report.problems] == [(2, "altered"), (7, "altered")]
    assert "schema_version 99" in report.problems[1].detail
    assert paged.problems == report.problems


def test_the_first_event_deleted_or_linked_elsewhere_is_reported(sql_target) -> None:
    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        fill(store, 5)
    table = _table(sql_target)
    with owner_connection(sql_target) as conn:
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE seq IN (1, 2)")

    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        report = verify_audit_chain(store)

    assert [(p.seq, p.kind, p.count) for p in report.problems] == [(1, "deleted", 2)]


def test_rows_that_no_longer_load_are_reported_altered_at_their_seq(sql_target) -> None:
    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        fill(store, 8)
    table = _table(sql_target)
    with owner_connection(sql_target) as conn:
        conn.exec_driver_sql(f"UPDATE {table} SET scope = 'not json {{' WHERE seq = 3")
        if sql_target.backend == "sqlite":
            # SQLite keeps any value in any column; PostgreSQL's BIGINT would refuse it.
            conn.exec_driver_sql(f"UPDATE {table} SET bytes = 'abc' WHERE seq = 6")

    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        report = verify_audit_chain(store)
        paged = verify_audit_chain(store, page=2)

    expected = [3, 6] if sql_target.backend == "sqlite" else [3]
    assert not report.ok
    assert report.positions("altered") == expected
    assert report.positions() == expected  # the events after a broken row still verify
    assert (report.events, report.head_seq) == (8, 8)
    assert paged.problems == report.problems


def test_a_cut_off_end_is_found_against_a_witness_of_the_head() -> None:
    store = MemoryRecordStore()
    events = fill(store, 5)
    witness = (events[-1].seq, events[-1].event_hash)
    with store._contents.lock:
        del store._contents.tables["audit_events"][(5,)]
        del store._contents.tables["audit_events"][(4,)]

    assert verify_audit_chain(store).ok  # the chain alone cannot see its end cut off
    report = verify_audit_chain(store, witness=witness)
    assert [(p.seq, p.kind, p.count) for p in report.problems] == [(4, "deleted", 2)]
    assert verify_audit_chain(store, witness=(3, events[2].event_hash)).ok
    assert verify_audit_chain(store, witness=(3, events[3].event_hash)).positions("altered") == [3]


def test_the_triggers_refuse_updates_and_deletes_from_a_plain_connection(sql_target) -> None:
    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        before = fill(store, 3)
    table = _table(sql_target)
    statements = [f"UPDATE {table} SET bytes = 0 WHERE seq = 2", f"DELETE FROM {table} WHERE seq = 3"]
    if sql_target.backend == "postgres":
        statements.append(f"TRUNCATE {table}")
    engine = _engine(sql_target)
    try:
        for statement in statements:
            with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
                conn.exec_driver_sql(statement)
            assert "append-only" in str(caught.value.orig)
    finally:
        engine.dispose()

    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        assert audit_events(store) == before
        assert verify_audit_chain(store).ok


def _rewritten_tail(events: list[AuditEvent], first: int) -> list[dict]:
    """Events ``first``.. as an attacker with write access rewrites them: the event at ``first``
    changed, every hash from there recomputed, every seal made with a key of their own."""
    rewritten: list[dict] = []
    prev = events[first - 2].event_hash if first > 1 else GENESIS_HASH
    for event in events[first - 1 :]:
        fields = event.to_dict() | {"prev_hash": prev}
        if event.seq == first:
            fields["requester"] = "id-someone-else"
        fields["event_hash"] = event_hash_of(fields)
        # The key id is public (it is in every row): only the seal itself needs the key.
        fields["seal"], fields["seal_key_id"] = OTHER_KEY.seal(fields["event_hash"]), KEY.key_id
        rewritten.append(fields)
        prev = fields["event_hash"]
    return rewritten


def test_a_rewritten_tail_with_recomputed_hashes_is_caught_at_its_first_rewritten_event(sql_target) -> None:
    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        events = fill(store, 10)
    with owner_connection(sql_target) as conn:
        for fields in _rewritten_tail(events, 6):
            conn.execute(
                sa.text(
                    f"UPDATE {_table(sql_target)} SET requester = :requester, prev_hash = :prev_hash, "
                    "event_hash = :event_hash, seal = :seal, seal_key_id = :seal_key_id WHERE seq = :seq"
                ),
                fields,
            )

    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        unkeyed = verify_audit_chain(store)
        report = verify_audit_chain(store, key=KEY)
        paged = verify_audit_chain(store, key=KEY, page=3)

    # The chain alone agrees with itself again: only the seals tell.
    assert unkeyed.ok and not unkeyed.sealed_checked
    assert not report.ok and report.sealed_checked
    assert report.positions() == report.positions("altered") == [6, 7, 8, 9, 10]
    assert report.problems[0].seq == 6 and "not sealed by audit key" in report.problems[0].detail
    assert paged == report


def test_a_trail_sealed_under_another_key_is_reported_with_both_key_ids(any_store) -> None:
    fill(any_store, 5)

    report = verify_audit_chain(any_store, key=OTHER_KEY)

    assert not report.ok
    assert [(p.seq, p.kind, p.count) for p in report.problems] == [(1, "altered", 5)]
    assert KEY.key_id in report.problems[0].detail and OTHER_KEY.key_id in report.problems[0].detail
    assert verify_audit_chain(any_store, key=KEY).ok


def _unsealed(records: RecordStore, n: int) -> None:
    """An event as the release before seals appended it: no seal, no key id."""

    def build(seq: int, head_hash: str | None) -> AuditEventRecord:
        fields = append(MemoryRecordStore(), n).to_dict() | {
            "seq": seq,
            "event_id": f"aud-{uuid.uuid4().hex}",
            "prev_hash": head_hash or GENESIS_HASH,
        }
        fields |= {"event_hash": event_hash_of(fields), "seal": None, "seal_key_id": None}
        return AuditEventRecord(**fields)

    records.append_audit_record(build)


def test_with_the_key_every_unsealed_event_is_altered_and_counted(any_store) -> None:
    for n in (1, 2):
        _unsealed(any_store, n)
    sealed = [append(any_store, n) for n in (3, 4, 5)]

    # Written before seals existed, or stripped: with the key nothing tells them apart, so neither passes.
    report = verify_audit_chain(any_store, key=KEY)
    assert not report.ok and (report.unsealed, report.events) == (2, 5)
    assert [(p.seq, p.kind, p.count) for p in report.problems] == [(1, "altered", 2)]
    assert "events 1..2 carry no seal" in report.problems[0].detail
    assert report.to_dict()["unsealed"] == 2
    assert verify_audit_chain(any_store, key=KEY, page=1) == report
    unkeyed = verify_audit_chain(any_store)  # seals not checked: leading unsealed events only counted
    assert unkeyed.ok and unkeyed.unsealed == 2 and not unkeyed.sealed_checked

    _unsealed(any_store, 6)  # no seal after sealed events: stripped, with or without the key
    stripped = verify_audit_chain(any_store, key=KEY)
    assert [(p.seq, p.kind, p.count) for p in stripped.problems] == [(1, "altered", 2), (6, "altered", 1)]
    assert "event 6 carries no seal" in stripped.problems[1].detail and stripped.unsealed == 3
    unkeyed = verify_audit_chain(any_store)
    assert [(p.seq, p.kind) for p in unkeyed.problems] == [(6, "altered")]
    assert f"event {sealed[0].seq} before it is sealed" in unkeyed.problems[0].detail


def test_a_trail_stripped_of_every_seal_and_rewritten_is_altered_from_its_first_event(sql_target) -> None:
    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        events = fill(store, 10)
    with owner_connection(sql_target) as conn:
        # Event 5 rewritten, the chain recomputed from there, and every seal and key id cleared.
        for fields in _rewritten_tail(events, 5):
            conn.execute(
                sa.text(
                    f"UPDATE {_table(sql_target)} SET requester = :requester, prev_hash = :prev_hash, "
                    "event_hash = :event_hash WHERE seq = :seq"
                ),
                fields,
            )
        conn.execute(sa.text(f"UPDATE {_table(sql_target)} SET seal = NULL, seal_key_id = NULL"))

    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        report = verify_audit_chain(store, key=KEY)
        paged = verify_audit_chain(store, key=KEY, page=3)
        unkeyed = verify_audit_chain(store)

    assert not report.ok and report.sealed_checked and report.unsealed == 10
    assert [(p.seq, p.kind, p.count) for p in report.problems] == [(1, "altered", 10)]
    assert "carry no seal" in report.problems[0].detail
    assert paged == report
    assert unkeyed.ok and not unkeyed.sealed_checked  # the chain agrees with itself: only the key tells


# --- the audit write fails: the request fails --------------------------------------------------


def test_a_read_only_store_is_audit_unavailable_and_nothing_is_written(tmp_path) -> None:
    path = tmp_path / "records.db"
    with open_record_store(f"sqlite:///{path}") as store:
        kept = append(store, 1)
    with open_record_store(f"sqlite:///file:{path}?mode=ro&uri=true") as read_only:
        with pytest.raises(SecurityError) as caught:
            append(read_only, 2)
    assert caught.value.code == "AUDIT_UNAVAILABLE"
    assert caught.value.__cause__ is not None
    with open_record_store(f"sqlite:///{path}") as store:
        assert audit_events(store) == [kept]


def test_a_dropped_table_is_audit_unavailable(sql_target) -> None:
    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        append(store, 1)
        with owner_connection(sql_target) as conn:
            conn.exec_driver_sql(f"DROP TABLE {_table(sql_target)}")
        with pytest.raises(SecurityError) as caught:
            append(store, 2)
    assert caught.value.code == "AUDIT_UNAVAILABLE"


def test_an_unreachable_server_is_audit_unavailable() -> None:
    class Down(MemoryRecordStore):
        """A store whose server refuses connections."""

        def append_audit_record(self, build):
            raise OSError("connection refused")

    down = Down()
    with pytest.raises(SecurityError) as caught:
        append(down, 1)
    assert caught.value.code == "AUDIT_UNAVAILABLE" and isinstance(caught.value.__cause__, OSError)
    assert audit_events(down) == []


def test_an_audit_key_that_cannot_be_read_or_made_is_audit_unavailable(tmp_path) -> None:
    settings = Settings.from_env({"WF_HOME": str(tmp_path / "home")})
    settings.default_audit_key_file.mkdir(parents=True)  # unreadable as a file, even for root
    store = MemoryRecordStore()
    arguments = {
        "requester": "id-reader",
        "grant_id": None,
        "reason_code": None,
        "scope": {},
        "artifact_ids": (),
        "outcome": "allow",
        "code": None,
        "bytes": 1,
        "policy_version": "1",
        "now_ms": T0,
    }
    bad_text = Settings.from_env({"WF_HOME": str(tmp_path / "other"), "WF_AUDIT_KEY": "too short"})
    missing = Settings.from_env(
        {"WF_HOME": str(tmp_path / "other"), "WF_AUDIT_KEY_FILE": str(tmp_path / "none.key")}
    )
    for broken in (settings, bad_text, missing):
        with pytest.raises(SecurityError) as caught:
            append_audit_event(store, key=audit_key_source(broken, store), **arguments)
        assert caught.value.code == "AUDIT_UNAVAILABLE"
        assert caught.value.details["cause"] == "AUDIT_KEY_INVALID"
        assert isinstance(caught.value.__cause__, SecurityError)
    assert audit_events(store) == []
    assert not missing.default_audit_key_file.exists()  # a named key file is never made

    shutil_home = tmp_path / "readonly-home"
    shutil_home.mkdir()
    (shutil_home / "keys").write_text("a file where the keys folder goes")
    with pytest.raises(SecurityError) as caught:
        append_audit_event(
            store, key=audit_key_source(Settings.from_env({"WF_HOME": str(shutil_home)}), store), **arguments
        )
    assert caught.value.code == "AUDIT_UNAVAILABLE" and audit_events(store) == []


def test_the_audit_key_comes_from_the_variable_the_file_or_the_home(tmp_path) -> None:
    import base64

    text = base64.b64encode(bytes(range(32))).decode()
    home = str(tmp_path / "home")
    assert audit_key(Settings.from_env({"WF_HOME": home})) is None  # nothing made by a lookup
    assert audit_key(Settings.from_env({"WF_HOME": home, "WF_AUDIT_KEY": text})) == AuditKey(
        bytes(range(32)), "WF_AUDIT_KEY"
    )
    key_file = tmp_path / "audit.key"
    key_file.write_text(text + "\n")
    from_file = audit_key(Settings.from_env({"WF_HOME": home, "WF_AUDIT_KEY_FILE": str(key_file)}))
    assert (
        from_file is not None and from_file.key_id == KEY.key_id and "WF_AUDIT_KEY_FILE" in from_file.source
    )
    with pytest.raises(SecurityError) as caught:
        audit_key(
            Settings.from_env({"WF_HOME": home, "WF_AUDIT_KEY": text, "WF_AUDIT_KEY_FILE": str(key_file)})
        )
    assert caught.value.code == "AUDIT_KEY_INVALID"
    made = home_audit_key(Settings.from_env({"WF_HOME": home}), MemoryRecordStore())
    assert made.key_id != KEY.key_id and text not in repr(made) and made.key.hex() not in repr(made)
    assert os.path.exists(Path(home) / "keys" / "audit.key")


@pytest.mark.parametrize(
    "change",
    [
        {"outcome": "deny", "code": None, "bytes": 0},  # a denial without its code
        {"outcome": "deny", "code": "GRANT_EXPIRED", "bytes": 5},  # a denial that returned bytes
        {"outcome": "allow", "code": "GRANT_EXPIRED"},
        {"outcome": "maybe"},
        {"bytes": -1},
        {"requester": ""},
        {"scope": {"not json": object()}},
    ],
    ids=[
        "deny-no-code",
        "deny-bytes",
        "allow-code",
        "bad-outcome",
        "negative-bytes",
        "no-requester",
        "scope-not-json",
    ],
)
def test_an_event_that_cannot_be_made_is_audit_unavailable_and_writes_nothing(change) -> None:
    store = MemoryRecordStore()
    arguments = {
        "key": KEY,
        "requester": "id-reader",
        "grant_id": "grant-a",
        "reason_code": "incident_review",
        "scope": {},
        "artifact_ids": (),
        "outcome": "allow",
        "code": None,
        "bytes": 3,
        "policy_version": "2026-01",
        "now_ms": T0,
    } | change
    with pytest.raises(SecurityError) as caught:
        append_audit_event(store, **arguments)
    assert caught.value.code == "AUDIT_UNAVAILABLE"
    assert audit_events(store) == []


def _append_as(settings: Settings, store: RecordStore, n: int) -> AuditEvent:
    """An event appended as a home under ``settings`` appends it: its key found (or made) and checked."""
    return append_audit_event(
        store,
        key=audit_key_source(settings, store),
        requester=f"id-reader-{n}",
        grant_id=None,
        reason_code=None,
        scope={"n": n},
        artifact_ids=(),
        outcome="allow",
        code=None,
        bytes=n,
        policy_version="1",
        now_ms=T0 + n,
    )


def test_a_second_home_of_a_shared_store_makes_no_key_of_its_own_and_appends_nothing(
    any_store, tmp_path
) -> None:
    first = Settings.from_env({"WF_HOME": str(tmp_path / "first")})
    second = Settings.from_env({"WF_HOME": str(tmp_path / "second")})
    kept = _append_as(first, any_store, 1)  # the first home makes the key
    key = audit_key(first)
    assert key is not None and kept.seal_key_id == key.key_id

    with pytest.raises(SecurityError) as caught:
        _append_as(second, any_store, 2)
    assert caught.value.code == "AUDIT_UNAVAILABLE" and caught.value.details["cause"] == "AUDIT_KEY_INVALID"
    refusal = caught.value.__cause__
    assert isinstance(refusal, SecurityError) and refusal.code == "AUDIT_KEY_INVALID"
    assert key.key_id in refusal.message and "WF_AUDIT_KEY" in refusal.message
    assert "WF_AUDIT_KEY_FILE" in refusal.message and refusal.details["first_sealed"] == 1
    assert not second.default_audit_key_file.exists()  # no key of its own was made
    assert key.key.hex() not in refusal.message

    # A key configured, but not the trail's: refused the same way, naming both ids.
    other = Settings.from_env(
        {"WF_HOME": str(tmp_path / "second"), "WF_AUDIT_KEY": base64.b64encode(OTHER_KEY.key).decode()}
    )
    with pytest.raises(SecurityError) as caught:
        _append_as(other, any_store, 3)
    refusal = caught.value.__cause__
    assert caught.value.code == "AUDIT_UNAVAILABLE" and isinstance(refusal, SecurityError)
    assert refusal.code == "AUDIT_KEY_INVALID"
    assert key.key_id in refusal.message and OTHER_KEY.key_id in refusal.message
    assert audit_events(any_store) == [kept]

    # Given the first home's key, the second home appends and the trail verifies for both.
    shared = Settings.from_env(
        {"WF_HOME": str(tmp_path / "second"), "WF_AUDIT_KEY_FILE": str(first.default_audit_key_file)}
    )
    _append_as(shared, any_store, 4)
    assert verify_audit_chain(any_store, key=key).ok and len(audit_events(any_store)) == 2


def test_a_key_is_made_for_a_trail_with_no_sealed_event_found_past_unsealed_pages(
    any_store, tmp_path
) -> None:
    assert trail_key(any_store) is None  # an empty trail
    for n in (1, 2, 3):
        _unsealed(any_store, n)
    assert trail_key(any_store, page=2) is None  # written before seals: no key seals it yet
    home = Settings.from_env({"WF_HOME": str(tmp_path / "home")})
    made = _append_as(home, any_store, 4)
    assert home.default_audit_key_file.exists() and made.seq == 4
    assert trail_key(any_store, page=2) == trail_key(any_store) == (4, made.seal_key_id)
    with pytest.raises(SecurityError) as caught:  # the first sealed event found past two pages
        _append_as(Settings.from_env({"WF_HOME": str(tmp_path / "late")}), any_store, 5)
    assert isinstance(caught.value.__cause__, SecurityError)
    assert caught.value.__cause__.details["first_sealed"] == 4


# --- concurrent appenders ------------------------------------------------------------------------

APPENDER = textwrap.dedent(
    """
    import sys
    from wf_pipeline.records import open_record_store
    from wf_pipeline.security.audit import append_audit_event
    from wf_pipeline.security.audit_key import audit_key_source
    from wf_pipeline.settings import Settings

    url, schema, name, count, home = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4]), sys.argv[5]
    with open_record_store(url, schema=schema) as store:
        key = audit_key_source(Settings.from_env({"WF_HOME": home}), store)
        for n in range(count):
            append_audit_event(
                store, key=key, requester=name, grant_id=None, reason_code=None, scope={"n": n},
                artifact_ids=(), outcome="allow", code=None, bytes=n, policy_version="1", now_ms=n,
            )
    """
)


def test_concurrent_appenders_in_several_processes_never_fork_the_chain(sql_target, tmp_path) -> None:
    processes, events = 4, 15
    home = tmp_path / "home"  # one home, no audit key yet: the first appends race to make it
    open_record_store(sql_target.url, schema=sql_target.schema).close()  # migrated before the race
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                APPENDER,
                sql_target.url,
                sql_target.schema or "",
                f"proc-{n}-{uuid.uuid4().hex[:6]}",
                str(events),
                str(home),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for n in range(processes)
    ]
    outputs = [run.communicate(timeout=300)[0].decode(errors="replace") for run in runs]
    assert [run.returncode for run in runs] == [0] * processes, outputs

    key = audit_key(Settings.from_env({"WF_HOME": str(home)}))
    assert key is not None
    with open_record_store(sql_target.url, schema=sql_target.schema) as store:
        trail = audit_events(store)
        report = verify_audit_chain(store, key=key)
    assert report.ok and report.sealed_checked, report.problems
    assert [e.seq for e in trail] == list(range(1, processes * events + 1))
    assert len({e.requester for e in trail}) == processes
    assert {e.seal_key_id for e in trail} == {key.key_id}


KEY_MAKER = textwrap.dedent(
    """
    import sys, time
    from wf_pipeline.records.memory import MemoryRecordStore
    from wf_pipeline.security.audit_key import home_audit_key
    from wf_pipeline.settings import Settings

    settings = Settings.from_env({"WF_HOME": sys.argv[1]})
    start = float(sys.argv[2])
    while time.time() < start:  # every process asks at the same moment
        pass
    print(home_audit_key(settings, MemoryRecordStore()).key_id)
    """
)


def test_a_missing_audit_key_is_made_once_by_processes_asking_at_once(tmp_path) -> None:
    home = tmp_path / "home"
    start = time.time() + 3  # past every interpreter's start-up
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", KEY_MAKER, str(home), repr(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(8)
    ]
    outputs = [run.communicate(timeout=300)[0].decode(errors="replace").strip() for run in runs]
    assert [run.returncode for run in runs] == [0] * len(runs), outputs

    settings = Settings.from_env({"WF_HOME": str(home)})
    key = audit_key(settings)
    assert key is not None and set(outputs) == {key.key_id}  # one key, whoever published it
    assert [p.name for p in settings.default_audit_key_file.parent.iterdir()] == ["audit.key"]  # no drafts
    assert stat.S_IMODE(settings.default_audit_key_file.stat().st_mode) == 0o600
    assert home_audit_key(settings, MemoryRecordStore()) == key  # found, not made again


# --- the Parquet copy -------------------------------------------------------------------------


def test_the_parquet_copy_partitions_by_day_and_outcome_and_knows_its_head(tmp_path) -> None:
    from wf_pipeline.telemetry import TelemetryStore, connect_store
    from wf_pipeline.telemetry.audit import audit_events_table, exported_audit_head
    from wf_pipeline.telemetry.schema import AUDIT_EVENTS

    records = MemoryRecordStore()
    fill(records, 8)  # events 4 and 8 are denials
    store = TelemetryStore(str(tmp_path / "telemetry"))
    assert exported_audit_head(store) is None
    trail = records.audit_records()

    assert store.write(AUDIT_EVENTS, audit_events_table(trail)) == 8
    folders = {path.rsplit("/", 3)[-3] + "/" + path.rsplit("/", 3)[-2] for path in store.files(AUDIT_EVENTS)}
    assert folders - {"date=1970-01-01/outcome=_seed"} == {
        "date=2026-01-01/outcome=allow",
        "date=2026-01-01/outcome=deny",
    }
    assert exported_audit_head(store) == (8, trail[-1].event_hash)
    con = connect_store(store, str(tmp_path / "archive"))
    try:
        rows = con.execute(
            "select outcome, count(*), sum(bytes), min(seq), max(json_array_length(artifact_ids)) "
            "from audit_events group by all order by outcome"
        ).fetchall()
        scope = con.execute("select scope ->> 'thread_id' from audit_events where seq = 3").fetchone()
    finally:
        con.close()
    assert rows == [("allow", 6, sum(100 + n for n in (1, 2, 3, 5, 6, 7)), 1, 1), ("deny", 2, 0, 4, 1)]
    assert scope == ("thread:3",)


def test_a_bad_audit_row_is_refused_before_anything_is_written(tmp_path) -> None:
    from wf_pipeline.errors import TelemetryError
    from wf_pipeline.telemetry import TelemetryStore
    from wf_pipeline.telemetry.audit import audit_events_table
    from wf_pipeline.telemetry.schema import AUDIT_EVENTS

    records = MemoryRecordStore()
    fill(records, 2)
    bad = [records.audit_records()[0], records.audit_records()[1].model_copy(update={"outcome": "maybe"})]
    store = TelemetryStore(str(tmp_path / "telemetry"))
    with pytest.raises(TelemetryError) as caught:
        store.write(AUDIT_EVENTS, audit_events_table(bad))
    assert caught.value.code == "TELEMETRY_SCHEMA_INVALID"
    assert store.read_table(AUDIT_EVENTS).num_rows == 0
