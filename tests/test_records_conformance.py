"""Every RecordStore implementation passes the conformance suite; broken ones fail it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conformance import failing_checks
from conformance.records_suite import CHECKS, RecordBackend
from conftest import record_store_location

from wf_pipeline.metadata.records import ThreadRecord
from wf_pipeline.records import MemoryRecordStore, ThreadLease, open_record_store
from wf_pipeline.records.protocol import check_turn_commit, validated


def sql_backend(kind: str):
    @contextmanager
    def opened(tmp_path) -> Iterator[RecordBackend]:
        with record_store_location(kind, tmp_path) as target:
            yield RecordBackend(kind, lambda: open_record_store(target.url, schema=target.schema))

    return opened


@contextmanager
def memory_backend(tmp_path) -> Iterator[RecordBackend]:
    url = f"memory://records-conformance-{uuid.uuid4().hex}"
    yield RecordBackend("memory", lambda: open_record_store(url))


# A new backend adds its factory here and must pass every check.
BACKENDS = {"sqlite": sql_backend("sqlite"), "postgres": sql_backend("postgres"), "memory": memory_backend}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"])
def record_backend(request, tmp_path) -> Iterator[RecordBackend]:
    with BACKENDS[request.param](tmp_path) as backend:
        try:
            yield backend
        finally:
            backend.close_all()


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__.removeprefix("check_") for check in CHECKS])
def test_conformance(record_backend: RecordBackend, check) -> None:
    check(record_backend)


def test_memory_url_opens_the_in_memory_store() -> None:
    name = f"memory://shared-{uuid.uuid4().hex}"
    first, second = open_record_store(name), open_record_store(name)
    assert isinstance(first, MemoryRecordStore)
    first.save_thread(
        ThreadRecord(
            thread_id="thread:t",
            workflow_id="wf",
            target_node_id="n",
            status="running",
            created_at_ms=1,
            updated_at_ms=1,
        )
    )
    assert second.get_thread("thread:t") is not None
    assert open_record_store("memory://").get_thread("thread:t") is None  # no name: a private store


# --- broken implementations fail the suite -------------------------------------------


class CommitsTableByTable(MemoryRecordStore):
    """Writes each table of a turn separately: a failing frame leaves the turn behind."""

    def commit_turn(self, commit) -> None:
        for name, records in check_turn_commit(commit).rows():
            self._write("commit_turn", [(name, records)])


class SkipsValidation(MemoryRecordStore):
    """Stores threads as given, without validating them."""

    def save_thread(self, record) -> None:
        self._write("save_thread", [("threads", [record])])


class ListsInInsertionOrder(MemoryRecordStore):
    """Lists threads in the order they were written, not the protocol's order."""

    def list_threads(self, workflow_id=None, status=None):
        rows = [
            row
            for row in self._rows("threads")
            if (workflow_id is None or row["workflow_id"] == workflow_id)
            and (status is None or row["status"] == status)
        ]
        return [validated(ThreadRecord.model_validate(row), ThreadRecord) for row in rows]


class LeaseAlwaysGranted(MemoryRecordStore):
    """Hands the lease to every caller, live holder or not."""

    def acquire_lease(self, thread_id, holder, ttl_ms, *, at_ms=None):
        lease = ThreadLease(thread_id, holder, (at_ms or 0) + ttl_ms)
        self._contents.leases[thread_id] = lease
        return lease


class ClaimOverwrites(MemoryRecordStore):
    """Stores every claimed data key, so the last writer's key replaces the first's."""

    def claim_data_keys(self, records):
        keys = list(records)
        with self._contents.lock:
            for key in keys:
                self._contents.tables["data_keys"][(key.artifact_id,)] = key.model_dump()
        return {key.artifact_id: key for key in keys}


class RewrapWithoutCompare(MemoryRecordStore):
    """Moves every data key it is given, whatever KEK wraps it now."""

    def rewrap_data_keys(self, records, *, expected_kek_ids):
        keys = list(records)
        with self._contents.lock:
            table = self._contents.tables["data_keys"]
            for key in keys:
                if (key.artifact_id,) in table:
                    table[(key.artifact_id,)] = key.model_dump()
        return len(keys)


class UpdateKekWithoutCompare(MemoryRecordStore):
    """Applies every KEK update, whatever state the KEK is in now."""

    def update_kek(self, kek_id, *, expected_state, **changes):
        kek = self.get_kek(kek_id)
        if kek is None:
            return None
        updated = kek.model_copy(update=changes)
        with self._contents.lock:
            self._contents.tables["keks"][(kek_id,)] = updated.model_dump()
        return updated


