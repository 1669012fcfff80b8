"""Privileged reads: a prompt or context payload for a grantee who holds a valid grant.

`privileged_read` returns a payload only when every check passes, in this order: the
requester's key file loads; the caller's own refusal, if any (an output path that cannot
take the payload); the artifact id has the shape ``sha256:`` + 64 hex; the grant document
is well formed; its issuer is registered, its Ed25519 signature verifies
against the issuer's public key and the issuer is an admin; the grant was recorded by
this store; the requester's key is the grantee's; the grant is valid now (not before
``not_before_ms``, before ``expires_at_ms``) and not revoked; the reason is in the fixed
list and allowed by the grant; the artifact is a recorded prompt render or context
payload within the grant's scope (workflow, thread, node, turn range: an artifact outside
it is denied as unknown to the requester, as a host answers 404 rather than 403, and
audited with the scope check it failed, ``GRANT_SCOPE_*``); the capability covers its
class; retention has not deleted it; its payload can still be read (in the CAS, its KEK
not destroyed); and the byte budget and rate allow one more read
(`RecordStore.use_grant`, atomic across processes).

The requester, artifact id, reason and grant id an event records are bounded, and a
caller's value out of shape is masked by the secret detector first (`recorded_text`).

Every decision, allow or deny, appends an audit event before anything is returned, as
Vault's audit devices do: when the append fails the read fails with
``AUDIT_UNAVAILABLE`` and returns nothing. The payload is fetched only after its allow
event is committed; if it then cannot be fetched or delivered, a follow-up deny event
with the failure's code and 0 bytes says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wf_pipeline.errors import (
    AUDIT_UNAVAILABLE,
    CAS_KEY_DESTROYED,
    CAS_NOT_FOUND,
    GRANT_BUDGET_EXCEEDED,
    GRANT_CAPABILITY_MISMATCH,
    GRANT_EXPIRED,
    GRANT_GRANTEE_MISMATCH,
    GRANT_GRANTEE_UNKNOWN,
    GRANT_NOT_YET_VALID,
    GRANT_RATE_LIMITED,
    GRANT_REASON_NOT_ALLOWED,
    GRANT_REVOKED,
    GRANT_SCOPE_NODE,
    GRANT_SCOPE_THREAD,
    GRANT_SCOPE_TURN,
    GRANT_SCOPE_WORKFLOW,
    GRANT_UNKNOWN,
    PRIVILEGED_ARTIFACT_GONE,
    PRIVILEGED_ARTIFACT_ID_INVALID,
    PRIVILEGED_ARTIFACT_SHREDDED,
    PRIVILEGED_ARTIFACT_UNKNOWN,
    SecurityError,
    WfError,
)
from wf_pipeline.metadata.artifact_classes import artifact_class_of_role
from wf_pipeline.metadata.canonical import digest
from wf_pipeline.metadata.records import GrantRecord
from wf_pipeline.records.protocol import (
    GRANT_USE_BUDGET,
    GRANT_USE_OK,
    GRANT_USE_RATE,
    GRANT_USE_REVOKED,
    RecordStore,
)
from wf_pipeline.security.audit import append_audit_event
from wf_pipeline.security.audit_key import AuditKeySource
from wf_pipeline.security.grants import CAPABILITY_CLASS, REASON_CODES, SignedGrant, verify_signature
from wf_pipeline.security.identities import (
    RESERVED_REQUESTER,
    identity_of_key,
    key_fingerprint,
    public_key_bytes,
)
from wf_pipeline.security.redaction import mask_secrets

#: The version of these rules, recorded in every audit event they decide.
POLICY_VERSION = "privileged-read/1"

#: The requester an audit event names when the requester's key file could not be loaded
#: (reserved: no identity may take this name).
UNKNOWN_REQUESTER = RESERVED_REQUESTER

#: The shape of an artifact id a privileged read accepts: ``sha256:`` and 64 lower-case hex digits.
ARTIFACT_ID_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: The longest reason code an audit event records as given; the fixed list's longest is 17.
MAX_REASON_CHARS = 64
#: The longest requester an audit event records as given (names are <= 64, ``key:sha256:...`` 75).
MAX_REQUESTER_CHARS = 128
#: The longest grant id an audit event records as given (`GrantDocument` ids are <= 200).
MAX_GRANT_ID_CHARS = 200
#: Characters of an out-of-shape value that its bounded form keeps before its digest.
BOUNDED_PREFIX_CHARS = 32
#: Characters of an out-of-shape value the secret detector reads (`recorded_text`): enough to
#: see a secret that starts in the kept prefix whole, while a megabyte argument costs nothing.
MASK_WINDOW_CHARS = 4096
#: The shape of a grant id the product issues (`wf_pipeline.security.grants.issue_grant`).
GRANT_ID_RE = re.compile(r"^grant-[0-9a-f]{32}$")

#: Reads a payload: (artifact id, artifact class, expected size in bytes) -> its verified bytes.
PayloadReader = Callable[[str, str, int], bytes]
#: Says whether a payload can still be read, without reading it: (artifact id, artifact class)
#: -> None, or raises ``CAS_NOT_FOUND`` (no object) or ``CAS_KEY_DESTROYED`` (its KEK destroyed).
PayloadCheck = Callable[[str, str], None]
#: Takes the payload to its destination (e.g. a file); raises a `WfError` when it cannot.
PayloadSink = Callable[[bytes], None]

# The order of the scope checks: a location that passes more of them is the one an audit
# event names when no location is in scope.
_SCOPE_DEPTH = {GRANT_SCOPE_WORKFLOW: 0, GRANT_SCOPE_THREAD: 1, GRANT_SCOPE_NODE: 2, GRANT_SCOPE_TURN: 3}
#: Codes the audit trail records but no requester is told: a miss of the grant's scope is
#: told ``PRIVILEGED_ARTIFACT_UNKNOWN``.
AUDITED_ONLY_CODES: tuple[str, ...] = tuple(_SCOPE_DEPTH)
# What a CAS availability check raises that becomes a denial (told within the scope only).
_UNAVAILABLE = frozenset({CAS_NOT_FOUND, CAS_KEY_DESTROYED})

# The prompt-link columns that name a privileged payload, with the link role of each.
_LINK_ROLES = (("rendered_prompt_artifact_id", "rendered_prompt"), ("context_artifact_id", "context"))


@dataclass(frozen=True)
class ArtifactLocation:
    """Where a payload artifact was used: the facts scope and capability are checked against.

    Attributes:
        artifact_id: the artifact (``sha256:<hex>``).
        artifact_class: ``prompt_render`` or ``context_payload``.
        workflow_id, thread_id, node_id, turn_id: the prompt link's thread, node and turn.
        turn_seq: the turn's seq (None when no turn record of it is left).
        size: the payload's size in bytes, as its artifact link recorded it (None: unknown).
    """

    artifact_id: str
    artifact_class: str
    workflow_id: str
    thread_id: str
    node_id: str
    turn_id: str
    turn_seq: int | None
    size: int | None


@dataclass(frozen=True)
class PrivilegedRead:
    """An allowed read: the payload and the ids that account for it.

    Attributes:
        artifact_id, artifact_class: what was read.
        grant_id: the grant it was read under.
        requester: the grantee's identity name.
        payload: the payload's exact bytes.
        audit_event_id, audit_seq: the allow event, appended before the payload was fetched.
    """

    artifact_id: str
    artifact_class: str
    grant_id: str
    requester: str
    payload: bytes
    audit_event_id: str
    audit_seq: int

    def summary(self) -> dict[str, Any]:
        """JSON-ready ids, digest and size of the read; never the payload."""
        return {
            "artifact_id": self.artifact_id,
            "artifact_class": self.artifact_class,
            "grant_id": self.grant_id,
            "requester": self.requester,
            "bytes": len(self.payload),
            "sha256": digest(self.payload),
            "audit_event_id": self.audit_event_id,
            "audit_seq": self.audit_seq,
        }


def locate_artifact(records: RecordStore, artifact_id: str) -> list[ArtifactLocation]:
    """Every place a prompt link names ``artifact_id`` as a rendered prompt or a context payload.

    The class follows the link's role (`artifact_class_of_role`): ``rendered_prompt`` is
    ``prompt_render``, ``context`` is ``context_payload``. The workflow comes from the
    link's thread, the turn seq from the turn's record, the size from the artifact link.
    Sorted by thread, turn and class; empty when no link names it (system prompts and
    templates are profile content, not privileged payloads). Raises ``RECORD_UNAVAILABLE``.
    """
    found: dict[tuple[str, str, str], ArtifactLocation] = {}
    for link in records.prompt_links_for_artifact(artifact_id):
        for column, role in _LINK_ROLES:
            if getattr(link, column) != artifact_id:
                continue
            thread = records.get_thread(link.thread_id)
            if thread is None:
                continue
            seqs = {turn.turn_id: turn.turn_seq for turn in records.turns_for_thread(thread.thread_id)}
            sizes = {
                item.role: item.size
                for item in records.artifact_links_for_thread(thread.thread_id)
                if item.artifact_id == artifact_id
            }
            artifact_class = artifact_class_of_role(role)
            assert artifact_class is not None  # both roles have a class
            key = (thread.thread_id, link.turn_id, artifact_class)
            found[key] = ArtifactLocation(
                artifact_id=artifact_id,
                artifact_class=artifact_class,
                workflow_id=thread.workflow_id,
                thread_id=thread.thread_id,
                node_id=link.node_id,
                turn_id=link.turn_id,
                turn_seq=seqs.get(link.turn_id),
                size=sizes.get(role),
            )
    return [found[key] for key in sorted(found)]


def scope_miss(grant: GrantRecord, where: ArtifactLocation) -> str | None:
    """The code of the first scope check ``where`` fails under ``grant`` (workflow, thread, node, turn range); None when in scope."""
    if where.workflow_id != grant.workflow_id:
        return GRANT_SCOPE_WORKFLOW
    if grant.thread_id is not None and where.thread_id != grant.thread_id:
        return GRANT_SCOPE_THREAD
    if grant.node_id is not None and where.node_id != grant.node_id:
        return GRANT_SCOPE_NODE
    if grant.min_seq is not None or grant.max_seq is not None:
        low = grant.min_seq if grant.min_seq is not None else 1
        high = grant.max_seq if grant.max_seq is not None else where.turn_seq
        if where.turn_seq is None or high is None or not low <= where.turn_seq <= high:
            return GRANT_SCOPE_TURN
    return None


def scope_refusal(grant: GrantRecord, where: ArtifactLocation) -> str | None:
    """The code of the first scope or capability check ``where`` fails under ``grant``; None when it fits."""
    miss = scope_miss(grant, where)
    if miss is not None:
        return miss
    if CAPABILITY_CLASS.get(grant.capability) != where.artifact_class:
        return GRANT_CAPABILITY_MISMATCH
    return None


def grant_scope(grant: GrantRecord | SignedGrant | None) -> dict[str, Any]:
    """The scope an audit event records: capability, workflow, thread, node, turn range (None: any)."""
    if grant is None:
        return {}
    if isinstance(grant, SignedGrant):
        # A document not verified yet is the caller's text: each string is recorded masked and
        # bounded (ids the product makes pass unchanged).
        doc = grant.document
        scope = {"capability": doc.capability, **doc.scope.model_dump()}
        return {
            key: recorded_text(value, MAX_GRANT_ID_CHARS, in_shape=False) if isinstance(value, str) else value
            for key, value in scope.items()
        }
    return {
        "capability": grant.capability,
        "workflow_id": grant.workflow_id,
        "thread_id": grant.thread_id,
        "node_id": grant.node_id,
        "min_seq": grant.min_seq,
        "max_seq": grant.max_seq,
    }


def bounded_text(value: Any, limit: int) -> str:
    """``value`` as an audit event may record it: itself when it is UTF-8 text of at most ``limit`` characters.

    Anything else (longer, or holding characters UTF-8 cannot encode, such as the lone
    surrogates Python makes of undecodable command-line bytes) becomes its first
    `BOUNDED_PREFIX_CHARS` characters with those escaped, ``...`` and the ``sha256:`` of
    the whole (its UTF-8 bytes, lone surrogates passed through): an append-only row stays
    small, and the value can still be matched against a suspect one.

    Args:
        value: the text given (anything else is taken as its ``str``).
        limit: the most characters kept as given.

    Returns:
        Text of at most ``max(limit, BOUNDED_PREFIX_CHARS * 10 + 74)`` characters that UTF-8 encodes.
    """
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
        if len(text) <= limit:
            return text
    except UnicodeEncodeError:
        pass
    head = text[:BOUNDED_PREFIX_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{head}...{digest(text.encode('utf-8', 'surrogatepass'))}"


def recorded_text(value: Any, limit: int, *, in_shape: bool) -> str:
    """A caller-supplied ``value`` as an audit event records it: masked when out of shape, always bounded.

    A value in its expected shape (an artifact id ``sha256:`` + 64 hex, a reason of the
    fixed list, a grant id the product issued) is recorded as `bounded_text` gives it. Any
    other value may be anything a caller typed (an access key pasted as an artifact id,
    ``password=...`` as a reason), and the audit trail is append-only: its first
    `MASK_WINDOW_CHARS` characters go through the one secret detector
    (`wf_pipeline.security.redaction.mask_secrets`) first. When nothing is secret-shaped the
    result is `bounded_text`'s; when something is, the masked text itself if it fits
    ``limit``, else its first `BOUNDED_PREFIX_CHARS` characters, ``...`` and the ``sha256:``
    of the masked window. No digest of a secret is kept: one of a short password can be
    guessed offline.

    Args:
        value: the text given (anything else is taken as its ``str``).
        limit: the most characters kept as given.
        in_shape: the caller checked that ``value`` has its expected shape.

    Returns:
        Text of at most ``max(limit, BOUNDED_PREFIX_CHARS * 10 + 74)`` characters that UTF-8
        encodes, holding no value the detector finds secret-shaped.
    """
    text = value if isinstance(value, str) else str(value)
    if in_shape:
        return bounded_text(text, limit)
    window = text[:MASK_WINDOW_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
    masked = mask_secrets(window)
    if masked == window:
        return bounded_text(text, limit)
    if len(masked) <= limit and len(text) <= MASK_WINDOW_CHARS:
        return masked
    head = masked[:BOUNDED_PREFIX_CHARS]
    return f"{head}...{digest(masked.encode('utf-8'))}"


class _Decision:
    """The audit trail of one read: appends its deny or allow event before anything leaves."""

    def __init__(
        self,
        records: RecordStore,
        *,
        audit_key: AuditKeySource,
        requester: str,
        artifact_id: str,
        reason: str,
        now_ms: int,
    ) -> None:
        self.records = records
        self.audit_key = audit_key
        # Bounded before anything is written: an append-only row never takes megabytes or
        # text the store cannot encode, whatever the caller passed.
        # Out of shape, a caller's value is also masked: the trail never keeps a secret typed
        # in the wrong place. The requester is the store's name or a key's fingerprint.
        self.requester = bounded_text(requester, MAX_REQUESTER_CHARS)
        self.artifact_id = recorded_text(
            artifact_id,
            len("sha256:") + 64,
            in_shape=isinstance(artifact_id, str) and ARTIFACT_ID_RE.fullmatch(artifact_id) is not None,
        )
        self.reason = recorded_text(reason, MAX_REASON_CHARS, in_shape=reason in REASON_CODES)
        self.now_ms = now_ms
        self.grant_id: str | None = None
        self.scope: dict[str, Any] = {}

    def _append(self, outcome: str, code: str | None, size: int) -> Any:
        try:
            return append_audit_event(
                self.records,
                key=self.audit_key,
                requester=self.requester,
                # A malformed grant file's id is the caller's text: bounded like the rest.
                grant_id=None
                if self.grant_id is None
                else recorded_text(
                    self.grant_id,
                    MAX_GRANT_ID_CHARS,
                    in_shape=isinstance(self.grant_id, str)
                    and GRANT_ID_RE.fullmatch(self.grant_id) is not None,
                ),
                reason_code=self.reason,
                scope=self.scope,
                artifact_ids=(self.artifact_id,),
                outcome=outcome,
                code=code,
                bytes=size,
                policy_version=POLICY_VERSION,
                now_ms=self.now_ms,
            )
        except SecurityError as exc:
            if exc.code == AUDIT_UNAVAILABLE:
                raise
            raise SecurityError(
                AUDIT_UNAVAILABLE,
                f"audit event could not be written: {exc.code}",
                artifact_id=self.artifact_id,
            ) from exc
        except Exception as exc:
            # Vault's rule: no audit record, no answer. Whatever broke, the read fails closed.
            raise SecurityError(
                AUDIT_UNAVAILABLE,
                f"audit event could not be written: {type(exc).__name__}",
                artifact_id=self.artifact_id,
            ) from exc

    def deny(self, error: WfError, *, audited_code: str | None = None) -> SecurityError:
        """Append the deny event of ``error`` and return the error to raise (``AUDIT_UNAVAILABLE`` if the append fails).

        ``audited_code``: the code the event records when it is not the one the requester
        is told (an artifact outside the grant's scope is "unknown" to the requester, and
        ``GRANT_SCOPE_WORKFLOW``, ``_THREAD``, ``_NODE`` or ``_TURN`` to the auditor).
        """
        self._append("deny", audited_code or error.code, 0)
        return error if isinstance(error, SecurityError) else SecurityError(error.code, error.message)

    @property
    def ids(self) -> dict[str, Any]:
        """The ids a denial's error carries: grant and artifact."""
        return {"grant_id": self.grant_id, "artifact_id": self.artifact_id}

    def allow(self, size: int) -> Any:
        """Append the allow event of a read of ``size`` bytes; returns the event."""
        return self._append("allow", None, size)

    def undelivered(self, error: WfError) -> WfError:
        """Append the follow-up deny event of an allowed read that delivered nothing; returns the error to raise.

        The event names the failure's code (``CAS_*``, ``KEYS_*``, ``PRIVILEGED_OUT_INVALID``)
        and 0 bytes, so the trail reads "allowed, then not delivered". When that event cannot
        be appended either, ``AUDIT_UNAVAILABLE`` naming both codes is returned instead.
        """
        try:
            self._append("deny", error.code, 0)
        except SecurityError as exc:
            return SecurityError(
                AUDIT_UNAVAILABLE,
                f"the read of {self.artifact_id} was allowed but not delivered ({error.code}), and its "
                f"follow-up audit event could not be written: {exc.message}",
                artifact_id=self.artifact_id,
                undelivered=error.code,
            )
        return error


