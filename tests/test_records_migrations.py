"""Alembic migrations of the record store: run on open, stamp older stores, stay fast at head."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from wf_pipeline.errors import RecordError
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.records import (
    DataKeyRecord,
    HoldRecord,
    KekRecord,
    TombstoneRecord,
    TurnRecord,
    hold_id_for,
    turn_record_id_for,
)
from wf_pipeline.records import TurnCommit, open_record_store
from wf_pipeline.records.migrate import _alembic_config, script_head, version_table
from wf_pipeline.records.migrations import HEAD_REVISION
from wf_pipeline.records.tables import build_tables

FIXTURES = Path(__file__).parent / "fixtures"
VERSIONS = Path(__file__).resolve().parent.parent / "wf_pipeline" / "records" / "migrations" / "versions"


def newest_revision() -> str:
    """The revision of the highest-numbered script under versions/ (ids are ``NNNN_<what>``)."""
    return max(path.stem for path in VERSIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))


# Written by the release before migrations existed (commit fc327ab): its store filled with one
# thread of two turns, a frame, two nodes and a target, then dumped as SQL (SQLite's iterdump;
# for PostgreSQL its DDL compiled into the placeholder schema __schema__ and pg_dump --inserts).
LEGACY_SQLITE = FIXTURES / "records_v1_sqlite.sql"
LEGACY_POSTGRES = FIXTURES / "records_v1_postgres.sql"
LEGACY_THREAD_ID = "thread:e154ca9717daccb0f70f8636"


def sql_engine(target) -> sa.Engine:
    return sa.create_engine(target.url.replace("postgresql://", "postgresql+psycopg2://", 1))


def stored_revisions(target, prefix: str = "wf_") -> list[str]:
    table = f'"{target.schema}".{version_table(prefix)}' if target.schema else version_table(prefix)
    engine = sql_engine(target)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(f"SELECT version_num FROM {table}")).scalars())
    finally:
        engine.dispose()


def build_legacy_store(target, tmp_path) -> None:
    """Create the previous release's tables and rows at ``target``, from the committed SQL."""
    if target.backend == "sqlite":
        path = Path(target.url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.executescript(LEGACY_SQLITE.read_text())
        return
    script = LEGACY_POSTGRES.read_text().replace("__schema__", target.schema)
    engine = sql_engine(target)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(script)
    finally:
        engine.dispose()


def schema_differences(target, prefix: str = "wf_") -> list:
    """What alembic's autogenerate finds between the migrated tables and the store's models."""
    metadata = build_tables(prefix, target.schema).metadata
    ours = {table.name for table in metadata.tables.values()}

    def include_name(name, type_, parent_names) -> bool:
        if type_ == "schema":
            return name == target.schema
        if type_ == "table":
            return name in ours
        return True

    engine = sql_engine(target)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "include_schemas": target.schema is not None,
                    "include_name": include_name,
                },
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_head_constant_matches_the_migration_scripts() -> None:
    assert script_head() == HEAD_REVISION


def test_a_new_store_is_created_at_head_with_the_models_tables(record_store_url) -> None:
    open_record_store(record_store_url.url, schema=record_store_url.schema).close()

    assert stored_revisions(record_store_url) == [HEAD_REVISION]
    assert schema_differences(record_store_url) == []


def test_a_store_of_the_previous_release_is_migrated_on_open(record_store_url, tmp_path) -> None:
    build_legacy_store(record_store_url, tmp_path)

    with open_record_store(record_store_url.url, schema=record_store_url.schema) as store:
        thread = store.get_thread(LEGACY_THREAD_ID)
        turns = store.turns_for_thread(LEGACY_THREAD_ID)
        assert thread is not None and thread.status == "completed"
        assert [(t.turn_id, t.status) for t in turns] == [
            ("evidence_gather", "completed"),
            ("verification", "failed"),
        ]
        assert store.head_frame(thread.target_node_id, "readme") is not None
        assert store.get_target("repo/pkg").root_path == "/srv/repo"
        assert (
            len(store.referenced_artifact_ids()) == 8
        )  # 2 outputs, 1 context, 1 system, 2 templates, 2 renders (a file's digest is not a CAS object)
        # The migrated store takes new writes like a new one.
        next_turn = turns[0].model_copy(
            update={
                "turn_record_id": turn_record_id_for(
                    thread.workflow_id, thread.thread_id, "readme_struct", 1
                ),
                "turn_id": "readme_struct",
                "turn_seq": 3,
            }
        )
        store.commit_turn(TurnCommit(thread=thread, turn=TurnRecord.model_validate(next_turn.model_dump())))
        assert len(store.turns_for_thread(LEGACY_THREAD_ID)) == 3

    assert stored_revisions(record_store_url) == [HEAD_REVISION]
    assert schema_differences(record_store_url) == []
    with open_record_store(record_store_url.url, schema=record_store_url.schema) as again:
        assert len(again.turns_for_thread(LEGACY_THREAD_ID)) == 3


