"""Chained workflows and agents end to end: a docs-writer backfill activates a second workflow on the
tree's root through the activation sensor (a real Dagster instance), once per upstream state; the
activation graph on the CLI; ``wf run --agent`` splits a tree's targets among the agent's workflows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from e2e_support import SAMPLE_REPO, WORKFLOW_ID, copy_tree, isolated_settings, workspace_layer

from wf_pipeline.compiler import build_definitions, job_name, open_instance
from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.compiler.sensors import ACTIVATED_BY_TAG, ACTIVATION_TAG, activation_sensor_name
from wf_pipeline.metadata.canonical import canonical_json, digest
from wf_pipeline.runtime import RuntimeEnv, target_key_for
from wf_pipeline.service import backfill, run_agent, sync_targets, workflow_graph

pytestmark = pytest.mark.slow
SECOND = "notes_copy_v1"


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


def _chained_workspace(parent: Path) -> Path:
    """A workspace whose docs writer activates a copy of itself (another workflow id) on the root."""
    workspace = workspace_layer(parent)
    source = workspace / "profiles" / f"{WORKFLOW_ID}.yaml"
    profile = yaml.safe_load(source.read_text())
    # The copy activates nothing: the chain under test is the docs writer's edge alone.
    copy = {**profile, "workflow_id": SECOND, "title": "Second workflow", "activates": []}
    (workspace / "profiles" / f"{SECOND}.yaml").write_text(yaml.safe_dump(copy))
    profile["activates"] = [{"workflow": SECOND, "when": "all_threads_completed", "target": "root"}]
    source.write_text(yaml.safe_dump(profile))
    return workspace


def _tick(settings, workspace: Path):
    from dagster import build_sensor_context

    catalog = load_profiles(settings, workspace)
    with RuntimeEnv.open(settings, catalog=catalog) as env:
        defs = build_definitions(catalog, env)
        sensor = defs.resolve_sensor_def(activation_sensor_name(WORKFLOW_ID))
        instance = open_instance(settings)
        # With the instance's ref, Dagster checks the requested partition as its daemon does.
        with build_sensor_context(
            instance=instance, instance_ref=instance.get_ref(), definitions=defs
        ) as context:
            return sensor.evaluate_tick(context)


def _activations(settings):
    with RuntimeEnv.open(settings) as env:
        return env.records.list_activations(WORKFLOW_ID)


def test_a_backfill_of_a_tree_activates_the_second_workflow_on_its_root_once(settings, tmp_path):
    workspace = _chained_workspace(tmp_path)
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    sync_targets(settings, WORKFLOW_ID, tree, workspace_dir=workspace)

    # Registered but not documented yet: the condition does not hold.
    assert not _tick(settings, workspace).run_requests
    assert _activations(settings) == []

    summary = backfill(settings, WORKFLOW_ID, tree, workspace_dir=workspace)
    assert summary.ok and len(summary.threads) == 3
    result = _tick(settings, workspace)
    (request,) = result.run_requests
    root_key = target_key_for(tree.resolve(), ".")
    assert request.job_name == job_name(SECOND)
    assert request.partition_key == root_key
    assert request.tags[ACTIVATED_BY_TAG] == WORKFLOW_ID
    # The root's partition is added to the activated workflow's partitions with the request.
    (added,) = result.dynamic_partitions_requests
    assert added.partitions_def_name == f"{SECOND}_targets" and list(added.partition_keys) == [root_key]

    (record,) = _activations(settings)
    threads = sorted(t.thread_id for t in summary.threads)
    assert record.activation_id == request.run_key == request.tags[ACTIVATION_TAG]
    assert record.target_workflow_id == SECOND and record.target_key == root_key
    assert list(record.thread_ids) == threads
    assert record.threads_digest == digest(canonical_json(threads))

    # A second tick on the same upstream state launches nothing again.
    assert not _tick(settings, workspace).run_requests
    assert len(_activations(settings)) == 1

    # An edit gives new upstream threads: once they complete, the tree is activated again.
    edited = tree / "sensors" / "base.py"
    edited.write_text(edited.read_text() + "\n# calibrated at start-up\n")
    assert backfill(settings, WORKFLOW_ID, tree, workspace_dir=workspace).ok
    (again,) = _tick(settings, workspace).run_requests
    assert again.run_key != request.run_key
    assert len(_activations(settings)) == 2


def test_a_verified_tree_replay_re_judges_the_activation_and_names_what_differs(
    settings, tmp_path, capsys, monkeypatch
):
    """`wf replay --tree --verify` recomputes the recorded activation with the sensor's functions: it
    matches on the state it was recorded on; after an edit it names the changed threads (and, until
    they are re-run, the condition that no longer holds) and exits 1; once the sensor records the new
    activation the replay matches again, the old one superseded."""
    from wf_pipeline.cli.main import main
    from wf_pipeline.service.replay import replay

    workspace = _chained_workspace(tmp_path)
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    summary = backfill(settings, WORKFLOW_ID, tree, workspace_dir=workspace)
    assert summary.ok
    assert len(_tick(settings, workspace).run_requests) == 1
    (old,) = _activations(settings)
    with RuntimeEnv.open(settings) as env:
        targets_before = sorted(t.model_dump_json() for t in env.records.list_targets())

    report = replay(settings, tree=tree, workflow_id=WORKFLOW_ID, verify=True, workspace_dir=workspace)
    assert report.matched and report.provider_calls == 0
    (judged,) = report.activations
    assert judged.matched and judged.record == old and judged.holds is True
    assert judged.actual_activation_id == old.activation_id and judged.actual_digest == old.threads_digest
    # Judging registered the tree's targets in a scratch store only.
    with RuntimeEnv.open(settings) as env:
        assert sorted(t.model_dump_json() for t in env.records.list_targets()) == targets_before

    # An edit not yet re-run: the edited directory and the root have new, pending threads.
    edited = tree / "sensors" / "base.py"
    edited.write_text(edited.read_text() + "\n# calibrated at start-up\n")
    monkeypatch.chdir(workspace)  # the CLI reads the workspace layer from the working directory
    assert main(["replay", "--tree", str(tree), "--workflow", WORKFLOW_ID, "--verify", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["activations"] == 1 and out["counts"]["activation_divergences"] == 1
    (diverged,) = out["activations"]
    recorded = {t.path: t.thread_id for t in summary.threads}
    changed = {d["detail"].split(":")[0].removeprefix("directory "): d for d in diverged["differences"][:-1]}
    assert diverged["activation_id"] == old.activation_id and diverged["artifact_class"] == "activation"
    assert diverged["expected"] == old.threads_digest and diverged["actual"] != old.threads_digest
    assert sorted(changed) == [".", "sensors"]
    assert {path: d["expected"] for path, d in changed.items()} == {p: recorded[p] for p in (".", "sensors")}
    assert {d["input"] for d in changed.values()} == {"thread_changed"}
    assert diverged["first_difference"] == diverged["differences"][0]
    condition = diverged["differences"][-1]
    assert (
        condition["input"] == "condition" and condition["expected"] is True and condition["actual"] is False
    )
    assert diverged["holds"] is False

    # Re-run: the condition holds again on the new threads, but the latest record is the old state's
    # (the sensor has not ticked): the replay names the threads that moved on and the id it would record.
    rerun = backfill(settings, WORKFLOW_ID, tree, workspace_dir=workspace)
    assert rerun.ok
    assert main(["replay", "--tree", str(tree), "--workflow", WORKFLOW_ID, "--verify"]) == 1
    text = capsys.readouterr().out
    assert f"{old.activation_id} {WORKFLOW_ID} -> {SECOND} (all_threads_completed): diverged" in text
    new_threads = {t.path: t.thread_id for t in rerun.threads}
    assert f"thread_changed {recorded['sensors']} -> {new_threads['sensors']}" in text
    assert "condition" not in text.split(old.activation_id, 1)[1]
    report = replay(settings, tree=tree, workflow_id=WORKFLOW_ID, verify=True, workspace_dir=workspace)
    assert all(t.matched for t in report.threads) and not report.matched
    (stale,) = report.activations
    assert stale.holds is True and stale.actual_digest == digest(canonical_json(sorted(new_threads.values())))

    # The sensor records the new activation: the replay judges it, the old one is history.
    (request,) = _tick(settings, workspace).run_requests
    report = replay(settings, tree=tree, workflow_id=WORKFLOW_ID, verify=True, workspace_dir=workspace)
    assert report.matched
    (current,) = report.activations
    assert current.record.activation_id == request.run_key == stale.actual_activation_id
    assert current.superseded == 1


def test_the_activation_graph_on_the_cli(settings, tmp_path, capsys, monkeypatch):
    from wf_pipeline.cli.main import main

    workspace = _chained_workspace(tmp_path)
    graph = workflow_graph(settings, workspace)
    assert graph["edges"] == [
        {"from": WORKFLOW_ID, "to": SECOND, "when": "all_threads_completed", "target": "root"}
    ]
    # The CLI reads the workspace layer from the working directory.
    monkeypatch.chdir(workspace)
    assert main(["workflows", "graph", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == graph
    assert main(["workflows", "graph", "--dot"]) == 0
    assert f'"{WORKFLOW_ID}" -> "{SECOND}"' in capsys.readouterr().out


def test_run_agent_runs_each_target_under_the_workflow_its_policy_selects(
    settings, tmp_path, capsys, monkeypatch
):
    workspace = _chained_workspace(tmp_path)
    (workspace / "agents").mkdir()
    agent = {
        "agent_id": "test_agent",
        "role": "docs for directories, the second workflow for the root",
        "provider": "offline",
        "bindings": [
            {"workflow": WORKFLOW_ID, "target": "directory", "priority": 0, "default": True},
            {"workflow": SECOND, "target": "root", "priority": 10},
        ],
    }
    (workspace / "agents" / "test_agent.yaml").write_text(yaml.safe_dump(agent))
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")

    result = run_agent(settings, "test_agent", tree, workspace_dir=workspace)
    assert result.plan.by_workflow == {WORKFLOW_ID: ("sensors", "storage"), SECOND: (".",)}
    # The workflow with the deepest targets runs first; each reports only its own targets.
    assert list(result.runs) == [WORKFLOW_ID, SECOND]
    docs = result.runs[WORKFLOW_ID]
    assert sorted(t.path for t in docs.threads) == ["sensors", "storage"]
    assert {t.status for t in docs.threads} == {"completed"}
    out = Path(docs.out_dir)
    assert sorted(p.relative_to(out).parent.as_posix() for p in out.rglob("README.md")) == [
        "sensors",
        "storage",
    ]
    (root_thread,) = result.runs[SECOND].threads
    assert root_thread.path == "."
    # The second workflow documents every directory bottom-up, so on the root alone its thread
    # waits for its own children's threads; a root-only workflow has none to wait for.
    assert root_thread.status == "pending" and len(result.runs[SECOND].dagster_run_ids) == 1
    with RuntimeEnv.open(settings) as env:
        assert {t.target_path for t in env.records.list_threads(WORKFLOW_ID)} == {"sensors", "storage"}

    # The CLI reports per workflow; a second run reuses the completed threads.
    from wf_pipeline.cli.main import main

    monkeypatch.chdir(workspace)
    assert main(["run", "--agent", "test_agent", str(tree), "--json"]) == 1  # the root thread still waits
    report = json.loads(capsys.readouterr().out)
    assert report["agent_id"] == "test_agent"
    assert report["workflows"] == {WORKFLOW_ID: ["sensors", "storage"], SECOND: ["."]}
    docs_run, second_run = report["runs"]
    assert docs_run["workflow_id"] == WORKFLOW_ID and docs_run["summary"]["threads_reused"] == 2
    assert [t["path"] for t in second_run["summary"]["threads"]] == ["."]


NOTES = "architecture_notes_v1"


def test_the_built_in_docs_writer_activates_the_architecture_notes_and_their_run_writes_them(
    settings, tmp_path
):
    """The shipped profiles alone: a docs-writer backfill, the activation sensor's tick on the real
    instance, then the requested run executed against that instance on the root partition."""
    from dagster import DagsterEventType, DagsterRunStatus, SkipReason, build_run_status_sensor_context

    from wf_pipeline.compiler import resolve_job

    workspace = tmp_path / "empty-workspace"  # no workspace layer: the built-in profiles
    workspace.mkdir()
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    summary = backfill(settings, WORKFLOW_ID, tree, workspace_dir=workspace)
    assert summary.ok and {t.status for t in summary.threads} == {"completed"}
    out = Path(summary.out_dir)
    assert not (out / "docs" / "ARCHITECTURE.md").exists()

    result = _tick(settings, workspace)
    (request,) = result.run_requests
    root_key = target_key_for(tree.resolve(), ".")
    assert request.job_name == job_name(NOTES) and request.partition_key == root_key
    assert request.tags[ACTIVATED_BY_TAG] == WORKFLOW_ID
    (added,) = result.dynamic_partitions_requests
    assert added.partitions_def_name == f"{NOTES}_targets" and list(added.partition_keys) == [root_key]

    # Execute the request as the daemon would: add the partition, run the job on it with the
    # request's run key and tags, against the same instance.
    instance = open_instance(settings)
    instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))
    catalog = load_profiles(settings, workspace)
    with RuntimeEnv.open(settings, catalog=catalog) as env:
        job = resolve_job(build_definitions(catalog, env), NOTES)
        executed = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags={**request.tags, "dagster/run_key": request.run_key},
            raise_on_error=False,
        )
    assert executed.success
    run = instance.get_run_by_id(executed.run_id)
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    assert run.tags[ACTIVATION_TAG] == request.run_key

    # The notes' thread on the root completed and wrote docs/ARCHITECTURE.md where the tree's outputs go.
    with RuntimeEnv.open(settings, catalog=catalog) as env:
        (thread,) = env.records.list_threads(NOTES)
        (record,) = env.records.list_activations(WORKFLOW_ID)
    assert thread.target_path == "." and thread.status == "completed"
    notes = out / "docs" / "ARCHITECTURE.md"
    assert notes.is_file() and notes.read_text(encoding="utf-8").startswith("# Architecture of stationkit\n")
    # The activation is durable: it names the run's key and the upstream threads.
    assert record.activation_id == request.run_key and record.target_workflow_id == NOTES
    assert list(record.thread_ids) == sorted(t.thread_id for t in summary.threads)

    # The notes' own thread is no upstream thread: a second tick requests nothing.
    assert not _tick(settings, workspace).run_requests
    assert len(_activations(settings)) == 1

    # Neither workflow's bottom-up sensor continues the activated run: the docs writer's sees no
    # asset of its own, the notes' finds its only target done.
    (success,) = instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_SUCCESS)
    with RuntimeEnv.open(settings, catalog=catalog) as env:
        defs = build_definitions(catalog, env)
        reasons = {}
        for workflow_id in (WORKFLOW_ID, NOTES):
            sensor = next(s for s in defs.sensors if s.name == f"{workflow_id}_bottom_up")
            context = build_run_status_sensor_context(
                sensor_name=sensor.name,
                dagster_event=success.dagster_event,
                dagster_instance=instance,
                dagster_run=run,
            )
            skipped = sensor(context)
            assert isinstance(skipped, SkipReason), workflow_id
            reasons[workflow_id] = skipped.skip_message
    assert reasons == {
        WORKFLOW_ID: f"run materialized no asset of {WORKFLOW_ID}",
        NOTES: "no directory is ready: the tree is done or waiting",
    }


def _wf(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    """The installed ``wf`` console script in its own process, every store under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update(WF_HOME=str(home), WF_CONFIG_DIR=str(home / "user-config"), DAGSTER_HOME=str(home / "dagster"))
    wf = Path(sys.executable).parent / "wf"
    return subprocess.run(
        [str(wf), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_built_in_docs_agent_documents_the_directories_and_the_root_architecture(tmp_path):
    """`wf run --agent docs_agent` on a copy of the sample repository, with the shipped agent and
    profiles only: the docs writer on every directory below the root, the notes on the root."""
    home = tmp_path / "home"
    cwd = tmp_path / "elsewhere"  # no workspace layer: the built-in agents and profiles
    cwd.mkdir()
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")

    listed = _wf(["agents", "list", "--json"], cwd, home)
    assert listed.returncode == 0, listed.stderr
    (agent,) = [a for a in json.loads(listed.stdout)["agents"] if a["agent_id"] == "docs_agent"]
    assert agent["layer"] == "builtin"
    graph = _wf(["workflows", "graph", "--dot"], cwd, home)
    assert graph.returncode == 0, graph.stderr
    assert f'"{WORKFLOW_ID}" -> "{NOTES}"' in graph.stdout

    completed = _wf(["run", "--agent", "docs_agent", str(tree), "--json"], cwd, home)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    # Every directory of the sample with something to document (web/static is git-ignored).
    directories = [
        "docs",
        "scripts",
        "stationkit",
        "stationkit/sensors",
        "stationkit/storage",
        "tests",
        "web",
    ]
    assert report["workflows"][NOTES] == ["."]
    assert sorted(report["workflows"][WORKFLOW_ID]) == directories
    # The docs writer ran first (the deepest targets), the notes last, each on its own targets.
    docs_run, notes_run = report["runs"]
    assert docs_run["workflow_id"] == WORKFLOW_ID and notes_run["workflow_id"] == NOTES
    assert sorted(t["path"] for t in docs_run["summary"]["threads"]) == directories
    assert [t["path"] for t in notes_run["summary"]["threads"]] == ["."]
    threads = docs_run["summary"]["threads"] + notes_run["summary"]["threads"]
    assert {t["status"] for t in threads} == {"completed"}

    out = Path(docs_run["summary"]["out_dir"])
    assert Path(notes_run["summary"]["out_dir"]) == out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.md"))
    assert written == sorted([f"{d}/README.md" for d in directories] + ["docs/ARCHITECTURE.md"])
    assert notes_run["summary"]["threads"][0]["output_path"] == str(out / "docs" / "ARCHITECTURE.md")
    assert (out / "docs" / "ARCHITECTURE.md").read_text().startswith("# Architecture of sample_repo\n")
