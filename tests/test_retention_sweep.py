"""Retention sweeps over real records and CAS objects: windows, each safety rule, tombstones, expired reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
from retention_support import catalog_with, write_recorded_thread

from wf_pipeline.cas import ArtifactStore, FsspecArtifactStore, MemoryArtifactStore, open_cas
from wf_pipeline.errors import CasError
from wf_pipeline.metadata.canonical import digest
from wf_pipeline.metadata.records import (
    ThreadRecord,
)
from wf_pipeline.profiles import ProfileCatalog
from wf_pipeline.records import MemoryRecordStore, RecordStore, open_record_store
from wf_pipeline.retention.archive import RecordArchive
from wf_pipeline.retention.compaction import archive_threads, sweep_orphans
from wf_pipeline.retention.holds import place_hold, release_holds
from wf_pipeline.retention.reads import STORED, ExpiryAwareStore, artifact_states
from wf_pipeline.retention.sweep import apply_retention, plan_retention
from wf_pipeline.telemetry import DisabledTelemetryRecorder, Recorder

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = "docs_writer_thread_v1"
T0 = 1_700_000_000_000
SECOND, HOUR, DAY = 1_000, 3_600_000, 86_400_000
TURNS = ("evidence_gather", "verification", "readme_struct", "style_refine")


@dataclass
class Env:
    records: RecordStore
    cas: ArtifactStore
    catalog: ProfileCatalog
    telemetry: Recorder = dataclasses.field(default_factory=DisabledTelemetryRecorder)


@dataclass
class Written:
    thread: ThreadRecord
    context: str
    renders: list[str]
    outputs: list[str]
    final: str


def write_thread(
    env: Env, name: str, *, status: str = "completed", at: int = T0, turns=TURNS, target: str = ""
) -> Written:
    """A thread of the docs writer whose turns put real objects: one context, a render and an output per turn.

    Threads given the same ``target`` (partition key) supersede each other: the newest is current.
    """
    recorded = write_recorded_thread(
        env.records,
        env.cas,
        workflow_id=WORKFLOW,
        name=name,
        turn_ids=turns,
        at=at,
        target_key=target,
        status=status,
        step_ms=1,
    )
    return Written(
        recorded.thread, recorded.context, recorded.renders, recorded.outputs, recorded.outputs[-1]
    )


def make_env(retention: dict[str, str] | None, *, cas: ArtifactStore | None = None) -> Env:
    records = MemoryRecordStore()
    inner = cas if cas is not None else MemoryArtifactStore()
    return Env(records=records, cas=ExpiryAwareStore(inner, records), catalog=catalog_with(retention))


SHORT_PROMPTS = {"prompt_render": "1s", "context_payload": "1h"}


def deleted_ids(env: Env, now: int) -> set[str]:
    return {item.artifact_id for item in plan_retention(env, now_ms=now).deletions}


def test_prompt_renders_go_after_their_window_contexts_and_outputs_stay() -> None:
    env = make_env(SHORT_PROMPTS)
    done = write_thread(env, "pkg")

    assert deleted_ids(env, T0 + 500) == set()
    plan = plan_retention(env, now_ms=T0 + 10 * SECOND)
    system = env.cas.put_text("system prompt shared by every thread").artifact_id
    assert {item.artifact_id for item in plan.deletions} == set(done.renders) | {system}
    assert {item.artifact_class for item in plan.deletions} == {"prompt_render"}
    (group,) = plan.totals()
    assert (group.artifact_class, group.workflow_id, group.count) == ("prompt_render", WORKFLOW, 5)
    assert group.bytes == sum(env.cas.stat(a).size for a in [*done.renders, system])
    assert plan.kept["head"] == 1 and plan.kept["window"] >= 4  # the final output; context + outputs
    # After the context window, the context goes too; the outputs (forever) never do.
    later = deleted_ids(env, T0 + 2 * HOUR)
    assert done.context in later and not later & set(done.outputs)


def _cas_for(backend: str, request) -> ArtifactStore | None:
    """The CAS a parametrized test runs on: None (the memory store), or a fresh bucket on moto's S3."""
    if backend != "s3":
        return None
    server = request.getfixturevalue("moto_server")
    return open_cas(f"s3://{server.create_bucket()}/cas", **server.storage_options())


