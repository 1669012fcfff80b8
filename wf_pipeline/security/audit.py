"""SHIM until the audit trail lands: the audit API the privileged reads code against.

Same names and signatures as the audit trail's module; events live in this process only,
without a hash chain. Replaced, not extended, when the real module is merged.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from wf_pipeline.errors import AUDIT_UNAVAILABLE, SecurityError  # noqa: F401  (re-exported for callers)

_EVENTS: dict[str, list[AuditEvent]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class AuditEvent:
    """One audit event (shim)."""

    seq: int
    event_id: str
    at_ms: int
    requester: str
    grant_id: str | None
    reason_code: str | None
    scope: Mapping[str, Any]
    artifact_ids: tuple[str, ...]
    outcome: Literal["allow", "deny"]
    code: str | None
    bytes: int
    policy_version: str
    prev_hash: str
    event_hash: str


def append_audit_event(
    records: Any,
    *,
    requester: str,
    grant_id: str | None,
    reason_code: str | None,
    scope: Mapping[str, Any],
    artifact_ids: tuple[str, ...] | list[str],
    outcome: Literal["allow", "deny"],
    code: str | None,
    bytes: int,
    policy_version: str,
    now_ms: int,
) -> AuditEvent:
    """Append one event (shim); raises ``AUDIT_UNAVAILABLE`` never."""
    with _LOCK:
        events = _EVENTS.setdefault(records.url, [])
        event = AuditEvent(
            seq=len(events) + 1,
            event_id=f"aud-{uuid.uuid4().hex}",
            at_ms=now_ms,
            requester=requester,
            grant_id=grant_id,
            reason_code=reason_code,
            scope=dict(scope),
            artifact_ids=tuple(artifact_ids),
            outcome=outcome,
            code=code,
            bytes=bytes,
            policy_version=policy_version,
            prev_hash="",
            event_hash="",
        )
        events.append(event)
        return event


def audit_events(
    records: Any,
    *,
    since_ms: int | None = None,
    grant_id: str | None = None,
    after_seq: int = 0,
    limit: int | None = None,
) -> list[AuditEvent]:
    """Events in seq order (shim)."""
    with _LOCK:
        events = list(_EVENTS.get(records.url, []))
    found = [
        e
        for e in events
        if e.seq > after_seq
        and (since_ms is None or e.at_ms >= since_ms)
        and (grant_id is None or e.grant_id == grant_id)
    ]
    return found if limit is None else found[:limit]
