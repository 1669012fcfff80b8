"""Grants: scoped, expiring capabilities to read prompt or context payloads, signed by an admin.

A grant is a JSON document (`GrantDocument`) whose canonical bytes
(`wf_pipeline.metadata.canonical.canonical_json`) an admin identity signs with Ed25519
(RFC 8032, via ``cryptography``). The grant file holds the document and the signature
(base64); whoever holds it and the grantee's key file may read within its scope. The
record store keeps each issued grant (`GrantRecord`) for revocation and metering: its
byte budget and rate limit are counted by `RecordStore.use_grant`, atomically across
processes. The shape follows capability tokens in the manner of Vault's response-wrapped
tokens and Macaroons: scoped, signed, expiring, revocable by id.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from wf_pipeline.errors import (
    GRANT_ISSUER_NOT_ADMIN,
    GRANT_ISSUER_UNKNOWN,
    GRANT_MALFORMED,
    GRANT_SCOPE_INVALID,
    GRANT_SELF_ISSUED,
    GRANT_SIGNATURE_INVALID,
    IDENTITY_NOT_ADMIN,
    IDENTITY_UNKNOWN,
    MetadataError,
    SecurityError,
)
from wf_pipeline.metadata.canonical import canonical_json, digest, parse_json
from wf_pipeline.metadata.durations import parse_duration_ms
from wf_pipeline.metadata.records import GrantRecord, IdentityRecord
from wf_pipeline.records.protocol import RecordStore, field_errors
from wf_pipeline.security.identities import admin_refusal, identity_of_key

Capability = Literal["prompt_payload_read", "context_payload_read"]
#: The capabilities a grant may carry.
CAPABILITIES: tuple[Capability, ...] = ("prompt_payload_read", "context_payload_read")
#: The artifact class each capability reads (`wf_pipeline.metadata.artifact_classes`).
CAPABILITY_CLASS: dict[str, str] = {
    "prompt_payload_read": "prompt_render",
    "context_payload_read": "context_payload",
}
ReasonCode = Literal["incident_response", "debugging", "compliance_review", "quality_audit"]
#: The fixed list of reason codes a grant may allow and a read must give.
REASON_CODES: tuple[ReasonCode, ...] = (
    "incident_response",
    "debugging",
    "compliance_review",
    "quality_audit",
)
#: The format tag every grant document carries; a change of shape gets a new one.
GRANT_FORMAT = "wf-grant/1"

_RATE_UNITS = {"s": 1_000, "sec": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000, "hour": 3_600_000}
_RATE_RE = re.compile(r"^(?P<reads>[1-9][0-9]{0,8})/(?P<window>[0-9a-z]+)$")
_TURNS_RE = re.compile(r"^(?P<low>[1-9][0-9]{0,8})(?:-(?P<high>[1-9][0-9]{0,8}))?$")

#: The largest integer a grant field takes: the record store keeps them as signed 64-bit
#: integers (SQLite INTEGER, PostgreSQL BIGINT).
MAX_GRANT_INT = 2**63 - 1

NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]
Count = Annotated[int, Field(ge=1, le=MAX_GRANT_INT)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class GrantScope(_Strict):
    """What a grant covers: one workflow, optionally one thread and one node, and a turn seq range.

    ``thread_id``, ``node_id``, ``min_seq`` and ``max_seq`` None: any. Seqs are the
    profile's turn ``seq`` (1-based), both ends included.
    """

    workflow_id: NonEmpty
    thread_id: NonEmpty | None = None
    node_id: NonEmpty | None = None
    min_seq: Count | None = None
    max_seq: Count | None = None

    @model_validator(mode="after")
    def _range(self) -> GrantScope:
        if self.min_seq is not None and self.max_seq is not None and self.min_seq > self.max_seq:
            raise ValueError("min_seq is above max_seq")
        return self


class GrantRate(_Strict):
    """At most ``reads`` reads per fixed window of ``window_ms`` ms."""

    reads: Count
    window_ms: Count


class GrantDocument(_Strict):
    """The signed part of a grant; every field is covered by the signature. Times in ms, sizes in bytes."""

    format: Literal["wf-grant/1"] = GRANT_FORMAT
    grant_id: NonEmpty
    issuer: NonEmpty
    grantee: NonEmpty
    capability: Capability
    scope: GrantScope
    reasons: tuple[ReasonCode, ...] = Field(min_length=1)
    issued_at_ms: Annotated[int, Field(le=MAX_GRANT_INT)]
    not_before_ms: Annotated[int, Field(le=MAX_GRANT_INT)]
    expires_at_ms: Annotated[int, Field(le=MAX_GRANT_INT)]
    max_bytes: Annotated[int, Field(ge=0, le=MAX_GRANT_INT)]
    rate: GrantRate

    @model_validator(mode="after")
    def _times(self) -> GrantDocument:
        if self.expires_at_ms <= self.not_before_ms:
            raise ValueError("expires_at_ms is not after not_before_ms")
        return self


@dataclass(frozen=True)
class SignedGrant:
    """A grant document and its Ed25519 signature over the document's canonical bytes."""

    document: GrantDocument
    signature: bytes

    @property
    def signed_bytes(self) -> bytes:
        """The canonical JSON of the document: what the signature covers."""
        return canonical_json(self.document.model_dump(mode="json"))

    @property
    def digest(self) -> str:
        """``sha256:`` of the signed bytes, recorded with the grant."""
        return digest(self.signed_bytes)

    def file_bytes(self) -> bytes:
        """The grant file: canonical JSON of ``{"grant": document, "signature": base64}`` plus a newline."""
        body = {
            "grant": self.document.model_dump(mode="json"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return canonical_json(body) + b"\n"


def parse_rate(text: str) -> tuple[int, int]:
    """``READS/WINDOW`` as (reads, window in ms): ``10/min``, ``100/h``, ``5/30s``, ``20/1d``.

    The window is a unit (``s``, ``sec``, ``m``, ``min``, ``h``, ``hour``) or a duration
    (`wf_pipeline.metadata.durations.parse_duration_ms`). Raises ``GRANT_MALFORMED``.
    """
    match = _RATE_RE.fullmatch(str(text).strip())
    if match is None:
        raise SecurityError(GRANT_MALFORMED, f"rate {str(text)[:40]!r} is not READS/WINDOW, e.g. 10/min")
    window = match.group("window")
    window_ms = _RATE_UNITS.get(window)
    if window_ms is None:
        try:
            window_ms = parse_duration_ms(window)
        except MetadataError:
            window_ms = None
    if window_ms is None:
        raise SecurityError(
            GRANT_MALFORMED, f"rate window {window!r} is not a finite duration such as min or 1h"
        )
    return int(match.group("reads")), window_ms


def parse_turns(text: str) -> tuple[int, int]:
    """A turn seq range ``1-3`` (or one seq, ``2``) as (min_seq, max_seq); ``GRANT_MALFORMED`` otherwise."""
    match = _TURNS_RE.fullmatch(str(text).strip())
    if match is None:
        raise SecurityError(GRANT_MALFORMED, f"turn range {str(text)[:40]!r} is not N or N-M (seqs from 1)")
    low = int(match.group("low"))
    high = int(match.group("high") or low)
    if low > high:
        raise SecurityError(GRANT_MALFORMED, f"turn range {text!r} runs backwards")
    return low, high


#: A thread id: ``thread:`` and 24 lower-case hex digits (`wf_pipeline.metadata.canonical.derived_id`).
THREAD_ID_RE = re.compile(r"^thread:[0-9a-f]{24}$")
#: A node id: ``node:`` and 64 lower-case hex digits (the Merkle ids of `wf_pipeline.tree.scan`).
NODE_ID_RE = re.compile(r"^node:[0-9a-f]{64}$")


def check_scope_ids(thread_id: str | None, node_id: str | None) -> None:
    """Refuse a thread or node id that no record can have, so a grant never holds a scope that cannot match.

    Args:
        thread_id: None (any thread) or `THREAD_ID_RE`.
        node_id: None (any node) or `NODE_ID_RE`.

    Raises ``GRANT_SCOPE_INVALID`` naming the option and the expected shape (the value
    itself only as its first 40 characters).
    """
    for what, value, pattern, shape in (
        ("thread", thread_id, THREAD_ID_RE, "thread: and 24 lower-case hex digits"),
        ("node", node_id, NODE_ID_RE, "node: and 64 lower-case hex digits"),
    ):
        if value is not None and not pattern.fullmatch(value):
            raise SecurityError(
                GRANT_SCOPE_INVALID,
                f"{what} id {value[:40]!r} ({len(value)} characters) is not {shape}; "
                "a grant scoped to it could never match",
                field=what,
            )


def parse_signed_grant(data: bytes) -> SignedGrant:
    """The signed grant in a grant file's bytes; the signature is not checked here.

    Raises ``GRANT_MALFORMED`` naming the failing fields (never their values) when the
    bytes are not JSON, a field is missing, unknown or of the wrong type or out of range,
    or a value canonical JSON cannot encode (NaN, Infinity, a lone surrogate) appears.
    """
    try:
        body = parse_json(data)
    except (ValueError, UnicodeDecodeError):
        raise SecurityError(GRANT_MALFORMED, "grant file is not a JSON document") from None
    if not isinstance(body, dict) or set(body) != {"grant", "signature"}:
        raise SecurityError(GRANT_MALFORMED, "grant file must hold exactly 'grant' and 'signature'")
    try:
        signature = base64.b64decode(str(body["signature"]), validate=True)
    except (binascii.Error, ValueError):
        raise SecurityError(GRANT_MALFORMED, "grant signature is not base64") from None
    try:
        # JSON mode: strict types as JSON has them (arrays for tuples, no "1" for 1).
        document = GrantDocument.model_validate_json(canonical_json(body["grant"]))
    except (ValueError, UnicodeEncodeError) as exc:
        # NaN or Infinity (Python's parser takes them, canonical JSON refuses them) and
        # lone surrogates from \ud800-style escapes; ValidationError is a ValueError too.
        if isinstance(exc, ValidationError):
            problem = f"fails validation: {field_errors(exc)}"
        else:
            problem = "holds a value canonical JSON cannot encode (NaN, Infinity or a lone surrogate)"
        grant_id = body["grant"].get("grant_id") if isinstance(body["grant"], dict) else None
        raise SecurityError(
            GRANT_MALFORMED,
            f"grant document {problem}",
            grant_id=grant_id if isinstance(grant_id, str) else None,
        ) from None
    return SignedGrant(document, signature)


def verify_signature(records: RecordStore, signed: SignedGrant) -> IdentityRecord:
    """The issuer of ``signed``, after its signature verifies and its standing as an admin is checked.

    Raises ``GRANT_ISSUER_UNKNOWN`` (the issuer is not registered), ``GRANT_SIGNATURE_INVALID``
    (the Ed25519 signature does not verify against the issuer's registered public key:
    a changed document, another signer, a damaged signature), ``GRANT_ISSUER_NOT_ADMIN``
    (its role is not admin, or its admin approval does not verify: `admin_refusal`),
    ``GRANT_SELF_ISSUED`` (the grantee is the issuer, by name or by key: the two-person
    rule `issue_grant` enforces, so only a grant recorded around it gets here).
    """
    grant_id = signed.document.grant_id
    issuer = records.get_identity(signed.document.issuer)
    if issuer is None:
        raise SecurityError(
            GRANT_ISSUER_UNKNOWN,
            f"grant {grant_id} names an issuer that is not registered",
            grant_id=grant_id,
        )
    try:
        Ed25519PublicKey.from_public_bytes(issuer.public_key).verify(signed.signature, signed.signed_bytes)
    except InvalidSignature:
        raise SecurityError(
            GRANT_SIGNATURE_INVALID,
            f"grant {grant_id} signature does not verify against issuer {issuer.name}'s public key",
            grant_id=grant_id,
        ) from None
    refusal = admin_refusal(records, issuer)
    if refusal is not None:
        raise SecurityError(GRANT_ISSUER_NOT_ADMIN, f"grant {grant_id} issuer: {refusal}", grant_id=grant_id)
    grantee = records.get_identity(signed.document.grantee)
    if signed.document.grantee == issuer.name or (
        grantee is not None and grantee.public_key == issuer.public_key
    ):
        raise SecurityError(
            GRANT_SELF_ISSUED,
            f"grant {grant_id} was issued by {issuer.name} to itself; a grant needs another admin's signature",
            grant_id=grant_id,
        )
    return issuer


def grant_record(signed: SignedGrant) -> GrantRecord:
    """The `GrantRecord` a signed grant is recorded as, with no use yet."""
    doc = signed.document
    return GrantRecord(
        grant_id=doc.grant_id,
        grant_digest=signed.digest,
        issuer=doc.issuer,
        grantee=doc.grantee,
        capability=doc.capability,
        workflow_id=doc.scope.workflow_id,
        thread_id=doc.scope.thread_id,
        node_id=doc.scope.node_id,
        min_seq=doc.scope.min_seq,
        max_seq=doc.scope.max_seq,
        reasons=tuple(doc.reasons),
        issued_at_ms=doc.issued_at_ms,
        not_before_ms=doc.not_before_ms,
        expires_at_ms=doc.expires_at_ms,
        max_bytes=doc.max_bytes,
        rate_reads=doc.rate.reads,
        rate_window_ms=doc.rate.window_ms,
    )


def issue_grant(
    records: RecordStore,
    admin_key: Ed25519PrivateKey,
    *,
    grantee: str,
    capability: str,
    scope: dict[str, Any],
    reasons: tuple[str, ...],
    max_bytes: int,
    rate: tuple[int, int],
    expires_in_ms: int,
    now_ms: int,
    not_before_ms: int | None = None,
) -> SignedGrant:
    """Sign a new grant with ``admin_key`` and record it.

    Args:
        records: where the issuer and grantee are registered and the grant is recorded.
        admin_key: the issuer's private key; its public key must be a registered admin's.
        grantee: the identity the grant is for (registered, any role).
        capability: one of `CAPABILITIES`.
        scope: `GrantScope` fields (``workflow_id``; optional ``thread_id``, ``node_id``,
            ``min_seq``, ``max_seq``).
        reasons: reason codes from `REASON_CODES` the grant allows (at least one).
        max_bytes: byte budget of payloads read under it.
        rate: (reads, window in ms), see `parse_rate`.
        expires_in_ms: validity from ``not_before_ms`` (default ``now_ms``), > 0.
        now_ms: the issue time (Unix epoch ms).

    Returns:
        The `SignedGrant` (its `SignedGrant.file_bytes` is the grant file).

    Raises ``IDENTITY_NOT_ADMIN`` (the key is no registered admin's, or that admin's
    approval does not verify: `admin_refusal`), ``IDENTITY_UNKNOWN`` (no such grantee),
    ``GRANT_SELF_ISSUED`` (the grantee is the issuer: the two-person rule, after NIST SP
    800-53 AC-5 separation of duties), ``GRANT_MALFORMED`` (a field fails
    `GrantDocument`'s checks), ``RECORD_UNAVAILABLE``. Nothing is recorded on failure.
    """
    issuer = identity_of_key(records, admin_key)
    refusal = "it is no registered identity's" if issuer is None else admin_refusal(records, issuer)
    if issuer is None or refusal is not None:
        raise SecurityError(IDENTITY_NOT_ADMIN, f"the signing key cannot issue grants: {refusal}")
    found = records.get_identity(grantee)
    if found is None:
        raise SecurityError(IDENTITY_UNKNOWN, f"grantee {grantee[:80]!r} is not a registered identity")
    if found.name == issuer.name or found.public_key == issuer.public_key:
        raise SecurityError(
            GRANT_SELF_ISSUED,
            f"{issuer.name} may not grant reads to itself; another admin must issue the grant",
            grantee=grantee,
        )
    start = now_ms if not_before_ms is None else not_before_ms
    try:
        document = GrantDocument(
            grant_id=f"grant-{uuid.uuid4().hex}",
            issuer=issuer.name,
            grantee=grantee,
            capability=capability,  # type: ignore[arg-type]  # checked by the model
            scope=GrantScope.model_validate(scope),
            reasons=tuple(reasons),  # type: ignore[arg-type]  # checked by the model
            issued_at_ms=now_ms,
            not_before_ms=start,
            expires_at_ms=start + expires_in_ms,
            max_bytes=max_bytes,
            rate=GrantRate(reads=rate[0], window_ms=rate[1]),
        )
    except ValidationError as exc:
        raise SecurityError(GRANT_MALFORMED, f"grant fails validation: {field_errors(exc)}") from None
    unsigned = SignedGrant(document, b"")
    signed = SignedGrant(document, admin_key.sign(unsigned.signed_bytes))
    records.add_grant(grant_record(signed))
    return signed


def grant_dict(record: GrantRecord, *, now_ms: int) -> dict[str, Any]:
    """JSON-ready facts of a recorded grant: ids, scope, limits, usage and its state at ``now_ms``.

    ``state`` is ``revoked``, ``expired``, ``pending`` (not yet valid) or ``active``.
    """
    if record.revoked_at_ms is not None:
        state = "revoked"
    elif now_ms >= record.expires_at_ms:
        state = "expired"
    elif now_ms < record.not_before_ms:
        state = "pending"
    else:
        state = "active"
    return {**record.model_dump(exclude={"schema_version"}), "reasons": list(record.reasons), "state": state}