def test_each_table_prefix_has_its_own_version_table(record_store_url) -> None:
    for prefix in ("a_", "b_"):
        open_record_store(record_store_url.url, schema=record_store_url.schema, table_prefix=prefix).close()

    assert (
        stored_revisions(record_store_url, "a_")
        == stored_revisions(record_store_url, "b_")
        == [HEAD_REVISION]
    )


def test_a_store_at_an_unknown_revision_is_refused(record_store_url) -> None:
    open_record_store(record_store_url.url, schema=record_store_url.schema).close()
    table = (
        f'"{record_store_url.schema}".wf_alembic_version' if record_store_url.schema else "wf_alembic_version"
    )
    engine = sql_engine(record_store_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {table} SET version_num = '9999_from_a_newer_release'"))
    engine.dispose()

    with pytest.raises(RecordError) as caught:
        open_record_store(record_store_url.url, schema=record_store_url.schema)
    assert caught.value.code == "RECORD_SCHEMA_MISMATCH"
    assert caught.value.details["stored"] == "9999_from_a_newer_release"


OPEN_AND_REPORT = """
import sys
from wf_pipeline.records import open_record_store
open_record_store(sys.argv[1]).close()
print("alembic" in sys.modules)
"""


def test_opening_a_store_at_head_does_not_load_alembic(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"

    def opened_with_alembic() -> str:
        return subprocess.run(
            [sys.executable, "-c", OPEN_AND_REPORT, url], check=True, capture_output=True, text=True
        ).stdout.strip()

    assert opened_with_alembic() == "True"  # the first open creates the tables
    assert opened_with_alembic() == "False"  # later opens read the version and stop


def migrate_to(target, revision: str, prefix: str = "wf_") -> None:
    """Bring the store at ``target`` to ``revision`` with alembic, as an older release would have."""
    from alembic import command

    if target.backend == "sqlite":
        Path(target.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sql_engine(target)
    try:
        with engine.connect() as conn:
            command.upgrade(_alembic_config(conn, target.schema, prefix), revision)
            conn.commit()
    finally:
        engine.dispose()


def test_a_store_at_0005_gets_the_keyring_tables_and_keeps_its_rows(record_store_url, tmp_path) -> None:
    migrate_to(record_store_url, "0005_retention")
    assert stored_revisions(record_store_url) == ["0005_retention"]
    tombstone = TombstoneRecord(
        artifact_id=digest_text("deleted"),
        artifact_class="prompt_render",
        workflow_id="docs_writer_thread_v1",
        policy="preset:docs_family",
        window_ms=86_400_000,
        reason="expired",
        bytes=12,
        deleted_at_ms=1_700_000_000_000,
    )
    hold = HoldRecord(hold_id=hold_id_for("workflow", "wf", 1), workflow_id="wf", created_at_ms=1)
    # The 0005 release wrote these rows; its tables are exactly the migrations' up to 0005.
    engine = sql_engine(record_store_url)
    tables = build_tables("wf_", record_store_url.schema)
    with engine.begin() as conn:
        conn.execute(tables["tombstones"].insert(), [tombstone.model_dump()])
        conn.execute(tables["holds"].insert(), [hold.model_dump()])
        assert not sa.inspect(conn).has_table("wf_data_keys", schema=record_store_url.schema)
    engine.dispose()

    with open_record_store(record_store_url.url, schema=record_store_url.schema) as store:
        assert store.get_tombstone(tombstone.artifact_id) == tombstone
        assert store.active_holds() == [hold]
        kek = KekRecord(
            kek_id="kek-prompt_render-20260101-g1",
            manager="local",
            key_ref=b"\x00wrapped\xff",
            artifact_class="prompt_render",
            period_start_ms=1_767_225_600_000,
            period_ms=30 * 86_400_000,
            generation=1,
            state="primary",
            created_at_ms=1_767_225_600_001,
        )
        key = DataKeyRecord(
            artifact_id=digest_text("encrypted"),
            artifact_class="prompt_render",
            kek_id=kek.kek_id,
            wrapped_key=b"\x00data key\xff",
            created_at_ms=1_767_225_600_002,
        )
        assert store.add_kek(kek) == kek
        assert store.claim_data_keys([key]) == {key.artifact_id: key}
        assert store.claim_keyring_meta("master_check", b"\x01") == b"\x01"

    assert stored_revisions(record_store_url) == [HEAD_REVISION]
    assert schema_differences(record_store_url) == []
    with open_record_store(record_store_url.url, schema=record_store_url.schema) as again:
        assert again.get_kek(kek.kek_id) == kek
        assert again.data_keys_for([key.artifact_id]) == {key.artifact_id: key}
        assert again.keyring_meta("master_check") == b"\x01"


def test_the_keyring_revision_downgrades_to_0005(record_store_url) -> None:
    from alembic import command

    open_record_store(record_store_url.url, schema=record_store_url.schema).close()
    engine = sql_engine(record_store_url)
    try:
        with engine.connect() as conn:
            command.downgrade(_alembic_config(conn, record_store_url.schema, "wf_"), "0005_retention")
            conn.commit()
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names(schema=record_store_url.schema))
    finally:
        engine.dispose()

    assert stored_revisions(record_store_url) == ["0005_retention"]
    assert not {"wf_keyring_meta", "wf_keks", "wf_data_keys"} & present
    assert {"wf_tombstones", "wf_holds"} <= present


def test_a_store_at_0006_gets_the_audit_table_and_keeps_its_keyring(record_store_url) -> None:
    migrate_to(record_store_url, "0006_keyring")
    engine = sql_engine(record_store_url)
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("wf_audit_events", schema=record_store_url.schema)
    engine.dispose()
    kek = KekRecord(
        kek_id="kek-output-20260101-g1",
        manager="local",
        artifact_class="output",
        period_start_ms=1_767_225_600_000,
        period_ms=86_400_000,
        generation=1,
        state="primary",
        created_at_ms=1,
    )
    with open_record_store(record_store_url.url, schema=record_store_url.schema) as store:
        store.add_kek(kek)

    assert stored_revisions(record_store_url) == [HEAD_REVISION]
    assert schema_differences(record_store_url) == []
    with open_record_store(record_store_url.url, schema=record_store_url.schema) as again:
        assert again.get_kek(kek.kek_id) == kek
        assert again.audit_records() == []


def test_the_audit_revision_downgrades_to_0006_with_its_triggers(record_store_url) -> None:
    from alembic import command

    open_record_store(record_store_url.url, schema=record_store_url.schema).close()
    engine = sql_engine(record_store_url)
    try:
        with engine.connect() as conn:
            command.downgrade(_alembic_config(conn, record_store_url.schema, "wf_"), "0006_keyring")
            conn.commit()
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names(schema=record_store_url.schema))
            if record_store_url.backend == "sqlite":
                left = set(
                    conn.execute(sa.text("select name from sqlite_master where type = 'trigger'")).scalars()
                )
            else:
                # The schema's triggers and functions (other tests' schemas have their own).
                left = set(
                    conn.execute(
                        sa.text(
                            "select t.tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid "
                            "join pg_namespace n on n.oid = c.relnamespace where n.nspname = :schema "
                            "union select p.proname from pg_proc p join pg_namespace n "
                            "on n.oid = p.pronamespace where n.nspname = :schema"
                        ),
                        {"schema": record_store_url.schema},
                    ).scalars()
                )
    finally:
        engine.dispose()

    assert stored_revisions(record_store_url) == ["0006_keyring"]
    assert not {"wf_audit_events", "wf_annotation_events", "wf_annotations"} & present
    assert {"wf_keks", "wf_data_keys"} <= present
    assert not {name for name in left if name.startswith("wf_audit_events")}


def test_a_store_at_0007_gets_the_annotation_tables_and_downgrades_back(record_store_url) -> None:
    from alembic import command

    migrate_to(record_store_url, "0007_audit")
    with open_record_store(record_store_url.url, schema=record_store_url.schema) as store:
        events = store.append_annotations(
            "frame-1", {"review_status": "approved"}, domain="workflow", at_ms=5
        )
        assert [event.seq for event in events] == [1]
        assert store.current_annotations("frame-1")["review_status"].value == "approved"
    assert stored_revisions(record_store_url) == [HEAD_REVISION]
    assert schema_differences(record_store_url) == []

    engine = sql_engine(record_store_url)
    try:
        with engine.connect() as conn:
            command.downgrade(_alembic_config(conn, record_store_url.schema, "wf_"), "0007_audit")
            conn.commit()
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names(schema=record_store_url.schema))
    finally:
        engine.dispose()
    assert stored_revisions(record_store_url) == ["0007_audit"]
    assert not {"wf_annotation_events", "wf_annotations"} & present
    assert {"wf_audit_events", "wf_keks", "wf_data_keys"} <= present


