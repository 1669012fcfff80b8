"""Crash safety: ``wf run`` SIGKILLed over and over at random points, then resumed by a plain rerun.

One uninterrupted run of a generated tree is the reference. The same command is then
started again and again in a second home and killed with SIGKILL at moments drawn from
a seeded generator: during start-up, scanning and planning, inside turns right after
records commit, and while the READMEs are written. After the last, uninterrupted run
the stores are read directly and must show that nothing was lost, duplicated,
half-written or asked of the provider twice, and the outputs must equal the reference's
byte for byte.

Two windows the random kills rarely hit are targeted one by one: a first run killed
while Dagster creates its storage, and a level's run killed after its last turn records
committed but before Dagster recorded the step. A README write killed before its
rename is reproduced with a writer process stopped at that point.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
from crash_support import (
    WF,
    Progress,
    RunOutcome,
    Trigger,
    WfHome,
    after_threads_completed,
    after_turn_records,
    at_readme_writing,
    before_turns,
    files_under,
    integrity,
    outliving_processes,
    progress,
    run_to_completion,
    run_until,
    sqlite_files,
    table_names,
    timed_run,
    when_file_exists,
)
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from e2e_support import home_store

from wf_pipeline.cas import open_cas
from wf_pipeline.metadata.records import (
    artifact_link_id_for,
    frame_id_for,
    gate_record_id_for,
    prompt_link_id_for,
    turn_record_id_for,
)
from wf_pipeline.records import open_record_store
from wf_pipeline.tree.synthetic import generate_tree
from wf_pipeline.workflows.docs_writer.sink import write_readme

WORKFLOW = "docs_writer_thread_v1"
TURNS = ("evidence_gather", "verification", "readme_struct", "style_refine")
GATES = dict(zip(TURNS, ("evidence_gate", "verification_gate", "struct_gate", "final_gate"), strict=True))
OUTPUT_TYPES = ("evidence_map", "verification_report", "readme_struct", "readme_final")
FRAME_TYPE = "readme"
# A SIGKILLed run is never marked finished: nothing is left to report it.
KILLED_RUN_STATUSES = frozenset({DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTED})
PARTITIONS = f"{WORKFLOW}_targets"

DIRECTORIES = 30  # 1 + 3 + 9 + 17: four depth levels, four Dagster runs per uninterrupted run
FANOUT = 3
MIN_KILLS = 20  # kills that hit a live run with work left
README_PHASE_ATTEMPTS = 3
MAX_RUNS = 80  # a bound on the loop, far above what the schedule needs
# WF_CRASH_SEED replays another schedule (e.g. to hunt a failure found with it).
SEED = int(os.environ.get("WF_CRASH_SEED", "20240611"))
PROVIDER_ENV = (
    ("WF_PROVIDER", "simulated"),
    ("WF_SIMULATED_LATENCY_MS", "30"),  # each call takes a while, so kills land inside turns
    ("WF_PROVIDER_CONCURRENCY", "4"),
)


@dataclass(frozen=True)
class Kill:
    trigger: str
    killed: bool
    phase: str
    before: Progress
    after: Progress
    outcome: RunOutcome

    @property
    def interrupted_work(self) -> bool:
        # Runs start only while some thread or README is unfinished, so a kill that found
        # the process alive interrupted unfinished work.
        return self.killed


def _phase(before: Progress, after: Progress, threads: int) -> str:
    """Where the kill landed, as far as the stores can tell."""
    if after.readmes > before.readmes or after.readme_temp_files > before.readme_temp_files:
        return "readme writing"
    if after.completed_threads == threads:
        return "after the last turn"  # every thread done, no README written yet
    if after.turn_records > before.turn_records:
        return "turns"
    if after.dagster_runs > before.dagster_runs:
        return "dagster run start"
    return "start-up, scan and plan"


class KillSchedule:
    """Chooses each kill so that enough of them still find unfinished work.

    The first kills land in the first runs' start-up, while the record store is created
    and the threads are planned for the first time. After them a shuffled deck fixes
    how many kills land early in start-up (imports, scan, plan), late in start-up
    (partition sync, Dagster run creation) and inside turns, some committed turn records
    (plus a few milliseconds) into a run. Start-up kills also fire at the first turn
    record, so they let no more than one burst of commits through. Turn kills share the
    remaining turns out so that they reach the upper levels too, but one never lets the
    last ``TURN_RESERVE`` turns through; with fewer left than that, every kill lands
    while the interpreter is still starting.
    """

    FRESH_HOME_KILLS = 3
    DECK = ("early",) * 5 + ("late",) * 3 + ("turns",) * 9
    # More than the records one burst of concurrent commits and the settling time add.
    TURN_RESERVE = 16

    def __init__(self, rng: random.Random, startup_s: float, total_turns: int) -> None:
        self._rng = rng
        self._startup_s = startup_s
        self._total_turns = total_turns
        self._fresh_home_kills = self.FRESH_HOME_KILLS
        self._deck = list(self.DECK)
        rng.shuffle(self._deck)

    def next(self, before: Progress) -> Trigger:
        rng, startup_s = self._rng, self._startup_s
        if self._fresh_home_kills:
            self._fresh_home_kills -= 1
            return before_turns(before, rng.uniform(0.3, 1.0) * startup_s)
        kind = self._deck.pop() if self._deck else "early"
        remaining = self._total_turns - len(before.completed_turns)
        if remaining <= self.TURN_RESERVE:
            return before_turns(before, rng.uniform(0.05, 0.3))
        if kind == "turns":
            share = remaining // (self._deck.count("turns") + 3)
            share = min(share, remaining - self.TURN_RESERVE)
            count = rng.randint(max(1, share // 2), max(1, share))
            return after_turn_records(before, count, settle_s=rng.uniform(0.0, 0.04))
        if kind == "late":
            return before_turns(before, rng.uniform(0.4, 1.0) * startup_s)
        return before_turns(before, rng.uniform(0.05, 0.4) * startup_s)


@pytest.mark.slow
@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_sigkill_at_random_points_then_plain_reruns_lose_and_repeat_nothing(tmp_path):
    tree = tmp_path / "tree"
    generate_tree(tree, directories=DIRECTORIES, fanout=FANOUT)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    reference = WfHome(tmp_path / "reference", PROVIDER_ENV)
    crashed = WfHome(tmp_path / "crashed", PROVIDER_ENV)

    reference_run, timeline = timed_run(
        reference.start_run(WORKFLOW, tree, cwd), lambda: progress(reference, tree)
    )
    assert reference_run.returncode == 0, reference_run.stderr[-3000:]

    kills = _kill_repeatedly(crashed, tree, cwd, timeline.startup_s)
    phases = Counter(kill.phase for kill in kills if kill.interrupted_work)
    print(f"\ncrash safety, seed {SEED}, reference run {timeline.total_s:.1f}s:")
    for number, kill in enumerate(kills, 1):
        print(
            f"run {number:2d}: {kill.trigger:<32} {'killed' if kill.killed else 'finished'} "
            f"at {kill.outcome.seconds:5.2f}s in {kill.phase:<24} turn records "
            f"{kill.before.turn_records:3d}->{kill.after.turn_records:3d}, "
            f"threads done {kill.after.completed_threads:2d}, READMEs {kill.after.readmes:2d}"
        )
    assert sum(k.interrupted_work for k in kills) >= MIN_KILLS
    # The kills really were spread over the phases of a run.
    assert phases["start-up, scan and plan"] >= 2, phases
    assert phases["turns"] >= 5, phases
    assert phases["readme writing"] >= 1, phases

    final = run_to_completion(crashed.start_run(WORKFLOW, tree, cwd))
    assert final.returncode == 0, final.stderr[-3000:]
    again = run_to_completion(crashed.start_run(WORKFLOW, tree, cwd))
    assert again.returncode == 0, again.stderr[-3000:]
    # Nothing was left over for a further run: every thread reused, no provider call.
    summary = json.loads(again.stdout)
    assert summary["provider_calls"] == 0
    assert summary["threads_reused"] == DIRECTORIES

    _assert_records_consistent(crashed)
    _assert_no_provider_call_after_completion(crashed)
    cas_report = _assert_cas_intact(crashed)
    reference_cas_report = _assert_cas_intact(reference)
    _assert_same_results(crashed, reference, tree)
    dagster_report = _assert_dagster_usable(crashed, summary)
    # Helpers a killed run had started (Dagster's compute log mirroring) went away with it.
    lingering = outliving_processes([kill.outcome.session_id for kill in kills if kill.killed])
    assert not lingering, lingering
    # Last: opening a database writably replays a killed writer's journal, as the next run would.
    for db in sqlite_files(crashed.home):
        assert integrity(db) == "ok", db
    print(
        f"{sum(k.interrupted_work for k in kills)} kills interrupted unfinished work {dict(phases)}; "
        f"crashed home {cas_report}; reference home {reference_cas_report}; "
        f"README temporary files left by kills: {sum(k.after.readme_temp_files for k in kills)}, "
        f"all removed by later writes; {dagster_report}"
    )


def _kill_repeatedly(home: WfHome, tree: Path, cwd: Path, startup_s: float) -> list[Kill]:
    """Start ``wf run`` and SIGKILL it, again and again, until enough kills hit unfinished work.

    Each run is the same plain command; nothing is repaired or reset between runs.
    """
    rng = random.Random(SEED)
    schedule = KillSchedule(rng, startup_s, total_turns=DIRECTORIES * len(TURNS))
    kills: list[Kill] = []
    readme_attempts = 0
    before = progress(home, tree, with_turns=True)
    while len(kills) < MAX_RUNS:
        if before.completed_threads == DIRECTORIES and before.readmes == DIRECTORIES:
            break  # nothing left to interrupt
        if sum(kill.interrupted_work for kill in kills) < MIN_KILLS:
            trigger = schedule.next(before)
        elif readme_attempts < README_PHASE_ATTEMPTS:
            readme_attempts += 1
            trigger = at_readme_writing(before)
        else:
            break
        outcome = run_until(home.start_run(WORKFLOW, tree, cwd), trigger, lambda: progress(home, tree))
        if not outcome.killed:
            # A run that beat its kill must have finished cleanly.
            assert outcome.returncode == 0, (outcome.trigger, outcome.stderr[-3000:])
        after = progress(home, tree, with_turns=True)
        _assert_completed_turns_kept(before, after)
        kills.append(
            Kill(
                outcome.trigger,
                outcome.killed,
                _phase(before, after, DIRECTORIES),
                before,
                after,
                outcome,
            )
        )
        before = after
    return kills


def _assert_completed_turns_kept(before: Progress, after: Progress) -> None:
    """A plain rerun picks up where the crash left off: completed turns are never redone or lost."""
    assert set(before.thread_created) <= set(after.thread_created), "thread records disappeared"
    assert all(after.thread_created[t] == created for t, created in before.thread_created.items()), (
        "a thread record was created anew"
    )
    lost = set(before.completed_turns) - set(after.completed_turns)
    assert not lost, f"{len(lost)} completed turn records disappeared"
    rewritten = [tid for tid, row in before.completed_turns.items() if after.completed_turns[tid] != row]
    assert not rewritten, f"{len(rewritten)} completed turn records were rewritten by a later run"


def _assert_records_consistent(home: WfHome) -> None:
    with home_store(home.home) as cas:
        _assert_records_consistent_in(home, cas)


def _assert_records_consistent_in(home: WfHome, cas) -> None:
    records = open_record_store(home.records_url)
    try:
        threads = records.list_threads(WORKFLOW)
        assert len(threads) == DIRECTORIES
        assert len({t.target_key for t in threads}) == DIRECTORIES
        for thread in threads:
            assert thread.status == "completed", (thread.target_path, thread.status)
            assert thread.thread_id.startswith("thread:")
            _assert_thread_records(records, cas, thread)
    finally:
        records.close()


def _assert_thread_records(records, cas, thread) -> None:
    thread_id = thread.thread_id
    turns = records.turns_for_thread(thread_id)
    gates = records.gates_for_thread(thread_id)
    links = records.prompt_links_for_thread(thread_id)
    artifact_links = records.artifact_links_for_thread(thread_id)
    gates_by_attempt = {(g.turn_id, g.attempt): g for g in gates}
    links_by_id = {link.prompt_link_id: link for link in links}
    assert len(gates_by_attempt) == len(gates), "duplicate gate records"
    assert {t.turn_id for t in turns} == set(TURNS)
    for turn_id in TURNS:
        attempts = [t for t in turns if t.turn_id == turn_id]
        numbers = [t.attempt for t in attempts]
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), (thread.target_path, turn_id, numbers)
        completed = [t for t in attempts if t.status == "completed"]
        assert len(completed) == 1, (thread.target_path, turn_id, [t.status for t in attempts])
        assert completed[0].attempt == max(numbers)  # nothing ran after the turn completed
        for turn in attempts:
            assert turn.turn_record_id == turn_record_id_for(WORKFLOW, thread_id, turn_id, turn.attempt)
            link_id = prompt_link_id_for(WORKFLOW, thread_id, turn_id, turn.attempt)
            assert link_id in links_by_id, (thread.target_path, turn_id, turn.attempt)
            assert links_by_id[link_id].node_id == thread.target_node_id
            assert links_by_id[link_id].frame_id == thread.target_frame_id
        turn = completed[0]
        gate = gates_by_attempt.get((turn_id, turn.attempt))
        assert gate is not None, (thread.target_path, turn_id)
        assert gate.gate_record_id == gate_record_id_for(WORKFLOW, thread_id, turn_id, turn.attempt)
        assert (gate.gate_id, gate.outcome) == (GATES[turn_id], "pass")
        assert turn.output_artifact_id is not None and cas.exists(turn.output_artifact_id)
        outputs = [
            a for a in artifact_links if (a.turn_id, a.attempt, a.role) == (turn_id, turn.attempt, "output")
        ]
        assert [a.artifact_id for a in outputs] == [turn.output_artifact_id]
    # Every thread saw one context snapshot, shared by all of its prompt links that carry one.
    assert len({link.context_artifact_id for link in links if link.context_artifact_id}) == 1
    for link in artifact_links:
        assert link.artifact_link_id == artifact_link_id_for(
            thread_id, link.turn_id, link.attempt, link.role, link.artifact_id
        )
        assert cas.size(link.artifact_id) == link.size
    final = next(t for t in turns if t.turn_id == TURNS[-1] and t.status == "completed")
    frame = records.head_frame(thread.target_node_id, FRAME_TYPE)
    assert frame is not None and frame.artifact_id == final.output_artifact_id
    assert frame.frame_id == frame_id_for(thread.target_node_id, FRAME_TYPE, final.output_artifact_id)
    assert frame.metadata["prompt_link_id"] == prompt_link_id_for(
        WORKFLOW, thread_id, TURNS[-1], final.attempt
    )


def _assert_no_provider_call_after_completion(home: WfHome) -> None:
    """Once a turn completed, no attempt of it reached the provider again."""
    records = open_record_store(home.records_url)
    try:
        for thread in records.list_threads(WORKFLOW):
            turns = records.turns_for_thread(thread.thread_id)
            for turn_id in TURNS:
                done = next(t for t in turns if t.turn_id == turn_id and t.status == "completed")
                later_calls = [
                    t
                    for t in turns
                    if t.turn_id == turn_id
                    and t.provider_called
                    and t.turn_record_id != done.turn_record_id
                    and t.started_at_ms >= done.ended_at_ms
                ]
                assert not later_calls, (thread.target_path, turn_id, [t.attempt for t in later_calls])
    finally:
        records.close()


def _referenced_ids(home: WfHome) -> set[str]:
    records = open_record_store(home.records_url)
    try:
        return records.referenced_artifact_ids()
    finally:
        records.close()


def _assert_cas_intact(home: WfHome) -> str:
    """Every object hashes to its name, nothing referenced is missing; scratch stays in tmp/."""
    with home_store(home.home) as cas:
        return _cas_intact_in(home, cas)


def _cas_intact_in(home: WfHome, cas) -> str:
    objects_dir = home.cas_root / "objects"
    stored = list(cas.iter_artifact_ids())
    for artifact_id in stored:
        cas.get(artifact_id)  # raises CAS_DIGEST_MISMATCH on a torn or truncated object
    on_disk = [p for p in objects_dir.rglob("*") if p.is_file()]
    assert len(on_disk) == len(stored), sorted(
        p.relative_to(objects_dir).as_posix() for p in on_disk if not p.name.isalnum()
    )
    referenced = _referenced_ids(home)
    missing = referenced - set(stored)
    assert not missing, sorted(missing)
    scratch = [p for p in (home.cas_root / "tmp").glob("*") if p.is_file()]
    assert all(p.name.endswith(".part") for p in scratch), [p.name for p in scratch]
    orphans = len(set(stored) - referenced)
    return f"{len(stored)} CAS objects verified, {orphans} referenced by no record, {len(scratch)} .part scratch files"


def _assert_same_results(crashed: WfHome, reference: WfHome, tree: Path) -> None:
    """Byte-identical outputs, and the same artifact for every turn of every thread."""
    crashed_files = files_under(crashed.out_dir(tree))
    reference_files = files_under(reference.out_dir(tree))
    assert len(reference_files) == DIRECTORIES
    assert sorted(crashed_files) == sorted(reference_files)  # no leftover temporary files either
    for name, data in reference_files.items():
        assert crashed_files[name] == data, name
    # No extra attempt either: a kill mid-turn leaves no record, the rerun reuses its number.
    assert _outputs_by_turn(crashed) == _outputs_by_turn(reference)


def _outputs_by_turn(home: WfHome) -> dict[tuple[str, str, int], tuple]:
    """(target, turn, attempt) -> status, output and inputs, for every turn record."""
    records = open_record_store(home.records_url)
    try:
        return {
            (thread.target_key, turn.turn_id, turn.attempt): (
                turn.status,
                turn.output_artifact_id,
                turn.input_artifact_ids,
            )
            for thread in records.list_threads(WORKFLOW)
            for turn in records.turns_for_thread(thread.thread_id)
        }
    finally:
        records.close()


def _assert_dagster_usable(home: WfHome, summary: dict) -> str:
    """The instance still opens and answers, and its partitions cover the tree, deepest first.

    A run killed by SIGKILL is marked failed by the next open of the instance (its
    process is gone), tagged ``wf/process_ended``; nothing stays NOT_STARTED or STARTED.
    """
    keys = [thread["target"] for thread in summary["threads"]]
    instance = DagsterInstance.from_config(str(home.dagster_home))
    try:
        records = instance.get_run_records()
        statuses = Counter(record.dagster_run.status for record in records)
        assert set(statuses) <= {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE}, statuses
        failed = [r.dagster_run for r in records if r.dagster_run.status == DagsterRunStatus.FAILURE]
        assert all(run.tags.get("wf/process_ended") == "true" for run in failed), [run.tags for run in failed]
        partitions = instance.get_dynamic_partitions(PARTITIONS)
    finally:
        instance.dispose()
    assert sorted(partitions) == sorted(keys)
    depth = {key: key.count("/") for key in keys}
    # Deepest first: each depth level is one contiguous partition range.
    assert [depth[key] for key in partitions] == sorted((depth[key] for key in partitions), reverse=True)
    gaps = dagster_partition_gaps(home, keys)
    assert not gaps, gaps
    return (
        f"Dagster: {statuses[DagsterRunStatus.SUCCESS]} runs succeeded, "
        f"{statuses[DagsterRunStatus.FAILURE]} killed runs marked failed; "
        f"(asset, partition) pairs never materialized or shown in progress for good: "
        f"{sum(len(missing) for missing in gaps.values())}"
    )


def dagster_partition_gaps(home: WfHome, keys: list[str]) -> dict[str, set[str]]:
    """Per turn asset, the partitions Dagster shows as never materialized or as in progress
    for good (their latest attempt belongs to a killed run that will never finish)."""
    instance = DagsterInstance.from_config(str(home.dagster_home))
    try:
        unfinished = {
            record.dagster_run.run_id
            for record in instance.get_run_records()
            if record.dagster_run.status in KILLED_RUN_STATUSES
            or record.dagster_run.tags.get("wf/process_ended") == "true"
        }
        gaps = {}
        for output_type in OUTPUT_TYPES:
            asset_key = AssetKey([WORKFLOW, output_type])
            missing = set(keys) - instance.get_materialized_partitions(asset_key)
            attempts = instance.event_log_storage.get_latest_asset_partition_materialization_attempts_without_materializations(
                asset_key
            )
            missing |= {key for key, (run_id, _) in attempts.items() if run_id in unfinished}
            if missing:
                gaps[output_type] = missing
        return gaps
    finally:
        instance.dispose()


@pytest.mark.slow
@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_a_level_killed_after_its_last_turn_committed_is_materialized_by_the_next_run(tmp_path):
    """Records committed, Dagster not told yet: the rerun must still record the level's outputs."""
    tree = tmp_path / "tree"
    generate_tree(tree, directories=4, fanout=3)  # the root and three leaves: two levels
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    leaves = 3
    for attempt in range(5):
        home = WfHome(tmp_path / f"home{attempt}", PROVIDER_ENV)
        start = progress(home, tree)
        outcome = run_until(
            home.start_run(WORKFLOW, tree, cwd),
            after_threads_completed(start, leaves),
            partial(progress, home, tree),
        )
        instance = DagsterInstance.from_config(str(home.dagster_home))
        try:
            final_asset = AssetKey([WORKFLOW, OUTPUT_TYPES[-1]])
            recorded = instance.get_materialized_partitions(final_asset)
        finally:
            instance.dispose()
        # The kill must land after the leaves' last records and before Dagster recorded them.
        if outcome.killed and progress(home, tree).completed_threads == leaves and not recorded:
            break
    else:
        pytest.fail("no kill landed between the level's last turn records and its materialization")

    rerun = run_to_completion(home.start_run(WORKFLOW, tree, cwd))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout)
    assert summary["provider_calls"] == len(TURNS)  # the root's turns only: the leaves were done
    keys = [thread["target"] for thread in summary["threads"]]
    assert dagster_partition_gaps(home, keys) == {}


