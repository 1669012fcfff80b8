"""Targets: the directories a workflow runs on, one Dagster partition each.

A target key is readable in the UI (``<root name>/<relative path>``) and maps, through
a target record, to the tree root and path it stands for, so any process that gets
only the partition key can find the directory again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wf_pipeline.errors import RUN_UNKNOWN_TARGET, RunError
from wf_pipeline.metadata.records import TargetRecord, now_ms
from wf_pipeline.records import RecordStore
from wf_pipeline.tree import TreeScan


def target_key_for(root: Path, path: str) -> str:
    """The partition key of a directory: ``<root name>`` for the root, else ``<root name>/<path>``.

    Args:
        root: the tree root.
        path: the directory, POSIX and relative to ``root`` (``.`` for the root).
    """
    return root.name if path == "." else f"{root.name}/{path}"


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
    """Directories with at least one readable text file below them, deepest first.

    A directory holding nothing, or only binary, oversized or ignored files, offers no
    evidence a claim could cite, so it gets no thread.

    Args:
        scan: the tree as scanned.

    Returns:
        Directory paths relative to the scanned root, in `TreeScan.directories_bottom_up` order.
    """
    with_files: set[str] = set()
    for node in scan.nodes:
        parent = node.parent_path if node.kind == "file" and node.omitted is None else None
        while parent is not None and parent not in with_files:
            with_files.add(parent)
            parent = scan.node(parent).parent_path
    return [node.path for node in scan.directories_bottom_up() if node.path in with_files]


def register_targets(records: RecordStore, scan: TreeScan) -> list[Target]:
    """Record every documentable directory of ``scan`` as a target; the latest registration of a key wins.

    Args:
        records: the record store the targets are saved to.
        scan: the tree as scanned.

    Returns:
        The targets, deepest first (`documentable_directories`).

    Raises:
        RecordError: ``RECORD_INVALID``, ``RECORD_UNAVAILABLE``.
    """
    stamp = now_ms()
    targets = [
        Target(key=target_key_for(scan.root, path), root=scan.root, path=path)
        for path in documentable_directories(scan)
    ]
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