class PagesWithOffsetAfterRewrap(MemoryRecordStore):
    """Ignores after_artifact_id: paging while rewrapping skips or repeats keys."""

    def data_keys_under(self, kek_ids, *, after_artifact_id=None, limit=1000):
        return super().data_keys_under(kek_ids, limit=limit)


class AuditAppendTrustsTheBuilder(MemoryRecordStore):
    """Stores whatever the builder returns at the next position: an event_id twice, a broken link."""

    def append_audit_record(self, build):
        with self._contents.lock:
            table = self._contents.tables["audit_events"]
            head = table[max(table)] if table else None
            seq = 1 if head is None else head["seq"] + 1
            event = build(seq, None if head is None else head["event_hash"])
            table[(seq,)] = event.model_dump()
            return event


class AuditPagesIgnoreAfterSeq(MemoryRecordStore):
    """Starts every page at the first event: keyset paging repeats the trail forever."""

    def audit_records(self, *, after_seq=0, since_ms=None, grant_id=None, limit=None):
        return super().audit_records(since_ms=since_ms, grant_id=grant_id, limit=limit)


class FoldsEveryOldEvent(MemoryRecordStore):
    """Folds a key's old events even when they do not start its log, and rewrites the view from the fold."""

    def fold_annotation_events(self, cutoffs):
        removed = 0
        with self._contents.lock:
            log = self._contents.tables["annotation_events"]
            view = self._contents.tables["annotations"]
            groups: dict = {}
            for row in list(log.values()):
                if row["key"] in cutoffs and row["at_ms"] < cutoffs[row["key"]]:
                    groups.setdefault((row["frame_id"], row["key"]), []).append(row)
            for (frame_id, key), rows in groups.items():
                rows.sort(key=lambda row: row["seq"])
                last = rows[-1]
                for row in rows:
                    del log[(frame_id, key, row["seq"])]
                log[(frame_id, key, last["seq"])] = {**last, "kind": "snapshot", "folded": len(rows)}
                if last["value"] is not None:
                    view[(frame_id, key)] = {**view.get((frame_id, key), {}), "value": last["value"]}
                removed += len(rows) - 1
        return removed


def memory_like_backend(store_class: type[MemoryRecordStore]) -> RecordBackend:
    name = f"{store_class.__name__}-{uuid.uuid4().hex}"
    return RecordBackend(store_class.__name__, lambda: store_class(name))


@pytest.mark.parametrize(
    ("broken", "caught_by"),
    [
        (CommitsTableByTable, {"check_failing_last_insert_rolls_back_the_whole_turn"}),
        (SkipsValidation, {"check_invalid_records_are_rejected_before_writing"}),
        (ListsInInsertionOrder, {"check_list_threads_orders_by_target_path_and_filters"}),
        (
            LeaseAlwaysGranted,
            {"check_a_lease_has_one_holder_until_it_expires", "check_concurrent_acquirers_get_one_lease"},
        ),
        (
            ClaimOverwrites,
            {
                "check_claim_data_keys_keeps_the_first_key_of_each_artifact",
                "check_claim_data_keys_in_bulk_returns_the_stored_keys",
                "check_invalid_data_keys_are_rejected_before_writing",
            },
        ),
        (RewrapWithoutCompare, {"check_rewrap_leaves_keys_another_writer_moved"}),
        (
            UpdateKekWithoutCompare,
            {"check_update_kek_is_a_compare_and_set", "check_concurrent_kek_updates_have_one_winner"},
        ),
        (PagesWithOffsetAfterRewrap, {"check_data_keys_under_pages_cover_every_key_once"}),
        (AuditAppendTrustsTheBuilder, {"check_audit_appends_off_the_head_write_nothing"}),
        (AuditPagesIgnoreAfterSeq, {"check_audit_records_append_at_the_head_and_list_by_seq"}),
        (FoldsEveryOldEvent, {"check_folding_annotation_events_keeps_the_view"}),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_a_broken_implementation_fails_the_suite(broken, caught_by) -> None:
    failed = failing_checks(CHECKS, lambda: memory_like_backend(broken))

    assert caught_by <= failed, f"{broken.__name__} passed {sorted(caught_by - failed)}"


def test_the_reference_implementation_fails_no_check() -> None:
    assert failing_checks(CHECKS, lambda: memory_like_backend(MemoryRecordStore)) == set()