@pytest.mark.slow
@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_a_first_run_killed_while_dagster_creates_its_storage_leaves_later_runs_working(tmp_path):
    tree = tmp_path / "tree"
    generate_tree(tree, directories=2, fanout=1)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for attempt in range(5):
        home = WfHome(tmp_path / f"home{attempt}", PROVIDER_ENV)
        index = home.dagster_home / "history" / "runs" / "index.db"
        outcome = run_until(
            home.start_run(WORKFLOW, tree, cwd), when_file_exists(index), partial(progress, home, tree)
        )
        # The kill must find the index database created and still without its tables.
        if outcome.killed and index.exists() and not table_names(index):
            break
    else:
        pytest.fail("no kill landed between the index database's creation and its tables")

    rerun = run_to_completion(home.start_run(WORKFLOW, tree, cwd))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads(rerun.stdout)["provider_calls"] == 2 * len(TURNS)


# A README writer that stops right before its rename (what a kill mid-write looks like).
_STALLED_WRITER = """
import os, sys, time
from types import SimpleNamespace
from pathlib import Path
from wf_pipeline.cas import open_cas
from wf_pipeline.compiler import open_instance
from wf_pipeline.settings import Settings
from wf_pipeline.runtime import sinks
from wf_pipeline.workflows.docs_writer.sink import write_readme

def stall(*args):
    print("stalled", flush=True)
    time.sleep(600)

sinks.os.replace = stall
env = SimpleNamespace(cas=open_cas(sys.argv[1]), warned=set())
write_readme(env, sys.argv[2], Path(sys.argv[3]), overwrite=True)
"""


