"""Reading an artifact retention deleted: ``CAS_ARTIFACT_EXPIRED``, never a bare "not found".

`expired_error` is the one judgement: an artifact whose object is gone (or unreadable)
and that has a tombstone was expired on purpose, and the error says when and under which
policy. `ExpiryAwareStore` wraps an artifact store with it, so every reader of the
runtime's store (turn inputs, reuse checks, sinks, the service's queries) gets the same
answer without checking tombstones itself. Storing the same bytes again through
`ExpiryAwareStore.put` drops their tombstone (the one place it goes), so a revived object
is judged afresh by everything; an object stored while a tombstone still names it (put
by another writer) is served and listed as stored all the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from wf_pipeline.cas import ArtifactRef, ArtifactStore
from wf_pipeline.cas.protocol import DelegatingStore
from wf_pipeline.errors import CAS_ARTIFACT_EXPIRED, CAS_DIGEST_MISMATCH, CAS_NOT_FOUND, CasError
from wf_pipeline.metadata.durations import format_duration_ms
from wf_pipeline.records import RecordStore

# The read failures a tombstone explains: the object is gone, or a half-deleted copy remains.
_EXPLAINED = (CAS_NOT_FOUND, CAS_DIGEST_MISMATCH)


def expired_error(records: RecordStore, artifact_id: str) -> CasError | None:
    """The ``CAS_ARTIFACT_EXPIRED`` error for ``artifact_id`` if it has a tombstone, else None.

    Args:
        records: the record store holding tombstones.
        artifact_id: an artifact whose read failed.

    Returns:
        A `CasError` whose message names the class, the policy, the window and the
        deletion time (Unix epoch ms), and whose details carry the same figures; None
        when no tombstone names the artifact.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    tombstone = records.get_tombstone(artifact_id)
    if tombstone is None:
        return None
    return CasError(
        CAS_ARTIFACT_EXPIRED,
        f"{artifact_id} ({tombstone.artifact_class}, {tombstone.bytes} bytes) was deleted by retention "
        f"at {tombstone.deleted_at_ms} ms: {tombstone.reason} under {tombstone.policy or 'no policy'} "
        f"(window {format_duration_ms(tombstone.window_ms)})",
        artifact_id=artifact_id,
        artifact_class=tombstone.artifact_class,
        policy=tombstone.policy,
        window_ms=tombstone.window_ms,
        reason=tombstone.reason,
        deleted_at_ms=tombstone.deleted_at_ms,
    )


STORED, EXPIRED, MISSING, SHREDDED = "stored", "expired", "missing", "shredded"


