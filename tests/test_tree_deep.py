"""A tree 1,000 levels deep, far past Python's recursion limit, through every tree step in process:
scan, targets, context payloads and their canonical JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deep_tree_support import DEEP_LEVELS, make_deep_tree, remove_children

from wf_pipeline.records import MemoryRecordStore
from wf_pipeline.runtime.targets import documentable_directories, register_targets, target_depth
from wf_pipeline.tree import build_context, context_json_text, scan_tree


@pytest.fixture
def deep_tmp(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, emptied without recursion afterwards (pytest's clean-up recurses)."""
    yield tmp_path
    remove_children(tmp_path)


def test_scan_targets_and_contexts_of_a_thousand_levels(deep_tmp: Path) -> None:
    tmp_path = deep_tmp
    assert DEEP_LEVELS > sys.getrecursionlimit() // 3  # deeper than any recursive walk survives
    deepest = make_deep_tree(tmp_path / "tree")
    scan = scan_tree(tmp_path / "tree")

    documentable = documentable_directories(scan)
    assert len(documentable) == DEEP_LEVELS + 1
    assert documentable[0] == deepest and documentable[-1] == "."

    targets = register_targets(MemoryRecordStore(), scan)
    assert [target_depth(t) for t in targets] == list(range(DEEP_LEVELS, -1, -1))

    # Every directory's context, each seeing its child's frame, bottom-up as a run builds them.
    frames: dict[str, str] = {}
    for path in documentable:
        payload = build_context(scan, path, frames)
        text = context_json_text(payload)
        assert json.loads(text)["target"]["path"] == path
        frames[path] = f"# {path.rpartition('/')[2] or 'tree'}\n"
    root_payload = build_context(scan, ".", frames)
    assert [c.path for c in root_payload.children] == ["d"]
    assert root_payload.children[0].head_frame == "# d\n"


def test_an_output_a_thousand_levels_down_is_written(deep_tmp: Path) -> None:
    tmp_path = deep_tmp
    from wf_pipeline.runtime.sinks import make_folders, write_file_atomically

    relative = "/".join(["d"] * DEEP_LEVELS)
    destination = tmp_path.joinpath("out", *relative.split("/"), "README.md")
    assert write_file_atomically(b"# d\n", destination, overwrite=False) == destination
    assert destination.read_bytes() == b"# d\n"
    make_folders(destination.parent)  # existing: nothing to do
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(FileExistsError):
        make_folders(tmp_path / "a-file" / "below")


def test_a_directory_of_only_empty_files_gets_no_thread(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "typed").mkdir()
    (tmp_path / "pkg" / "a.py").write_text('def a():\n    """A."""\n', encoding="utf-8")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "pkg" / "typed" / "py.typed").write_text("", encoding="utf-8")
    (tmp_path / "pkg" / "typed" / "deeper").mkdir()
    (tmp_path / "pkg" / "typed" / "deeper" / "b.py").write_text("B = 1\n", encoding="utf-8")
    # An empty file offers nothing to cite; a directory above documented children still gets one.
    assert documentable_directories(scan_tree(tmp_path)) == ["pkg/typed/deeper", "pkg/typed", "pkg", "."]
