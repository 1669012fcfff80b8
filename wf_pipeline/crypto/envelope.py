"""The envelope format: how an artifact's payload is sealed under its data key, and what binds it.

Every encrypted artifact has its own fresh 256-bit data key; the payload is sealed with
AES-256-GCM (NIST SP 800-38D) under a random 96-bit nonce. Stored object::

    MAGIC (4 bytes: b"WFE" + format version) | nonce (12 bytes) | ciphertext | GCM tag (16 bytes)

The data key itself is never stored in the object: it lives wrapped by a key-encryption key
(KEK) in the keyring's data-key table (`wf_pipeline.metadata.records.DataKeyRecord`), so a
rotation moves it to another KEK (a rewrap) without touching the payload, and destroying
the KEK makes the payload unreadable wherever copies of the object went (crypto-shredding).

Associated data (authenticated, not stored) binds every ciphertext to its identity:

- the payload's: format version, artifact id (the plaintext's sha256, which stays the CAS
  id) and artifact class (`payload_aad`);
- the wrapped data key's: the same three plus the KEK id (`wrap_context`).

So an object copied under another id, a payload moved to another class, or a wrapped key
moved to another artifact, class or KEK all fail authentication (``CAS_DECRYPT_FAILED``).
The KEK id is bound where the KEK is used, in the wrap; binding it into the payload too
would force re-encrypting every payload on rotation, which the key lifecycle must avoid.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wf_pipeline.errors import CAS_DECRYPT_FAILED, CasError

#: The envelope format version, part of every associated data.
FORMAT_VERSION = 1
#: The first bytes of every envelope: ``WFE`` and the format version.
MAGIC = b"WFE" + bytes([FORMAT_VERSION])
#: Bytes of a data key (AES-256).
DATA_KEY_BYTES = 32
#: Bytes of a GCM nonce: 96 bits, the size SP 800-38D recommends for random nonces.
NONCE_BYTES = 12
#: Bytes of the GCM authentication tag.
TAG_BYTES = 16
#: Bytes an envelope adds to its payload.
OVERHEAD = len(MAGIC) + NONCE_BYTES + TAG_BYTES

# Context keys, in the style of AWS KMS encryption contexts (which bind them the same way).
CONTEXT_FORMAT = "wf:format"
CONTEXT_ARTIFACT = "wf:artifact_id"
CONTEXT_CLASS = "wf:artifact_class"
CONTEXT_KEK = "wf:kek_id"


def is_envelope(blob: bytes) -> bool:
    """Whether stored bytes are an envelope of this format (start with `MAGIC` and are long enough)."""
    return len(blob) >= OVERHEAD and blob[: len(MAGIC)] == MAGIC


def payload_size(stored_size: int) -> int:
    """The plaintext size in bytes of an envelope of ``stored_size`` bytes."""
    return stored_size - OVERHEAD


def payload_aad(artifact_id: str, artifact_class: str) -> bytes:
    """The associated data of a payload: format version, artifact id and class, NUL-separated UTF-8."""
    return b"\0".join(
        (b"wf-payload", str(FORMAT_VERSION).encode(), artifact_id.encode(), artifact_class.encode())
    )


def wrap_context(artifact_id: str, artifact_class: str, kek_id: str) -> dict[str, str]:
    """The context a data key is wrapped with: format version, artifact id, class and KEK id.

    Returns a str -> str mapping, the shape of an AWS KMS encryption context; the local key
    manager authenticates its canonical encoding (`context_aad`) as GCM associated data.
    """
    return {
        CONTEXT_FORMAT: str(FORMAT_VERSION),
        CONTEXT_ARTIFACT: artifact_id,
        CONTEXT_CLASS: artifact_class,
        CONTEXT_KEK: kek_id,
    }


def context_aad(context: dict[str, str]) -> bytes:
    """The canonical bytes of a wrap context: sorted ``key=value`` pairs, NUL-separated UTF-8."""
    return b"\0".join(f"{key}={context[key]}".encode() for key in sorted(context))


def new_data_key() -> bytes:
    """A fresh 256-bit data key from the operating system's CSPRNG (`AESGCM.generate_key`)."""
    return AESGCM.generate_key(bit_length=256)


def seal(data_key: bytes, artifact_id: str, artifact_class: str, plaintext: bytes) -> bytes:
    """The envelope of ``plaintext`` under ``data_key``, bound to ``artifact_id`` and ``artifact_class``.

    Args:
        data_key: 32 bytes.
        artifact_id: the plaintext's id (``sha256:<hex>``).
        artifact_class: its class.
        plaintext: the payload.

    Returns ``MAGIC | nonce | ciphertext | tag``, `OVERHEAD` bytes longer than the payload.
    A random nonce per envelope: one data key may seal the same artifact several times
    (concurrent writers), far below the 2**32 messages SP 800-38D allows per key. Raises nothing.
    """
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(data_key).encrypt(nonce, plaintext, payload_aad(artifact_id, artifact_class))
    return MAGIC + nonce + sealed


def open_envelope(data_key: bytes, artifact_id: str, artifact_class: str, blob: bytes) -> bytes:
    """The payload of the envelope ``blob``, authenticated against ``artifact_id`` and ``artifact_class``.

    Raises ``CAS_DECRYPT_FAILED`` (with the artifact id and class, never key or nonce) when
    the blob is not an envelope or does not authenticate: a tampered byte, an object copied
    under another id, or a payload read as another class.
    """
    if not is_envelope(blob):
        raise CasError(
            CAS_DECRYPT_FAILED,
            f"{artifact_id} is not an envelope of format {FORMAT_VERSION}",
            artifact_id=artifact_id,
            artifact_class=artifact_class,
        )
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    # A view, not a slice: the ciphertext is not copied before decryption.
    sealed = memoryview(blob)[len(MAGIC) + NONCE_BYTES :]
    try:
        return AESGCM(data_key).decrypt(nonce, sealed, payload_aad(artifact_id, artifact_class))
    except InvalidTag:
        raise CasError(
            CAS_DECRYPT_FAILED,
            f"{artifact_id} does not authenticate as a {artifact_class} artifact under its data key",
            artifact_id=artifact_id,
            artifact_class=artifact_class,
        ) from None
