"""End to end through the ``wf`` command: what a run reads stays inside the tree, at any depth.

- Symlinks that resolve outside the tree's root (to a file, to a directory) are skipped:
  no CAS object holds their bytes and no README mentions them, unless
  ``--follow-external-links`` opts in. A link loop and a dangling link are warnings, too.
- A tree 1,000 levels deep runs to completion (no recursion limit anywhere).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deep_tree_support import DEEP_LEVELS, make_deep_tree, remove_children
from e2e_support import REPO_ROOT, cas_plaintexts

WF = REPO_ROOT / ".venv" / "bin" / "wf"
WORKFLOW = "docs_writer_thread_v1"
RUN_TIMEOUT_S = 1800

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}"),
]


@pytest.fixture
def deep_tmp(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, emptied without recursion afterwards (pytest's clean-up recurses)."""
    yield tmp_path
    remove_children(tmp_path)


def wf(
    base: Path, *args: str, home: str = "wf-home", timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update(WF_HOME=str(base / home), WF_CONFIG_DIR=str(base / "user-config"))
    return subprocess.run(
        [str(WF), *args], cwd=base, env=env, capture_output=True, text=True, timeout=timeout
    )


def files_holding(folder: Path, needle: bytes) -> list[str]:
    """Where ``needle`` is found: files under ``folder``, or, for a home's CAS folder, artifacts.

    A CAS's objects rest sealed, so its artifacts are read through the home's keyring; a
    needle in a plaintext artifact is found either way.
    """
    found = [str(path) for path in folder.rglob("*") if path.is_file() and needle in path.read_bytes()]
    if folder.name == "cas" and (folder.parent / "records.db").exists():
        found += [aid for aid, data in cas_plaintexts(folder.parent).items() if needle in data]
    return found


@pytest.fixture
def linked_tree(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A tree with links out of it: to a file, to a directory, through an inside hop, plus a loop
    and a dangling link. Returns the root and the two markers that live only outside."""
    file_marker = f"OUTSIDE-FILE-{uuid.uuid4().hex}".encode()
    heading_marker = f"OUTSIDE-HEADING-{uuid.uuid4().hex}".encode()
    outside = tmp_path / "outside"
    (outside / "docs").mkdir(parents=True)
    (outside / "passwd").write_bytes(b"root:x:0:0:" + file_marker + b":/root:/bin/sh\n")
    (outside / "docs" / "guide.md").write_bytes(b"# " + heading_marker + b"\n\nSee " + file_marker + b".\n")
    (outside / "docs" / "tool.py").write_bytes(b'"""' + heading_marker + b'"""\n\n\ndef tool():\n    pass\n')
    root = tmp_path / "tree"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "core.py").write_text(
        '"""Core helpers."""\n\n\ndef run():\n    return 1\n', encoding="utf-8"
    )
    (root / "pkg" / "passwd").symlink_to(outside / "passwd")
    (root / "pkg" / "docs").symlink_to(outside / "docs")
    (root / "hop").symlink_to(outside / "docs")
    (root / "pkg" / "via_hop").symlink_to(root / "hop")
    (root / "pkg" / "inside.py").symlink_to(root / "pkg" / "core.py")  # inside: still read
    (root / "pkg" / "loop").symlink_to(root / "pkg" / "loop")
    (root / "pkg" / "dangling").symlink_to(root / "nowhere")
    return root, file_marker, heading_marker


def test_links_outside_the_tree_never_reach_the_cas_or_a_readme(tmp_path: Path, linked_tree) -> None:
    root, file_marker, heading_marker = linked_tree
    out = tmp_path / "out"
    result = wf(tmp_path, "run", WORKFLOW, str(root), "--out", str(out), "--json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    summary = json.loads(result.stdout)
    assert summary["threads"], summary
    # The run names every link it skipped.
    assert {(w["code"], w["path"]) for w in summary["warnings"]} >= {
        ("TREE_LINK_OUTSIDE_ROOT", "pkg/passwd"),
        ("TREE_LINK_OUTSIDE_ROOT", "pkg/docs"),
    }
    readmes = sorted(out.rglob("README.md"))
    assert readmes, "the run documented nothing"
    cas = tmp_path / "wf-home" / "cas"
    for marker in (file_marker, heading_marker):
        assert files_holding(cas, marker) == []
        assert files_holding(out, marker) == []
    # Nothing was written outside the tree or the output folder.
    assert sorted(p.name for p in (tmp_path / "outside").rglob("*")) == [
        "docs",
        "guide.md",
        "passwd",
        "tool.py",
    ]

    synced = wf(tmp_path, "targets", "sync", str(root))
    assert synced.returncode == 0, synced.stderr
    assert "TREE_LINK_OUTSIDE_ROOT: pkg/passwd: " in synced.stderr  # warnings on stderr
    scanned = wf(tmp_path, "scan", str(root))
    assert scanned.returncode == 0, scanned.stderr
    lines = scanned.stderr.splitlines()
    for link in ("pkg/passwd", "pkg/docs", "hop", "pkg/via_hop"):
        assert any(line.startswith(f"TREE_LINK_OUTSIDE_ROOT: {link}: ") for line in lines), lines
    assert any(line.startswith("TREE_SYMLINK_LOOP: pkg/loop: ") for line in lines), lines
    assert any(line.startswith("TREE_BROKEN_SYMLINK: pkg/dangling: ") for line in lines), lines
    as_json = json.loads(wf(tmp_path, "scan", str(root), "--json").stdout)
    assert {w["path"]: w["code"] for w in as_json["warnings"]} == {
        "hop": "TREE_LINK_OUTSIDE_ROOT",
        "pkg/dangling": "TREE_BROKEN_SYMLINK",
        "pkg/docs": "TREE_LINK_OUTSIDE_ROOT",
        "pkg/loop": "TREE_SYMLINK_LOOP",
        "pkg/passwd": "TREE_LINK_OUTSIDE_ROOT",
        "pkg/via_hop": "TREE_LINK_OUTSIDE_ROOT",
    }


def test_following_external_links_is_an_explicit_opt_in(tmp_path: Path, linked_tree) -> None:
    root, file_marker, heading_marker = linked_tree
    result = wf(
        tmp_path, "run", WORKFLOW, str(root), "--out", str(tmp_path / "out"), "--follow-external-links"
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    # With the opt-in the outside bytes are read, so the check above can see them.
    assert files_holding(tmp_path / "wf-home" / "cas", file_marker)
    assert files_holding(tmp_path / "wf-home" / "cas", heading_marker)
    scanned = wf(tmp_path, "scan", str(root), "--follow-external-links", "--json")
    codes = {w["code"] for w in json.loads(scanned.stdout)["warnings"]}
    assert "TREE_LINK_OUTSIDE_ROOT" not in codes


def test_every_turn_of_a_thousand_levels_runs_and_every_readme_is_written(
    deep_tmp: Path, monkeypatch
) -> None:
    """No recursion limit anywhere on the runtime's way: scan, targets, plans, contexts, turns,
    records, children's frames and the output sink, level by level, deepest first.

    The runtime is driven directly: `wf run` adds one Dagster run per depth level (about 3 s
    each here, so close to an hour for 1,001 levels), and the Dagster side is per level, not
    per depth, so the shallow end-to-end runs cover it.
    """
    from e2e_support import isolated_settings

    from wf_pipeline.compiler.launch.executors import load_profiles
    from wf_pipeline.compiler.launch.levels import depth_levels
    from wf_pipeline.runtime import RuntimeEnv, batch, plan_run, run_turn_batch, scan_workspace, summarize_run

    settings = isolated_settings(monkeypatch, deep_tmp / "wf-home")
    make_deep_tree(deep_tmp / "tree")
    catalog = load_profiles(settings, deep_tmp)
    loaded = catalog.get(WORKFLOW)
    with RuntimeEnv.open(settings, catalog=catalog) as env:
        scan = scan_workspace(env, loaded, deep_tmp / "tree")
        # Each batch would scan the whole tree again (4,004 scans of 2,001 nodes); the scan
        # itself is tested at this depth on its own, so the batches share this one.
        monkeypatch.setattr(batch, "_scans_by_root", lambda *_: {scan.root: scan})
        plan = plan_run(env, loaded, scan)
        assert len(plan.threads) == DEEP_LEVELS + 1
        for level in depth_levels(plan.threads):
            targets = [entry.target for entry in level]
            for turn in loaded.profile.ordered_turns():
                results = run_turn_batch(env, loaded, turn.turn_id, targets)
                assert {r.status for r in results.values()} == {"completed"}, results
        summary = summarize_run(env, plan, started_ms=0, dagster_run_ids=())
    assert summary.ok
    # os.path.exists, not Path.rglob or os.walk: both recurse on Python 3.11.
    assert all(t.output_path and os.path.exists(t.output_path) for t in summary.threads)


def test_sources_with_a_bom_or_a_coding_line_keep_their_api(tmp_path: Path) -> None:
    pkg = tmp_path / "tree" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "bom.py").write_bytes(
        b'\xef\xbb\xbf"""Helpers with a byte order mark."""\n\n\ndef bom_api_function(x):\n'
        b'    """Return x doubled."""\n    return 2 * x\n'
    )
    (pkg / "latin.py").write_bytes(
        '# -*- coding: latin-1 -*-\n"""Module latin: café."""\n\n\ndef latin_api_function():\n'
        '    """Say héllo."""\n    return "hé"\n'.encode("latin-1")
    )
    (pkg / ".gitignore").write_bytes(b"\xef\xbb\xbfgenerated/\n")
    (pkg / "generated").mkdir()
    (pkg / "generated" / "secret_table.py").write_text("def generated_only():\n    pass\n", encoding="utf-8")
    out = tmp_path / "out"
    result = wf(tmp_path, "run", WORKFLOW, str(tmp_path / "tree"), "--out", str(out), "--json")
    assert result.returncode == 0, (result.stdout, result.stderr)
    readme = (out / "pkg" / "README.md").read_text(encoding="utf-8")
    assert "bom_api_function" in readme
    assert "latin_api_function" in readme and "café" in readme
    assert "binary" not in readme
    # The ignored directory behind the BOM-prefixed .gitignore never reaches a prompt.
    assert files_holding(tmp_path / "wf-home" / "cas", b"generated_only") == []