def test_a_store_at_0008_gets_identities_grants_and_payload_indexes(record_store_url) -> None:
    migrate_to(record_store_url, "0008_annotations")
    with open_record_store(record_store_url.url, schema=record_store_url.schema) as store:
        assert store.list_identities() == [] and store.list_grants() == []

    assert stored_revisions(record_store_url) == [HEAD_REVISION] == [newest_revision()]
    assert schema_differences(record_store_url) == []


def test_the_grants_revision_downgrades_to_0008(record_store_url) -> None:
    from alembic import command

    open_record_store(record_store_url.url, schema=record_store_url.schema).close()
    engine = sql_engine(record_store_url)
    try:
        with engine.connect() as conn:
            command.downgrade(_alembic_config(conn, record_store_url.schema, "wf_"), "0008_annotations")
            conn.commit()
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            present = set(inspector.get_table_names(schema=record_store_url.schema))
            indexes = {
                ix["name"] for ix in inspector.get_indexes("wf_prompt_links", schema=record_store_url.schema)
            }
    finally:
        engine.dispose()

    assert stored_revisions(record_store_url) == ["0008_annotations"]
    assert not {"wf_identities", "wf_grants"} & present
    assert {"wf_audit_events", "wf_annotation_events", "wf_annotations"} <= present
    assert indexes == {"wf_prompt_links_thread_id_ix"}


