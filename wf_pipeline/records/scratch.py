"""A scratch namespace over a live record store: what a replay writes stays out of the live records.

`ScratchRecordStore` reads through to the live store and writes to a private in-memory
store (`MemoryRecordStore`). The threads named at creation are *replayed*: every read
of their history (turns, gates, links, frames, the thread row itself) sees only what the
scratch store holds, so they re-run from nothing while every other thread (a directory's
children, whose outputs feed its context) is read as recorded. A head frame is the
scratch store's when it has one for that node, else the live one; live heads are never
written.

Anything the protocol has beyond these overrides is read from the live store (trees,
nodes, targets, keys, grants, identities); a write the replay has no business making
there is refused by omission only in the sense that every write method below goes to the
scratch store.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from wf_pipeline.metadata.records import (
    ArtifactLinkRecord,
    AuditEventRecord,
    FrameRecord,
    GateRecord,
    PromptLinkRecord,
    TargetRecord,
    ThreadRecord,
    TreeRecord,
    TurnRecord,
)
from wf_pipeline.records.memory import MemoryRecordStore
from wf_pipeline.records.protocol import AuditBuilder, RecordStore, ThreadLease, TurnCommit


class ScratchRecordStore:
    """A `RecordStore` whose writes land in memory and whose replayed threads start empty.

    Args:
        live: the live store; only read.
        replayed: the ids of the threads being replayed.

    Attributes:
        scratch: the in-memory store holding everything written.

    Raises what the live store's reads raise (``RECORD_UNAVAILABLE``) and what the memory
    store's writes raise (``RECORD_INVALID``, ``RECORD_INTEGRITY``).
    """

    def __init__(self, live: RecordStore, replayed: Iterable[str]) -> None:
        self.live = live
        self.scratch = MemoryRecordStore()
        self.replayed = frozenset(replayed)

    @property
    def url(self) -> str:
        """The live store's URL with a ``scratch+`` prefix (never a secret-bearing URL of its own)."""
        return f"scratch+{self.live.url}"

    def close(self) -> None:
        """Nothing to release: the live store belongs to its opener."""

    def __enter__(self) -> ScratchRecordStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _store(self, thread_id: str) -> Any:
        return self.scratch if thread_id in self.replayed else self.live

    # --- threads and their history ------------------------------------------------

    def get_thread(self, thread_id: str) -> ThreadRecord | None:
        """The thread as the scratch store holds it when replayed, else as recorded."""
        return self._store(thread_id).get_thread(thread_id)

    def save_thread(self, record: ThreadRecord) -> None:
        """Save to the scratch store."""
        self.scratch.save_thread(record)

    def add_thread(self, record: ThreadRecord) -> ThreadRecord:
        """Add to the scratch store (first writer wins there)."""
        return self.scratch.add_thread(record)

    def commit_turn(self, commit: TurnCommit) -> None:
        """Commit to the scratch store."""
        self.scratch.commit_turn(commit)

    def commit_turns(self, commits: Iterable[TurnCommit]) -> int:
        """Commit to the scratch store; returns how many."""
        return self.scratch.commit_turns(commits)

    def turns_for_thread(self, thread_id: str) -> list[TurnRecord]:
        """A replayed thread's attempts in scratch, another's as recorded."""
        return self._store(thread_id).turns_for_thread(thread_id)

    def latest_turns(self, thread_id: str) -> dict[str, TurnRecord]:
        """As `turns_for_thread`, the highest attempt per turn."""
        return self._store(thread_id).latest_turns(thread_id)

    def gates_for_thread(self, thread_id: str) -> list[GateRecord]:
        """As `turns_for_thread`, for gate verdicts."""
        return self._store(thread_id).gates_for_thread(thread_id)

    def prompt_links_for_thread(self, thread_id: str) -> list[PromptLinkRecord]:
        """As `turns_for_thread`, for prompt links."""
        return self._store(thread_id).prompt_links_for_thread(thread_id)

    def artifact_links_for_thread(self, thread_id: str) -> list[ArtifactLinkRecord]:
        """As `turns_for_thread`, for artifact links."""
        return self._store(thread_id).artifact_links_for_thread(thread_id)

    def frames_for_thread(self, thread_id: str) -> list[FrameRecord]:
        """As `turns_for_thread`, for frames."""
        return self._store(thread_id).frames_for_thread(thread_id)

    def turns_for_request(self, request_digest: str) -> list[TurnRecord]:
        """The live answers to a request (a replay answers from what was recorded)."""
        return self.live.turns_for_request(request_digest)

    # --- frames ---------------------------------------------------------------------

    def save_frame(self, record: FrameRecord) -> None:
        """Save to the scratch store: live heads never move."""
        self.scratch.save_frame(record)

    def head_frame(self, node_id: str, frame_type: str) -> FrameRecord | None:
        """The scratch head of the node when a replay wrote one, else the live head."""
        return self.scratch.head_frame(node_id, frame_type) or self.live.head_frame(node_id, frame_type)

    def frame_artifact_ids(self, frame_type: str) -> set[str]:
        """Artifact ids of every frame of ``frame_type``, live and scratch."""
        return self.live.frame_artifact_ids(frame_type) | self.scratch.frame_artifact_ids(frame_type)

    # --- writes a turn may make besides its commit ----------------------------------

    def append_audit_record(self, build: AuditBuilder) -> AuditEventRecord:
        """Append to the scratch store's own chain: a replay leaves the live trail as it was."""
        return self.scratch.append_audit_record(build)

    def acquire_lease(self, thread_id: str, holder: str, ttl_ms: int, **kwargs: Any) -> ThreadLease:
        """Lease in the scratch store: no live thread is held by a replay."""
        return self.scratch.acquire_lease(thread_id, holder, ttl_ms, **kwargs)

    def renew_lease(self, thread_id: str, holder: str, ttl_ms: int, **kwargs: Any) -> bool:
        """Renew in the scratch store."""
        return self.scratch.renew_lease(thread_id, holder, ttl_ms, **kwargs)

    def release_lease(self, thread_id: str, holder: str) -> bool:
        """Release in the scratch store."""
        return self.scratch.release_lease(thread_id, holder)

    def save_tree(self, record: TreeRecord) -> None:
        """Save to the scratch store: a judgement that registers a tree's targets leaves the live ones be."""
        self.scratch.save_tree(record)

    def save_targets(self, records: Iterable[TargetRecord]) -> None:
        """Save to the scratch store (as `save_tree`)."""
        self.scratch.save_targets(records)

    def sweep_lock(self) -> AbstractContextManager[None]:
        """No lock: a replay deletes nothing."""
        return nullcontext()

    def __getattr__(self, name: str) -> Any:
        # Every other read (trees, nodes, targets, keys) is the live store's.
        return getattr(self.live, name)
