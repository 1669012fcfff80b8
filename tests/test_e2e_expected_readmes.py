"""`wf run docs_writer_thread_v1` on the sample tree writes exactly the checked-in READMEs.

The expected files under tests/expected/sample_repo/ were written by the release before the
docs writer moved into its own workflow package; any byte that differs is a behaviour change.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT, SAMPLE_REPO, WF_VARIABLES, copy_tree

WF = REPO_ROOT / ".venv" / "bin" / "wf"
EXPECTED = Path(__file__).resolve().parent / "expected" / "sample_repo"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}"),
]


def _files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def test_offline_run_writes_the_expected_readmes(tmp_path: Path) -> None:
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    out = tmp_path / "out"
    env = {name: value for name, value in os.environ.items() if name not in WF_VARIABLES}
    env |= {"WF_HOME": str(tmp_path / "home"), "WF_CONFIG_DIR": str(tmp_path / "home" / "user-config")}
    subprocess.run(
        [str(WF), "run", "docs_writer_thread_v1", str(tree), "--out", str(out), "--json"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    expected = _files(EXPECTED)
    assert len(expected) == 8
    written = _files(out)
    assert sorted(written) == sorted(expected)
    for name, data in expected.items():
        assert written[name] == data, name
