"""The artifact-store protocol and the rules every implementation shares.

An artifact is immutable bytes whose id is ``sha256:<64 lowercase hex>`` of those bytes
(`wf_pipeline.metadata.canonical.digest`). A store maps ids to bytes; it never hands out
bytes that do not hash to the id asked for. Encryption, retention and audit wrap a store
through this protocol, so they see one interface whatever the backend.

The judgements that must not differ between implementations live here once: what a
valid id and a valid ref name are, how a read is verified, and how text and JSON become
canonical bytes (`ArtifactCodec`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from wf_pipeline.errors import (
    CAS_DECODE_ERROR,
    CAS_DIGEST_MISMATCH,
    CAS_INVALID_ID,
    CAS_INVALID_JSON,
    CAS_INVALID_REF,
    CAS_NOT_FOUND,
    CAS_REF_CORRUPT,
    CAS_REF_NOT_FOUND,
    CasError,
)
from wf_pipeline.metadata.canonical import (
    DIGEST_PREFIX,
    canonical_json,
    canonical_text,
    digest,
    is_digest,
    parse_json,
)


@dataclass(frozen=True)
class ArtifactRef:
    """Where an artifact is: its id and its size.

    Attributes:
        artifact_id: ``sha256:<64 lowercase hex>`` of the stored bytes.
        size: length of the stored bytes, in bytes.
    """

    artifact_id: str
    size: int


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object as a listing sees it, without reading it.

    Attributes:
        artifact_id: ``sha256:<64 lowercase hex>``.
        size: stored length in bytes.
        modified_ms: when the object was last written or put again (Unix epoch, ms); a
            store that cannot tell reports the time of the listing, so an age check never
            takes such an object for old.
    """

    artifact_id: str
    size: int
    modified_ms: int


@dataclass(frozen=True)
class ScratchFile:
    """One scratch file a store left behind (a write staged in ``tmp/*.part`` and never renamed).

    Attributes:
        name: the file's name inside the store's scratch folder (no folder part).
        size: its length in bytes.
        modified_ms: when it was last written (Unix epoch, ms).
    """

    name: str
    size: int
    modified_ms: int


@runtime_checkable
class ArtifactStore(Protocol):
    """A content-addressed store of immutable bytes, plus named refs to them.

    Every implementation passes the conformance suite in ``tests/conformance/cas_suite.py``:
    puts are atomic (a reader sees the whole object or none) and idempotent, reads verify
    the digest, concurrent writers of one object all succeed. Errors are `CasError` with
    the codes named per method; any backend failure is ``CAS_BACKEND_ERROR``.
    """

    url: str

    def put(self, data: bytes, *, artifact_class: str | None = None) -> ArtifactRef:
        """Store ``data`` under its digest and return its ref.

        ``artifact_class`` (``prompt_render``, ``context_payload``, ``output``, ...) tells a
        store that encrypts per class (`wf_pipeline.crypto.store`) which policy and keys
        apply; plain stores ignore it. The id is the digest of ``data`` either way.
        Idempotent: storing present bytes again writes nothing. A stored copy whose bytes
        differ (damaged, even at the same size) is replaced atomically, never trusted.
        Raises ``CAS_BACKEND_ERROR``; nothing is visible under the id after a failure.
        """
        ...

    def put_many(self, items: Iterable[bytes], *, artifact_class: str | None = None) -> list[ArtifactRef]:
        """Store every object of ``items`` (all of ``artifact_class``) with one durability barrier for the whole batch.

        Returns one ref per item, in input order (duplicates give equal refs). Each object
        is published atomically; after a failure, objects published before it stay (they
        are valid content) and none is half-written. Raises ``CAS_BACKEND_ERROR``.
        """
        ...

    def put_text(self, text: str, *, artifact_class: str | None = None) -> ArtifactRef:
        """Store ``text`` as canonical UTF-8 with LF line endings; see `put`."""
        ...

    def put_json(self, value: Any, *, artifact_class: str | None = None) -> ArtifactRef:
        """Store ``value`` as canonical JSON; raises ``CAS_INVALID_JSON`` if it has no canonical form."""
        ...

    def get(self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None) -> bytes:
        """The verified bytes of ``artifact_id``.

        Args:
            artifact_id: the id to read.
            size: the expected length in bytes, checked when given.
            artifact_class: the class the reader expects, when it knows it: a store that
                encrypts refuses a plaintext object of a class whose policy requires
                encryption (``CAS_NOT_ENCRYPTED``); plain stores ignore it.

        Raises ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``, ``CAS_DIGEST_MISMATCH`` (stored bytes
        do not hash to the id or differ from ``size``), ``CAS_BACKEND_ERROR``.
        """
        ...

    def get_text(
        self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None
    ) -> str:
        """`get`, decoded as UTF-8; raises ``CAS_DECODE_ERROR`` besides `get`'s codes."""
        ...

    def get_json(
        self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None
    ) -> Any:
        """`get_text`, parsed as JSON; raises ``CAS_DECODE_ERROR`` besides `get`'s codes."""
        ...

    def exists(self, artifact_id: str) -> bool:
        """Whether an object is stored under ``artifact_id`` (not verified); ``CAS_INVALID_ID``."""
        ...

    def stat(self, artifact_id: str) -> ArtifactRef:
        """The stored object's ref (id and size in bytes), without reading or verifying it.

        Raises ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``, ``CAS_BACKEND_ERROR``.
        """
        ...

    def size(self, artifact_id: str) -> int:
        """``stat(artifact_id).size``: the stored size in bytes; same codes as `stat`."""
        ...

    def delete(self, artifact_id: str) -> None:
        """Remove an object; deleting an absent one is not an error. ``CAS_INVALID_ID``."""
        ...

    def quarantine(self, artifact_id: str) -> str | None:
        """Move the stored object of ``artifact_id`` aside, kept but no longer readable under its id.

        Used for objects whose bytes no longer hash to their id: they are kept for
        diagnosis (never deleted), and the id reads as absent afterwards, so a later `put`
        of the right bytes stores them anew. Returns where the object went (a path or
        name inside the store), or None when nothing was stored under the id. Raises
        ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR``.
        """
        ...

    def iter_artifact_ids(self) -> Iterator[str]:
        """Ids of every stored object, in ascending id order; refs are not objects."""
        ...

    # The raw object layer: stored bytes under an id, unverified. Wrappers that transform
    # what is stored (`wf_pipeline.crypto.store` keeps envelopes, whose bytes do not hash to
    # the id of the plaintext) read and publish through it; every other caller uses get/put.

    def read_object(self, artifact_id: str) -> bytes:
        """The stored bytes under ``artifact_id`` as they are, not verified against the id.

        Raises ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``, ``CAS_BACKEND_ERROR``.
        """
        ...

    def write_objects(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish each ``(artifact_id, stored bytes)`` atomically under its id, one durability barrier for all.

        The bytes are not checked against the id: the caller vouches for them. Raises
        ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR``; no object is ever half-written under its id.
        """
        ...

    def touch_object(self, artifact_id: str) -> bool:
        """Renew the age of the stored object (see `iter_objects`); False when absent or when it must be written again.

        Raises ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR``.
        """
        ...

    def iter_objects(self) -> Iterator[ObjectInfo]:
        """Every stored object with its size (bytes) and last write time (ms), in ascending id order.

        A `put` of an object already stored refreshes its time, so an object a run has just
        put (before its records exist: CAS first) always looks young to an age check such
        as the orphan sweep's grace period. Raises ``CAS_BACKEND_ERROR``.
        """
        ...

    def iter_scratch(self) -> Iterator[ScratchFile]:
        """Scratch files of staged writes (``tmp/*.part``), in name order; none for stores without them.

        A write that crashed between staging and rename leaves one behind; a live write's
        file is young. Raises ``CAS_BACKEND_ERROR``.
        """
        ...

    def delete_scratch(self, name: str) -> None:
        """Remove the scratch file ``name`` (as `iter_scratch` lists it); an absent one is not an error.

        Raises ``CAS_INVALID_REF`` for a name with a folder part, ``CAS_BACKEND_ERROR``.
        """
        ...

    def set_ref(self, name: str, artifact_id: str) -> None:
        """Point the ref ``name`` (slash-separated, no empty, ``.`` or ``..`` part) at an artifact.

        Replaced atomically: readers see the old or the new id. Raises ``CAS_INVALID_REF``,
        ``CAS_INVALID_ID``.
        """
        ...

    def get_ref(self, name: str) -> str:
        """The artifact id ``name`` points at; ``CAS_REF_NOT_FOUND``, ``CAS_REF_CORRUPT``, ``CAS_INVALID_REF``."""
        ...

    def close(self) -> None:
        """Release what the store holds open (clients, sessions); stored objects stay."""
        ...


def check_artifact_id(artifact_id: str) -> str:
    """Return ``artifact_id`` if it is ``sha256:<64 lowercase hex>``, else raise ``CAS_INVALID_ID``.

    Checked before any storage is touched, so an id can never name a path outside the store.
    """
    if not is_digest(artifact_id):
        raise CasError(
            CAS_INVALID_ID,
            "artifact id must be sha256:<64 lowercase hex>",
            artifact_id=str(artifact_id)[:80],
        )
    return artifact_id


def hex_of(artifact_id: str) -> str:
    """The 64 hex digits of a valid id (``CAS_INVALID_ID`` otherwise)."""
    return check_artifact_id(artifact_id)[len(DIGEST_PREFIX) :]


def check_scratch_name(name: str) -> str:
    """Return ``name`` if it names a file directly inside a scratch folder, else ``CAS_INVALID_REF``.

    A scratch name has no slash and is not ``.`` or ``..``, so it never reaches outside the folder.
    """
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
        raise CasError(CAS_INVALID_REF, f"invalid scratch file name {str(name)[:80]!r}", ref=str(name)[:80])
    return name


def check_ref_name(name: str) -> str:
    """Return ``name`` if it is a valid ref name, else raise ``CAS_INVALID_REF``.

    A ref name is slash-separated parts, none empty, ``.`` or ``..``.
    """
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts):
        raise CasError(CAS_INVALID_REF, f"invalid ref name {name!r}", ref=name)
    return name


def verify(artifact_id: str, data: bytes, expected_size: int | None, *, where: str) -> bytes:
    """Return ``data`` if it hashes to ``artifact_id`` and has ``expected_size`` bytes (when given).

    Raises ``CAS_DIGEST_MISMATCH`` with the id, the actual digest and both sizes (never the
    bytes); ``where`` names the store in the message.
    """
    actual_id = digest(data)
    if actual_id == artifact_id and (expected_size is None or expected_size == len(data)):
        return data
    raise CasError(
        CAS_DIGEST_MISMATCH,
        f"stored object {artifact_id} in {where} does not match its id or expected size",
        artifact_id=artifact_id,
        actual_digest=actual_id,
        expected_size=expected_size,
        actual_size=len(data),
    )


def not_found(artifact_id: str, *, where: str) -> CasError:
    """The ``CAS_NOT_FOUND`` error for ``artifact_id`` in the store named ``where``."""
    return CasError(CAS_NOT_FOUND, f"{artifact_id} is not in {where}", artifact_id=artifact_id)


def ref_not_found(name: str, *, where: str) -> CasError:
    """The ``CAS_REF_NOT_FOUND`` error for the ref ``name`` in the store named ``where``."""
    return CasError(CAS_REF_NOT_FOUND, f"no ref {name!r} in {where}", ref=name)


def check_ref_value(name: str, value: str, *, where: str) -> str:
    """Return the stored ref ``value`` if it is an artifact id, else raise ``CAS_REF_CORRUPT``."""
    if not is_digest(value):
        raise CasError(CAS_REF_CORRUPT, f"ref {name!r} in {where} does not hold an artifact id", ref=name)
    return value


class ArtifactCodec:
    """Text and JSON helpers over `put` and `get`, shared by every store.

    A store inherits this so that text and JSON canonicalisation is decided once
    (`wf_pipeline.metadata.canonical`): UTF-8 with LF line endings, JSON with sorted keys
    and no insignificant whitespace. The store that inherits it provides ``put``, ``get``
    and ``stat``.
    """

    put: Callable[..., ArtifactRef]
    get: Callable[..., bytes]
    stat: Callable[[str], ArtifactRef]

    def put_text(self, text: str, *, artifact_class: str | None = None) -> ArtifactRef:
        """Store ``text`` as canonical UTF-8 (LF line endings); returns its ref (size in bytes)."""
        return self.put(canonical_text(text), artifact_class=artifact_class)

    def put_json(self, value: Any, *, artifact_class: str | None = None) -> ArtifactRef:
        """Store ``value`` as canonical JSON; raises ``CAS_INVALID_JSON`` before writing anything."""
        try:
            data = canonical_json(value)
        except (TypeError, ValueError) as exc:
            raise CasError(CAS_INVALID_JSON, f"value is not canonical JSON: {type(exc).__name__}") from exc
        return self.put(data, artifact_class=artifact_class)

    def get_text(
        self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None
    ) -> str:
        """The verified object decoded as UTF-8; ``CAS_DECODE_ERROR`` plus the codes of ``get``."""
        data = self.get(artifact_id, size=size, artifact_class=artifact_class)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CasError(
                CAS_DECODE_ERROR, f"{artifact_id} is not UTF-8 text", artifact_id=artifact_id
            ) from exc

    def get_json(
        self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None
    ) -> Any:
        """The verified object parsed as JSON; ``CAS_DECODE_ERROR`` plus the codes of ``get``."""
        text = self.get_text(artifact_id, size=size, artifact_class=artifact_class)
        try:
            return parse_json(text)
        except ValueError as exc:
            raise CasError(CAS_DECODE_ERROR, f"{artifact_id} is not JSON", artifact_id=artifact_id) from exc

    def size(self, artifact_id: str) -> int:
        """Stored size in bytes, without reading or verifying the object; the codes of ``stat``."""
        return self.stat(artifact_id).size

    def close(self) -> None:
        """Nothing to release by default; stores holding clients override this."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def batch_of(items: Iterable[bytes]) -> tuple[list[ArtifactRef], dict[str, bytes]]:
    """Refs of ``items`` in input order, and the distinct objects by id (first occurrence).

    Shared by every `put_many`, so a batch with duplicates writes each object once.
    """
    refs: list[ArtifactRef] = []
    distinct: dict[str, bytes] = {}
    for item in items:
        data = bytes(item)
        artifact_id = digest(data)
        refs.append(ArtifactRef(artifact_id, len(data)))
        distinct.setdefault(artifact_id, data)
    return refs, distinct


class DelegatingStore(ArtifactCodec):
    """An `ArtifactStore` that passes every call to ``inner``; a wrapper overrides only what it changes.

    Retention's expiry-aware reads and the encrypting store are such wrappers, so what
    "passing a call through" means (every argument, the class included) is written once.
    Attributes a backend adds beyond the protocol (a local store's root) stay reachable.

    Args:
        inner: the wrapped store.
    """

    def __init__(self, inner: ArtifactStore) -> None:
        self.inner = inner
        self.url = inner.url

    def put(self, data: bytes, *, artifact_class: str | None = None) -> ArtifactRef:
        """`ArtifactStore.put` of the inner store."""
        return self.inner.put(data, artifact_class=artifact_class)

    def put_many(self, items: Iterable[bytes], *, artifact_class: str | None = None) -> list[ArtifactRef]:
        """`ArtifactStore.put_many` of the inner store."""
        return self.inner.put_many(items, artifact_class=artifact_class)

    def get(self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None) -> bytes:
        """`ArtifactStore.get` of the inner store."""
        return self.inner.get(artifact_id, size=size, artifact_class=artifact_class)

    def stat(self, artifact_id: str) -> ArtifactRef:
        """`ArtifactStore.stat` of the inner store."""
        return self.inner.stat(artifact_id)

    def exists(self, artifact_id: str) -> bool:
        """`ArtifactStore.exists` of the inner store."""
        return self.inner.exists(artifact_id)

    def delete(self, artifact_id: str) -> None:
        """`ArtifactStore.delete` of the inner store."""
        self.inner.delete(artifact_id)

    def quarantine(self, artifact_id: str) -> str | None:
        """`ArtifactStore.quarantine` of the inner store."""
        return self.inner.quarantine(artifact_id)

    def read_object(self, artifact_id: str) -> bytes:
        """`ArtifactStore.read_object` of the inner store (unverified stored bytes)."""
        return self.inner.read_object(artifact_id)

    def write_objects(self, items: Sequence[tuple[str, bytes]]) -> None:
        """`ArtifactStore.write_objects` of the inner store."""
        self.inner.write_objects(items)

    def touch_object(self, artifact_id: str) -> bool:
        """`ArtifactStore.touch_object` of the inner store."""
        return self.inner.touch_object(artifact_id)

    def iter_artifact_ids(self) -> Iterator[str]:
        """`ArtifactStore.iter_artifact_ids` of the inner store."""
        return self.inner.iter_artifact_ids()

    def iter_objects(self) -> Iterator[ObjectInfo]:
        """`ArtifactStore.iter_objects` of the inner store (sizes in bytes, times in ms)."""
        return self.inner.iter_objects()

    def iter_scratch(self) -> Iterator[ScratchFile]:
        """`ArtifactStore.iter_scratch` of the inner store."""
        return self.inner.iter_scratch()

    def delete_scratch(self, name: str) -> None:
        """`ArtifactStore.delete_scratch` of the inner store."""
        self.inner.delete_scratch(name)

    def set_ref(self, name: str, artifact_id: str) -> None:
        """`ArtifactStore.set_ref` of the inner store."""
        self.inner.set_ref(name, artifact_id)

    def get_ref(self, name: str) -> str:
        """`ArtifactStore.get_ref` of the inner store."""
        return self.inner.get_ref(name)

    def close(self) -> None:
        """Close the inner store."""
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (a local store's root, its scratch folder) stay reachable.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