def _stalled_writer(cas_url: str, artifact_id: str, destination: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _STALLED_WRITER, cas_url, artifact_id, str(destination)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "stalled"
    return process


def test_a_readme_write_killed_before_its_rename_leaves_no_file_once_written_again(tmp_path):
    cas = open_cas((tmp_path / "cas").as_uri())
    old = cas.put_text("# Old\n")
    new = cas.put_text("# New\n")
    destination = tmp_path / "out" / "pkg" / "README.md"
    destination.parent.mkdir(parents=True)
    destination.write_bytes(cas.get(old.artifact_id))

    killed = _stalled_writer(cas.url, new.artifact_id, destination)
    killed.kill()
    killed.wait()
    abandoned = sorted(destination.parent.glob(".README.md.*.tmp"))
    assert len(abandoned) == 1  # the kill left the writer's temporary file behind
    assert destination.read_bytes() == cas.get(old.artifact_id)  # and never a half-written README
    live = _stalled_writer(cas.url, new.artifact_id, destination)
    try:
        in_progress = set(destination.parent.glob(".README.md.*.tmp")) - set(abandoned)
        assert (
            write_readme(SimpleNamespace(cas=cas, warned=set()), new.artifact_id, destination, overwrite=True)
            == destination
        )
        assert destination.read_bytes() == cas.get(new.artifact_id)
        # The dead writer's file is gone; the one a live process still holds is left to it.
        assert set(destination.parent.glob(".README.md.*.tmp")) == in_progress
        assert len(in_progress) == 1
    finally:
        live.kill()
        live.wait()
