"""``wf keys rewrap`` killed with SIGKILL mid-way resumes: run again, every data key ends under the
primary and still unwraps to the very key it held before (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from e2e_support import REPO_ROOT
from keys_support import artifact_ids, keyed_home, opened

WF = REPO_ROOT / ".venv" / "bin" / "wf"
KEYS = 20_000
PAGE = 40  # small pages: many commits, so the kill lands mid-way

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}"),
]


def _env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update({k: v for k, v in settings.secrets.items() if k.startswith(("WF_", "DAGSTER"))})
    return env


def _under(records, kek_id: str) -> int:
    return records.count_data_keys().get(kek_id, 0)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_killed_rewrap_resumes_and_every_key_still_unwraps(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with keyed_home(kind, monkeypatch, tmp_path / "home") as settings:
        ids = artifact_ids(KEYS)
        with opened(settings) as (records, keyring):
            # Rows claimed directly through the local manager: no CAS needed for key rows.
            originals: dict[str, bytes] = {}
            for start in range(0, KEYS, 5_000):
                made = keyring.data_keys_for_put(ids[start : start + 5_000], "context_payload")
                originals.update({a: key for a, (key, _) in made.items()})
            old = keyring.primary_kek("context_payload")
            (new,) = keyring.rotate(["context_payload"])
            assert keyring.keys_under_decrypt_only() == KEYS

            command = [str(WF), "keys", "rewrap", "--page", str(PAGE), "--json"]
            process = subprocess.Popen(
                command, env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            try:
                deadline = time.monotonic() + 120
                # Kill once a good part is moved, well before the end.
                while _under(records, old.kek_id) > KEYS * 3 // 4:
                    assert process.poll() is None, process.communicate()
                    assert time.monotonic() < deadline, "the rewrap made no progress"
                    time.sleep(0.02)
                os.kill(process.pid, signal.SIGKILL)
            finally:
                process.wait(timeout=60)
            assert process.returncode == -signal.SIGKILL
            left = _under(records, old.kek_id)
            assert 0 < left < KEYS  # killed mid-way: some moved, some not
            # Each finished page is whole: every key is under exactly one of the two KEKs.
            assert left + _under(records, new.kek_id) == KEYS

            again = subprocess.run(command, env=_env(settings), capture_output=True, text=True, timeout=300)
            assert again.returncode == 0, again.stderr
            result = json.loads(again.stdout)
            assert result["remaining"] == 0 and result["rewrapped"] == left

            assert keyring.keys_under_decrypt_only() == 0
            assert _under(records, new.kek_id) == KEYS
            # Every artifact stays readable: its data key unwraps through the keyring, unchanged.
            for artifact_id in ids:
                key, row = keyring.data_key_for_get(artifact_id)
                assert row.kek_id == new.kek_id
                assert key == originals[artifact_id]
