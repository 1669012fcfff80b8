"""Shared set-up for tests that drive the Dagster UI: the webserver, the daemon and headless Chromium.

The browser is the system Chromium from Debian's packages; nothing is downloaded. Server
logs, screenshots and traces go to ``test-artifacts/ui/`` in the checkout for debugging.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT
from playwright.sync_api import BrowserContext, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
# Quiet, self-contained Chromium: no first-run UI, no background traffic, no update checks.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
UI_ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
VENV_BIN = Path(sys.executable).parent


def require_chromium() -> None:
    """Skip without the system Chromium; under CI its absence is a failure, not a skip."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get install chromium chromium-driver"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def isolated_environment(home: Path) -> dict[str, str]:
    """The process environment with every wf store, the Dagster instance and the user layer under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update(
        WF_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        WF_CONFIG_DIR=str(home / "user-config"),
        PYTHONUNBUFFERED="1",
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DagsterServices:
    """``dagster-webserver`` and ``dagster-daemon`` on the repository's workspace, one process group each.

    A process group holds the server, its code servers and the runs they launch, so
    stopping the group leaves nothing behind.
    """

    env: Mapping[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        commands = {
            "dagster-webserver": [
                str(VENV_BIN / "dagster-webserver"),
                *("-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)),
            ],
            "dagster-daemon": [str(VENV_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        }
        for name, command in commands.items():
            with open(self.log_path(name), "wb") as log:
                self.processes[name] = subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    env=dict(self.env),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def wait_until_serving(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise AssertionError(
            f"dagster-webserver not serving after {timeout_s}s:\n{self.log_tail('dagster-webserver')}"
        )

    def stop(self, grace_s: float = 20.0) -> None:
        for process in self.processes.values():
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Code servers and runs outlive their parent for a moment; nothing of the group may stay.
        for process in self.processes.values():
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            _signal_group(process.pid, signal.SIGKILL)
            if process.poll() is None:
                process.wait(timeout=10)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def launch_chromium(playwright: Playwright, user_data_dir: Path) -> BrowserContext:
    """A fresh headless Chromium profile; the first-visit newsletter prompt is dismissed whenever it shows."""
    context = playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=str(CHROMIUM),
        headless=True,
        args=list(CHROMIUM_ARGS),
        viewport={"width": 1600, "height": 1000},
    )
    context.set_default_timeout(30_000)
    return context


def dismiss_community_prompt(page: Page) -> None:
    """Dagster asks once per instance to join its community; the prompt covers whatever it lands on."""
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"),
        lambda: page.get_by_role("button", name="Skip").click(),
    )


@contextmanager
def traced_on_failure(context: BrowserContext, name: str) -> Iterator[None]:
    """Keep a screenshot and a Playwright trace of a failing UI test under test-artifacts/ui/."""
    UI_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context.tracing.start(screenshots=True, snapshots=True)
    try:
        yield
    except BaseException:
        try:
            for index, page in enumerate(context.pages):
                page.screenshot(path=str(UI_ARTIFACTS / f"{name}-failure-{index}.png"), full_page=True)
            context.tracing.stop(path=str(UI_ARTIFACTS / f"{name}-trace.zip"))
        except Exception:  # a dead browser must not hide the failure being reported
            pass
        raise
    context.tracing.stop()
