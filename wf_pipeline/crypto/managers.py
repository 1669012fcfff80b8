"""Key managers: where KEK material lives, behind one small protocol and a registry.

The shape is fsspec's: a small interface (`KeyManager`, six methods), plug-ins registered by name
(`register_key_manager`), one opener (`open_key_manager`). The keyring
(`wf_pipeline.crypto.keyring`) keeps KEK *records* in the record store and asks the KEK's
manager for everything that touches key material:

- ``local`` (`LocalKeyManager`, the default): a KEK is 32 random bytes, stored wrapped under
  the master key (``WF_MASTER_KEY`` or ``WF_MASTER_KEY_FILE``) in the KEK record;
- ``aws-kms`` (`wf_pipeline.crypto.aws_kms`): a KEK is a KMS key; data keys are made and
  wrapped by ``GenerateDataKey``, ``Decrypt`` and ``ReEncrypt``, and never leave KMS unwrapped
  except to the process that asked.

Another KMS implements the same six methods. GCP Cloud KMS: ``create_kek`` creates a
CryptoKey (purpose ENCRYPT_DECRYPT) in a key ring and returns its resource name;
``generate_data_key`` draws 32 bytes locally and calls ``Encrypt`` with the wrap context's
canonical bytes as ``additional_authenticated_data``; ``unwrap`` calls ``Decrypt`` with the
same; ``rewrap`` is ``Decrypt`` then ``Encrypt`` under the target key; ``destroy_kek``
destroys every CryptoKeyVersion. HashiCorp Vault transit: ``create_kek`` is
``POST transit/keys/<name>`` (type aes256-gcm96); ``generate_data_key`` is
``POST transit/datakey/plaintext/<name>`` with the context as ``context`` (derived keys) or
associated data; ``unwrap`` is ``transit/decrypt``; ``rewrap`` is decrypt then encrypt under
the target (``transit/rewrap`` only moves between versions of one key); ``destroy_kek`` sets
``deletion_allowed`` and deletes the key.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wf_pipeline.crypto.envelope import DATA_KEY_BYTES, NONCE_BYTES, context_aad, new_data_key
from wf_pipeline.crypto.keyfiles import decode_key_text, new_key_text
from wf_pipeline.errors import (
    CAS_DECRYPT_FAILED,
    CAS_KEY_DESTROYED,
    KEYS_MANAGER_UNKNOWN,
    KEYS_MASTER_KEY_INVALID,
    CasError,
    KeysError,
)
from wf_pipeline.metadata.records import KekRecord
from wf_pipeline.registry import Registry

#: Bytes of the master key (AES-256).
MASTER_KEY_BYTES = 32
#: The name of the default key manager.
LOCAL = "local"


@runtime_checkable
class KeyManager(Protocol):
    """Holds KEK material; makes, wraps, unwraps and moves data keys under a KEK.

    A ``context`` is the wrap context of one data key
    (`wf_pipeline.crypto.envelope.wrap_context`: format version, artifact id, class, KEK id):
    a manager authenticates it with the wrapped key (GCM associated data, a KMS encryption
    context), so a wrapped key moved to another artifact, class or KEK does not unwrap.

    Errors: ``CAS_DECRYPT_FAILED`` when a wrapped key does not authenticate under its KEK and
    context; ``CAS_KEY_DESTROYED`` when the KEK is destroyed (`kek_destroyed`: its record is
    in state ``destroyed`` or has no ``key_ref``, or the manager reports the key gone);
    ``KEYS_MANAGER_ERROR`` (retryable) when the manager itself fails. Key material, data
    keys and wrapped keys never appear in a message.
    """

    name: str

    def create_kek(self, kek_id: str) -> bytes:
        """Make new KEK material for ``kek_id``; returns the reference the KEK record keeps (`KekRecord.key_ref`)."""
        ...

    def generate_data_key(self, kek: KekRecord, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """A fresh 32-byte data key and its wrapping under ``kek`` with ``context``: ``(data_key, wrapped)``."""
        ...

    def wrap(self, kek: KekRecord, data_key: bytes, context: Mapping[str, str]) -> bytes:
        """``data_key`` wrapped under ``kek`` with ``context`` (a move from another manager's KEK)."""
        ...

    def unwrap(self, kek: KekRecord, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The data key ``wrapped`` holds, authenticated against ``kek`` and ``context``."""
        ...

    def rewrap(
        self,
        source: KekRecord,
        target: KekRecord,
        wrapped: bytes,
        source_context: Mapping[str, str],
        target_context: Mapping[str, str],
    ) -> bytes:
        """``wrapped`` (under ``source``) wrapped again under ``target``; the data key itself is unchanged."""
        ...

    def destroy_kek(self, kek: KekRecord) -> None:
        """Erase the KEK's material where the manager holds it (the keyring erases ``key_ref`` itself)."""
        ...


KeyManagerFactory = Callable[..., KeyManager]

_MANAGERS: Registry[str, KeyManagerFactory] = Registry(
    "key manager", key="key manager", unknown=KEYS_MANAGER_UNKNOWN, reregister="replace"
)


def register_key_manager(name: str, factory: KeyManagerFactory) -> None:
    """Make `open_key_manager` build ``name`` with ``factory(**options)``; a later registration replaces it.

    Args:
        name: the manager's name, as ``WF_KEY_MANAGER`` and `KekRecord.manager` give it.
        factory: builds the manager from keyword options (`open_key_manager`).

    Raises nothing.
    """
    _MANAGERS.register(name, factory)


def key_manager_names() -> tuple[str, ...]:
    """The registered key managers' names, sorted."""
    return tuple(sorted(_MANAGERS.keys()))


def open_key_manager(name: str, **options: Any) -> KeyManager:
    """Build the key manager registered as ``name`` from ``options``.

    Args:
        name: ``local``, ``aws-kms`` or a registered plug-in.
        **options: the factory's keyword options (``master_key`` for ``local``; endpoint,
            region and alias prefix for ``aws-kms``).

    Raises ``KEYS_MANAGER_UNKNOWN``, and what the factory raises (``KEYS_MASTER_KEY_INVALID``).
    """
    return _MANAGERS.get(name)(**options)


def parse_master_key(text: str | bytes | None, *, source: str) -> bytes:
    """The 32-byte master key that ``text`` holds in base64 (RFC 4648, standard alphabet; whitespace ignored).

    Args:
        text: the variable's or file's content; None or empty when not set.
        source: where it came from, for the message (``WF_MASTER_KEY``, ``WF_MASTER_KEY_FILE``).

    Raises ``KEYS_MASTER_KEY_INVALID`` when missing, not base64, or not 32 bytes; the
    message names the source and the length found, never the key.
    """
    return decode_key_text(
        text,
        source=source,
        size=MASTER_KEY_BYTES,
        what="a master key",
        error=lambda message, **details: KeysError(KEYS_MASTER_KEY_INVALID, message, **details),
    )


def new_master_key_text() -> str:
    """A new master key: base64 of 32 bytes from the operating system's CSPRNG, one line."""
    return new_key_text(MASTER_KEY_BYTES)


# The master-key check: a constant sealed under the master key when the keyring is made.
# A wrong key fails it before any KEK is used, so nothing is read or written with it.
_CHECK_PLAINTEXT = b"wf-master-key-check"
_CHECK_AAD = b"wf-keyring-v1"


def master_key_check(master_key: bytes) -> bytes:
    """A new check value for ``master_key``: ``nonce | AES-256-GCM(constant)``, stored by the keyring."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master_key).encrypt(nonce, _CHECK_PLAINTEXT, _CHECK_AAD)


def verify_master_key(master_key: bytes, check: bytes, *, source: str) -> None:
    """Raise ``KEYS_MASTER_KEY_INVALID`` unless ``check`` (from `master_key_check`) was made with ``master_key``."""
    try:
        ok = (
            AESGCM(master_key).decrypt(check[:NONCE_BYTES], check[NONCE_BYTES:], _CHECK_AAD)
            == _CHECK_PLAINTEXT
        )
    except (InvalidTag, ValueError):
        ok = False
    if not ok:
        raise KeysError(
            KEYS_MASTER_KEY_INVALID,
            f"the master key from {source} is not the key this keyring was made with",
            source=source,
        )


class LocalKeyManager:
    """The default key manager: KEKs are random 256-bit keys kept wrapped under the master key.

    Args:
        master_key: the 32-byte master key (`parse_master_key`).

    A KEK's ``key_ref`` is ``nonce | AES-256-GCM(KEK)`` under the master key with the KEK id
    as associated data, so a reference copied to another KEK record does not unwrap. Data
    keys are wrapped with AES-256-GCM under the KEK with the wrap context as associated data
    (`wf_pipeline.crypto.envelope.context_aad`). Unwrapped KEKs are cached in memory.
    Raises ``KEYS_MASTER_KEY_INVALID`` for a key of the wrong length.
    """

    name = LOCAL

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise KeysError(KEYS_MASTER_KEY_INVALID, f"a master key is {MASTER_KEY_BYTES} bytes")
        self._master = AESGCM(master_key)
        self._keks: dict[str, AESGCM] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "LocalKeyManager()"  # never the key

    def create_kek(self, kek_id: str) -> bytes:
        """New KEK material for ``kek_id``: ``nonce | GCM(32 random bytes)`` under the master key."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._master.encrypt(nonce, new_data_key(), _kek_aad(kek_id))

    def generate_data_key(self, kek: KekRecord, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """``(data_key, wrapped)``: a fresh data key and ``nonce | GCM(data_key)`` under ``kek``."""
        data_key = new_data_key()
        return data_key, self._wrap(self._kek(kek), data_key, context)

    def wrap(self, kek: KekRecord, data_key: bytes, context: Mapping[str, str]) -> bytes:
        """``nonce | GCM(data_key)`` under ``kek`` with ``context`` as associated data."""
        return self._wrap(self._kek(kek), data_key, context)

    def unwrap(self, kek: KekRecord, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The data key in ``wrapped``; ``CAS_DECRYPT_FAILED`` when it does not authenticate."""
        try:
            data_key = self._kek(kek).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context_aad(dict(context))
            )
        except InvalidTag:
            raise _wrap_failed(kek, context) from None
        if len(data_key) != DATA_KEY_BYTES:
            raise _wrap_failed(kek, context)
        return data_key

    def rewrap(
        self,
        source: KekRecord,
        target: KekRecord,
        wrapped: bytes,
        source_context: Mapping[str, str],
        target_context: Mapping[str, str],
    ) -> bytes:
        """``wrapped`` unwrapped under ``source`` and wrapped under ``target``; ``CAS_DECRYPT_FAILED``."""
        return self._wrap(self._kek(target), self.unwrap(source, wrapped, source_context), target_context)

    def destroy_kek(self, kek: KekRecord) -> None:
        """Forget the cached KEK; the keyring erases the wrapped material from the record."""
        with self._lock:
            self._keks.pop(kek.kek_id, None)

    def _wrap(self, kek: AESGCM, data_key: bytes, context: Mapping[str, str]) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + kek.encrypt(nonce, data_key, context_aad(dict(context)))

    def _kek(self, kek: KekRecord) -> AESGCM:
        key_ref = kek.key_ref
        # Checked before the cache: another process may have destroyed a KEK cached here.
        if key_ref is None or kek_destroyed(kek):
            raise key_destroyed(kek)
        with self._lock:
            cached = self._keks.get(kek.kek_id)
        if cached is not None:
            return cached
        try:
            material = self._master.decrypt(
                key_ref[:NONCE_BYTES], key_ref[NONCE_BYTES:], _kek_aad(kek.kek_id)
            )
        except InvalidTag:
            raise KeysError(
                KEYS_MASTER_KEY_INVALID,
                f"KEK {kek.kek_id} does not unwrap under the master key",
                kek_id=kek.kek_id,
            ) from None
        aead = AESGCM(material)
        with self._lock:
            self._keks[kek.kek_id] = aead
        return aead


def kek_destroyed(kek: KekRecord) -> bool:
    """Whether ``kek``'s record says it is destroyed: state ``destroyed``, or no ``key_ref`` left."""
    return kek.state == "destroyed" or kek.key_ref is None


def key_destroyed(kek: KekRecord) -> CasError:
    """The ``CAS_KEY_DESTROYED`` error for data keys under ``kek`` (ids only, never material)."""
    return CasError(
        CAS_KEY_DESTROYED,
        f"KEK {kek.kek_id} is destroyed; the data keys it wrapped are unreadable for good",
        kek_id=kek.kek_id,
    )


def _kek_aad(kek_id: str) -> bytes:
    return b"wf-kek\0" + kek_id.encode()


def _wrap_failed(kek: KekRecord, context: Mapping[str, str]) -> CasError:
    artifact_id = context.get("wf:artifact_id", "")
    return CasError(
        CAS_DECRYPT_FAILED,
        f"the data key of {artifact_id} does not authenticate under KEK {kek.kek_id}",
        artifact_id=artifact_id,
        kek_id=kek.kek_id,
    )


def _open_local(*, master_key: bytes, **_: Any) -> KeyManager:
    return LocalKeyManager(master_key)


register_key_manager(LOCAL, _open_local)