def test_a_store_at_0009_gets_audit_seals_keeps_its_events_and_its_triggers(record_store_url) -> None:
    from alembic import command

    from wf_pipeline.security.audit import append_audit_event, verify_audit_chain
    from wf_pipeline.security.audit_key import AuditKey

    migrate_to(record_store_url, "0009_grants")
    table = f'"{record_store_url.schema}".wf_audit_events' if record_store_url.schema else "wf_audit_events"
    # An event as the release before seals wrote it: no seal columns at all.
    engine = sql_engine(record_store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} (schema_version, seq, event_id, at_ms, requester, scope, "
                    "artifact_ids, outcome, bytes, policy_version, prev_hash, event_hash) VALUES "
                    "(1, 1, 'aud-old', 5, 'id-a', '{}', '[]', 'allow', 3, 'p1', :prev, :hash)"
                ),
                {"prev": GENESIS, "hash": _legacy_hash()},
            )
    finally:
        engine.dispose()
    key = AuditKey(bytes(range(32)), "test")
    with open_record_store(record_store_url.url, schema=record_store_url.schema) as store:
        (old,) = store.audit_records()
        assert (old.seal, old.seal_key_id) == (None, None)
        new = append_audit_event(
            store,
            key=key,
            requester="id-b",
            grant_id=None,
            reason_code=None,
            scope={},
            artifact_ids=(),
            outcome="allow",
            code=None,
            bytes=1,
            policy_version="p1",
            now_ms=6,
        )
        report = verify_audit_chain(store, key=key)
        unkeyed = verify_audit_chain(store)
    assert new.seal == key.seal(new.event_hash) and new.seal_key_id == key.key_id
    # With the key the earlier event cannot be told from one stripped of its seal: reported, and counted.
    assert (report.unsealed, report.sealed_checked) == (1, True)
    assert [(p.seq, p.kind, p.count) for p in report.problems] == [(1, "altered", 1)]
    assert unkeyed.ok and unkeyed.unsealed == 1
    assert stored_revisions(record_store_url) == [HEAD_REVISION]
    assert schema_differences(record_store_url) == []
    engine = sql_engine(record_store_url)
    try:
        for statement in (
            f"UPDATE {table} SET seal = NULL WHERE seq = 2",
            f"DELETE FROM {table} WHERE seq = 1",
        ):
            with pytest.raises(sa.exc.DBAPIError) as caught, engine.begin() as conn:
                conn.exec_driver_sql(statement)
            assert "append-only" in str(caught.value.orig)
        with engine.connect() as conn:
            command.downgrade(_alembic_config(conn, record_store_url.schema, "wf_"), "0009_grants")
            conn.commit()
        with engine.connect() as conn:
            columns = {
                c["name"]
                for c in sa.inspect(conn).get_columns("wf_audit_events", schema=record_store_url.schema)
            }
    finally:
        engine.dispose()
    assert stored_revisions(record_store_url) == ["0009_grants"]
    assert not {"seal", "seal_key_id"} & columns