def shredded_artifact_ids(records: RecordStore, artifact_ids: Iterable[str]) -> set[str]:
    """The artifacts of ``artifact_ids`` whose data key is wrapped by a destroyed KEK (crypto-shredded).

    Read from the keyring's records (`RecordStore.data_keys_for`, `RecordStore.get_kek`):
    an artifact put again after its KEK was destroyed has a new data key and is not
    shredded. Reading one raises ``CAS_KEY_DESTROYED`` (`wf_pipeline.crypto.keyring`).

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    keys = records.data_keys_for(set(artifact_ids))
    destroyed: dict[str, bool] = {}
    for kek_id in {row.kek_id for row in keys.values()}:
        kek = records.get_kek(kek_id)
        destroyed[kek_id] = kek is not None and kek.state == "destroyed"
    return {artifact_id for artifact_id, row in keys.items() if destroyed[row.kek_id]}


def artifact_states(records: RecordStore, cas: ArtifactStore, artifact_ids: Iterable[str]) -> dict[str, str]:
    """artifact_id -> ``stored``, ``shredded``, ``expired`` (gone, with a tombstone) or ``missing`` (gone, no tombstone).

    The same judgement as `expired_error` and the keyring, for listings (``wf threads
    show``): an artifact whose data key is under a destroyed KEK is ``shredded`` whether or
    not its object is still stored (its ciphertext can never be read again:
    `shredded_artifact_ids`); otherwise an object still stored is ``stored`` even if a
    tombstone names it (its bytes were put again). Objects are checked for presence, not read.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``. CasError: ``CAS_BACKEND_ERROR``.
    """
    wanted = sorted(set(artifact_ids))
    shredded = shredded_artifact_ids(records, wanted)
    gone = [a for a in wanted if a not in shredded and not cas.exists(a)]
    tombstoned = records.tombstones_for(gone)
    states = dict.fromkeys(wanted, STORED)
    for artifact_id in gone:
        states[artifact_id] = EXPIRED if artifact_id in tombstoned else MISSING
    for artifact_id in shredded:
        states[artifact_id] = SHREDDED
    return states


class ExpiryAwareStore(DelegatingStore):
    """An `ArtifactStore` that reports reads of tombstoned, missing artifacts as ``CAS_ARTIFACT_EXPIRED``.

    Args:
        inner: the store that holds the bytes; every call is passed to it.
        records: the record store whose tombstones explain missing objects.

    `get`, `get_text`, `get_json`, `stat` and `size` raise ``CAS_ARTIFACT_EXPIRED`` where
    the inner store raises ``CAS_NOT_FOUND`` or ``CAS_DIGEST_MISMATCH`` for an artifact
    with a tombstone (`expired_error`); every other code passes through unchanged.
    """

    def __init__(self, inner: ArtifactStore, records: RecordStore) -> None:
        super().__init__(inner)
        self.records = records

    def __repr__(self) -> str:
        return f"ExpiryAwareStore({self.inner!r})"

    def _explained(self, exc: CasError, artifact_id: str) -> CasError:
        if exc.code not in _EXPLAINED:
            return exc
        return expired_error(self.records, artifact_id) or exc

    def get(self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None) -> bytes:
        """The inner store's verified bytes; ``CAS_ARTIFACT_EXPIRED`` for a tombstoned, missing object."""
        try:
            return self.inner.get(artifact_id, size=size, artifact_class=artifact_class)
        except CasError as exc:
            raised = self._explained(exc, artifact_id)
            if raised is exc:
                raise
            raise raised from exc

    def stat(self, artifact_id: str) -> ArtifactRef:
        """The inner store's ref; ``CAS_ARTIFACT_EXPIRED`` for a tombstoned, missing object."""
        try:
            return self.inner.stat(artifact_id)
        except CasError as exc:
            raised = self._explained(exc, artifact_id)
            if raised is exc:
                raise
            raise raised from exc

    def put(self, data: bytes, *, artifact_class: str | None = None) -> ArtifactRef:
        """`ArtifactStore.put` of the inner store; an expired object stored again loses its tombstone."""
        ref = self.inner.put(data, artifact_class=artifact_class)
        self._revived([ref.artifact_id])
        return ref

    def put_many(self, items: Iterable[bytes], *, artifact_class: str | None = None) -> list[ArtifactRef]:
        """`ArtifactStore.put_many` of the inner store; expired objects stored again lose their tombstones."""
        refs = self.inner.put_many(items, artifact_class=artifact_class)
        self._revived(ref.artifact_id for ref in refs)
        return refs

    def _revived(self, artifact_ids: Iterable[str]) -> None:
        # The one place a tombstone goes: its object is stored again, so it is judged as
        # any stored object (reads, `artifact_states`, the next retention plan, the orphan
        # sweep), and a later loss reads as CAS_NOT_FOUND, not as this old expiry.
        ids = set(artifact_ids)
        if ids and self.records.tombstones_for(ids):
            self.records.drop_tombstones(ids)

    def write_objects(self, items: Sequence[tuple[str, bytes]]) -> None:
        """`ArtifactStore.write_objects` of the inner store; stored-again objects lose their tombstones."""
        self.inner.write_objects(items)
        self._revived(artifact_id for artifact_id, _ in items)