@pytest.mark.parametrize("backend", ["memory", "s3"])
def test_apply_writes_tombstones_deletes_objects_and_reads_say_expired(backend, request) -> None:
    env = make_env(SHORT_PROMPTS, cas=_cas_for(backend, request))
    done = write_thread(env, "pkg")
    before = env.records.referenced_artifact_ids()

    result = apply_retention(env, now_ms=T0 + 10 * SECOND)

    assert result.deleted == result.tombstones_written == 5
    assert result.bytes_freed == sum(g.bytes for g in result.groups) > 0
    for artifact_id in done.renders:
        assert not env.cas.exists(artifact_id)
        tombstone = env.records.get_tombstone(artifact_id)
        assert (tombstone.artifact_class, tombstone.reason, tombstone.window_ms) == (
            "prompt_render",
            "expired",
            1_000,
        )
        assert tombstone.policy == f"{WORKFLOW}@builtin"
        with pytest.raises(CasError) as caught:
            env.cas.get_text(artifact_id)
        assert caught.value.code == "CAS_ARTIFACT_EXPIRED"
    # Records stay; other objects are readable; an unknown id is still CAS_NOT_FOUND.
    assert env.records.referenced_artifact_ids() == before
    assert env.cas.get_text(done.final) == "output of pkg/style_refine"
    with pytest.raises(CasError) as caught:
        env.cas.get(digest(b"never stored"))
    assert caught.value.code == "CAS_NOT_FOUND"
    # A second sweep finds nothing left to do.
    again = apply_retention(env, now_ms=T0 + 20 * SECOND)
    assert (again.deleted, again.tombstones_written) == (0, 0)


@pytest.mark.parametrize("backend", ["memory", "sqlite", "sqlite-s3"])
def test_an_expired_object_stored_again_loses_its_tombstone_and_is_judged_afresh(
    backend, tmp_path, request
) -> None:
    if backend == "memory":
        env = make_env(SHORT_PROMPTS)
    else:
        records = open_record_store(f"sqlite:///{tmp_path / 'records.db'}")
        inner = (
            _cas_for("s3", request) if backend == "sqlite-s3" else FsspecArtifactStore(str(tmp_path / "cas"))
        )
        env = Env(records, ExpiryAwareStore(inner, records), catalog_with(SHORT_PROMPTS))
    done = write_thread(env, "pkg")
    revived = done.renders[0]
    data = env.cas.get(revived)
    apply_retention(env, now_ms=T0 + 10 * SECOND)
    assert env.records.get_tombstone(revived) is not None

    # A later run renders the same prompt again: the object is back, its tombstone gone.
    assert env.cas.put(data).artifact_id == revived
    assert env.records.get_tombstone(revived) is None
    assert env.cas.get(revived) == data
    states = artifact_states(env.records, env.cas, done.renders)
    assert states[revived] == STORED
    assert {states[a] for a in done.renders[1:]} == {"expired"}
    # The next plan judges it by its window like any stored object (past it: it goes again).
    assert revived in deleted_ids(env, T0 + 10 * SECOND)
    result = apply_retention(env, now_ms=T0 + 10 * SECOND)
    assert result.deleted == 1 and env.records.get_tombstone(revived) is not None
    # put_many drops tombstones the same way; a loss after that reads as not found, not expired.
    env.cas.put_many([data])
    assert env.records.get_tombstone(revived) is None
    env.cas.inner.delete(revived)
    with pytest.raises(CasError) as lost:
        env.cas.get(revived)
    assert lost.value.code == "CAS_NOT_FOUND"


@pytest.mark.parametrize("status", ["pending", "running", "failed", "aborted"])
def test_a_resumable_thread_keeps_everything_it_refers_to(status: str) -> None:
    env = make_env({"prompt_render": "1s", "context_payload": "1s", "output": "1s"})
    unfinished = write_thread(env, "unfinished", status=status, turns=TURNS[:2])
    finished = write_thread(env, "finished")

    gone = deleted_ids(env, T0 + DAY)

    assert not gone & {unfinished.context, *unfinished.renders, *unfinished.outputs}
    # The completed thread's expire (except the head output and what it shares).
    assert set(finished.renders) <= gone and finished.context in gone
    assert finished.final not in gone
    assert plan_retention(env, now_ms=T0 + DAY).kept["resumable"] >= 5


def test_the_head_output_stays_unless_the_policy_expires_heads() -> None:
    keep = make_env({"output": "1s"})
    head_kept = write_thread(keep, "pkg")
    assert deleted_ids(keep, T0 + DAY) == set(head_kept.outputs[:-1])

    expire = make_env({"output": "1s", "output_of_heads": "expire"})
    head_gone = write_thread(expire, "pkg")
    assert deleted_ids(expire, T0 + DAY) == set(head_gone.outputs)


def test_holds_on_a_thread_or_a_workflow_keep_everything_until_released() -> None:
    env = make_env(SHORT_PROMPTS)
    held = write_thread(env, "held")
    free = write_thread(env, "free")
    now = T0 + 10 * SECOND

    place_hold(env.records, thread_id=held.thread.thread_id, reason="case 1", at_ms=T0)
    gone = deleted_ids(env, now)
    assert set(free.renders) <= gone and not gone & set(held.renders)
    # The shared system prompt is referenced by the held thread too: every reference must allow.
    assert env.cas.put_text("system prompt shared by every thread").artifact_id not in gone

    place_hold(env.records, workflow_id=WORKFLOW, at_ms=T0 + 1)
    assert deleted_ids(env, now) == set()

    release_holds(env.records, workflow_id=WORKFLOW)
    release_holds(env.records, thread_id=held.thread.thread_id)
    assert set(held.renders) <= deleted_ids(env, now)

    with pytest.raises(Exception) as caught:
        release_holds(env.records, thread_id=held.thread.thread_id)
    assert caught.value.code == "RETENTION_HOLD_NOT_FOUND"
    with pytest.raises(Exception) as caught:
        place_hold(env.records, thread_id="thread:nope")
    assert caught.value.code == "RETENTION_SCOPE_UNKNOWN"


def test_an_artifact_shared_by_two_threads_goes_only_when_both_windows_allow() -> None:
    env = make_env({"prompt_render": "1h"})
    old = write_thread(env, "old", at=T0)
    new = write_thread(env, "new", at=T0 + 2 * HOUR)
    shared = env.cas.put_text("system prompt shared by every thread").artifact_id

    gone = deleted_ids(env, T0 + 2 * HOUR)
    assert set(old.renders) <= gone and shared not in gone and not gone & set(new.renders)
    assert shared in deleted_ids(env, T0 + 4 * HOUR)


def test_a_workflow_without_retention_keeps_everything() -> None:
    env = make_env(None)
    write_thread(env, "pkg")
    plan = plan_retention(env, now_ms=T0 + 365 * DAY)
    assert plan.count == 0 and plan.kept["window"] > 0


def test_a_crash_between_tombstones_and_deletes_is_finished_by_the_next_sweep(tmp_path: Path) -> None:
    records = open_record_store(f"sqlite:///{tmp_path / 'records.db'}")
    inner = FsspecArtifactStore(str(tmp_path / "cas"))
    env = Env(records, ExpiryAwareStore(inner, records), catalog_with(SHORT_PROMPTS))
    done = write_thread(env, "pkg")
    plan = plan_retention(env, now_ms=T0 + 10 * SECOND)
    # The tombstones of a batch committed, then the process died before any delete.
    env.records.add_tombstones(item.tombstone(T0) for item in plan.deletions)
    assert all(inner.exists(a) for a in done.renders)

    result = apply_retention(env, now_ms=T0 + 10 * SECOND)

    assert result.deleted == plan.count
    assert not any(inner.exists(a) for a in done.renders)
    records.close()


class CapturingRecorder(DisabledTelemetryRecorder):
    enabled = True

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.flushes = 0

    def artifact_event(self, **row: object) -> None:
        self.rows.append(row)

    def flush_safely(self) -> int:
        self.flushes += 1
        return len(self.rows)


