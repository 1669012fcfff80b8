"""`wf retention` as a user runs it: real processes, an isolated home, exit statuses and codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT

WF = REPO_ROOT / ".venv" / "bin" / "wf"
WORKFLOW = "docs_writer_thread_v1"

pytestmark = pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")


def wf(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update(WF_HOME=str(tmp_path / "home"), WF_CONFIG_DIR=str(tmp_path / "user-config"))
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    return subprocess.run([str(WF), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args",
    [
        ("retention", "hold"),
        ("retention", "hold", "thread:x", "--workflow", WORKFLOW),
        ("retention", "release", "--workflow", WORKFLOW, "--hold-id", "hold:x"),
        ("retention", "sweep"),
    ],
    ids=["no-scope", "two-scopes", "release-two-scopes", "unknown-action"],
)
def test_bad_command_lines_exit_2(tmp_path, args) -> None:
    result = wf(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: wf")


def test_plan_on_an_empty_home_and_a_workflow_hold_round_trip(tmp_path) -> None:
    plan = wf(tmp_path, "retention", "plan", "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["count"] == 0

    held = wf(tmp_path, "retention", "hold", "--workflow", WORKFLOW, "--reason", "case-7", "--json")
    assert held.returncode == 0, held.stderr
    hold = json.loads(held.stdout)
    assert (hold["workflow_id"], hold["reason"], hold["released_at_ms"]) == (WORKFLOW, "case-7", None)
    listed = json.loads(wf(tmp_path, "retention", "holds", "--json").stdout)
    assert [h["hold_id"] for h in listed] == [hold["hold_id"]]

    released = wf(tmp_path, "retention", "release", "--workflow", WORKFLOW, "--json")
    assert released.returncode == 0, released.stderr
    assert json.loads(released.stdout)[0]["released_at_ms"] is not None
    assert json.loads(wf(tmp_path, "retention", "holds", "--json").stdout) == []

    again = wf(tmp_path, "retention", "release", "--workflow", WORKFLOW)
    assert again.returncode == 1
    assert again.stderr.startswith("RETENTION_HOLD_NOT_FOUND: ")
    unknown = wf(tmp_path, "retention", "hold", "thread:nope")
    assert unknown.returncode == 1 and unknown.stderr.startswith("RETENTION_SCOPE_UNKNOWN: ")
