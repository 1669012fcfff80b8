"""The context payload for one target directory.

Files are read again from disk and must still hash to the digest the scan recorded, so a
payload never mixes a scan's ids with bytes the scan did not see. Omitted files (binary,
oversized, unreadable) appear with their reason and never with text.
"""

from __future__ import annotations

from collections.abc import Mapping

from wf_pipeline.errors import TreeError
from wf_pipeline.metadata.canonical import canonical_json, digest
from wf_pipeline.metadata.payloads import ContextChild, ContextFile, ContextPayload, ContextTarget
from wf_pipeline.tree.scan import TreeNode, TreeScan

LANGUAGE_BY_EXTENSION: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "restructuredtext",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".txt": "text",
    ".html": "html",
    ".css": "css",
    ".sql": "sql",
    ".xml": "xml",
    ".csv": "csv",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".rb": "ruby",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
}
LANGUAGE_BY_NAME: dict[str, str] = {"Makefile": "makefile", "Dockerfile": "dockerfile"}
# Interpreter named by a shebang (after `/usr/bin/env` if present) -> language.
LANGUAGE_BY_INTERPRETER: dict[str, str] = {
    "sh": "shell",
    "bash": "shell",
    "dash": "shell",
    "zsh": "shell",
    "python": "python",
    "python3": "python",
    "node": "javascript",
}


def _shebang_language(text: str) -> str | None:
    if not text.startswith("#!"):
        return None
    words = text[2:].partition("\n")[0].split()
    if not words:
        return None
    interpreter = words[0].rpartition("/")[2]
    if interpreter == "env":
        interpreter = next((word for word in words[1:] if not word.startswith("-")), "")
    return LANGUAGE_BY_INTERPRETER.get(interpreter)


def detect_language(name: str, text: str | None) -> str | None:
    """Language from the file name's extension; for names without one, from a shebang."""
    if name in LANGUAGE_BY_NAME:
        return LANGUAGE_BY_NAME[name]
    stem, dot, extension = name.rpartition(".")
    if dot and stem:
        return LANGUAGE_BY_EXTENSION.get("." + extension.lower())
    return _shebang_language(text) if text is not None else None


def _read_unchanged_text(scan: TreeScan, node: TreeNode) -> str:
    """The file's text, provided its bytes still match the scan."""
    location = scan.absolute_path(node.path)
    try:
        with open(location, "rb") as handle:
            # One byte more than the scan saw is enough to tell the file grew.
            data = handle.read(node.size + 1)
    except OSError as exc:
        raise TreeError(
            "TREE_CHANGED_DURING_RUN", f"{node.path} can no longer be read ({exc.strerror})", path=node.path
        ) from None
    current = digest(data)
    if current != node.content_digest:
        raise TreeError(
            "TREE_CHANGED_DURING_RUN",
            f"{node.path} changed since the scan ({node.content_digest} -> {current})",
            path=node.path,
            expected=node.content_digest,
            actual=current,
        )
    return data.decode("utf-8")


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


def build_context(scan: TreeScan, dir_path: str, child_readmes: Mapping[str, str | None]) -> ContextPayload:
    """Context for the directory at ``dir_path``: its direct files (name order) and its
    direct child directories with the README each got earlier in the run, if any.

    Raises TreeError TREE_NODE_NOT_FOUND, TREE_NOT_A_DIRECTORY or TREE_CHANGED_DURING_RUN.
    """
    target = scan.node(dir_path)
    if target.kind != "dir":
        raise TreeError("TREE_NOT_A_DIRECTORY", f"{dir_path} is a file, not a directory", path=dir_path)
    return ContextPayload(
        target=ContextTarget(path=target.path, name=target.name, node_id=target.node_id),
        files=tuple(_context_file(scan, node) for node in scan.files_in(dir_path)),
        children=tuple(
            ContextChild(
                path=node.path, name=node.name, node_id=node.node_id, readme=child_readmes.get(node.path)
            )
            for node in scan.dirs_in(dir_path)
        ),
    )


def context_json_text(payload: ContextPayload) -> str:
    """The canonical JSON text of a payload, the bytes stored and digested as its artifact."""
    return canonical_json(payload.to_json()).decode("utf-8")
