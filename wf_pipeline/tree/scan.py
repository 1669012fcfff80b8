"""Workspace scan with Merkle node ids.

A file's id hashes its path and the digest of its bytes; a directory's id hashes its path
and its children's (name, id) pairs. Changing one file therefore re-ids that file and its
ancestors and nothing else. Scanning only reads: nothing is written anywhere.

Anomalies in the tree (unreadable entries, broken or looping symlinks, symlinks that
resolve outside the root, names that are not UTF-8, special files) never stop a scan; each
becomes a ``ScanWarning`` with a catalogue code (``wf_pipeline.errors``) and, except for
unreadable files, the entry is skipped. Nothing outside the root is read unless the caller
opts in (``follow_external_links``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from wf_pipeline.errors import (
    TREE_BROKEN_SYMLINK,
    TREE_BUILD_OUTPUT_SKIPPED,
    TREE_IGNORE_PATTERN_INVALID,
    TREE_INVALID_OPTION,
    TREE_LINK_OUTSIDE_ROOT,
    TREE_NODE_NOT_FOUND,
    TREE_NON_UTF8_NAME,
    TREE_NOT_A_DIRECTORY,
    TREE_PATH_MISSING,
    TREE_SPECIAL_FILE,
    TREE_SYMLINK_LOOP,
    TREE_UNREADABLE,
    TREE_UNREADABLE_DIR,
    TREE_UNREADABLE_FILE,
    TreeError,
)
from wf_pipeline.metadata.canonical import DIGEST_PREFIX, canonical_json, sha256_hex
from wf_pipeline.metadata.payloads import OmittedReason
from wf_pipeline.metadata.records import NodeKind, NodeRecord
from wf_pipeline.text.decoding import BINARY_SNIFF_BYTES, decode_source
from wf_pipeline.tree.ignore import (
    GITIGNORE_NAME,
    VENV_MARKER,
    IgnoreLayer,
    IgnoreRules,
    gitignore_lines,
    is_build_output,
    is_builtin_ignored,
)

DEFAULT_MAX_FILE_BYTES = 262_144
ROOT_PATH = "."
HASH_CHUNK_BYTES = 1 << 20


# --- ids -----------------------------------------------------------------------------


def file_node_id(path: str, content_digest: str | None) -> str:
    """A file's Merkle id, ``node:<64 hex>``, from its path and content digest.

    Args:
        path: POSIX, relative to the scan root.
        content_digest: ``sha256:<hex>`` of its bytes, or None for an unreadable file.
    """
    return "node:" + sha256_hex(canonical_json(["file", path, content_digest or "unreadable"]))


def dir_node_id(path: str, children: Iterable[tuple[str, str]]) -> str:
    """``children`` are (name, node_id) pairs; their order does not matter."""
    pairs = sorted([name, node_id] for name, node_id in children)
    return "node:" + sha256_hex(canonical_json(["dir", path, pairs]))


def child_path(parent_path: str, name: str) -> str:
    """The POSIX path of ``name`` inside ``parent_path`` (no ``./`` prefix below the root)."""
    return name if parent_path == ROOT_PATH else f"{parent_path}/{name}"


def is_binary(data: bytes, name: str = "") -> bool:
    """Whether a file with these bytes and this base name has no text.

    The one rule is `wf_pipeline.text.decoding.decode_source`: a NUL byte in the first
    8 KiB, or bytes its encoding (PEP 263 for Python sources, else UTF-8 with an optional
    byte order mark) cannot decode.
    """
    return decode_source(data, name) is None


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanWarning:
    """An anomaly a scan skipped past.

    Attributes:
        code: a catalogued ``TREE_*`` code (``wf_pipeline.errors``).
        path: the entry's POSIX path relative to the root (undecodable bytes backslash-escaped).
        message: a sentence that starts with the path, so ``f"{code}: {message}"`` stands alone.
    """

    code: str
    path: str
    message: str

    def to_json(self) -> dict[str, str]:
        """``{"code", "path", "message"}``, the shape every command reports a scan warning in."""
        return {"code": self.code, "path": self.path, "message": self.message}


@dataclass(frozen=True)
class TreeNode:
    """One scanned file or directory: Merkle id, POSIX path, depth (root 0), size in bytes,
    content digest, the reason its text is omitted, and its children's paths.
    """

    node_id: str
    path: str
    name: str
    kind: NodeKind
    parent_path: str | None
    depth: int
    size: int = 0
    content_digest: str | None = None
    omitted: OmittedReason | None = None
    children: tuple[str, ...] = ()


@dataclass(frozen=True)
class TreeScan:
    """The result of `scan_tree`: the resolved root, its Merkle id, every node (parents
    before children) and the warnings.
    """

    root: Path
    root_id: str
    nodes: tuple[TreeNode, ...]
    warnings: tuple[ScanWarning, ...] = ()
    _by_path: dict[str, TreeNode] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_path", {node.path: node for node in self.nodes})

    def node(self, path: str) -> TreeNode:
        """The node at ``path`` (POSIX, relative to the root; ``.`` for the root).

        Raises:
            TreeError: ``TREE_NODE_NOT_FOUND`` (figure: path) when the scan has no node there.
        """
        found = self._by_path.get(path)
        if found is None:
            raise TreeError(TREE_NODE_NOT_FOUND, f"no node at {path!r} in the scan of {self.root}", path=path)
        return found

    def absolute_path(self, path: str) -> Path:
        """Where the node at ``path`` lives on disk (through any followed symlinks)."""
        return self.root if path == ROOT_PATH else self.root.joinpath(*path.split("/"))

    def children_of(self, path: str) -> list[TreeNode]:
        """The nodes directly inside the directory at ``path``, in name order.

        Raises:
            TreeError: ``TREE_NODE_NOT_FOUND`` when the scan has no node at ``path``.
        """
        return [self._by_path[child] for child in self.node(path).children]

    def files_in(self, path: str) -> list[TreeNode]:
        """The files directly inside the directory at ``path``, in name order.

        Raises:
            TreeError: ``TREE_NODE_NOT_FOUND`` when the scan has no node at ``path``.
        """
        return [child for child in self.children_of(path) if child.kind == "file"]

    def dirs_in(self, path: str) -> list[TreeNode]:
        """The directories directly inside the directory at ``path``, in name order.

        Raises:
            TreeError: ``TREE_NODE_NOT_FOUND`` when the scan has no node at ``path``.
        """
        return [child for child in self.children_of(path) if child.kind == "dir"]

    def directories_bottom_up(self) -> list[TreeNode]:
        """Deepest directories first, so every child is handled before its parent."""
        directories = [node for node in self.nodes if node.kind == "dir"]
        return sorted(directories, key=lambda node: (-node.depth, node.path))

    def to_records(self, scanned_at_ms: int) -> list[NodeRecord]:
        """One `NodeRecord` per node, in scan order, stamped ``scanned_at_ms`` (ms since the epoch)."""
        return [
            NodeRecord(
                node_id=node.node_id,
                root_id=self.root_id,
                path=node.path,
                kind=node.kind,
                parent_path=node.parent_path,
                size=node.size,
                content_digest=node.content_digest,
                omitted=node.omitted,
                scanned_at_ms=scanned_at_ms,
            )
            for node in self.nodes
        ]


# --- filesystem access (module level so tests can make a path unreadable as root) ----


def _open_for_read(path: str) -> BinaryIO:
    return open(path, "rb")


def _list_directory(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as entries:
        return sorted(entries, key=lambda entry: entry.name)


@dataclass(frozen=True)
class _FileFacts:
    size: int
    content_digest: str
    omitted: OmittedReason | None


def _read_file_facts(path: str, name: str, max_file_bytes: int) -> _FileFacts:
    """Hash a file by streaming; only the first ``max_file_bytes + 1`` bytes are held at once.

    An oversized file is reported as binary when its first 8 KiB hold a NUL byte; its
    decodability beyond that is not checked, since its text is never used either way.
    """
    with _open_for_read(path) as handle:
        head = handle.read(max_file_bytes + 1)
        hasher = hashlib.sha256(head)
        size = len(head)
        if size <= max_file_bytes:
            omitted: OmittedReason | None = "binary" if is_binary(head, name) else None
        else:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                hasher.update(chunk)
                size += len(chunk)
            omitted = "binary" if b"\0" in head[:BINARY_SNIFF_BYTES] else "oversized"
    return _FileFacts(size=size, content_digest=DIGEST_PREFIX + hasher.hexdigest(), omitted=omitted)


def _entry_kind(entry: os.DirEntry[str]) -> NodeKind | None:
    """What a listing entry is once symlinks are followed; None for a broken or looping
    link and for anything that is neither a regular file nor a directory."""
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
    except OSError:  # e.g. ELOOP, which DirEntry does not swallow the way it does ENOENT
        pass
    return None


def _is_utf8_name(name: str) -> bool:
    # os.scandir hands back undecodable bytes as lone surrogates, which strict UTF-8 refuses.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(path: str) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_same_or_ancestor(candidate: str, path: str) -> bool:
    return candidate == path or path.startswith(candidate.rstrip(os.sep) + os.sep)


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


# --- the walk ------------------------------------------------------------------------


@dataclass
class _DirFrame:
    """A directory being walked: its listing, where the walk is in it, and the children so far."""

    path: str
    name: str
    depth: int
    entries: list[os.DirEntry[str]]
    rules: IgnoreRules
    # Real paths of this directory and its ancestors, for telling a link loop from a link.
    real_ancestors: tuple[str, ...]
    slot: int
    position: int = 0
    children: list[TreeNode] = field(default_factory=list)

    def finish(self) -> TreeNode:
        return TreeNode(
            node_id=dir_node_id(self.path, ((child.name, child.node_id) for child in self.children)),
            path=self.path,
            name=self.name,
            kind="dir",
            parent_path=None if self.path == ROOT_PATH else self.path.rpartition("/")[0] or ROOT_PATH,
            depth=self.depth,
            children=tuple(child.path for child in self.children),
        )


class _Walker:
    """A depth-first walk with an explicit stack, so no depth of tree meets Python's recursion limit."""

    def __init__(
        self,
        root_real: str,
        max_file_bytes: int,
        skip_contents: frozenset[str],
        follow_external_links: bool,
        skip_dirs: frozenset[str] = frozenset(),
    ) -> None:
        self.root_real = root_real
        self.max_file_bytes = max_file_bytes
        self.skip_contents = skip_contents
        self.skip_dirs = skip_dirs
        self.follow_external_links = follow_external_links
        # Pre-order: a directory reserves its slot before its children are walked and
        # fills it once their ids (and so its own) are known.
        self.nodes: list[TreeNode | None] = []
        self.warnings: list[ScanWarning] = []

    def warn(self, warning: TreeError) -> None:
        """Keep a scan warning; ``warning`` carries its catalogue code and the path in ``details``."""
        self.warnings.append(
            ScanWarning(code=warning.code, path=warning.details["path"], message=warning.message)
        )

    def walk(self, entries: list[os.DirEntry[str]], rules: IgnoreRules, root_name: str) -> TreeNode:
        """Walk the tree whose root lists ``entries``; returns the root's node."""
        stack = [self._open_frame(ROOT_PATH, root_name, 0, entries, rules, (self.root_real,))]
        while True:
            frame = stack[-1]
            if frame.position < len(frame.entries):
                entry = frame.entries[frame.position]
                frame.position += 1
                visited = self._visit(entry, frame)
                if isinstance(visited, _DirFrame):
                    stack.append(visited)
                elif visited is not None:
                    frame.children.append(visited)
                continue
            stack.pop()
            node = frame.finish()
            self.nodes[frame.slot] = node
            if not stack:
                return node
            stack[-1].children.append(node)

    def _open_frame(
        self,
        path: str,
        name: str,
        depth: int,
        entries: list[os.DirEntry[str]],
        rules: IgnoreRules,
        real_ancestors: tuple[str, ...],
    ) -> _DirFrame:
        slot = len(self.nodes)
        self.nodes.append(None)
        rules = self._with_own_gitignore(path, entries, rules)
        return _DirFrame(path, name, depth, entries, rules, real_ancestors, slot)

    def _external_target(self, entry: os.DirEntry[str], path: str) -> str | None:
        """The real path a symlink leads to when that lies outside the root and links
        outside are not followed; None for anything the scan may read."""
        if self.follow_external_links or not entry.is_symlink():
            return None
        real = os.path.realpath(entry.path)
        return None if _is_same_or_ancestor(self.root_real, real) else real

    def _with_own_gitignore(
        self, path: str, entries: list[os.DirEntry[str]], rules: IgnoreRules
    ) -> IgnoreRules:
        entry = next((e for e in entries if e.name == GITIGNORE_NAME), None)
        # Git never follows a symlinked .gitignore (gitignore(5), NOTES): its patterns do not
        # apply, wherever it points; the link itself is scanned like any other entry.
        if entry is None or entry.is_symlink() or _entry_kind(entry) != "file":
            return rules
        gitignore_path = child_path(path, GITIGNORE_NAME)
        try:
            with _open_for_read(entry.path) as handle:
                data = handle.read()
        except OSError:
            # The file itself is scanned as unreadable and warned about there.
            return rules
        layer, invalid = IgnoreLayer.from_lines(path, gitignore_lines(data))
        for line in invalid:
            self.warn(
                TreeError(
                    TREE_IGNORE_PATTERN_INVALID,
                    f"{gitignore_path}: line {line} is not a valid gitignore pattern; skipped",
                    path=gitignore_path,
                )
            )
        return rules.with_gitignore(layer)

    def _visit(self, entry: os.DirEntry[str], parent: _DirFrame) -> TreeNode | _DirFrame | None:
        """A file's node, a directory's frame to walk next, or None for a skipped entry."""
        path = child_path(parent.path, entry.name)
        if not _is_utf8_name(entry.name):
            shown = _printable(path)
            self.warn(TreeError(TREE_NON_UTF8_NAME, f"{shown}: name is not valid UTF-8; skipped", path=shown))
            return None
        kind = _entry_kind(entry)
        is_dir = kind == "dir"
        if is_builtin_ignored(entry.name, is_dir) or parent.rules.is_ignored(path, is_dir):
            return None
        if is_dir and path in self.skip_dirs:
            return None
        if kind is None:
            self._warn_not_regular(entry, path)
            return None
        external = self._external_target(entry, path)
        if external is not None:
            self.warn(
                TreeError(
                    TREE_LINK_OUTSIDE_ROOT,
                    f"{path}: symlink resolves to {external}, outside the tree root {self.root_real};"
                    " skipped (--follow-external-links reads it)",
                    path=path,
                    target=external,
                )
            )
            return None
        if kind == "dir":
            return self._visit_dir(entry, path, parent)
        return self._build_file(entry.path, path, entry.name, parent.path, parent.depth + 1)

    def _warn_not_regular(self, entry: os.DirEntry[str], path: str) -> None:
        try:
            os.stat(entry.path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.warn(TreeError(TREE_SYMLINK_LOOP, f"{path}: symlink chain loops; skipped", path=path))
            elif os.path.islink(entry.path):
                self.warn(
                    TreeError(
                        TREE_BROKEN_SYMLINK,
                        f"{path}: symlink target is unavailable ({_errno_name(exc)}); skipped",
                        path=path,
                    )
                )
            else:  # vanished or became inaccessible after it was listed
                self.warn(
                    TreeError(
                        TREE_UNREADABLE_FILE,
                        f"{path}: entry cannot be inspected ({_errno_name(exc)}); skipped",
                        path=path,
                    )
                )
            return
        self.warn(
            TreeError(TREE_SPECIAL_FILE, f"{path}: not a regular file or directory; skipped", path=path)
        )

    def _visit_dir(self, entry: os.DirEntry[str], path: str, parent: _DirFrame) -> _DirFrame | None:
        if entry.is_symlink():
            real = os.path.realpath(entry.path)
            if any(_is_same_or_ancestor(real, ancestor) for ancestor in parent.real_ancestors):
                self.warn(
                    TreeError(
                        TREE_SYMLINK_LOOP,
                        f"{path}: directory symlink points at itself or an ancestor; skipped",
                        path=path,
                    )
                )
                return None
        else:
            real = os.path.join(parent.real_ancestors[-1], entry.name)
        try:
            entries = _list_directory(entry.path)
        except OSError as exc:
            self.warn(
                TreeError(
                    TREE_UNREADABLE_DIR,
                    f"{path}: directory cannot be listed ({_errno_name(exc)}); skipped",
                    path=path,
                )
            )
            return None
        if any(child.name == VENV_MARKER for child in entries):
            return None
        if is_build_output(entry.name, [child.name for child in entries]):
            self.warn(
                TreeError(
                    TREE_BUILD_OUTPUT_SKIPPED,
                    f"{path}: build output (named {entry.name}, no __init__.py, {len(entries)} entries); skipped",
                    path=path,
                )
            )
            return None
        return self._open_frame(
            path, entry.name, parent.depth + 1, entries, parent.rules, (*parent.real_ancestors, real)
        )

    def _build_file(
        self, abs_path: str, path: str, name: str, parent_path: str, depth: int
    ) -> TreeNode | None:
        try:
            facts = _read_file_facts(abs_path, name, self.max_file_bytes)
        except OSError as exc:
            self.warn(
                TreeError(
                    TREE_UNREADABLE_FILE, f"{path}: file cannot be read ({_errno_name(exc)})", path=path
                )
            )
            try:
                size = os.stat(abs_path).st_size
            except OSError:
                size = 0
            facts_digest, omitted = None, "unreadable"
        else:
            size, facts_digest, omitted = facts.size, facts.content_digest, facts.omitted
            if facts_digest in self.skip_contents:
                return None
        node = TreeNode(
            node_id=file_node_id(path, facts_digest),
            path=path,
            name=name,
            kind="file",
            parent_path=parent_path,
            depth=depth,
            size=size,
            content_digest=facts_digest,
            omitted=omitted,
        )
        self.nodes.append(node)
        return node


def check_root(root: Path | str) -> Path:
    """Validate a tree root without walking it; nothing below the root is read.

    Args:
        root: the directory to scan.

    Returns:
        The resolved root path.

    Raises:
        TreeError: ``TREE_PATH_MISSING``, ``TREE_NOT_A_DIRECTORY``, or ``TREE_UNREADABLE``
            when the root cannot be read or listed (figure: path), as `scan_tree` would.
    """
    return _open_root(root)[0]


def _open_root(root: Path | str) -> tuple[Path, list[os.DirEntry[str]]]:
    root_path = Path(root)
    try:
        root_stat = os.stat(root_path)
    except (FileNotFoundError, NotADirectoryError):
        raise TreeError(TREE_PATH_MISSING, f"{root_path} does not exist", path=str(root_path)) from None
    except OSError as exc:
        raise TreeError(
            TREE_UNREADABLE, f"{root_path} cannot be read ({_errno_name(exc)})", path=str(root_path)
        ) from None
    if not stat.S_ISDIR(root_stat.st_mode):
        raise TreeError(TREE_NOT_A_DIRECTORY, f"{root_path} is not a directory", path=str(root_path))
    resolved = root_path.resolve()
    try:
        entries = _list_directory(str(resolved))
    except OSError as exc:
        raise TreeError(
            TREE_UNREADABLE, f"{resolved} cannot be listed ({_errno_name(exc)})", path=str(resolved)
        ) from None
    return resolved, entries


def scan_tree(
    root: Path | str,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    extra_ignores: Sequence[str] = (),
    skip_contents: Collection[str] = (),
    follow_external_links: bool = False,
    skip_dirs: Collection[str] = (),
) -> TreeScan:
    """Scan ``root`` into nodes with Merkle ids; same tree, same ids and order.

    Files whose content digest is in ``skip_contents`` are left out as if ignored: a
    workflow passes the digests of its own outputs, so output files it wrote into the
    tree are neither evidence for themselves nor a change that re-ids the tree.
    Directories whose tree path (``a/b``, relative to the root) is in ``skip_dirs`` are
    left out with everything under them: a workflow passes its output folder when that
    lies inside the tree.

    A symlink (to a file or a directory) that resolves outside the root is neither read nor
    listed unless ``follow_external_links`` is True; it is skipped with a
    ``TREE_LINK_OUTSIDE_ROOT`` warning naming it and its target. Links that stay inside the
    root are followed. The walk keeps its own stack, so depth is bounded only by the
    filesystem, never by Python's recursion limit.

    Returns:
        The `TreeScan`; its ``warnings`` carry catalogue codes (``TREE_LINK_OUTSIDE_ROOT``,
        ``TREE_SYMLINK_LOOP``, ``TREE_BROKEN_SYMLINK``, ``TREE_UNREADABLE_FILE``,
        ``TREE_UNREADABLE_DIR``, ``TREE_SPECIAL_FILE``, ``TREE_NON_UTF8_NAME``,
        ``TREE_IGNORE_PATTERN_INVALID``).

    Raises TreeError TREE_PATH_MISSING, TREE_NOT_A_DIRECTORY, TREE_UNREADABLE (the root
    cannot be listed), TREE_INVALID_OPTION (negative ``max_file_bytes``) or
    TREE_IGNORE_PATTERN_INVALID (a bad ``extra_ignores`` pattern).
    """
    if max_file_bytes < 0:
        raise TreeError(TREE_INVALID_OPTION, f"max_file_bytes must be >= 0, got {max_file_bytes}")
    rules = IgnoreRules.from_extra_patterns(extra_ignores)
    resolved, entries = _open_root(root)

    walker = _Walker(
        str(resolved), max_file_bytes, frozenset(skip_contents), follow_external_links, frozenset(skip_dirs)
    )
    root_node = walker.walk(entries, rules, resolved.name or str(resolved))
    nodes = tuple(node for node in walker.nodes if node is not None)
    return TreeScan(root=resolved, root_id=root_node.node_id, nodes=nodes, warnings=tuple(walker.warnings))
