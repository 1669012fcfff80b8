"""Whether a recorded artifact can be used: present in the CAS and intact.

Every place the runtime would reuse or read a recorded artifact (a completed turn's
output, a thread's final output, a context snapshot, a child's head frame) asks
`usable_artifact` first. A corrupt object (its bytes no longer hash to its id) is moved
to the store's quarantine with a warning, so the id reads as absent and the turn that
produced it runs again, instead of every later run failing on the same bytes.
"""

from __future__ import annotations

from wf_pipeline.errors import (
    CAS_ARTIFACT_EXPIRED,
    CAS_DECRYPT_FAILED,
    CAS_DIGEST_MISMATCH,
    CAS_KEY_DESTROYED,
    CAS_NOT_ENCRYPTED,
    CAS_NOT_FOUND,
    CasError,
)
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

#: Codes of an artifact removed on purpose: deleted by retention, or shredded (its KEK destroyed).
#: Its records stay; a turn that needs it runs again, a thread that does not is reused.
GONE_ON_PURPOSE: frozenset[str] = frozenset({CAS_ARTIFACT_EXPIRED, CAS_KEY_DESTROYED})
#: Codes of a stored object that must not be used: corrupt, a sealed object that does not
#: authenticate, or plaintext where encryption is required. It is quarantined, never returned.
UNUSABLE_OBJECT: frozenset[str] = frozenset({CAS_DIGEST_MISMATCH, CAS_DECRYPT_FAILED, CAS_NOT_ENCRYPTED})


def usable_artifact(env: RuntimeEnv, artifact_id: str, artifact_class: str | None = None) -> bool:
    """Whether ``artifact_id`` is stored and its bytes still hash to it (read and verified).

    ``unusable_reason(env, artifact_id) is None``; see there for quarantine and codes.

    Args:
        env: the runtime (its CAS is read).
        artifact_id: the artifact (``sha256:<hex>``).
        artifact_class: its class when known (see `unusable_reason`).

    Returns:
        True when the object is present and intact; False when it is missing, was corrupt,
        or was deleted by retention (``CAS_ARTIFACT_EXPIRED``, `wf_pipeline.retention.reads`).

    Raises:
        CasError: ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR`` (storage failures are not
            corruption: they propagate).
    """
    return unusable_reason(env, artifact_id, artifact_class) is None


def unusable_reason(env: RuntimeEnv, artifact_id: str, artifact_class: str | None = None) -> str | None:
    """Why ``artifact_id`` cannot be used, as an error code; None when it is stored and intact.

    A corrupt object, a sealed one that does not authenticate, or plaintext where
    encryption is required (`UNUSABLE_OBJECT`) is quarantined (`ArtifactStore.quarantine`:
    moved aside, not deleted) and a warning with its code names it, so its producer runs again.

    Args:
        env: the runtime (its CAS is read and verified).
        artifact_id: the artifact (``sha256:<hex>``).
        artifact_class: its class when the caller knows it (a plaintext object is refused
            only if its class requires encryption; unknown: the strictest level applies).

    Returns:
        None when usable; ``CAS_ARTIFACT_EXPIRED`` when retention deleted it (a tombstone
        names it, `wf_pipeline.retention.reads`), ``CAS_KEY_DESTROYED`` when it was
        shredded, ``CAS_NOT_FOUND`` when it is gone with no tombstone, or the
        `UNUSABLE_OBJECT` code of an object now quarantined.

    Raises:
        CasError: ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR`` (storage failures are not
            corruption: they propagate).
        KeysError: ``KEYS_MASTER_KEY_INVALID``, ``KEYS_MANAGER_ERROR`` (a keyring that cannot
            open the artifact is not the artifact's fault).
    """
    try:
        env.cas.get(artifact_id, artifact_class=artifact_class)
    except CasError as exc:
        if exc.code == CAS_NOT_FOUND or exc.code in GONE_ON_PURPOSE:
            # Lost, or deleted or shredded on purpose: its producer runs again if needed.
            return exc.code
        if exc.code not in UNUSABLE_OBJECT:
            raise
        where = env.cas.quarantine(artifact_id)
        log.warning("%s; moved to %s, the turn that produced it runs again", exc, where or "nowhere (gone)")
        return exc.code
    return None


# How a warning names each reason; the code leads the line (CODE: message).
_STATE_WORDS = {
    CAS_ARTIFACT_EXPIRED: "was deleted by retention",
    CAS_KEY_DESTROYED: "was shredded (its key was destroyed)",
    CAS_NOT_FOUND: "is missing",
    CAS_DIGEST_MISMATCH: "was corrupt (quarantined)",
    CAS_DECRYPT_FAILED: "did not authenticate (quarantined)",
    CAS_NOT_ENCRYPTED: "was stored in plaintext where encryption is required (quarantined)",
}


def describe_unusable(code: str) -> str:
    """The words a warning uses for an `unusable_reason` code (``is missing``...); raises nothing."""
    return _STATE_WORDS.get(code, "cannot be read")
