"""Compaction: orphans after the grace period, scratch files, the record archive, and `wf compact`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from e2e_support import isolated_settings, with_profile_keys

from wf_pipeline.cas import open_cas
from wf_pipeline.cli.main import main
from wf_pipeline.errors import RetentionError
from wf_pipeline.metadata.canonical import digest
from wf_pipeline.metadata.records import (
    ArtifactLinkRecord,
    FrameRecord,
    GateRecord,
    HoldRecord,
    PromptLinkRecord,
    ThreadRecord,
    TombstoneRecord,
    TurnRecord,
    artifact_link_id_for,
    frame_id_for,
    gate_record_id_for,
    prompt_link_id_for,
    thread_id_for,
    turn_record_id_for,
)
from wf_pipeline.records import TurnCommit, open_record_store
from wf_pipeline.retention.archive import RecordArchive
from wf_pipeline.retention.compaction import (
    archivable_threads,
    archive_threads,
    current_thread_ids,
    sweep_orphans,
    sweep_scratch,
)
from wf_pipeline.service import compact
from wf_pipeline.telemetry.query import run_query

HOUR = 3_600_000
DAY = 24 * HOUR
NOW = 1_800_000_000_000
WORKFLOW = "wf_a"


# --- helpers ----------------------------------------------------------------------------


def backdate(cas_root: Path, artifact_id: str, at_ms: int) -> None:
    hex_digest = artifact_id.split(":", 1)[1]
    path = cas_root / "objects" / hex_digest[:2] / hex_digest[2:]
    os.utime(path, ns=(at_ms * 1_000_000, at_ms * 1_000_000))


def put_old(cas, cas_root: Path, data: bytes, at_ms: int) -> str:
    ref = cas.put(data)
    backdate(cas_root, ref.artifact_id, at_ms)
    return ref.artifact_id


def thread_on(
    target_key: str,
    node: str,
    *,
    created: int,
    updated: int | None = None,
    status: str = "completed",
    workflow_id: str = WORKFLOW,
) -> ThreadRecord:
    node_id = "node:" + digest(node.encode())[7:]
    return ThreadRecord(
        thread_id=thread_id_for(workflow_id, node_id),
        workflow_id=workflow_id,
        target_node_id=node_id,
        target_key=target_key,
        target_path=target_key,
        status=status,
        created_at_ms=created,
        updated_at_ms=created if updated is None else updated,
        last_turn_seq=1,
    )


def commit_with_artifacts(records, cas, thread: ThreadRecord) -> dict[str, str]:
    """One completed turn of ``thread`` whose output, prompt and context live in ``cas``."""
    ids = {
        role: cas.put(f"{thread.thread_id} {role}".encode()).artifact_id
        for role in ("output", "rendered", "context", "system", "template")
    }
    at = thread.created_at_ms
    turn_id = "t1"
    turn = TurnRecord(
        turn_record_id=turn_record_id_for(thread.workflow_id, thread.thread_id, turn_id, 1),
        thread_id=thread.thread_id,
        turn_id=turn_id,
        turn_seq=1,
        attempt=1,
        status="completed",
        input_artifact_ids=(ids["context"],),
        output_artifact_id=ids["output"],
        started_at_ms=at,
        ended_at_ms=at + 5,
    )
    gate = GateRecord(
        gate_record_id=gate_record_id_for(thread.workflow_id, thread.thread_id, turn_id, 1),
        thread_id=thread.thread_id,
        turn_id=turn_id,
        gate_id="g",
        attempt=1,
        outcome="pass",
        reasons=("OK:a", "OK:b"),
        evaluated_at_ms=at + 6,
        findings=({"rule_id": "r", "code": "OK", "pointer": "claim:a", "hint": "Fine."},),
        rules_digest="sha256:" + "0" * 64,
    )
    link = PromptLinkRecord(
        prompt_link_id=prompt_link_id_for(thread.workflow_id, thread.thread_id, turn_id, 1),
        thread_id=thread.thread_id,
        turn_id=turn_id,
        node_id=thread.target_node_id,
        system_prompt_artifact_id=ids["system"],
        user_prompt_template_artifact_id=ids["template"],
        rendered_prompt_artifact_id=ids["rendered"],
        context_artifact_id=ids["context"],
        created_at_ms=at + 1,
    )
    links = tuple(
        ArtifactLinkRecord(
            artifact_link_id=artifact_link_id_for(thread.thread_id, turn_id, 1, role, ids[key]),
            artifact_id=ids[key],
            thread_id=thread.thread_id,
            turn_id=turn_id,
            attempt=1,
            role=role,
            size=10,
            created_at_ms=at + 2,
        )
        for role, key in (("output", "output"), ("context", "context"))
    )
    frame = FrameRecord(
        frame_id=frame_id_for(thread.target_node_id, "readme", ids["output"]),
        node_id=thread.target_node_id,
        frame_type="readme",
        artifact_id=ids["output"],
        thread_id=thread.thread_id,
        metadata={"k": "v"},
        created_at_ms=at + 7,
    )
    records.commit_turn(
        TurnCommit(thread=thread, turn=turn, gate=gate, prompt_link=link, artifact_links=links, frame=frame)
    )
    return ids


@pytest.fixture
def stores(tmp_path):
    cas_root = tmp_path / "cas"
    cas = open_cas(cas_root.as_uri())
    records = open_record_store(f"sqlite:///{tmp_path / 'records.db'}")
    archive = RecordArchive(tmp_path / "archive")
    yield cas, cas_root, records, archive
    records.close()


# --- orphans ----------------------------------------------------------------------------


def test_an_old_orphan_goes_with_its_tombstone_and_a_fresh_one_stays(stores):
    cas, cas_root, records, archive = stores
    thread = thread_on("t", "n", created=NOW - 10 * DAY)
    referenced = commit_with_artifacts(records, cas, thread)
    for artifact_id in referenced.values():
        backdate(cas_root, artifact_id, NOW - 10 * DAY)
    old = put_old(cas, cas_root, b"left by a crashed run", NOW - 2 * HOUR)
    # A run writing right now: its object is in the CAS, its records are not yet.
    fresh = put_old(cas, cas_root, b"put by a run in flight", NOW - 5_000)

    sweep = sweep_orphans(cas, records, archive, now_ms=NOW, grace_ms=HOUR)

    assert (sweep.deleted, sweep.bytes_freed, sweep.kept_young) == (1, len(b"left by a crashed run"), 1)
    assert sweep.scanned == len(referenced) + 2
    assert not cas.exists(old)
    assert cas.exists(fresh)
    assert all(cas.exists(artifact_id) for artifact_id in referenced.values())
    tombstone = records.get_tombstone(old)
    assert tombstone is not None
    assert (tombstone.reason, tombstone.artifact_class, tombstone.bytes) == ("orphan", "orphan", 21)
    assert (tombstone.window_ms, tombstone.deleted_at_ms) == (HOUR, NOW)
    assert records.get_tombstone(fresh) is None


def test_an_old_orphan_put_again_is_young_again(stores):
    cas, cas_root, records, archive = stores
    now = _now_ms()  # the put below stamps the wall clock
    artifact_id = put_old(cas, cas_root, b"same bytes, produced again", now - DAY)
    # The run that produces the same bytes again puts them before recording them.
    cas.put(b"same bytes, produced again")

    sweep = sweep_orphans(cas, records, archive, now_ms=now, grace_ms=HOUR)

    assert sweep.deleted == 0
    assert cas.exists(artifact_id)


def test_tombstoned_objects_are_retention_s_to_finish_except_orphans(stores):
    cas, cas_root, records, archive = stores
    expired = put_old(cas, cas_root, b"expired by retention, delete interrupted", NOW - DAY)
    half_swept = put_old(cas, cas_root, b"orphan whose delete was interrupted", NOW - DAY)
    records.add_tombstones(
        [
            TombstoneRecord(
                artifact_id=expired,
                artifact_class="prompt_render",
                workflow_id=WORKFLOW,
                policy="profile:wf_a",
                window_ms=1000,
                reason="expired",
                bytes=40,
                deleted_at_ms=NOW - HOUR,
            ),
            TombstoneRecord(
                artifact_id=half_swept,
                artifact_class="orphan",
                policy="compaction",
                window_ms=HOUR,
                reason="orphan",
                bytes=35,
                deleted_at_ms=NOW - HOUR,
            ),
        ]
    )

    sweep = sweep_orphans(cas, records, archive, now_ms=NOW, grace_ms=HOUR)

    assert sweep.deleted == 1
    assert cas.exists(expired)
    assert not cas.exists(half_swept)
    # The first tombstone stays as it was: no second one for the same deletion.
    assert records.get_tombstone(half_swept).deleted_at_ms == NOW - HOUR


def test_forever_grace_keeps_every_orphan(stores):
    cas, cas_root, records, archive = stores
    orphan = put_old(cas, cas_root, b"kept forever", NOW - 400 * DAY)
    assert sweep_orphans(cas, records, archive, now_ms=NOW, grace_ms=None).deleted == 0
    assert cas.exists(orphan)


def test_stale_scratch_files_go_and_live_ones_stay(stores):
    cas, cas_root, _, _ = stores
    cas.put(b"creates the scratch folder")
    stale, live = cas_root / "tmp" / "dead.part", cas_root / "tmp" / "live.part"
    stale.write_bytes(b"a write that died")
    live.write_bytes(b"a write in progress")
    os.utime(stale, ns=((NOW - 2 * HOUR) * 1_000_000,) * 2)
    os.utime(live, ns=((NOW - 1_000) * 1_000_000,) * 2)

    sweep = sweep_scratch(cas, now_ms=NOW, grace_ms=HOUR)

    assert (sweep.deleted, sweep.bytes_freed, sweep.kept_young) == (1, 17, 1)
    assert not stale.exists() and live.exists()


# --- archive ----------------------------------------------------------------------------


def archive_world(records, cas):
    """Threads of every kind, all updated 30 days before NOW; returns them by name."""
    old = NOW - 30 * DAY
    threads = {
        # One target, two trees: the older thread is superseded, the newer is current.
        "superseded": thread_on("pkg", "pkg v1", created=old - DAY, updated=old),
        "current": thread_on("pkg", "pkg v2", created=old, updated=old),
        "held": thread_on("lib", "lib v1", created=old - DAY, updated=old),
        "held_current": thread_on("lib", "lib v2", created=old, updated=old),
        "running": thread_on("app", "app v1", created=old - DAY, updated=old, status="running"),
        "running_current": thread_on("app", "app v2", created=old, updated=old),
        "young": thread_on("cli", "cli v1", created=NOW - 2 * HOUR, updated=NOW - 2 * HOUR),
        "young_current": thread_on("cli", "cli v2", created=NOW - HOUR, updated=NOW - HOUR),
        "other_workflow": thread_on("pkg", "pkg v1", created=old - DAY, updated=old, workflow_id="wf_b"),
        "other_current": thread_on("pkg", "pkg v2", created=old, updated=old, workflow_id="wf_b"),
    }
    ids = {name: commit_with_artifacts(records, cas, thread) for name, thread in threads.items()}
    records.add_hold(
        HoldRecord(hold_id="hold:1", thread_id=threads["held"].thread_id, reason="case 7", created_at_ms=old)
    )
    return threads, ids


def test_archive_moves_only_old_finished_superseded_unheld_threads(stores):
    cas, cas_root, records, archive = stores
    threads, ids = archive_world(records, cas)

    with archive.locked():
        run = archive_threads(
            records, archive, now_ms=NOW, archive_after_ms={WORKFLOW: 7 * DAY}, compaction_id="c1"
        )

    gone = threads["superseded"]
    assert run.threads_archived == 1
    assert run.rows == {
        "threads": 1,
        "turns": 1,
        "gates": 1,
        "prompt_links": 1,
        "artifact_links": 2,
        "frames": 1,
    }
    assert records.get_thread(gone.thread_id) is None
    assert records.turns_for_thread(gone.thread_id) == []
    assert records.frames_for_thread(gone.thread_id) == []
    for name, thread in threads.items():
        if name != "superseded":
            assert records.get_thread(thread.thread_id) == thread, name
    # The Parquet copy holds the rows as they were, JSON columns as canonical JSON.
    (threads_file,) = archive.files("threads")
    assert pq.read_table(threads_file).to_pylist()[0]["thread_id"] == gone.thread_id
    (gates_file,) = archive.files("gates")
    assert pq.read_table(gates_file).to_pylist()[0]["reasons"] == '["OK:a","OK:b"]'
    # Its CAS objects stay referenced (through the archive): the orphan sweep keeps them.
    for artifact_id in ids["superseded"].values():
        backdate(cas_root, artifact_id, NOW - 30 * DAY)
    assert sweep_orphans(cas, records, archive, now_ms=NOW, grace_ms=HOUR).deleted == 0
    assert all(cas.exists(artifact_id) for artifact_id in ids["superseded"].values())
    # A second pass finds nothing more to do.
    with archive.locked():
        again = archive_threads(
            records, archive, now_ms=NOW, archive_after_ms={WORKFLOW: 7 * DAY}, compaction_id="c2"
        )
    assert (again.threads_archived, again.files) == (0, ())


def test_workflow_holds_keep_every_thread_and_released_holds_keep_none():
    old = NOW - 30 * DAY
    superseded = thread_on("pkg", "v1", created=old - DAY, updated=old)
    current = thread_on("pkg", "v2", created=old, updated=old)
    failed = thread_on("lib", "lib v1", created=old - DAY, updated=old, status="failed")
    lib_current = thread_on("lib", "lib v2", created=old, updated=old)
    pending = thread_on("app", "app v1", created=old - DAY, updated=old, status="pending")
    app_current = thread_on("app", "app v2", created=old, updated=old)
    threads = [superseded, current, failed, lib_current, pending, app_current]
    current_ids = current_thread_ids(threads)
    assert current_ids == {current.thread_id, lib_current.thread_id, app_current.thread_id}

    def chosen(holds, window=7 * DAY):
        picked = archivable_threads(
            threads, now_ms=NOW, archive_after_ms={WORKFLOW: window}, holds=holds, current=current_ids
        )
        return {t.thread_id for t in picked}

    assert chosen([]) == {superseded.thread_id, failed.thread_id}
    workflow_hold = HoldRecord(hold_id="hold:w", workflow_id=WORKFLOW, created_at_ms=old)
    assert chosen([workflow_hold]) == set()
    released = workflow_hold.model_copy(update={"released_at_ms": old + 1})
    assert chosen([released]) == {superseded.thread_id, failed.thread_id}
    assert chosen([], window=None) == set()  # archive_after: forever
    assert chosen([], window=40 * DAY) == set()  # not old enough yet


def test_an_archive_killed_before_the_delete_loses_nothing_and_the_rerun_writes_no_duplicate(
    stores, monkeypatch
):
    cas, _, records, archive = stores
    threads, _ = archive_world(records, cas)
    gone = threads["superseded"]
    windows = {WORKFLOW: 7 * DAY}

    def killed(expected):
        raise RuntimeError("killed after the Parquet files were durable")

    monkeypatch.setattr(records, "delete_threads", killed)
    with pytest.raises(RuntimeError), archive.locked():
        archive_threads(records, archive, now_ms=NOW, archive_after_ms=windows, compaction_id="c1")
    # The rows are still in the store, and a whole copy is in the archive.
    assert records.get_thread(gone.thread_id) == gone
    assert len(records.turns_for_thread(gone.thread_id)) == 1
    assert archive.archived_threads() == {gone.thread_id: gone.updated_at_ms}

    monkeypatch.undo()
    with archive.locked():
        rerun = archive_threads(records, archive, now_ms=NOW, archive_after_ms=windows, compaction_id="c2")

    assert rerun.threads_archived == 1 and rerun.files == ()
    assert records.get_thread(gone.thread_id) is None
    turns = [row for path in archive.files("turns") for row in pq.read_table(path).to_pylist()]
    assert [row["thread_id"] for row in turns] == [gone.thread_id]


def test_an_archive_killed_mid_write_leaves_no_partial_run_behind(stores, monkeypatch):
    cas, _, records, archive = stores
    threads, _ = archive_world(records, cas)
    gone = threads["superseded"]
    windows = {WORKFLOW: 7 * DAY}
    publish = RecordArchive._publish

    def dies_at_frames(self, table, name, arrow):
        if table == "frames":
            raise RetentionError("RETENTION_ARCHIVE_ERROR", "disk full")
        return publish(self, table, name, arrow)

    monkeypatch.setattr(RecordArchive, "_publish", dies_at_frames)
    with pytest.raises(RetentionError), archive.locked():
        archive_threads(records, archive, now_ms=NOW, archive_after_ms=windows, compaction_id="c1")
    assert records.get_thread(gone.thread_id) == gone
    assert archive.files("turns") and not archive.files("threads")

    monkeypatch.undo()
    with archive.locked():
        rerun = archive_threads(records, archive, now_ms=NOW, archive_after_ms=windows, compaction_id="c2")

    assert rerun.discarded_files == 4  # turns, gates, prompt_links, artifact_links of c1
    assert rerun.threads_archived == 1
    for table in ("threads", "turns", "gates", "prompt_links", "artifact_links", "frames"):
        assert [p.name for p in archive.files(table)] == ["c2.parquet"], table


def test_a_thread_that_changes_before_the_delete_stays(stores, monkeypatch):
    cas, _, records, archive = stores
    threads, _ = archive_world(records, cas)
    gone = threads["superseded"]
    write = RecordArchive.write

    def resumed_meanwhile(self, compaction_id, rows, *, archived_at_ms):
        files = write(self, compaction_id, rows, archived_at_ms=archived_at_ms)
        records.save_thread(gone.model_copy(update={"status": "running", "updated_at_ms": NOW}))
        return files

    monkeypatch.setattr(RecordArchive, "write", resumed_meanwhile)
    with archive.locked():
        run = archive_threads(
            records, archive, now_ms=NOW, archive_after_ms={WORKFLOW: 7 * DAY}, compaction_id="c1"
        )

    assert (run.threads_archived, run.skipped_changed) == (0, 1)
    assert records.get_thread(gone.thread_id).status == "running"
    assert len(records.turns_for_thread(gone.thread_id)) == 1


# --- the service, the command and the view ------------------------------------------------


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def test_wf_compact_archives_sweeps_and_the_view_reaches_archived_threads(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("WF_COMPACT_GRACE", "1s")
    settings = settings.model_copy(update={"compact_grace": "1s"})
    # A workspace copy of the docs writer whose threads are archived after one second.
    workspace_profiles = tmp_path / "profiles"
    workspace_profiles.mkdir()
    repo = Path(__file__).resolve().parent.parent
    profile = (repo / "profiles" / "docs_writer_thread_v1.yaml").read_text()
    profile = with_profile_keys(profile, "retention", "  archive_after: 1s\n  grace: 1s\n")
    (workspace_profiles / "docs_writer_thread_v1.yaml").write_text(profile)
    shutil.copytree(repo / "assets" / "prompts", tmp_path / "assets" / "prompts")
    cas = open_cas(settings.cas_url)
    cas_root = settings.home / "cas"
    now = _now_ms()
    with open_record_store(settings.records_url) as records:
        superseded = thread_on("pkg", "v1", created=now - 20_000, workflow_id="docs_writer_thread_v1")
        current = thread_on("pkg", "v2", created=now - 10_000, workflow_id="docs_writer_thread_v1")
        for thread in (superseded, current):
            commit_with_artifacts(records, cas, thread)
    orphan = put_old(cas, cas_root, b"an orphan", now - 60_000)

    assert main(["compact", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)

    assert result["archive"]["threads_archived"] == 1
    assert result["orphans"]["deleted"] == 1
    assert result["orphans"]["bytes_freed"] == len(b"an orphan")
    assert result["grace_ms"] == 1000
    assert not cas.exists(orphan)
    columns, rows = run_query(settings, "select thread_id, status, compaction_id from archived_threads")
    assert columns == ["thread_id", "status", "compaction_id"]
    assert rows == [(superseded.thread_id, "completed", result["compaction_id"])]
    # The deletion is measured like any other artifact delete: one telemetry row, no payload.
    _, deleted = run_query(
        settings, "select key, bytes, outcome from artifact_writes where outcome = 'deleted'"
    )
    assert deleted == [("orphan", len(b"an orphan"), "deleted")]
    # Nothing printed names a payload: ids, counts and sizes only.
    assert "an orphan" not in json.dumps(result)

    # The archived thread is shown from the archive, marked archived, with its rows.
    assert main(["threads", "show", superseded.thread_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["archived"] is True
    assert shown["compaction"]["compaction_id"] == result["compaction_id"]
    assert shown["thread_id"] == superseded.thread_id and shown["status"] == "completed"
    assert [(t["turn_id"], t["attempt"], t["status"]) for t in shown["turns"]] == [("t1", 1, "completed")]
    assert shown["turns"][0]["gate"] == {
        "gate_id": "g",
        "outcome": "pass",
        "reasons": ["OK:a", "OK:b"],
        "findings": [{"rule_id": "r", "code": "OK", "pointer": "claim:a", "hint": "Fine."}],
        "rules_digest": "sha256:" + "0" * 64,
    }
    assert shown["turns"][0]["input_artifact_ids"] == [
        cas.put(f"{superseded.thread_id} context".encode()).artifact_id
    ]
    assert len(shown["prompt_link_ids"]) == 1
    assert {a["state"] for a in shown["artifacts"]} == {"stored"}
    assert main(["threads", "show", superseded.thread_id]) == 0
    assert "archived by compaction" in capsys.readouterr().out
    assert main(["threads", "show", current.thread_id, "--json"]) == 0
    live = json.loads(capsys.readouterr().out)
    assert live["archived"] is False and live["compaction"] is None
    assert main(["threads", "show", "thread:nothing-like-it", "--json"]) == 1
    missing = capsys.readouterr()
    assert "RUN_UNKNOWN_THREAD" in missing.out + missing.err

    assert main(["compact"]) == 0
    out = capsys.readouterr().out
    assert "0 threads moved" in out and "0 objects deleted" in out


def test_wf_retention_apply_expires_archived_threads_prompts_and_a_hold_protects_one(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    workflow = "docs_writer_thread_v1"
    # Threads archived after 1s; prompt renders kept 1s; contexts (30d) and outputs (forever) as preset.
    repo = Path(__file__).resolve().parent.parent
    profile = (repo / "profiles" / f"{workflow}.yaml").read_text()
    profile = with_profile_keys(
        profile, "retention", "  archive_after: 1s\n  grace: 1s\n  prompt_render: 1s\n"
    )
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / f"{workflow}.yaml").write_text(profile)
    shutil.copytree(repo / "assets" / "prompts", tmp_path / "assets" / "prompts")
    cas = open_cas(settings.cas_url)
    now = _now_ms()
    ids = {}
    with open_record_store(settings.records_url) as records:
        for target in ("pkg", "lib"):
            for version, created in (("v1", now - 20_000), ("v2", now - 10_000)):
                thread = thread_on(target, f"{target} {version}", created=created, workflow_id=workflow)
                ids[(target, version)] = (thread.thread_id, commit_with_artifacts(records, cas, thread))

    assert main(["compact", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["archive"]["threads_archived"] == 2  # the two v1 threads
    archived, archived_objects = ids[("pkg", "v1")]
    held, held_objects = ids[("lib", "v1")]
    assert main(["retention", "hold", held]) == 0  # an archived thread can be held
    capsys.readouterr()

    assert main(["retention", "apply", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)

    prompts = ("rendered", "system", "template")
    # The archived thread's prompt renders went with the live v2 threads'; the held one kept all.
    assert result["deleted"] == result["tombstones_written"] == 3 * len(prompts)
    assert {g["artifact_class"] for g in result["groups"]} == {"prompt_render"}
    with open_record_store(settings.records_url) as records:
        for role in prompts:
            assert not cas.exists(archived_objects[role])
            tombstone = records.get_tombstone(archived_objects[role])
            assert (tombstone.artifact_class, tombstone.reason) == ("prompt_render", "expired")
            assert records.get_tombstone(held_objects[role]) is None
    assert cas.exists(archived_objects["output"]) and cas.exists(archived_objects["context"])
    assert all(cas.exists(artifact_id) for artifact_id in held_objects.values())

    # A later compaction sees the expired objects as tombstoned, not as orphans.
    assert main(["compact", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["orphans"]["deleted"] == 0


def test_a_bad_grace_period_is_a_clear_error_and_nothing_is_touched(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    cas = open_cas(settings.cas_url)
    orphan = put_old(cas, settings.home / "cas", b"an orphan", _now_ms() - 400 * DAY)
    monkeypatch.setenv("WF_COMPACT_GRACE", "soon")

    assert main(["compact"]) == 1
    assert capsys.readouterr().err.startswith("METADATA_BAD_DURATION: ")
    assert cas.exists(orphan)
    with pytest.raises(Exception) as caught:
        compact(settings.model_copy(update={"compact_grace": "0s"}))
    assert caught.value.code == "METADATA_BAD_DURATION"


def test_compaction_copies_audit_events_no_read_copied_to_the_telemetry_table(tmp_path, monkeypatch, capsys):
    from wf_pipeline.records import open_settings_record_store
    from wf_pipeline.security.audit import append_audit_event
    from wf_pipeline.security.audit_key import audit_key_source
    from wf_pipeline.service.telemetry import query_telemetry

    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    with open_settings_record_store(settings) as records:
        events = [
            append_audit_event(
                records,
                key=audit_key_source(settings, records),
                requester="wf-runtime",
                grant_id=None,
                reason_code="REDACTION_OPT_OUT",
                scope={"workflow_id": "docs_writer_thread_v1"},
                artifact_ids=[digest(f"context {n}".encode())],
                outcome="allow",
                code=None,
                bytes=10,
                policy_version="test",
                now_ms=_now_ms(),
            )
            for n in range(3)
        ]

    assert compact(settings).audit_exported == 3
    rows = query_telemetry(settings, "select event_id from audit_events order by seq")["rows"]
    assert rows == [[event.event_id] for event in events]
    assert main(["compact"]) == 0  # nothing new: nothing copied twice
    assert "0 events copied to telemetry" in capsys.readouterr().out
    assert query_telemetry(settings, "select count(*) from audit_events")["rows"] == [[3]]


# --- end to end: a real run, archived, then the same tree again ------------------------------


@pytest.mark.slow
def test_after_archiving_superseded_threads_an_unchanged_tree_reuses_every_thread(tmp_path, monkeypatch):
    from e2e_support import SAMPLE_REPO, copy_tree

    from wf_pipeline.service import run_workflow

    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    repo = Path(__file__).resolve().parent.parent
    profile = (repo / "profiles" / "docs_writer_thread_v1.yaml").read_text()
    profile = with_profile_keys(profile, "retention", "  archive_after: 1s\n")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "docs_writer_thread_v1.yaml").write_text(profile)
    shutil.copytree(repo / "assets" / "prompts", tmp_path / "assets" / "prompts")
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    workflow = "docs_writer_thread_v1"

    first = run_workflow(settings, workflow, tree)
    changed = tree / "stationkit" / "sensors" / "simulated.py"
    changed.write_text(changed.read_text() + "\n\ndef extra_probe() -> int:\n    return 7\n")
    second = run_workflow(settings, workflow, tree)
    assert first.ok and second.ok
    superseded = {t.thread_id for t in first.threads} - {t.thread_id for t in second.threads}
    assert len(superseded) == 3  # stationkit/sensors and its two ancestors ran again

    import time

    time.sleep(1.2)  # past archive_after
    result = compact(settings)

    assert result.archive.threads_archived == len(superseded)
    with open_record_store(settings.records_url) as records:
        assert {t.thread_id for t in records.list_threads()} == {t.thread_id for t in second.threads}
    columns, rows = run_query(settings, "select thread_id from archived_threads order by thread_id")
    assert {row[0] for row in rows} == superseded
    # The orphan sweep (grace 1h) kept everything, the archived threads' objects included.
    assert result.orphans.deleted == 0

    third = run_workflow(settings, workflow, tree)
    assert third.ok
    assert third.threads_reused == len(second.threads)
    assert third.provider_calls == 0


# --- crash safety: `wf compact` killed with SIGKILL at random moments ---------------------


def _archived_keys(archive: RecordArchive, table: str, key: str) -> list[str]:
    return [
        value
        for path in archive.files(table)
        for value in pq.read_table(path, columns=[key])[key].to_pylist()
    ]


@pytest.mark.slow
def test_wf_compact_killed_at_random_moments_loses_nothing(tmp_path, monkeypatch):
    import random
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    repo = Path(__file__).resolve().parent.parent
    profile = (repo / "profiles" / "docs_writer_thread_v1.yaml").read_text()
    profile = with_profile_keys(profile, "retention", "  archive_after: 1s\n  grace: 1s\n")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "docs_writer_thread_v1.yaml").write_text(profile)
    shutil.copytree(repo / "assets" / "prompts", tmp_path / "assets" / "prompts")
    workflow = "docs_writer_thread_v1"
    cas = open_cas(settings.cas_url)
    cas_root = settings.home / "cas"
    old = _now_ms() - DAY
    all_threads: set[str] = set()
    orphans: set[str] = set()
    targets = 40

    def more_work(version: int) -> None:
        # A new tree version per target supersedes the last one; new orphans appear too.
        with open_record_store(settings.records_url) as records:
            for n in range(targets):
                thread = thread_on(f"t{n}", f"t{n} v{version}", created=old + version, workflow_id=workflow)
                commit_with_artifacts(records, cas, thread)
                all_threads.add(thread.thread_id)
        orphans.update(put_old(cas, cas_root, f"orphan {version} {n}".encode(), old) for n in range(40))

    env = {**os.environ, "WF_HOME": str(settings.home), "WF_COMPACT_GRACE": "1s"}
    archive = RecordArchive(settings.home / "archive")

    def check_nothing_lost() -> None:
        with open_record_store(settings.records_url) as records:
            live = {t.thread_id for t in records.list_threads()}
            referenced = records.referenced_artifact_ids() | archive.referenced_artifact_ids()
            for artifact_id in orphans:
                if not cas.exists(artifact_id):
                    assert records.get_tombstone(artifact_id) is not None  # tombstone first, always
        # Every thread is whole in the store or in the archive (or both, until the delete).
        assert live | set(archive.archived_threads()) == all_threads
        assert all(cas.exists(artifact_id) for artifact_id in referenced)

    rng = random.Random(9)
    kills = 0
    more_work(1)
    for version in range(2, 12):
        more_work(version)
        process = subprocess.Popen(
            [sys.executable, "-m", "wf_pipeline.cli.main", "compact", "--json"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Wait (watching only) until the archive's first file of this run appears, then kill
        # somewhere in the writes, the delete or the orphan sweep that follow.
        before = set(archive.root.glob("*/*"))
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if set(archive.root.glob("*/*")) - before:
                break
            time.sleep(0.003)
        time.sleep(rng.uniform(0.0, 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        check_nothing_lost()
    final = subprocess.run(
        [sys.executable, "-m", "wf_pipeline.cli.main", "compact", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(final.stdout)["archive"]["discarded_files"] == 0
    check_nothing_lost()

    assert kills >= 3  # the loop above really interrupted runs
    with open_record_store(settings.records_url) as records:
        assert len(records.list_threads()) == targets  # the current thread of each target
        assert all(not cas.exists(artifact_id) for artifact_id in orphans)
        assert all(records.get_tombstone(a).reason == "orphan" for a in orphans)
    assert len(archive.archived_threads()) == len(all_threads) - targets
    # No row was archived twice, however often a run died half-way.
    for table, key in (
        ("threads", "thread_id"),
        ("turns", "turn_record_id"),
        ("gates", "gate_record_id"),
        ("prompt_links", "prompt_link_id"),
        ("artifact_links", "artifact_link_id"),
        ("frames", "frame_id"),
    ):
        keys = _archived_keys(archive, table, key)
        assert len(keys) == len(set(keys)), table


def test_an_archived_thread_keeps_its_pinned_profile_snapshot(stores):
    cas, _cas_root, records, archive = stores
    old = NOW - 30 * DAY
    snapshot = cas.put(b"a profile snapshot").artifact_id
    superseded = thread_on("pkg", "pkg v1", created=old - DAY, updated=old).model_copy(
        update={
            "profile_artifact_id": snapshot,
            "code_version": "1.0.0-aaaaaaaaaaaa",
            "profile_version": "1.0.0",
        }
    )
    commit_with_artifacts(records, cas, superseded)
    commit_with_artifacts(records, cas, thread_on("pkg", "pkg v2", created=old, updated=old))
    assert snapshot in records.referenced_artifact_ids()
    with archive.locked():
        run = archive_threads(
            records, archive, now_ms=NOW, archive_after_ms={WORKFLOW: 7 * DAY}, compaction_id="c1"
        )
    assert run.threads_archived == 1 and records.get_thread(superseded.thread_id) is None
    # Out of the record store, the snapshot is still referenced: the orphan sweep keeps it.
    assert snapshot not in records.referenced_artifact_ids()
    assert snapshot in archive.referenced_artifact_ids()
