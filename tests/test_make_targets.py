"""make targets and .venv/bin/wf share one home, and `make dagster-ui` is quiet and stops whole.

Each test gives make a fresh HOME and no WF_HOME, as a new user has: the default home is
then $HOME/.wf for every command. Ctrl-C is a SIGINT to the terminal's foreground process
group, so the UI is started in a session of its own and the whole group is signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree

WF = REPO_ROOT / ".venv" / "bin" / "wf"
WORKFLOW = "docs_writer_thread_v1"
UI_START_TIMEOUT_S = 180
UI_STOP_TIMEOUT_S = 60

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}"),
]


def new_user_env(home: Path) -> dict[str, str]:
    """This environment as a new user's: a fresh HOME, no WF_ or DAGSTER_ setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WF_", "DAGSTER_"))}
    env["HOME"] = str(home)
    env.pop("MAKEFLAGS", None)
    return env


def test_make_run_and_the_readme_commands_share_the_default_home(tmp_path):
    home = tmp_path / "user"
    home.mkdir()
    env = new_user_env(home)

    made = subprocess.run(
        ["make", "run"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    assert f"outputs written under {home / '.wf' / 'out' / 'sample_repo'}" in made.stdout
    assert str(REPO_ROOT / ".wf") not in made.stdout

    # The README's next commands, with .venv/bin/wf: the same threads, nothing made again.
    listed = subprocess.run(
        [str(WF), "threads", "list", "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == 8
    again = subprocess.run(
        [str(WF), "run", WORKFLOW, "assets/sample_repo", "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["provider_calls"] == 0
    assert summary["threads_reused"] == 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _session_members(session_id: int) -> list[tuple[int, str]]:
    """Processes of a session, from /proc: (pid, command line)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[3]) == session_id and stat[0] != "Z":
                members.append((int(entry), Path(f"/proc/{entry}/cmdline").read_text().replace("\0", " ")))
        except (OSError, IndexError, ValueError):
            continue
    return members


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_make_dagster_ui_shows_the_cli_runs_warns_nothing_and_ctrl_c_stops_every_process(tmp_path):
    from dagster import DagsterInstance

    home = tmp_path / "user"
    home.mkdir()
    env = new_user_env(home)
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "sensors", tmp_path / "sensors")
    ran = subprocess.run(
        [str(WF), "run", WORKFLOW, str(tree), "--json"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr
    run_ids = set(json.loads(ran.stdout)["dagster_run_ids"])
    assert run_ids

    port = _free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        ui = subprocess.Popen(
            ["make", "dagster-ui", f"UI_ARGS=--port {port}"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + UI_START_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2).read()
                break
            except OSError:
                assert ui.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(1)
        shown = _graphql(port, "{ runsOrError { ... on Runs { results { runId } } } }")
        assert run_ids <= {run["runId"] for run in shown["data"]["runsOrError"]["results"]}
        started = _session_members(ui.pid)
        assert len(started) >= 3, started  # dg dev, the webserver, the daemon, code servers

        os.killpg(ui.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
        ui.wait(timeout=UI_STOP_TIMEOUT_S)
        deadline = time.monotonic() + 10
        while _session_members(ui.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _session_members(ui.pid) == [], (started, log.read_text()[-3000:])
    finally:
        if _session_members(ui.pid):
            os.killpg(ui.pid, signal.SIGKILL)

    output = log.read_text()
    assert "SupersessionWarning" not in output and "Warning" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    instance = DagsterInstance.from_config(str(home / ".wf" / "dagster"))
    try:
        assert instance.nux_enabled is False
        assert instance.telemetry_enabled is False
    finally:
        instance.dispose()
