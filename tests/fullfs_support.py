"""A real, tiny, full file system for tests: a tmpfs mounted in a private mount namespace.

``unshare --user --map-root-user --mount`` gives the child process its own mount table
(Linux user and mount namespaces), so it can mount a tmpfs of a few KiB over a folder of
the test's tmp_path without root on the machine and without touching other processes.
Writes past its size fail with ENOSPC ("No space left on device"), exactly as on a full disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _namespace_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.skip(f"user and mount namespaces are not available: {probe.stderr.strip()}")
    return [unshare, "--user", "--map-root-user", "--mount"]


def run_on_full_fs(mountpoint: Path, size_kib: int, script: str, *, env: dict | None = None) -> dict:
    """Run ``script`` (Python) with a ``size_kib`` KiB tmpfs mounted at ``mountpoint``.

    The script prints one JSON object on its last line of stdout, which is returned.
    """
    mountpoint.mkdir(parents=True, exist_ok=True)
    shell = f'mount -t tmpfs -o size={size_kib}k tmpfs "$1" && exec "$2" -c "$3"'
    done = subprocess.run(
        [*_namespace_prefix(), "sh", "-c", shell, "sh", str(mountpoint), sys.executable, script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cli_on_full_fs(
    mountpoint: Path, size_kib: int, argv: list[str], *, env: dict
) -> tuple[int, str, str]:
    """Run ``wf <argv>`` with a ``size_kib`` KiB tmpfs at ``mountpoint``; (exit status, stdout, stderr)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    script = "import sys; from wf_pipeline.cli.main import main; sys.exit(main(sys.argv[1:]))"
    shell = f'mount -t tmpfs -o size={size_kib}k tmpfs "$1" && shift && exec "$@"'
    done = subprocess.run(
        [*_namespace_prefix(), "sh", "-c", shell, "sh", str(mountpoint), sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr
