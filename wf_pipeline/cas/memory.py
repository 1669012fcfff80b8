"""An in-memory `ArtifactStore`: the reference implementation of the protocol, for tests and demos.

Objects live in a dict guarded by a lock, so threads share one store safely; nothing
survives the process. ``memory://<name>`` opens a store by name (stores opened with the
same name in one process share their objects, as fsspec's memory filesystem does);
``memory://`` opens a private one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from wf_pipeline.cas.protocol import (
    ArtifactCodec,
    ArtifactRef,
    ObjectInfo,
    ScratchFile,
    batch_of,
    check_artifact_id,
    check_ref_name,
    check_ref_value,
    check_scratch_name,
    hex_of,
    not_found,
    ref_not_found,
    verify,
)

MEMORY_SCHEME = "memory"


@dataclass
class _Contents:
    objects: dict[str, bytes] = field(default_factory=dict)
    # Artifact id -> when it was last put (ms): what `iter_objects` reports as its age.
    modified_ms: dict[str, int] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    quarantined: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


# Named stores of this process, so two opens of ``memory://x`` see the same objects.
_NAMED: dict[str, _Contents] = {}
_NAMED_LOCK = threading.Lock()


class MemoryArtifactStore(ArtifactCodec):
    """An `ArtifactStore` held in this process's memory.

    Args:
        name: stores of the same non-empty name share their contents within the process;
            an empty name makes a private store.

    Every put is atomic and durable for the life of the process (the batch barrier of
    `put_many` is the lock). Reads verify the digest like any other store.
    """

    def __init__(self, name: str = "") -> None:
        self.url = f"{MEMORY_SCHEME}://{name}"
        if not name:
            self._contents = _Contents()
        else:
            with _NAMED_LOCK:
                self._contents = _NAMED.setdefault(name, _Contents())

    def __repr__(self) -> str:
        return f"MemoryArtifactStore({self.url!r})"

    def put(self, data: bytes, *, artifact_class: str | None = None) -> ArtifactRef:
        """Store ``data`` under its digest; returns its ref (id, size in bytes). Idempotent; the class is ignored."""
        return self.put_many([data])[0]

    def put_many(self, items: Iterable[bytes], *, artifact_class: str | None = None) -> list[ArtifactRef]:
        """Store a batch under one lock; one ref per item, in input order.

        A present object holding exactly these bytes is kept; one whose bytes differ
        (damaged, whatever its size) is replaced.
        """
        refs, distinct = batch_of(items)
        now_ms = time.time_ns() // 1_000_000
        with self._contents.lock:
            objects = self._contents.objects
            for artifact_id, data in distinct.items():
                if objects.get(artifact_id) != data:
                    objects[artifact_id] = data
                # Every put refreshes the age, as the fsspec store does (see `iter_objects`).
                self._contents.modified_ms[artifact_id] = now_ms
        return refs

    def get(self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None) -> bytes:
        """The verified bytes of ``artifact_id`` (the class is ignored); ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``, ``CAS_DIGEST_MISMATCH``."""
        return verify(artifact_id, self.read_object(artifact_id), size, where=self.url)

    def read_object(self, artifact_id: str) -> bytes:
        """The stored bytes of ``artifact_id``, unverified; ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``."""
        check_artifact_id(artifact_id)
        with self._contents.lock:
            data = self._contents.objects.get(artifact_id)
        if data is None:
            raise not_found(artifact_id, where=self.url)
        return data

    def write_objects(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store each ``(artifact_id, bytes)`` as given, under one lock; ``CAS_INVALID_ID``."""
        checked = [(check_artifact_id(artifact_id), bytes(data)) for artifact_id, data in items]
        now_ms = time.time_ns() // 1_000_000
        with self._contents.lock:
            for artifact_id, data in checked:
                self._contents.objects[artifact_id] = data
                self._contents.modified_ms[artifact_id] = now_ms

    def touch_object(self, artifact_id: str) -> bool:
        """Renew the object's age; False when absent. ``CAS_INVALID_ID``."""
        check_artifact_id(artifact_id)
        with self._contents.lock:
            if artifact_id not in self._contents.objects:
                return False
            self._contents.modified_ms[artifact_id] = time.time_ns() // 1_000_000
            return True

    def exists(self, artifact_id: str) -> bool:
        """Whether an object is stored under ``artifact_id``; ``CAS_INVALID_ID``."""
        check_artifact_id(artifact_id)
        with self._contents.lock:
            return artifact_id in self._contents.objects

    def stat(self, artifact_id: str) -> ArtifactRef:
        """The stored object's id and size in bytes; ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``."""
        check_artifact_id(artifact_id)
        with self._contents.lock:
            data = self._contents.objects.get(artifact_id)
        if data is None:
            raise not_found(artifact_id, where=self.url)
        return ArtifactRef(artifact_id, len(data))

    def delete(self, artifact_id: str) -> None:
        """Remove an object; deleting an absent one is not an error. ``CAS_INVALID_ID``."""
        check_artifact_id(artifact_id)
        with self._contents.lock:
            self._contents.objects.pop(artifact_id, None)
            self._contents.modified_ms.pop(artifact_id, None)

    def quarantine(self, artifact_id: str) -> str | None:
        """Move the object aside (kept in `quarantined`); returns its quarantine name, None if absent.

        Raises ``CAS_INVALID_ID``.
        """
        check_artifact_id(artifact_id)
        with self._contents.lock:
            data = self._contents.objects.pop(artifact_id, None)
            self._contents.modified_ms.pop(artifact_id, None)
            if data is None:
                return None
            name = f"quarantine/{hex_of(artifact_id)}.{len(self._contents.quarantined)}"
            self._contents.quarantined[name] = data
        return name

    @property
    def quarantined(self) -> dict[str, bytes]:
        """Quarantine name -> the bytes moved aside by `quarantine` (a copy)."""
        with self._contents.lock:
            return dict(self._contents.quarantined)

    def iter_artifact_ids(self) -> Iterator[str]:
        """Ids of every stored object, in ascending id order (a snapshot taken at the call)."""
        with self._contents.lock:
            ids = sorted(self._contents.objects)
        return iter(ids)

    def iter_objects(self) -> Iterator[ObjectInfo]:
        """Every object with its size (bytes) and last put time (ms), in id order (a snapshot)."""
        with self._contents.lock:
            now_ms = time.time_ns() // 1_000_000
            infos = [
                ObjectInfo(artifact_id, len(data), self._contents.modified_ms.get(artifact_id, now_ms))
                for artifact_id, data in sorted(self._contents.objects.items())
            ]
        return iter(infos)

    def iter_scratch(self) -> Iterator[ScratchFile]:
        """None: puts here are atomic under the lock and stage nothing."""
        return iter(())

    def delete_scratch(self, name: str) -> None:
        """Nothing to remove (see `iter_scratch`); ``CAS_INVALID_REF`` for a name with a folder part."""
        check_scratch_name(name)

    def backdate_for_testing(self, artifact_id: str, modified_ms: int) -> None:
        """Test hook: make the object of ``artifact_id`` look last put at ``modified_ms`` (epoch ms).

        Stands in for an object written long ago, so age rules (grace periods) can be tested
        without waiting.
        """
        check_artifact_id(artifact_id)
        with self._contents.lock:
            if artifact_id in self._contents.objects:
                self._contents.modified_ms[artifact_id] = modified_ms

    def set_ref(self, name: str, artifact_id: str) -> None:
        """Point ``name`` at ``artifact_id``; ``CAS_INVALID_ID``, ``CAS_INVALID_REF``."""
        check_artifact_id(artifact_id)
        check_ref_name(name)
        with self._contents.lock:
            self._contents.refs[name] = artifact_id

    def get_ref(self, name: str) -> str:
        """The artifact id ``name`` points at; ``CAS_INVALID_REF``, ``CAS_REF_NOT_FOUND``."""
        check_ref_name(name)
        with self._contents.lock:
            value = self._contents.refs.get(name)
        if value is None:
            raise ref_not_found(name, where=self.url)
        return check_ref_value(name, value, where=self.url)

    def corrupt_for_testing(self, artifact_id: str, data: bytes) -> None:
        """Test hook: make the stored object of ``artifact_id`` hold ``data``, unverified.

        Stands in for a disk or bucket that damaged an object behind the store's back, so
        the conformance suite can check that `get` reports ``CAS_DIGEST_MISMATCH``.
        """
        check_artifact_id(artifact_id)
        with self._contents.lock:
            self._contents.objects[artifact_id] = bytes(data)


def open_memory_store(url: str) -> MemoryArtifactStore:
    """Open ``memory://<name>`` (see the module docstring); the part after ``://`` is the name."""
    return MemoryArtifactStore(url.split("://", 1)[1].strip("/"))
