"""`wf run architecture_notes_v1` (offline) on this repository and on a copy of `rich`: the
docs/ARCHITECTURE.md it writes names only modules, paths and entry points that exist.

How the notes are read: every inline-code span is a path of the tree (a package ends with
``/``, the root is ``.``); every entry point is a bullet ``- **name**: <kind> in `file```
whose file exists and declares the name (a console script, npm bin or script, Dagster
definitions variable or route path occurs in the file; a runnable package or main-guard
script is the module the file is, by its path).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT, isolated_settings

from wf_pipeline.service import run_workflow

pytestmark = pytest.mark.slow
WORKFLOW = "architecture_notes_v1"
_SPAN = re.compile(r"`([^`\n]+)`")
_ENTRY = re.compile(r"^- \*\*(?P<name>.+?)\*\*: (?P<kind>.+?) in `(?P<path>[^`]+)`")


def _copy(source: Path, destination: Path) -> Path:
    shutil.copytree(
        source,
        destination,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "*.pyc"
        ),
    )
    return destination


def _rich_package() -> Path:
    spec = importlib.util.find_spec("rich")
    assert spec is not None and spec.submodule_search_locations, "rich is installed with dagster"
    return Path(next(iter(spec.submodule_search_locations)))


def _exists(tree: Path, span: str) -> bool:
    if span == ".":
        return True
    if span.endswith("/"):
        return (tree / span).is_dir()
    return (tree / span).is_file()


def _module_path(tree: Path, path: str, *, runnable: bool) -> str:
    # The dotted module a file is, as the notes name it: the root is named after the tree; a
    # package's __init__ is the package, and so is its __main__ when run with `python -m`.
    parts = [tree.name, *Path(path).with_suffix("").parts]
    last = ("__init__", "__main__") if runnable else ("__init__",)
    return ".".join(parts[:-1] if parts[-1] in last else parts)


def check_notes(tree: Path, notes: str) -> dict[str, int]:
    """Assert every named path and entry point exists; return how many of each were checked."""
    spans = _SPAN.findall(notes)
    missing = [span for span in spans if not _exists(tree, span)]
    assert not missing, missing
    entries = 0
    for line in notes.splitlines():
        found = _ENTRY.match(line)
        if not found:
            continue
        entries += 1
        # Names are shown with Markdown's markup characters backslash-escaped.
        name = re.sub(r"\\(.)", r"\1", found["name"])
        kind, path = found["kind"], found["path"]
        text = (tree / path).read_text(encoding="utf-8")
        if kind.startswith(("runnable package", "script")):
            runnable = kind.startswith("runnable package")
            assert _module_path(tree, path, runnable=runnable).endswith(name), (name, path)
        elif kind == "HTTP route":
            assert name.split(" ", 1)[1] in text, (name, path)
        else:
            assert name in text, (name, path)
    return {"spans": len(spans), "entries": entries}


def _run(tmp_path: Path, tree: Path, **options: bool) -> str:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(tmp_path)
        settings = isolated_settings(monkeypatch, tmp_path / "home")
        summary = run_workflow(settings, WORKFLOW, tree, **options)
    assert summary.ok, [(t.path, t.status, t.error_code, t.error_text) for t in summary.threads]
    # One thread, on the root only (targets: kind root).
    assert [t.path for t in summary.threads] == ["."]
    output = Path(summary.threads[0].output_path or "")
    assert output.name == "ARCHITECTURE.md" and output.parent.name == "docs"
    return output.read_text(encoding="utf-8")


def test_notes_of_this_repository_name_only_what_exists(tmp_path: Path) -> None:
    tree = _copy(REPO_ROOT, tmp_path / "wf_pipeline_repo")
    notes = _run(tmp_path, tree)
    counts = check_notes(tree, notes)
    assert counts["entries"] >= 2 and counts["spans"] >= 20
    assert "`wf_pipeline/runtime/` imports" in notes
    assert "- **wf**: console script in `pyproject.toml`, runs `wf_pipeline/cli/main.py`" in notes


def test_notes_of_rich_name_only_what_exists(tmp_path: Path) -> None:
    tree = _copy(_rich_package(), tmp_path / "rich")
    notes = _run(tmp_path, tree)
    counts = check_notes(tree, notes)
    assert counts["entries"] >= 5 and counts["spans"] >= 10
    # The copied package is the root: its own modules import each other under its name.
    assert "## Biggest modules" in notes and "`console.py`" in notes


def _small_tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("from .sub import helper\n", encoding="utf-8")
    (root / "pkg" / "sub" / "__init__.py").write_text("def helper():\n    return 1\n", encoding="utf-8")
    (root / "pkg" / "__main__.py").write_text("from pkg.sub import helper\nhelper()\n", encoding="utf-8")
    return root


def test_declared_output_follows_the_readme_rules_in_place(tmp_path: Path) -> None:
    tree = _small_tree(tmp_path / "small")
    existing = tree / "docs" / "ARCHITECTURE.md"
    existing.parent.mkdir()
    existing.write_text("hand written\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(tmp_path)
        settings = isolated_settings(monkeypatch, tmp_path / "home")
        kept = run_workflow(settings, WORKFLOW, tree, in_place=True)
        # Never overwritten without --overwrite: the thread completes, the file is kept.
        assert [t.status for t in kept.threads] == ["completed"]
        assert kept.threads[0].output_path is None
        assert existing.read_text(encoding="utf-8") == "hand written\n"
        replaced = run_workflow(settings, WORKFLOW, tree, in_place=True, overwrite=True)
    assert Path(replaced.threads[0].output_path or "") == existing
    notes = existing.read_text(encoding="utf-8")
    assert notes.startswith("# Architecture of small\n")
    assert "- `pkg/` imports `pkg/sub/`" in notes
    check_notes(tree, notes)