def test_every_deletion_is_one_expired_telemetry_row_without_payload() -> None:
    env = make_env(SHORT_PROMPTS)
    env.telemetry = CapturingRecorder()
    done = write_thread(env, "pkg")

    result = apply_retention(env, now_ms=T0 + 10 * SECOND)

    rows = env.telemetry.rows
    assert len(rows) == result.deleted and env.telemetry.flushes == 1
    assert {row["outcome"] for row in rows} == {"expired"}
    assert {row["artifact_class"] for row in rows} == {"prompt_render"}
    assert sum(row["bytes"] for row in rows) == result.bytes_freed
    assert {row["thread_id"] for row in rows} == {done.thread.thread_id}
    assert all(isinstance(value, (str, int, type(None))) for row in rows for value in row.values())


# --- archived threads: compaction moved their rows to Parquet, the same windows judge them ----


@pytest.fixture
def archived_world(tmp_path: Path):
    """A superseded thread archived by compaction, the current thread of its target still live.

    Windows: prompt renders 1h, contexts 30d, outputs forever. The archived thread ran at
    T0, the live one two hours later; both refer to the same system prompt object.
    """
    records = open_record_store(f"sqlite:///{tmp_path / 'records.db'}")
    inner = FsspecArtifactStore(str(tmp_path / "cas"))
    env = Env(
        records,
        ExpiryAwareStore(inner, records),
        catalog_with({"prompt_render": "1h", "context_payload": "30d"}),
    )
    old = write_thread(env, "pkg v1", target="pkg", at=T0)
    new = write_thread(env, "pkg v2", target="pkg", at=T0 + 2 * HOUR)
    archive = RecordArchive(tmp_path / "archive")
    with archive.locked():
        run = archive_threads(
            records, archive, now_ms=T0 + 2 * HOUR, archive_after_ms={WORKFLOW: SECOND}, compaction_id="c1"
        )
    assert run.threads_archived == 1
    assert records.get_thread(old.thread.thread_id) is None  # its rows live only in the archive now
    yield env, inner, archive, old, new
    records.close()


def test_an_archived_thread_s_prompt_renders_expire_by_their_window_like_live_ones(archived_world) -> None:
    env, inner, archive, old, new = archived_world
    shared = env.cas.put_text("system prompt shared by every thread").artifact_id
    now = T0 + 2 * HOUR + 10 * SECOND  # past the archived thread's render window, not the live one's

    # Without the archive, its rows are out of sight and its objects would stay for ever.
    assert not deleted_ids(env, now) & set(old.renders)
    planned = {item.artifact_id for item in plan_retention(env, now_ms=now, archive=archive).deletions}
    assert planned == set(old.renders)  # the shared system prompt waits for the live thread's window

    result = apply_retention(env, now_ms=now, archive=archive)

    assert result.deleted == result.tombstones_written == len(old.renders)
    assert [(g.artifact_class, g.workflow_id, g.count) for g in result.groups] == [
        ("prompt_render", WORKFLOW, len(old.renders))
    ]
    for artifact_id in old.renders:
        assert not inner.exists(artifact_id)
        tombstone = env.records.get_tombstone(artifact_id)
        assert (tombstone.artifact_class, tombstone.reason, tombstone.window_ms) == (
            "prompt_render",
            "expired",
            HOUR,
        )
        with pytest.raises(CasError) as caught:
            env.cas.get(artifact_id)
        assert caught.value.code == "CAS_ARTIFACT_EXPIRED"
    # Outputs (forever), the context (30d), the shared prompt and the live thread's renders stay.
    assert all(inner.exists(a) for a in [*old.outputs, old.context, shared, *new.renders])
    assert apply_retention(env, now_ms=now, archive=archive).deleted == 0  # nothing left to do

    # Once the live thread's window passes too, the shared object goes: every reference allows.
    later = {
        item.artifact_id for item in plan_retention(env, now_ms=T0 + 4 * HOUR, archive=archive).deletions
    }
    assert later == {*new.renders, shared}


