"""A tree 1,000 levels deep, far past Python's recursion limit, through every tree step in process:
scan, targets, context payloads and their canonical JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deep_tree_support import DEEP_LEVELS, make_deep_tree

from wf_pipeline.records import MemoryRecordStore
from wf_pipeline.runtime.targets import documentable_directories, register_targets, target_depth
from wf_pipeline.tree import build_context, context_json_text, scan_tree


def test_scan_targets_and_contexts_of_a_thousand_levels(tmp_path: Path) -> None:
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