def privileged_read(
    records: RecordStore,
    read_payload: PayloadReader,
    *,
    artifact_id: str,
    requester_key: Ed25519PrivateKey | SecurityError,
    grant: SignedGrant | SecurityError,
    reason: str,
    now_ms: int,
    audit_key: AuditKeySource,
    refusal: SecurityError | None = None,
    check_payload: PayloadCheck | None = None,
    deliver: PayloadSink | None = None,
) -> PrivilegedRead:
    """The payload of ``artifact_id`` for the holder of ``requester_key``, if ``grant`` allows it now.

    Args:
        records: the record store: identities, grants, prompt links, the audit trail.
        read_payload: fetches the verified payload bytes (the home's CAS through its
            keyring); called only after the allow event is committed.
        artifact_id: the rendered prompt or context artifact (``sha256:<hex>``).
        requester_key: the requester's Ed25519 private key (its key file), or the
            ``IDENTITY_INVALID`` error loading it raised (denied and audited, requester
            `UNKNOWN_REQUESTER`).
        grant: the parsed grant file, or the ``GRANT_MALFORMED`` error parsing it raised
            (so that a malformed grant is denied and audited like any other).
        reason: the reason code of this read (`REASON_CODES`); recorded bounded
            (`bounded_text`, `MAX_REASON_CHARS`) when out of shape.
        now_ms: the time of the decision (Unix epoch ms).
        audit_key: the audit key that seals each event, or the function that finds (or
            makes) it (`wf_pipeline.security.audit_key.audit_key_source`); a key that cannot
            be had, or is not the key the trail is sealed under, is ``AUDIT_UNAVAILABLE``.
        refusal: a refusal the caller found before the decision (e.g. ``PRIVILEGED_OUT_INVALID``:
            the payload could not be delivered); denied and audited after the key file's
            check, before any other, so nothing is charged.
        check_payload: says, without reading the payload, that it can still be read (its
            object is in the CAS, its KEK not destroyed); called before anything is charged.
            ``CAS_NOT_FOUND`` is denied as ``PRIVILEGED_ARTIFACT_GONE``, ``CAS_KEY_DESTROYED``
            as ``PRIVILEGED_ARTIFACT_SHREDDED``. None: no check.
        deliver: takes the payload to its destination (a file) after it was fetched.

    Returns:
        The `PrivilegedRead` with the exact payload bytes.

    Raises ``SecurityError`` with the first failing check's code (each audited as a deny
    event first): ``IDENTITY_INVALID`` (the key file), ``refusal``'s code,
    ``PRIVILEGED_ARTIFACT_ID_INVALID`` (not ``sha256:`` + 64 hex; recorded bounded), ``GRANT_MALFORMED``, ``GRANT_ISSUER_UNKNOWN``, ``GRANT_SIGNATURE_INVALID``,
    ``GRANT_ISSUER_NOT_ADMIN``, ``GRANT_SELF_ISSUED``, ``GRANT_UNKNOWN``, ``GRANT_GRANTEE_UNKNOWN``,
    ``GRANT_GRANTEE_MISMATCH``, ``GRANT_NOT_YET_VALID``, ``GRANT_EXPIRED``, ``GRANT_REVOKED``,
    ``GRANT_REASON_NOT_ALLOWED``, ``PRIVILEGED_ARTIFACT_UNKNOWN`` (also for an artifact
    outside the grant's scope, audited as ``GRANT_SCOPE_WORKFLOW``, ``GRANT_SCOPE_THREAD``,
    ``GRANT_SCOPE_NODE`` or ``GRANT_SCOPE_TURN``), ``GRANT_CAPABILITY_MISMATCH``,
    ``PRIVILEGED_ARTIFACT_GONE``, ``PRIVILEGED_ARTIFACT_SHREDDED``, ``GRANT_BUDGET_EXCEEDED``,
    ``GRANT_RATE_LIMITED``; ``AUDIT_UNAVAILABLE`` when an event cannot be appended (nothing
    returned). After the allow event, what ``read_payload`` or ``deliver`` raises (``CAS_*``,
    ``KEYS_*``, ``PRIVILEGED_OUT_INVALID``), once a follow-up deny event with that code and
    0 bytes is appended (the budget stays charged). ``RECORD_UNAVAILABLE`` from the store.
    """
    if isinstance(requester_key, SecurityError):
        decision = _Decision(
            records,
            audit_key=audit_key,
            requester=UNKNOWN_REQUESTER,
            artifact_id=artifact_id,
            reason=reason,
            now_ms=now_ms,
        )
        if isinstance(grant, SignedGrant):
            decision.grant_id, decision.scope = grant.document.grant_id, grant_scope(grant)
        raise decision.deny(requester_key)
    me = identity_of_key(records, requester_key)
    # A key no identity holds is named by its fingerprint: the audit trail still says who tried.
    requester = me.name if me is not None else f"key:{key_fingerprint(public_key_bytes(requester_key))}"
    decision = _Decision(
        records,
        audit_key=audit_key,
        requester=requester,
        artifact_id=artifact_id,
        reason=reason,
        now_ms=now_ms,
    )
    if isinstance(grant, SignedGrant):
        decision.grant_id, decision.scope = grant.document.grant_id, grant_scope(grant)
    if refusal is not None:
        raise decision.deny(refusal)
    if not isinstance(artifact_id, str) or not ARTIFACT_ID_RE.fullmatch(artifact_id):
        raise decision.deny(
            SecurityError(
                PRIVILEGED_ARTIFACT_ID_INVALID,
                f"artifact id {decision.artifact_id!r} is not sha256: and 64 lower-case hex digits",
                **decision.ids,
            )
        )
    if isinstance(grant, SecurityError):
        decision.grant_id = grant.details.get("grant_id")
        raise decision.deny(grant)
    doc = grant.document
    decision.grant_id = doc.grant_id
    decision.scope = grant_scope(grant)
    try:
        verify_signature(records, grant)
    except SecurityError as exc:
        raise decision.deny(exc) from None
    stored = records.get_grant(doc.grant_id)
    if stored is None or stored.grant_digest != grant.digest:
        raise decision.deny(
            SecurityError(
                GRANT_UNKNOWN,
                f"grant {doc.grant_id} was not issued through this record store",
                **decision.ids,
            )
        )
    grantee = records.get_identity(doc.grantee)
    if grantee is None:
        raise decision.deny(
            SecurityError(
                GRANT_GRANTEE_UNKNOWN, f"grant {doc.grant_id} grantee is not registered", **decision.ids
            )
        )
    if grantee.public_key != public_key_bytes(requester_key):
        raise decision.deny(
            SecurityError(
                GRANT_GRANTEE_MISMATCH,
                f"the requester's key is not grantee {grantee.name}'s registered key",
                **decision.ids,
            )
        )
    if now_ms < doc.not_before_ms:
        raise decision.deny(
            SecurityError(
                GRANT_NOT_YET_VALID,
                f"grant {doc.grant_id} is valid from {doc.not_before_ms} ms, now is {now_ms} ms",
                **decision.ids,
            )
        )
    if now_ms >= doc.expires_at_ms:
        raise decision.deny(
            SecurityError(
                GRANT_EXPIRED,
                f"grant {doc.grant_id} expired at {doc.expires_at_ms} ms, now is {now_ms} ms",
                **decision.ids,
            )
        )
    if stored.revoked_at_ms is not None:
        raise decision.deny(
            SecurityError(
                GRANT_REVOKED,
                f"grant {doc.grant_id} was revoked at {stored.revoked_at_ms} ms",
                **decision.ids,
            )
        )
    if reason not in REASON_CODES or reason not in doc.reasons:
        raise decision.deny(
            SecurityError(
                GRANT_REASON_NOT_ALLOWED,
                f"reason {decision.reason[:40]!r} is not one of the grant's: {', '.join(doc.reasons)}",
                **decision.ids,
            )
        )
    # Outside the grant's scope nothing is said to exist (as a host answers 404, not 403, for
    # what the caller may not see): an artifact of another workflow, thread, node or turn
    # range is denied with the code and message of an id no artifact has, so a grantee
    # cannot probe ids (digests of content) for what is stored outside the scope. The audit
    # event names the scope check. Within the scope, capability, deletion and shredding are
    # told as they are.
    locations = locate_artifact(records, artifact_id)
    in_scope = [where for where in locations if scope_miss(stored, where) is None]
    if not in_scope:
        misses = [scope_miss(stored, where) for where in locations]
        # The location that passed the most scope checks names the audited miss (stable: sorted).
        closest = max(misses, key=lambda code: _SCOPE_DEPTH[code], default=None)  # type: ignore[index]
        raise decision.deny(
            SecurityError(
                PRIVILEGED_ARTIFACT_UNKNOWN,
                f"no prompt or context payload in grant {doc.grant_id}'s scope has id {artifact_id}",
                **decision.ids,
            ),
            audited_code=closest,
        )
    fitting = [where for where in in_scope if scope_refusal(stored, where) is None]
    if not fitting:
        raise decision.deny(
            SecurityError(
                GRANT_CAPABILITY_MISMATCH,
                f"{artifact_id} is a {in_scope[0].artifact_class} artifact; grant {doc.grant_id}'s "
                f"capability {stored.capability} does not read it",
                **decision.ids,
            )
        )
    if records.get_tombstone(artifact_id) is not None:
        raise decision.deny(
            SecurityError(PRIVILEGED_ARTIFACT_GONE, f"{artifact_id} was deleted by retention", **decision.ids)
        )
    where = fitting[0]
    if check_payload is not None:
        # Checked before the budget is charged and the allow event appended: a payload that
        # cannot be returned is a denial, not an allowed read that spends the grant.
        try:
            check_payload(artifact_id, where.artifact_class)
        except WfError as exc:
            if exc.code not in _UNAVAILABLE:
                # The check itself failed (the CAS or the store is down): still a decision
                # the trail records, with the failure's code, before the error goes up.
                decision.deny(exc)
                raise
            if exc.code == CAS_NOT_FOUND:
                told = SecurityError(
                    PRIVILEGED_ARTIFACT_GONE, f"{artifact_id} is no longer in the CAS", **decision.ids
                )
            else:
                told = SecurityError(
                    PRIVILEGED_ARTIFACT_SHREDDED,
                    f"{artifact_id} was crypto-shredded (its KEK was destroyed)",
                    **decision.ids,
                )
            raise decision.deny(told) from None
    if where.size is None:
        # The budget is charged before the payload is fetched, so its size must be on record.
        raise decision.deny(
            SecurityError(
                PRIVILEGED_ARTIFACT_UNKNOWN,
                f"no artifact link records the size of {artifact_id}",
                **decision.ids,
            )
        )
    size = where.size
    outcome = records.use_grant(doc.grant_id, size=size, at_ms=now_ms)
    if outcome == GRANT_USE_BUDGET:
        raise decision.deny(
            SecurityError(
                GRANT_BUDGET_EXCEEDED,
                f"{size} bytes would pass grant {doc.grant_id}'s budget of {stored.max_bytes} bytes",
                **decision.ids,
            )
        )
    if outcome == GRANT_USE_RATE:
        raise decision.deny(
            SecurityError(
                GRANT_RATE_LIMITED,
                f"grant {doc.grant_id} allows {stored.rate_reads} reads per {stored.rate_window_ms} ms",
                **decision.ids,
            )
        )
    if outcome == GRANT_USE_REVOKED:
        raise decision.deny(SecurityError(GRANT_REVOKED, f"grant {doc.grant_id} was revoked", **decision.ids))
    if outcome != GRANT_USE_OK:
        raise decision.deny(
            SecurityError(GRANT_UNKNOWN, f"grant {doc.grant_id} is no longer recorded", **decision.ids)
        )
    event = decision.allow(size)
    try:
        payload = read_payload(artifact_id, where.artifact_class, size)
        if deliver is not None:
            deliver(payload)
    except WfError as exc:
        # Allowed, then not delivered (a race with retention or shredding, a corrupt object,
        # an output that failed after all): the trail says so with a follow-up deny event.
        # The budget stays charged: limits err on the safe side.
        raise decision.undelivered(exc) from exc
    return PrivilegedRead(
        artifact_id=artifact_id,
        artifact_class=where.artifact_class,
        grant_id=doc.grant_id,
        requester=requester,
        payload=payload,
        audit_event_id=event.event_id,
        audit_seq=event.seq,
    )
