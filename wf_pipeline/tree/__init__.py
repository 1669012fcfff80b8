"""Workspace scan, Merkle node ids, ignore rules, and per-directory context payloads."""

from __future__ import annotations

from wf_pipeline.tree.context import (
    build_context,
    build_tree_context,
    context_extractor,
    context_json_text,
    detect_language,
    register_context_extractor,
)
from wf_pipeline.tree.scan import (
    DEFAULT_MAX_FILE_BYTES,
    ROOT_PATH,
    ScanWarning,
    TreeNode,
    TreeScan,
    check_root,
    dir_node_id,
    file_node_id,
    is_binary,
    scan_tree,
)

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "ROOT_PATH",
    "ScanWarning",
    "TreeNode",
    "TreeScan",
    "build_context",
    "build_tree_context",
    "context_extractor",
    "register_context_extractor",
    "check_root",
    "context_json_text",
    "detect_language",
    "dir_node_id",
    "file_node_id",
    "is_binary",
    "scan_tree",
]
