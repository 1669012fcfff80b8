"""Targets: the directories a workflow runs on, one Dagster partition each; trees, by identity.

A tree is identified by its resolved root path (`tree_root_id`), registered as a tree
record, not by its base name: two trees called ``click`` get different partition keys,
threads and output folders.

A target key stays readable in the UI: ``<root name>~<6 hex>`` for the root, then
``/<relative path>``. The 6 hex are the start of the tree's root id, so trees with one
base name differ while the key still shows the name. Names are written into keys with
percent-encoding (RFC 3986 style, `encode_name`) wherever Dagster reserves a character
or a sequence: ``...`` (its partition range syntax), ``,``, ``[``, ``]`` and ``|`` (its
partition subset and multi-partition syntax), control characters (invalid in a partition
key, ``dagster._core.definitions.partitions.utils.base.INVALID_PARTITION_SUBSTRINGS``),
line and paragraph separators, and ``%`` itself, so ``urllib.parse.unquote`` gives the
name back. A target record maps each key to its tree root and path, so any process that
gets only the partition key finds the directory again.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from wf_pipeline.errors import RUN_NAME_UNREPRESENTABLE, RUN_UNKNOWN_TARGET, RUN_UNKNOWN_TREE, RunError
from wf_pipeline.metadata.records import TargetRecord, TreeRecord, now_ms
from wf_pipeline.records import RecordStore
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.text.names import display_name
from wf_pipeline.tree import TreeScan

log = product_logger(__name__)

TREE_KEY_HEX = 6  # hex digits of the root id a tree key shows: 16.7 million trees per base name
_DOT_RUN = re.compile(r"\.{3,}")  # Dagster's range syntax is "a...b": runs of 3 or more dots
_RESERVED = frozenset("%,[]|")  # "%" for reversibility; the rest is Dagster subset/multi-partition syntax


def tree_root_id(root: Path) -> str:
    """The identity of a tree: SHA-256 hex of its resolved root path's file-system bytes.

    Args:
        root: the tree root; it is resolved (symbolic links and ``..`` removed) first.

    Returns:
        64 lowercase hex digits.
    """
    return hashlib.sha256(os.fsencode(str(root.resolve()))).hexdigest()


def encode_name(name: str) -> str:
    """One file name as it appears in a partition key: reversible with ``urllib.parse.unquote``.

    Characters Dagster reserves or rejects (see the module docstring) become ``%XX`` of
    their UTF-8 bytes; every other character, spaces and Unicode included, is kept.

    Args:
        name: one path segment (no ``/``), as `os.fsdecode` gives it.

    Returns:
        The encoded segment; never contains ``...``, a control character, ``,``, ``[``,
        ``]`` or ``|``.

    Raises:
        RunError: ``RUN_NAME_UNREPRESENTABLE`` for a name whose bytes are not UTF-8
            (Python holds them as surrogates, PEP 383): the record store, Markdown and
            JSON hold text, so such a directory is skipped with a warning naming it.
    """
    parts = []
    for char in name:
        if 0xD800 <= ord(char) <= 0xDFFF:
            shown = display_name(name)
            raise RunError(
                RUN_NAME_UNREPRESENTABLE,
                f"name '{shown}' is not UTF-8 (byte or surrogate U+{ord(char):04X}); "
                "it cannot be recorded as text",
                name=shown,
            )
        if char in _RESERVED or unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            parts.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
        else:
            parts.append(char)
    return _DOT_RUN.sub(lambda match: "%2E" * len(match.group(0)), "".join(parts))


def tree_key_for(root: Path) -> str:
    """The partition key of a tree's root directory: ``<encoded base name>~<6 hex of its root id>``.

    Args:
        root: the tree root (resolved here).

    Returns:
        The key; the file-system root ``/`` shows as ``%2F``.

    Raises:
        RunError: ``RUN_NAME_UNREPRESENTABLE`` as `encode_name`.
    """
    resolved = root.resolve()
    return f"{encode_name(resolved.name) or '%2F'}~{tree_root_id(resolved)[:TREE_KEY_HEX]}"


def target_key_for(root: Path, path: str) -> str:
    """The partition key of a directory: the tree key for the root, else ``<tree key>/<encoded path>``.

    Args:
        root: the tree root.
        path: the directory, POSIX and relative to ``root`` (``.`` for the root).

    Returns:
        The key (`tree_key_for`, `encode_name` per segment).

    Raises:
        RunError: ``RUN_NAME_UNREPRESENTABLE`` as `encode_name`.
    """
    tree_key = tree_key_for(root)
    if path == ".":
        return tree_key
    return tree_key + "/" + "/".join(encode_name(segment) for segment in path.split("/"))


@dataclass(frozen=True)
class Target:
    """A directory a workflow runs on: one Dagster partition.

    Attributes:
        key: the partition key (`target_key_for`).
        root: the tree root.
        path: the directory, POSIX and relative to ``root`` (``.`` for the root).
    """

    key: str
    root: Path
    path: str

    @classmethod
    def from_record(cls, record: TargetRecord) -> Target:
        """The target a target record stands for."""
        return cls(key=record.target_key, root=Path(record.root_path), path=record.path)


def target_depth(target: Target) -> int:
    """Depth of the target directory below its tree root (the root is 0).

    Args:
        target: the target.

    Returns:
        The number of path segments of ``target.path``; 0 for the root.
    """
    return 0 if target.path == "." else target.path.count("/") + 1


def documentable_directories(scan: TreeScan) -> list[str]:
    """Directories with at least one readable, non-empty text file below them, deepest first.

    A directory holding nothing, or only empty (0 bytes: an empty ``__init__.py``, a
    ``py.typed`` marker), binary, oversized or ignored files, offers no evidence a claim
    could cite, so it gets no thread.

    Args:
        scan: the tree as scanned.

    Returns:
        Directory paths relative to the scanned root, in `TreeScan.directories_bottom_up` order.
    """
    with_files: set[str] = set()
    for node in scan.nodes:
        has_text = node.kind == "file" and node.omitted is None and node.size > 0
        parent = node.parent_path if has_text else None
        while parent is not None and parent not in with_files:
            with_files.add(parent)
            parent = scan.node(parent).parent_path
    return [node.path for node in scan.directories_bottom_up() if node.path in with_files]


def planned_directories(scan: TreeScan, kind: str = "directory") -> list[str]:
    """The directories a workflow whose profile declares ``targets: {kind: ...}`` runs on.

    Args:
        scan: the tree as scanned.
        kind: ``directory`` (the default): every documentable directory
            (`documentable_directories`); ``root``: the scanned root only, when it is
            documentable (a tree with nothing to document gets no thread).

    Returns:
        Directory paths relative to the scanned root, deepest first.
    """
    return [path for path in documentable_directories(scan) if kind_covers(kind, path)]


def kind_covers(kind: str, path: str) -> bool:
    """Whether a workflow of target ``kind`` runs on the directory ``path`` (relative to the tree root).

    The one rule behind `planned_directories` (a scan) and every reader of recorded targets,
    which are shared by the workflows of a tree: ``root`` covers ``.`` only, ``directory``
    every path (profiles' ``targets: {kind: ...}``, docs/profiles.md).
    """
    return path == "." if kind == "root" else True


def register_tree(
    records: RecordStore,
    root: Path,
    *,
    out_dir: Path | None = None,
    in_place: bool = False,
    overwrite: bool = False,
    keep_outputs: bool = False,
) -> TreeRecord:
    """Record a tree under its resolved root path, and where its outputs go.

    Args:
        records: the record store.
        root: the tree root (resolved here).
        out_dir: outputs mirror the tree in this folder.
        in_place: outputs are written into the tree itself.
        overwrite: in place, replace existing, different outputs.
        keep_outputs: keep the output place an earlier registration recorded (when there
            is one) instead of the arguments.

    Returns:
        The saved `TreeRecord`.

    Raises:
        RunError: ``RUN_NAME_UNREPRESENTABLE`` for a root name `encode_name` refuses.
        RecordError: ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
    """
    resolved = root.resolve()
    root_id = tree_root_id(resolved)
    existing = records.get_tree(root_id) if keep_outputs else None
    if existing is not None:
        out_text, in_place, overwrite = existing.out_dir, existing.in_place, existing.overwrite
    else:
        out_text = None if in_place or out_dir is None else str(out_dir.resolve())
    tree = TreeRecord(
        root_id=root_id,
        root_path=str(resolved),
        display_name=display_name(resolved.name or str(resolved)),
        tree_key=tree_key_for(resolved),
        out_dir=out_text,
        in_place=in_place,
        overwrite=overwrite and in_place,
        registered_at_ms=now_ms(),
    )
    records.save_tree(tree)
    return tree


def tree_output_dir(tree: TreeRecord, default_base: Path) -> Path:
    """The folder a tree's outputs mirror it in: its root when in place, its recorded folder, else the default.

    Args:
        tree: the tree record.
        default_base: ``WF_OUT``; a tree synced without a place writes to
            ``<default_base>/<tree key>``, so trees with one base name never share it.

    Returns:
        An absolute or ``default_base``-relative folder.
    """
    if tree.in_place:
        return Path(tree.root_path)
    if tree.out_dir is not None:
        return Path(tree.out_dir)
    return default_base / tree.tree_key


def find_tree(records: RecordStore, name: str) -> TreeRecord:
    """The registered tree a user names: by its root path, its tree key, or a base name only one tree has.

    Args:
        records: the record store.
        name: a path (resolved), a tree key (``click~3fa2c1``) or a display name.

    Returns:
        The `TreeRecord`.

    Raises:
        RunError: ``RUN_UNKNOWN_TREE`` when nothing matches, or when a base name is
            shared by several trees (their keys are listed).
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    path = Path(name).expanduser()
    if path.exists():
        tree = records.get_tree(tree_root_id(path))
        if tree is not None:
            return tree
    trees = records.list_trees()
    by_key = [tree for tree in trees if tree.tree_key == name]
    if by_key:
        return by_key[0]
    by_name = [tree for tree in trees if tree.display_name == name]
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        keys = ", ".join(tree.tree_key for tree in by_name)
        raise RunError(RUN_UNKNOWN_TREE, f"{len(by_name)} trees are named {name!r}: name one of {keys}")
    raise RunError(
        RUN_UNKNOWN_TREE,
        f"no tree registered as {name!r} ({len(trees)} registered); run `wf targets sync PATH`",
    )


def register_targets(records: RecordStore, scan: TreeScan, kind: str = "directory") -> list[Target]:
    """Record the tree and every directory of ``scan`` a workflow of target ``kind`` runs on as a target.

    A directory whose name `encode_name` refuses is skipped with a warning naming it
    (``RUN_NAME_UNREPRESENTABLE``); the latest registration of a key wins. The tree record
    is created when missing; an existing one keeps its output place.

    Args:
        records: the record store the targets are saved to.
        scan: the tree as scanned.
        kind: the profile's target kind (``Profile.target_kind``): ``directory`` for every
            documentable directory, ``root`` for the root only (`planned_directories`).

    Returns:
        The targets, deepest first (`planned_directories`).

    Raises:
        RunError: ``RUN_NAME_UNREPRESENTABLE`` when the root's own name is refused.
        RecordError: ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
    """
    register_tree(records, scan.root, keep_outputs=True)
    stamp = now_ms()
    targets = []
    for path in planned_directories(scan, kind):
        try:
            key = target_key_for(scan.root, path)
        except RunError as exc:
            log.warning("%s (directory skipped)", exc)
            continue
        targets.append(Target(key=key, root=scan.root, path=path))
    records.save_targets(
        [
            TargetRecord(target_key=t.key, root_path=str(t.root), path=t.path, registered_at_ms=stamp)
            for t in targets
        ]
    )
    return targets


def resolve_target(records: RecordStore, key: str) -> Target:
    """The target registered under a partition key, for a process that got only the key.

    Args:
        records: the record store the target was registered in.
        key: the partition key.

    Returns:
        The registered `Target`.

    Raises:
        RunError: ``RUN_UNKNOWN_TARGET`` when no target is registered under ``key``.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    record = records.get_target(key)
    if record is None:
        raise RunError(
            RUN_UNKNOWN_TARGET, f"no target registered under key {key!r}; run `wf targets sync PATH`"
        )
    return Target.from_record(record)
