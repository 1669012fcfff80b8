"""Whether a recorded artifact can be used: present in the CAS and intact.

Every place the runtime would reuse or read a recorded artifact (a completed turn's
output, a thread's final output, a context snapshot, a child's head frame) asks
`usable_artifact` first. A corrupt object (its bytes no longer hash to its id) is moved
to the store's quarantine with a warning, so the id reads as absent and the turn that
produced it runs again, instead of every later run failing on the same bytes.
"""

from __future__ import annotations

import logging

from wf_pipeline.errors import CAS_ARTIFACT_EXPIRED, CAS_DIGEST_MISMATCH, CAS_NOT_FOUND, CasError
from wf_pipeline.runtime.environment import RuntimeEnv

log = logging.getLogger(__name__)


def usable_artifact(env: RuntimeEnv, artifact_id: str) -> bool:
    """Whether ``artifact_id`` is stored and its bytes still hash to it (read and verified).

    ``unusable_reason(env, artifact_id) is None``; see there for quarantine and codes.

    Args:
        env: the runtime (its CAS is read).
        artifact_id: the artifact (``sha256:<hex>``).

    Returns:
        True when the object is present and intact; False when it is missing, was corrupt,
        or was deleted by retention (``CAS_ARTIFACT_EXPIRED``, `wf_pipeline.retention.reads`).

    Raises:
        CasError: ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR`` (storage failures are not
            corruption: they propagate).
    """
    return unusable_reason(env, artifact_id) is None


def unusable_reason(env: RuntimeEnv, artifact_id: str) -> str | None:
    """Why ``artifact_id`` cannot be used, as an error code; None when it is stored and intact.

    A corrupt object is quarantined (`ArtifactStore.quarantine`: moved aside, not deleted)
    and a warning ``CAS_DIGEST_MISMATCH: ...`` names it, so its producer runs again.

    Args:
        env: the runtime (its CAS is read and verified).
        artifact_id: the artifact (``sha256:<hex>``).

    Returns:
        None when usable; ``CAS_ARTIFACT_EXPIRED`` when retention deleted it (a tombstone
        names it, `wf_pipeline.retention.reads`), ``CAS_NOT_FOUND`` when it is gone with no
        tombstone, ``CAS_DIGEST_MISMATCH`` when it was corrupt (now quarantined).

    Raises:
        CasError: ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR`` (storage failures are not
            corruption: they propagate).
    """
    try:
        env.cas.get(artifact_id)
    except CasError as exc:
        if exc.code in (CAS_NOT_FOUND, CAS_ARTIFACT_EXPIRED):
            # Lost, or deleted by retention on purpose: its producer runs again if needed.
            return exc.code
        if exc.code != CAS_DIGEST_MISMATCH:
            raise
        where = env.cas.quarantine(artifact_id)
        log.warning("%s; moved to %s, the turn that produced it runs again", exc, where or "nowhere (gone)")
        return CAS_DIGEST_MISMATCH
    return None


# How a warning names each reason; the code leads the line (CODE: message).
_STATE_WORDS = {
    CAS_ARTIFACT_EXPIRED: "was deleted by retention",
    CAS_NOT_FOUND: "is missing",
    CAS_DIGEST_MISMATCH: "was corrupt (quarantined)",
}


def describe_unusable(code: str) -> str:
    """The words a warning uses for an `unusable_reason` code (``is missing``...); raises nothing."""
    return _STATE_WORDS.get(code, "cannot be read")
