"""A scratch namespace over a live artifact store: reads fall through, writes stay in memory.

A replay re-executes threads and puts what they produce; none of it may land in the live
store (a divergent output would otherwise be an orphan there, or, encrypted, cost a data
key). `ScratchArtifactStore` puts into a private `MemoryArtifactStore` and reads an id
from there first, then from the live store (through its own wrappers: decryption,
expiry). Deleting and quarantining touch only the scratch objects.
"""

from __future__ import annotations

from collections.abc import Iterable

from wf_pipeline.cas.memory import MemoryArtifactStore
from wf_pipeline.cas.protocol import ArtifactRef, ArtifactStore, DelegatingStore


class ScratchArtifactStore(DelegatingStore):
    """An `ArtifactStore` writing to memory and reading memory first, then ``live``.

    Args:
        live: the live store; only read.

    Attributes:
        scratch: the in-memory store holding every put.

    Raises the codes of the store that answers (``CAS_NOT_FOUND`` when neither has the id).
    """

    def __init__(self, live: ArtifactStore) -> None:
        super().__init__(live)
        self.scratch = MemoryArtifactStore()
        self.url = f"scratch+{live.url}"

    def put(self, data: bytes, *, artifact_class: str | None = None) -> ArtifactRef:
        """Put into the scratch store; returns the ref (size in bytes)."""
        return self.scratch.put(data, artifact_class=artifact_class)

    def put_many(self, items: Iterable[bytes], *, artifact_class: str | None = None) -> list[ArtifactRef]:
        """Put each into the scratch store; refs in input order."""
        return self.scratch.put_many(items, artifact_class=artifact_class)

    def get(self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None) -> bytes:
        """The verified bytes, from the scratch store if it has them, else the live one."""
        if self.scratch.exists(artifact_id):
            return self.scratch.get(artifact_id, size=size, artifact_class=artifact_class)
        return self.inner.get(artifact_id, size=size, artifact_class=artifact_class)

    def stat(self, artifact_id: str) -> ArtifactRef:
        """The ref of the object, scratch first."""
        if self.scratch.exists(artifact_id):
            return self.scratch.stat(artifact_id)
        return self.inner.stat(artifact_id)

    def exists(self, artifact_id: str) -> bool:
        """Whether either store holds the id."""
        return self.scratch.exists(artifact_id) or self.inner.exists(artifact_id)

    def delete(self, artifact_id: str) -> None:
        """Delete from the scratch store only."""
        if self.scratch.exists(artifact_id):
            self.scratch.delete(artifact_id)

    def quarantine(self, artifact_id: str) -> str | None:
        """Quarantine in the scratch store only; a live object is left for the live store's own checks."""
        return self.scratch.quarantine(artifact_id) if self.scratch.exists(artifact_id) else None

    def close(self) -> None:
        """Drop the scratch objects; the live store belongs to its opener."""
        self.scratch.close()