GENESIS = "sha256:" + "0" * 64


def _legacy_hash() -> str:
    from wf_pipeline.security.audit import event_hash_of

    return event_hash_of(
        {
            "seq": 1,
            "event_id": "aud-old",
            "at_ms": 5,
            "requester": "id-a",
            "grant_id": None,
            "reason_code": None,
            "scope": {},
            "artifact_ids": [],
            "outcome": "allow",
            "code": None,
            "bytes": 3,
            "policy_version": "p1",
            "prev_hash": GENESIS,
        }
    )


def test_a_store_at_0010_gets_admin_approvals_and_keeps_its_identities(record_store_url) -> None:
    from alembic import command

    from wf_pipeline.security.identities import admin_refusal

    migrate_to(record_store_url, "0010_audit_seal")
    table = f'"{record_store_url.schema}".wf_identities' if record_store_url.schema else "wf_identities"
    engine = sql_engine(record_store_url)
    try:
        with engine.begin() as conn:
            # Two admins as the release before approvals registered them: no approval columns.
            for name, at in (("root", 1), ("second", 2)):
                conn.execute(
                    sa.text(
                        f"INSERT INTO {table} (schema_version, name, public_key, role, created_at_ms) "
                        "VALUES (1, :name, :key, 'admin', :at)"
                    ),
                    {"name": name, "key": name.encode().ljust(32, b"\x00"), "at": at},
                )
    finally:
        engine.dispose()
    with open_record_store(record_store_url.url, schema=record_store_url.schema) as store:
        root, second = store.get_identity("root"), store.get_identity("second")
        assert (root.approved_by, root.approval, second.approved_by) == (None, None, None)
        # The first admin stays one; a later admin nobody approved is none until re-registered.
        assert admin_refusal(store, root) is None
        assert "never approved" in admin_refusal(store, second)
    assert stored_revisions(record_store_url) == [HEAD_REVISION]
    assert schema_differences(record_store_url) == []
    engine = sql_engine(record_store_url)
    try:
        with engine.connect() as conn:
            command.downgrade(_alembic_config(conn, record_store_url.schema, "wf_"), "0010_audit_seal")
            conn.commit()
        with engine.connect() as conn:
            columns = {
                c["name"]
                for c in sa.inspect(conn).get_columns("wf_identities", schema=record_store_url.schema)
            }
    finally:
        engine.dispose()
    assert stored_revisions(record_store_url) == ["0010_audit_seal"]
    assert not {"approved_by", "approval"} & columns and {"name", "role"} <= columns
