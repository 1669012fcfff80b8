"""`EncryptedArtifactStore`: an `ArtifactStore` wrapper that keeps artifacts of encrypted classes sealed.

The artifact id stays the digest of the plaintext, so content addressing, dedupe and the
records are the same with or without encryption: putting the same plaintext twice keeps
one object under one id. What the inner store holds under that id is an envelope
(`wf_pipeline.crypto.envelope`) whose data key is in the keyring.

Reads fail closed:

- an envelope is opened with the data key the keyring holds for the id, authenticated
  against the id and the class the key was made for, and then verified against the id;
- a plaintext object is returned only when the reader's class (or, if it does not say,
  every class) does not require encryption; otherwise ``CAS_NOT_ENCRYPTED``;
- an envelope whose data key this keyring does not hold is ``CAS_NOT_ENCRYPTED``, one whose
  KEK was destroyed ``CAS_KEY_DESTROYED``, one that does not authenticate (swapped, moved
  or tampered) ``CAS_DECRYPT_FAILED``. Nothing unauthenticated is ever returned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from wf_pipeline.cas.protocol import (
    ArtifactRef,
    ArtifactStore,
    DelegatingStore,
    ObjectInfo,
    batch_of,
    verify,
)
from wf_pipeline.crypto.envelope import is_envelope, open_envelope, payload_size, seal
from wf_pipeline.crypto.keyring import Keyring
from wf_pipeline.errors import (
    CAS_NOT_ENCRYPTED,
    CAS_NOT_FOUND,
    KEYS_MASTER_KEY_INVALID,
    CasError,
    KeysError,
    masked_url,
)
from wf_pipeline.profiles.encryption import EncryptionPolicy

#: The class of an artifact put without one; its level is the policy's default.
UNCLASSIFIED = "unclassified"
# Objects per keyring lookup when a listing reports plaintext sizes.
_LISTING_PAGE = 1_000


class EncryptedArtifactStore(DelegatingStore):
    """Seals artifacts of encrypted classes over any inner `ArtifactStore`.

    Args:
        inner: the store holding the objects (file, memory, s3, ...).
        policy: per-class levels (`wf_pipeline.profiles.encryption`).
        keyring: the keyring for data keys; None when no master key or KMS is configured
            (then ``required`` classes cannot be written or read: ``KEYS_MASTER_KEY_INVALID``).
        open_keyring: instead of ``keyring``, how to open it on first need (`keyring`).
        keyring_error: what to raise when the keyring is needed but None (the reason it
            could not be opened); default a plain ``KEYS_MASTER_KEY_INVALID``.

    Sizes are the plaintext's, in bytes, everywhere (`put`, `stat`, `iter_objects`): an
    envelope's overhead is the inner store's business.
    """

    def __init__(
        self,
        inner: ArtifactStore,
        policy: EncryptionPolicy,
        keyring: Keyring | None = None,
        *,
        keyring_error: Callable[[], KeysError] | None = None,
        open_keyring: Callable[[], Keyring | None] | None = None,
    ) -> None:
        super().__init__(inner)
        self.policy = policy
        self._keyring = keyring
        self._keyring_error = keyring_error
        # Opened on first need (a sealed put or read), so commands that never touch a
        # payload (listing threads) neither need the master key nor make one.
        self._open_keyring = open_keyring
        self._opening = threading.Lock()

    @property
    def keyring(self) -> Keyring | None:
        """The keyring, opened on first access when the store was given ``open_keyring``.

        Raises what ``open_keyring`` raises (``KEYS_MASTER_KEY_INVALID``...); a failed open
        is tried again at the next access.
        """
        if self._open_keyring is not None:
            with self._opening:
                if self._open_keyring is not None:
                    self._keyring = self._open_keyring()
                    self._open_keyring = None
        return self._keyring

    def __repr__(self) -> str:
        return f"EncryptedArtifactStore({self.inner!r}, policy={self.policy.source!r})"

    # -- writing -------------------------------------------------------------

    def put(self, data: bytes, *, artifact_class: str | None = None) -> ArtifactRef:
        """Store ``data`` (sealed when its class is encrypted); returns its ref (plaintext id and size).

        Raises ``KEYS_MASTER_KEY_INVALID`` (a required class without a keyring),
        ``KEYS_MANAGER_ERROR``, ``CAS_BACKEND_ERROR``.
        """
        return self.put_many([data], artifact_class=artifact_class)[0]

    def put_many(self, items: Iterable[bytes], *, artifact_class: str | None = None) -> list[ArtifactRef]:
        """Store a batch of one class; one ref per item, in input order, ids of the plaintexts.

        A sealed object already holding exactly this plaintext is kept (its age renewed);
        anything else under the id (plaintext, damaged, sealed under another key) is
        replaced by a new envelope, atomically. An artifact that already has a data key
        stays sealed even when this class is not encrypted. Raises as `put`.
        """
        refs, distinct = batch_of(items)
        if not distinct:
            return refs
        name = artifact_class or UNCLASSIFIED
        keyring = self.keyring
        if not self.policy.encrypts(name, keyring_available=keyring is not None):
            if self.policy.level(name) == "required":
                raise self._no_keyring(refs[0].artifact_id)
            sealed_already = keyring.records.data_keys_for(list(distinct)) if keyring is not None else {}
            plain = [data for artifact_id, data in distinct.items() if artifact_id not in sealed_already]
            if plain:
                self.inner.put_many(plain, artifact_class=artifact_class)
            if not sealed_already:
                return refs
            distinct = {artifact_id: distinct[artifact_id] for artifact_id in sealed_already}
        if keyring is None:
            raise self._no_keyring(refs[0].artifact_id)
        keys = keyring.data_keys_for_put(list(distinct), name)
        to_write: list[tuple[str, bytes]] = []
        for artifact_id, data in distinct.items():
            data_key, row = keys[artifact_id]
            if self._holds(artifact_id, data_key, row.artifact_class, data) and self.inner.touch_object(
                artifact_id
            ):
                continue
            to_write.append((artifact_id, seal(data_key, artifact_id, row.artifact_class, data)))
        if to_write:
            self.inner.write_objects(to_write)
        return refs

    def _holds(self, artifact_id: str, data_key: bytes, artifact_class: str, data: bytes) -> bool:
        # Whether the stored object is an envelope of exactly ``data`` under this data key.
        try:
            blob = self.inner.read_object(artifact_id)
        except CasError as exc:
            if exc.code == CAS_NOT_FOUND:
                return False
            raise
        if not is_envelope(blob) or payload_size(len(blob)) != len(data):
            return False
        try:
            return open_envelope(data_key, artifact_id, artifact_class, blob) == data
        except CasError:
            return False

    # -- reading -------------------------------------------------------------

    def get(self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None) -> bytes:
        """The authenticated, verified plaintext of ``artifact_id``.

        Args:
            artifact_id: the plaintext's id.
            size: the expected plaintext size in bytes, checked when given.
            artifact_class: the class the reader expects; decides whether a plaintext
                object is refused (see the module docstring).

        Raises ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``, ``CAS_NOT_ENCRYPTED``,
        ``CAS_DECRYPT_FAILED``, ``CAS_KEY_DESTROYED``, ``CAS_DIGEST_MISMATCH``,
        ``KEYS_MASTER_KEY_INVALID`` (a sealed object and no keyring), ``KEYS_MANAGER_ERROR``,
        ``CAS_BACKEND_ERROR``.
        """
        blob = self.inner.read_object(artifact_id)
        if is_envelope(blob):
            if self.keyring is None:
                raise self._no_keyring(artifact_id)
            data_key, row = self.keyring.data_key_for_get(artifact_id)
            return verify(
                artifact_id,
                open_envelope(data_key, artifact_id, row.artifact_class, blob),
                size,
                where=self._where,
            )
        if self.policy.requires(artifact_class):
            raise CasError(
                CAS_NOT_ENCRYPTED,
                f"{artifact_id} is stored in plaintext, but {artifact_class or 'every class'} must be encrypted; refused",
                artifact_id=artifact_id,
                artifact_class=artifact_class,
            )
        return verify(artifact_id, blob, size, where=self._where)

    def stat(self, artifact_id: str) -> ArtifactRef:
        """The artifact's id and plaintext size in bytes, without decrypting.

        A sealed artifact's size is its stored size less the envelope's overhead. Raises
        ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``, ``CAS_BACKEND_ERROR``.
        """
        ref = self.inner.stat(artifact_id)
        if self.keyring is not None and self.keyring.data_key_record(artifact_id) is not None:
            return ArtifactRef(artifact_id, payload_size(ref.size))
        return ref

    # -- passed through --------------------------------------------------------

    def iter_objects(self) -> Iterator[ObjectInfo]:
        """`ArtifactStore.iter_objects` of the inner store, with plaintext sizes (bytes) for sealed artifacts.

        Which objects are sealed is asked of the keyring a page of ids at a time.
        """
        page: list[ObjectInfo] = []
        for info in self.inner.iter_objects():
            page.append(info)
            if len(page) >= _LISTING_PAGE:
                yield from self._plaintext_sizes(page)
                page = []
        yield from self._plaintext_sizes(page)

    def _plaintext_sizes(self, page: list[ObjectInfo]) -> list[ObjectInfo]:
        if not page or self.keyring is None:
            return page
        sealed = self.keyring.records.data_keys_for([info.artifact_id for info in page])
        return [
            replace(info, size=payload_size(info.size)) if info.artifact_id in sealed else info
            for info in page
        ]

    @property
    def _where(self) -> str:
        return masked_url(self.url)

    def _no_keyring(self, artifact_id: str) -> KeysError:
        if self._keyring_error is not None:
            return self._keyring_error()
        return KeysError(
            KEYS_MASTER_KEY_INVALID,
            f"{artifact_id} needs the keyring, and no master key (WF_MASTER_KEY or WF_MASTER_KEY_FILE) "
            "or key manager is configured",
            artifact_id=artifact_id,
        )
