"""The context payload for one target directory.

Files are read again from disk and must still hash to the digest the scan recorded, so a
payload never mixes a scan's ids with bytes the scan did not see. Omitted files (binary,
oversized, unreadable) appear with their reason and never with text. A file's text is
decoded once, here, by the rule the scan judged it with
(`wf_pipeline.text.decoding.decode_source`: PEP 263 for Python sources, a byte order mark
dropped), so everything downstream reads the payload's str and never decodes again.
"""

from __future__ import annotations

from collections.abc import Mapping

from wf_pipeline.errors import TREE_CHANGED_DURING_RUN, TREE_NOT_A_DIRECTORY, TreeError
from wf_pipeline.metadata.canonical import canonical_json, digest
from wf_pipeline.metadata.payloads import ContextChild, ContextFile, ContextPayload, ContextTarget
from wf_pipeline.text.decoding import decode_source
from wf_pipeline.text.languages import detect_language
from wf_pipeline.tree.scan import TreeNode, TreeScan

__all__ = ["build_context", "context_json_text", "detect_language"]


def _read_unchanged_text(scan: TreeScan, node: TreeNode) -> str:
    """The file's decoded text, provided its bytes still match the scan."""
    location = scan.absolute_path(node.path)
    try:
        with open(location, "rb") as handle:
            # One byte more than the scan saw is enough to tell the file grew.
            data = handle.read(node.size + 1)
    except OSError as exc:
        raise TreeError(
            TREE_CHANGED_DURING_RUN, f"{node.path} can no longer be read ({exc.strerror})", path=node.path
        ) from None
    current = digest(data)
    if current != node.content_digest:
        raise TreeError(
            TREE_CHANGED_DURING_RUN,
            f"{node.path} changed since the scan ({node.content_digest} -> {current})",
            path=node.path,
            expected=node.content_digest,
            actual=current,
        )
    text = decode_source(data, node.name)
    if text is None:
        # Unreachable for a scan of this release: the same bytes and name gave text there.
        raise TreeError(
            TREE_CHANGED_DURING_RUN, f"{node.path} was scanned as text but does not decode", path=node.path
        )
    return text


def _context_file(scan: TreeScan, node: TreeNode) -> ContextFile:
    text = None if node.omitted else _read_unchanged_text(scan, node)
    return ContextFile(
        path=node.path,
        name=node.name,
        size=node.size,
        language=detect_language(node.name, text),
        text=text,
        omitted=node.omitted,
    )


def build_context(scan: TreeScan, dir_path: str, child_frames: Mapping[str, str | None]) -> ContextPayload:
    """Context for the directory at ``dir_path``: its direct files (name order) and its
    direct child directories, each with its head frame's text from ``child_frames``
    (child path -> text; a missing or None entry means the child has none yet).

    File languages come from the one language table (``wf_pipeline.text.languages``).

    Raises TreeError TREE_NODE_NOT_FOUND, TREE_NOT_A_DIRECTORY or TREE_CHANGED_DURING_RUN.
    """
    target = scan.node(dir_path)
    if target.kind != "dir":
        raise TreeError(TREE_NOT_A_DIRECTORY, f"{dir_path} is a file, not a directory", path=dir_path)
    return ContextPayload(
        target=ContextTarget(path=target.path, name=target.name, node_id=target.node_id),
        files=tuple(_context_file(scan, node) for node in scan.files_in(dir_path)),
        children=tuple(
            ContextChild(
                path=node.path, name=node.name, node_id=node.node_id, head_frame=child_frames.get(node.path)
            )
            for node in scan.dirs_in(dir_path)
        ),
    )


def context_json_text(payload: ContextPayload) -> str:
    """The canonical JSON text of a payload, the bytes stored and digested as its artifact."""
    return canonical_json(payload.to_json()).decode("utf-8")
