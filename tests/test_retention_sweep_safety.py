"""Destructive sweeps as users run them: concurrent applies, unloadable profiles, effective windows.

Real `wf` processes over an isolated home; the fixture is a synthetic workload of completed
docs-writer threads dated 60 days ago, past the built-in docs_family windows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import record_store_location
from e2e_support import REPO_ROOT, with_profile_keys

from wf_pipeline.cas import open_cas
from wf_pipeline.crypto.managers import new_master_key_text
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.records import open_record_store
from wf_pipeline.retention.synthetic import write_workload
from wf_pipeline.service.telemetry import query_telemetry
from wf_pipeline.settings import Settings

WF = REPO_ROOT / ".venv" / "bin" / "wf"
WORKFLOW = "docs_writer_thread_v1"
DAY_MS = 86_400_000

pytestmark = pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")


def wf_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update(WF_HOME=str(home), WF_CONFIG_DIR=str(home / "user-config"))
    return env


def seeded_home(tmp_path: Path, threads: int, **shared: str) -> tuple[Settings, int]:
    """A home with ``threads`` expired threads; returns its settings and the artifacts due.

    ``shared``: more WF_ variables (a PostgreSQL record store and a CAS other homes use).
    """
    home = tmp_path / "home"
    values = {"WF_HOME": str(home), "WF_CONFIG_DIR": str(home / "user-config"), **shared}
    settings = Settings.from_env(values)
    settings.ensure_dirs()
    records = open_record_store(settings.records_url, schema=settings.records_schema)
    cas = open_cas(settings.cas_url)
    try:
        workload = write_workload(
            records, cas, workflow_id=WORKFLOW, threads=threads, created_at_ms=now_ms() - 60 * DAY_MS
        )
    finally:
        records.close()
        cas.close()
    # Every context and render, plus the system prompt every turn shares.
    return settings, len(workload.contexts) + len(workload.renders) + 1


def workspace(tmp_path: Path, retention_lines: str | None = None) -> Path:
    """A workspace layer: the built-in profile copied, with ``retention_lines`` added to its block."""
    root = tmp_path / "ws"
    (root / "profiles").mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "assets" / "prompts", root / "assets" / "prompts")
    text = (REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8")
    if retention_lines is not None:
        text = with_profile_keys(text, "retention", retention_lines)
    (root / "profiles" / f"{WORKFLOW}.yaml").write_text(text, encoding="utf-8")
    return root


def expired_rows(settings: Settings) -> int:
    result = query_telemetry(settings, "select count(*) from artifact_writes where outcome = 'expired'")
    return int(result["rows"][0][0])


def test_two_concurrent_applies_count_and_emit_each_deletion_once(tmp_path) -> None:
    settings, due = seeded_home(tmp_path, threads=1_500)
    cwd = workspace(tmp_path)
    env = wf_env(settings.home)
    procs = [
        subprocess.Popen(
            [str(WF), "retention", "apply", "--json"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err + out
        results.append(json.loads(out))

    assert sum(r["deleted"] for r in results) == due
    assert sum(r["tombstones_written"] for r in results) == due
    # One sweep did everything; the one that waited found nothing due.
    assert sorted(r["deleted"] for r in results) == [0, due]
    total_bytes = sum(r["bytes_freed"] for r in results)
    assert total_bytes == max(r["bytes_freed"] for r in results) > 0
    assert expired_rows(settings) == due
    records = open_record_store(settings.records_url)
    try:
        assert len(records.list_tombstones()) == due
    finally:
        records.close()


@pytest.mark.postgres
def test_two_homes_sharing_a_postgres_store_sweep_one_at_a_time(tmp_path) -> None:
    # Two machines: each its own WF_HOME (so its own file lock), one record store, one CAS.
    with record_store_location("postgres", tmp_path) as target:
        shared = {
            "WF_RECORDS_URL": target.url,
            "WF_RECORDS_SCHEMA": target.schema or "",
            "WF_CAS_URL": (tmp_path / "shared-cas").as_uri(),
            # Homes sharing a record store share its keyring's master key.
            "WF_MASTER_KEY": new_master_key_text(),
        }
        settings, due = seeded_home(tmp_path, threads=1_000, **shared)
        cwd = workspace(tmp_path)
        procs = []
        for name in ("machine-a", "machine-b"):
            env = {**wf_env(tmp_path / name), **shared}
            procs.append(
                subprocess.Popen(
                    [str(WF), "retention", "apply", "--json"],
                    cwd=cwd,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err + out
            results.append(json.loads(out))
        assert sorted(r["deleted"] for r in results) == [0, due]
        assert sum(r["tombstones_written"] for r in results) == due
        records = open_record_store(target.url, schema=target.schema)
        try:
            assert len(records.list_tombstones()) == due
        finally:
            records.close()


def test_apply_and_compact_refuse_while_a_workspace_profile_fails_to_load(tmp_path) -> None:
    settings, due = seeded_home(tmp_path, threads=20)
    cwd = workspace(tmp_path, "  prompt_render: 30dd\n")
    env = wf_env(settings.home)

    plan = subprocess.run(
        [str(WF), "retention", "plan", "--json"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["apply_refused"] is True
    assert [p["code"] for p in planned["problems"]] == ["PROFILE_RETENTION_INVALID"]
    assert planned["problems"][0]["path"].endswith(f"{WORKFLOW}.yaml")

    applied = subprocess.run(
        [str(WF), "retention", "apply", "--json"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert applied.returncode == 1, applied.stdout
    error = json.loads(applied.stdout)["error"]
    assert error["code"] == "RETENTION_POLICY_UNAVAILABLE"
    assert error["details"]["codes"] == ["PROFILE_RETENTION_INVALID"]
    assert error["details"]["files"][0].endswith(f"{WORKFLOW}.yaml")
    plain = subprocess.run([str(WF), "retention", "apply"], cwd=cwd, env=env, capture_output=True, text=True)
    assert plain.returncode == 1
    assert plain.stderr.startswith("RETENTION_POLICY_UNAVAILABLE: "), plain.stderr
    assert "PROFILE_RETENTION_INVALID" in plain.stderr

    compacted = subprocess.run(
        [str(WF), "compact", "--json"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert compacted.returncode == 1, compacted.stdout
    assert json.loads(compacted.stdout)["error"]["code"] == "RETENTION_POLICY_UNAVAILABLE"

    # Nothing lost: no tombstone, every object still stored, no telemetry of deletions.
    records = open_record_store(settings.records_url)
    cas = open_cas(settings.cas_url)
    try:
        assert records.list_tombstones() == []
        assert sum(1 for _ in cas.iter_artifact_ids()) >= due
    finally:
        records.close()
        cas.close()

    # With the profile fixed, the same home sweeps what the plan said.
    fixed = workspace(tmp_path / "fixed")
    again = subprocess.run(
        [str(WF), "retention", "apply", "--json"], cwd=fixed, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["deleted"] == due


def test_plan_shows_each_workflows_effective_windows_and_grace(tmp_path) -> None:
    settings, _ = seeded_home(tmp_path, threads=1)
    cwd = workspace(tmp_path, "  prompt_render: 1s\n  context_payload: 1h\n")
    env = wf_env(settings.home)

    done = subprocess.run(
        [str(WF), "retention", "plan", "--json"], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["apply_refused"] is False and plan["problems"] == []
    (policy,) = [p for p in plan["policies"] if p["workflow_id"] == WORKFLOW]
    assert policy["source"] == f"{WORKFLOW}@workspace+preset:docs_family"
    assert policy["grace_ms"] == 0
    windows = {c["artifact_class"]: (c["window"], c["lifetime_ms"]) for c in policy["classes"]}
    assert windows["prompt_render"] == ("1s", 1_000)
    assert windows["context_payload"] == ("1h", 3_600_000)
    assert windows["output"] == ("forever", None)

    table = subprocess.run([str(WF), "retention", "plan"], cwd=cwd, env=env, capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "prompt_render" in line and "1s" in line)
    assert WORKFLOW in row and "0s" in row


def test_a_workspace_grace_still_applies_and_shows(tmp_path) -> None:
    settings, _ = seeded_home(tmp_path, threads=1)
    cwd = workspace(tmp_path, "  prompt_render: 1s\n  grace: 2h\n")
    done = subprocess.run(
        [str(WF), "retention", "plan", "--json"],
        cwd=cwd,
        env=wf_env(settings.home),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (policy,) = [p for p in json.loads(done.stdout)["policies"] if p["workflow_id"] == WORKFLOW]
    assert (policy["grace_ms"], policy["grace"]) == (7_200_000, "2h")
    lifetimes = {c["artifact_class"]: c["lifetime_ms"] for c in policy["classes"]}
    assert lifetimes["prompt_render"] == 1_000 + 7_200_000


def test_yaml_fixture_is_the_shipped_profile() -> None:
    # The workspace copies above add retention keys over the family base's block by text.
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    assert "retention" not in document and document["extends"] == ["docs_family"]
    base = yaml.safe_load((REPO_ROOT / "profiles" / "bases" / "docs_family.yaml").read_text(encoding="utf-8"))
    assert base["retention"] == {"preset": "docs_family"}