def test_the_orphan_sweep_treats_expired_archived_artifacts_as_tombstoned(archived_world) -> None:
    env, inner, archive, old, _ = archived_world
    apply_retention(env, now_ms=T0 + 2 * HOUR + 10 * SECOND, archive=archive)
    orphan = inner.put(b"an object no record names").artifact_id
    # A day after the last put: every unreferenced object is past the orphan grace period.
    wall_clock_later = max(info.modified_ms for info in inner.iter_objects()) + DAY

    sweep = sweep_orphans(inner, env.records, archive, now_ms=wall_clock_later, grace_ms=HOUR)

    # Only the true orphan goes: the expired renders are tombstoned (not orphans, not re-tombstoned),
    # and everything an archived row still names is kept.
    assert sweep.deleted == 1 and not inner.exists(orphan)
    assert env.records.get_tombstone(orphan).reason == "orphan"
    for artifact_id in old.renders:
        assert env.records.get_tombstone(artifact_id).reason == "expired"
    assert all(inner.exists(a) for a in [*old.outputs, old.context])


def test_a_crash_after_an_archived_artifact_s_tombstone_is_finished_by_retention_not_the_orphan_sweep(
    archived_world,
) -> None:
    env, inner, archive, old, _ = archived_world
    now = T0 + 2 * HOUR + 10 * SECOND
    plan = plan_retention(env, now_ms=now, archive=archive)
    env.records.add_tombstones(item.tombstone(T0) for item in plan.deletions)  # then killed
    later = max(i.modified_ms for i in inner.iter_objects()) + DAY

    assert sweep_orphans(inner, env.records, archive, now_ms=later, grace_ms=HOUR).deleted == 0
    assert all(inner.exists(a) for a in old.renders)
    assert apply_retention(env, now_ms=now, archive=archive).deleted == len(old.renders)
    assert not any(inner.exists(a) for a in old.renders)


def test_holds_on_an_archived_thread_or_its_workflow_protect_it(archived_world) -> None:
    env, inner, archive, old, _ = archived_world
    now = T0 + 2 * HOUR + 10 * SECOND
    thread_id = old.thread.thread_id
    with pytest.raises(Exception) as caught:  # unknown to the record store alone
        place_hold(env.records, thread_id=thread_id, at_ms=T0)
    assert caught.value.code == "RETENTION_SCOPE_UNKNOWN"

    place_hold(env.records, thread_id=thread_id, archived_threads=archive.archived_threads(), at_ms=T0)
    plan = plan_retention(env, now_ms=now, archive=archive)
    assert plan.count == 0 and plan.kept["hold"] >= len(old.renders)
    assert apply_retention(env, now_ms=now, archive=archive).deleted == 0
    assert all(inner.exists(a) for a in old.renders)

    release_holds(env.records, thread_id=thread_id)
    place_hold(env.records, workflow_id=WORKFLOW, at_ms=T0)
    assert plan_retention(env, now_ms=now, archive=archive).count == 0
    release_holds(env.records, workflow_id=WORKFLOW)
    assert deleted_ids_with(env, archive, now) == set(old.renders)


def test_an_archived_failed_thread_keeps_what_a_resume_needs(tmp_path: Path) -> None:
    records = open_record_store(f"sqlite:///{tmp_path / 'records.db'}")
    env = Env(
        records,
        MemoryArtifactStore(),
        catalog_with({"prompt_render": "1s", "context_payload": "1s", "output": "1s"}),
    )
    failed = write_thread(env, "pkg v1", status="failed", target="pkg", turns=TURNS[:2])
    write_thread(env, "pkg v2", target="pkg", at=T0 + HOUR)
    archive = RecordArchive(tmp_path / "archive")
    with archive.locked():
        archive_threads(
            records, archive, now_ms=T0 + HOUR, archive_after_ms={WORKFLOW: SECOND}, compaction_id="c1"
        )
    assert set(archive.archived_threads()) == {failed.thread.thread_id}

    gone = deleted_ids_with(env, archive, T0 + DAY)

    assert not gone & {failed.context, *failed.renders, *failed.outputs}
    records.close()


def deleted_ids_with(env: Env, archive: RecordArchive, now: int) -> set[str]:
    return {item.artifact_id for item in plan_retention(env, now_ms=now, archive=archive).deletions}
