"""The audit trail of privileged reads: an append-only, hash-chained, sealed log in the record store.

Every allowed and every denied privileged read appends one `AuditEvent` before any
payload is returned. If the event cannot be written the request fails with
``AUDIT_UNAVAILABLE`` (HashiCorp Vault's rule: "if no audit device can log the request,
Vault refuses it"), and so does an event that cannot be sealed because the audit key
cannot be read or made.

The events form a hash chain in the manner of certificate transparency (RFC 6962): each
event's ``event_hash`` is the SHA-256 of the canonical JSON (`wf_pipeline.metadata.canonical`)
of all its other fields, ``seq`` and ``prev_hash`` included, and ``prev_hash`` is the
``event_hash`` of the event before it (`GENESIS_HASH` for the first). So:

- deleting an event leaves a gap in ``seq``, or an event whose ``prev_hash`` names no event
  of the trail ("deleted");
- altering an event's fields makes its ``event_hash`` disagree with them ("altered");
- moving an event makes a ``prev_hash`` name an event that is still in the trail, but
  somewhere else than just before it ("reordered").

The chain is unkeyed, so someone who can write the database could rewrite an event and
recompute every hash after it. Each event is therefore also sealed, as Vault HMACs its
audit log and certificate transparency signs its tree heads: ``seal`` is HMAC-SHA256 of
its ``event_hash`` under the audit key (`wf_pipeline.security.audit_key`), which the
database does not hold, and ``seal_key_id`` names that key. The seal is made inside the
store's serialized append, so it covers the event's final ``event_hash``. Given the key,
`verify_audit_chain` reports an event whose seal is missing or wrong as "altered" at its
seq, so a rewritten tail is caught at its first rewritten event; events sealed under
another key are "altered" too, their detail naming that key id. Without the key it says
that seals were not checked (``sealed_checked`` False).

Given the key, every event without a seal is "altered", wherever it stands: otherwise
someone who strips every seal (and recomputes the chain) would make a rewritten trail
pass as one written before seals existed. So events written before seals existed
(revision 0010_audit_seal) are reported too; they are counted (``unsealed``) as well.
Without the key an unsealed event after a sealed one is still "altered" (a seal was
stripped); unsealed events before the first sealed one are only counted.

`verify_audit_chain` walks the trail in pages and reports each problem with its position.
Appends are serialized by the record store (`RecordStore.append_audit_record`), so two
processes appending at once never fork the chain. The chain alone cannot tell that the
newest events were cut off the end; a copy of the head kept elsewhere can, and
`verify_audit_chain` takes one (``witness``).

Events hold ids, digests, codes and counts; never a payload nor a key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from wf_pipeline.errors import AUDIT_UNAVAILABLE, RECORD_INTEGRITY, RecordError, SecurityError, WfError
from wf_pipeline.metadata.canonical import DIGEST_PREFIX, canonical_json, digest_json
from wf_pipeline.metadata.records import SCHEMA_VERSION, AuditEventRecord
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.security.audit_key import AuditKey, AuditKeySource

__all__ = [
    "AUDIT_OUTCOMES",
    "GENESIS_HASH",
    "PROBLEM_KINDS",
    "AuditEvent",
    "ChainProblem",
    "ChainReport",
    "append_audit_event",
    "audit_events",
    "event_hash_of",
    "verify_audit_chain",
]

#: The ``prev_hash`` of the first event: a fixed value no SHA-256 of an event can take in practice.
GENESIS_HASH = DIGEST_PREFIX + "0" * 64
#: What a privileged read came to.
AUDIT_OUTCOMES: tuple[str, ...] = ("allow", "deny")
#: The kinds of problem `verify_audit_chain` reports.
PROBLEM_KINDS: tuple[str, ...] = ("deleted", "altered", "reordered")
#: The fields ``event_hash`` covers, in no particular order (canonical JSON sorts keys).
HASHED_FIELDS: tuple[str, ...] = (
    "seq",
    "event_id",
    "at_ms",
    "requester",
    "grant_id",
    "reason_code",
    "scope",
    "artifact_ids",
    "outcome",
    "code",
    "bytes",
    "policy_version",
    "prev_hash",
)
#: Events `verify_audit_chain` reads per query: memory stays flat however long the trail.
VERIFY_PAGE = 1000
#: The ``schema_version`` values this release writes. ``event_hash`` does not cover the
#: column (changing the hash would break every trail written so far), so
#: `verify_audit_chain` reports any other value as "altered" instead.
WRITTEN_SCHEMA_VERSIONS: frozenset[int] = frozenset({SCHEMA_VERSION})


@dataclass(frozen=True)
class AuditEvent:
    """One event of the audit trail, as appended and as read back.

    Attributes:
        seq: position in the trail (1 for the first; no gaps).
        event_id: ``aud-<32 hex>``.
        at_ms: when the request was decided (Unix epoch ms, UTC).
        requester: the identity that asked.
        grant_id, reason_code: the grant presented and the reason code given (None when absent).
        scope: the grant's scope (workflow, thread, node, turn range), read-only.
        artifact_ids: the artifacts asked for (``sha256:`` ids).
        outcome: ``allow`` or ``deny``; code: the denial's error code (None when allowed).
        bytes: payload bytes returned (0 on a denial).
        policy_version: the version of the policy that decided.
        prev_hash: the previous event's ``event_hash`` (`GENESIS_HASH` for the first).
        event_hash: ``sha256:<hex>`` of this event's other fields (`event_hash_of`).
        seal: ``hmac-sha256:<hex>`` of ``event_hash`` under the audit key, or None for an
            event written before events were sealed.
        seal_key_id: the id of the key that made ``seal`` (16 hex digits), None with it.
    """

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
    seal: str | None = None
    seal_key_id: str | None = None

    @classmethod
    def from_record(cls, record: AuditEventRecord) -> AuditEvent:
        """The event a stored `AuditEventRecord` holds."""
        return cls(
            seq=record.seq,
            event_id=record.event_id,
            at_ms=record.at_ms,
            requester=record.requester,
            grant_id=record.grant_id,
            reason_code=record.reason_code,
            scope=MappingProxyType(dict(record.scope)),
            artifact_ids=tuple(record.artifact_ids),
            outcome=record.outcome,  # type: ignore[arg-type]  # as stored; verify judges it
            code=record.code,
            bytes=record.bytes,
            policy_version=record.policy_version,
            prev_hash=record.prev_hash,
            event_hash=record.event_hash,
            seal=record.seal,
            seal_key_id=record.seal_key_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready values (scope a dict, artifact_ids a list): ids, digests, seals, codes, counts."""
        return {
            "seq": self.seq,
            "event_id": self.event_id,
            "at_ms": self.at_ms,
            "requester": self.requester,
            "grant_id": self.grant_id,
            "reason_code": self.reason_code,
            "scope": dict(self.scope),
            "artifact_ids": list(self.artifact_ids),
            "outcome": self.outcome,
            "code": self.code,
            "bytes": self.bytes,
            "policy_version": self.policy_version,
            "prev_hash": self.prev_hash,
            "event_hash": self.event_hash,
            "seal": self.seal,
            "seal_key_id": self.seal_key_id,
        }


def event_hash_of(fields: Mapping[str, Any] | AuditEvent | AuditEventRecord) -> str:
    """``sha256:<hex>`` of the canonical JSON of an event's `HASHED_FIELDS` (everything but event_hash).

    Args:
        fields: an `AuditEvent`, an `AuditEventRecord` or a mapping with at least those keys.

    Returns:
        The digest, 71 characters. Tuples and lists hash alike (both are JSON arrays).

    Raises:
        TypeError, ValueError: a field JSON cannot encode (the json module's errors).
    """
    if isinstance(fields, AuditEvent):
        values: Mapping[str, Any] = fields.to_dict()
    elif isinstance(fields, AuditEventRecord):
        values = fields.model_dump()
    else:
        values = fields
    return digest_json({name: _plain(values[name]) for name in HASHED_FIELDS})


def _plain(value: Any) -> Any:
    # Read-only mappings and tuples as the JSON types they store as.
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def append_audit_event(
    records: RecordStore,
    *,
    key: AuditKeySource,
    requester: str,
    grant_id: str | None,
    reason_code: str | None,
    scope: Mapping[str, Any],
    artifact_ids: Iterable[str],
    outcome: Literal["allow", "deny"],
    code: str | None,
    bytes: int,
    policy_version: str,
    now_ms: int,
) -> AuditEvent:
    """Append one event at the head of the audit trail and return it once it is committed.

    Call it before returning any payload: when it raises, the request fails and returns
    nothing (Vault's audit rule).

    Args:
        records: the record store holding the trail.
        key: the audit key that seals the event, or a function returning it (looked up now,
            e.g. `wf_pipeline.security.audit_key.audit_key_source`, which makes the home's
            key file on first need and refuses a key that is not the one the trail is
            sealed under).
        requester: the identity that asked (non-empty).
        grant_id, reason_code: the grant presented and the reason code given, or None.
        scope: the grant's scope (JSON values: workflow, thread, node, turn range); stored
            as canonical JSON.
        artifact_ids: the artifacts asked for.
        outcome: ``allow`` or ``deny``.
        code: the denial's error code (required on ``deny``, None on ``allow``).
        bytes: payload bytes returned (>= 0; 0 on ``deny``).
        policy_version: the version of the policy that decided (non-empty).
        now_ms: when the request was decided (Unix epoch ms, UTC).

    Returns:
        The stored `AuditEvent`, with its ``seq``, ``prev_hash``, ``event_hash``, ``seal``
        (computed inside the store's serialized append, over the final ``event_hash``) and
        ``seal_key_id``.

    Raises:
        SecurityError: ``AUDIT_UNAVAILABLE`` when the event is not written, for any reason:
            the audit key cannot be read or made, or is not the key the trail is sealed
            under (cause ``AUDIT_KEY_INVALID``), the store
            unreachable, read-only or full, the table missing, arguments that do not make a
            valid event. The cause is chained; nothing is written.
    """
    event_id = f"aud-{uuid.uuid4().hex}"
    # Read once: a generator would be empty by the time the message counts it.
    ids = tuple(artifact_ids) if isinstance(artifact_ids, Iterable) else artifact_ids

    def build(seq: int, head_hash: str | None, sealer: AuditKey) -> AuditEventRecord:
        if outcome not in AUDIT_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(AUDIT_OUTCOMES)}")
        if outcome == "deny" and (not code or bytes != 0):
            raise ValueError("a deny event carries its code and 0 bytes")
        if outcome == "allow" and code is not None:
            raise ValueError("an allow event carries no denial code")
        if not isinstance(bytes, int) or isinstance(bytes, bool) or bytes < 0:
            raise ValueError("bytes must be an int >= 0")
        fields: dict[str, Any] = {
            "seq": seq,
            "event_id": event_id,
            "at_ms": now_ms,
            "requester": requester,
            "grant_id": grant_id,
            "reason_code": reason_code,
            # Canonical JSON and back: what is hashed is exactly what the store keeps.
            "scope": json.loads(canonical_json(dict(scope))),
            "artifact_ids": ids,
            "outcome": outcome,
            "code": code,
            "bytes": bytes,
            "policy_version": policy_version,
            "prev_hash": GENESIS_HASH if head_hash is None else head_hash,
        }
        event_hash = event_hash_of(fields)
        return AuditEventRecord(
            **fields, event_hash=event_hash, seal=sealer.seal(event_hash), seal_key_id=sealer.key_id
        )

    try:
        # Looked up before the store's lock is taken: a key file made now holds no one up.
        sealer = key if isinstance(key, AuditKey) else key()
        record = records.append_audit_record(lambda seq, head_hash: build(seq, head_hash, sealer))
    except Exception as exc:
        cause = exc.code if isinstance(exc, WfError) else type(exc).__name__
        raise SecurityError(
            AUDIT_UNAVAILABLE,
            f"audit event {event_id} ({outcome} for {requester}, "
            f"{len(ids) if isinstance(ids, tuple) else '?'} artifact(s)) "
            f"was not written to {records.url}: {cause}",
            event_id=event_id,
            cause=cause,
        ) from exc
    return AuditEvent.from_record(record)


def audit_events(
    records: RecordStore,
    *,
    since_ms: int | None = None,
    grant_id: str | None = None,
    after_seq: int = 0,
    limit: int | None = None,
) -> list[AuditEvent]:
    """Events of the trail in seq order: those after ``after_seq``, optionally since ``since_ms``, of one grant.

    Args:
        records: the record store holding the trail.
        since_ms: only events with ``at_ms >= since_ms`` (Unix epoch ms), or None for all.
        grant_id: only the events of this grant, or None for all.
        after_seq: only events with a larger seq (keyset paging: the last seq of a page).
        limit: at most this many (a positive int), or None for all.

    Returns:
        `AuditEvent` s by seq.

    Raises:
        RecordError: ``RECORD_INVALID`` (bad after_seq or limit), ``RECORD_UNAVAILABLE``,
            ``RECORD_INTEGRITY`` (a stored row is not a valid event).
    """
    found = records.audit_records(after_seq=after_seq, since_ms=since_ms, grant_id=grant_id, limit=limit)
    return [AuditEvent.from_record(record) for record in found]


@dataclass(frozen=True)
class ChainProblem:
    """One break of the chain that `verify_audit_chain` found.

    Attributes:
        seq: the position concerned: the first missing position ("deleted"), the event
            whose hash disagrees with its fields or whose seal is missing or wrong
            ("altered"), the first of a run of events sealed under another key or, given
            the key, of a run of events without a seal ("altered"),
            the event linked to the wrong predecessor ("reordered").
        kind: ``deleted``, ``altered`` or ``reordered``.
        detail: one sentence with the positions, hashes and key ids involved (never
            payloads, never a key).
        count: how many consecutive positions the problem covers (deleted ranges, runs
            sealed under another key), else 1.
    """

    seq: int
    kind: Literal["deleted", "altered", "reordered"]
    detail: str
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        """``{"seq", "kind", "count", "detail"}``."""
        return {"seq": self.seq, "kind": self.kind, "count": self.count, "detail": self.detail}


@dataclass(frozen=True)
class ChainReport:
    """What `verify_audit_chain` found.

    Attributes:
        ok: True when the chain verifies (no problem).
        events: events read.
        head_seq: the highest seq read (0 for an empty trail); head_hash: its event_hash
            (None for an empty trail).
        problems: every problem, by position.
        sealed_checked: whether seals were checked against an audit key (False: no key
            was given; only a seal missing after a sealed event is found).
        key_id: the id of the key seals were checked with, or None.
        unsealed: events without a seal (written before events were sealed, or stripped
            of their seal). With a key each is also an "altered" problem; without one,
            only those after a sealed event are.
    """

    ok: bool
    events: int
    head_seq: int
    head_hash: str | None
    problems: tuple[ChainProblem, ...] = field(default=())
    sealed_checked: bool = False
    key_id: str | None = None
    unsealed: int = 0

    def positions(self, kind: str | None = None) -> list[int]:
        """The seq of each problem (of ``kind`` only, when given), ascending, once each."""
        return sorted({p.seq for p in self.problems if kind is None or p.kind == kind})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"ok", "events", "head_seq", "head_hash", "sealed_checked", "key_id", "unsealed", "problems": [...]}``."""
        return {
            "ok": self.ok,
            "events": self.events,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "sealed_checked": self.sealed_checked,
            "key_id": self.key_id,
            "unsealed": self.unsealed,
            "problems": [problem.to_dict() for problem in self.problems],
        }


def verify_audit_chain(
    records: RecordStore,
    *,
    key: AuditKey | None = None,
    witness: tuple[int, str] | None = None,
    page: int = VERIFY_PAGE,
) -> ChainReport:
    """Walk the whole trail in seq order and report every deleted, altered or reordered event.

    For each event, in pages of ``page`` events (memory stays flat for millions): its seq
    must follow the previous one's (a gap: "deleted" at the first missing seq, ``count``
    positions); its ``event_hash`` must be `event_hash_of` its fields and its
    ``schema_version`` one of `WRITTEN_SCHEMA_VERSIONS`, which the hash does not cover
    ("altered"); its
    ``prev_hash`` must be the previous event's ``event_hash`` (`GENESIS_HASH` at seq 1).
    A ``prev_hash`` that names another event of the trail is "reordered"; one that names
    no event is "deleted" at the position before (the event there was removed or
    replaced), unless a gap right before it already says so.

    Seals: every event without a seal is counted (``unsealed``). With ``key``, each
    event must carry ``key``'s HMAC of its ``event_hash`` ("altered" otherwise, so events
    rewritten with recomputed hashes are reported from the first one rewritten, and a
    trail stripped of every seal from its first event): consecutive events without a seal
    are one "altered" problem at the first of them, ``count`` events, and so are
    consecutive events whose ``seal_key_id`` is not ``key``'s, naming both key ids (sealed
    under another key, or a forged key id: the trail does not verify either way). Without
    ``key``, an event without a seal after a sealed one is "altered" (its seal was
    stripped); those before the first sealed one are only counted.

    Args:
        records: the record store holding the trail.
        key: the audit key to check seals with, or None (``sealed_checked`` False).
        witness: (seq, event_hash) of an event known from elsewhere (e.g. the Parquet
            export): an event cut off the end of the trail is then "deleted" too, and one
            rewritten there "altered".
        page: events read per query (a positive int).

    Returns:
        A `ChainReport`; ``ok`` when there is no problem (with ``key``: every event sealed by it).

    A stored row that does not load as an event (a column set to a value of the wrong
    type, a scope that is no JSON) is reported "altered" at its seq, and the walk goes on.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``; ``RECORD_INTEGRITY`` only when a row that fails
            to load has no readable seq.
    """
    problems: list[ChainProblem] = []
    seals = _SealCheck(key)
    count = 0
    head: AuditEventRecord | None = None
    witnessed: AuditEventRecord | None = None
    broken_at: int | None = None  # the seq of the last row that did not load, when it is the head
    for batch in _pages(records, page):
        unlinked: list[AuditEventRecord] = []
        for event in batch:
            count += 1
            if isinstance(event, _Unloadable):
                problems.append(
                    ChainProblem(
                        event.seq, "altered", f"event {event.seq} does not load as an event: {event.detail}"
                    )
                )
                broken_at = event.seq
                continue
            last_seq = broken_at if broken_at is not None else (0 if head is None else head.seq)
            expected_seq = last_seq + 1
            if event.seq > expected_seq:
                missing = event.seq - expected_seq
                problems.append(
                    ChainProblem(
                        expected_seq,
                        "deleted",
                        f"events {expected_seq}..{event.seq - 1} are missing ({missing})",
                        count=missing,
                    )
                )
            if event_hash_of(event) != event.event_hash:
                problems.append(
                    ChainProblem(event.seq, "altered", f"event {event.seq} does not match its event_hash")
                )
            elif event.schema_version not in WRITTEN_SCHEMA_VERSIONS:
                problems.append(
                    ChainProblem(
                        event.seq,
                        "altered",
                        f"event {event.seq} has schema_version {event.schema_version}; this release writes "
                        f"only {', '.join(map(str, sorted(WRITTEN_SCHEMA_VERSIONS)))}",
                    )
                )
            expected_prev = GENESIS_HASH if head is None else head.event_hash
            # After a row that did not load, the link to it cannot be checked: that row is
            # already reported as altered.
            if broken_at is None and event.prev_hash != expected_prev:
                unlinked.append(event)
            if witness is not None and event.seq == witness[0]:
                witnessed = event
            problems.extend(seals.check(event))
            head, broken_at = event, None
        problems.extend(_link_problems(records, unlinked, problems))
    problems.extend(seals.finish())
    if witness is not None:
        problems.extend(_witness_problems(witness, witnessed, head))
    # One problem per (position, kind, extent): a first event both rehashed and unlinked is one
    # alteration, and a run sealed under another key is not swallowed by its first event's hash.
    unique = {(problem.seq, problem.kind, problem.count): problem for problem in reversed(problems)}
    problems = sorted(unique.values(), key=lambda problem: (problem.seq, PROBLEM_KINDS.index(problem.kind)))
    return ChainReport(
        ok=not problems,
        events=count,
        head_seq=broken_at if broken_at is not None else (0 if head is None else head.seq),
        head_hash=None if head is None or broken_at is not None else head.event_hash,
        problems=tuple(problems),
        sealed_checked=key is not None,
        key_id=None if key is None else key.key_id,
        unsealed=seals.unsealed,
    )


class _SealCheck:
    """The seal checks of `verify_audit_chain`, event by event, in seq order."""

    def __init__(self, key: AuditKey | None) -> None:
        self.key = key
        self.unsealed = 0  # events without a seal
        self.first_sealed: int | None = None
        # Runs of consecutive events (reported as one problem each when they end): sealed
        # under another key [first seq, last seq, key id], and, given a key, unsealed
        # [first seq, last seq]. A run keeps a trail stripped of every seal one problem,
        # not one per event.
        self.foreign: list[Any] | None = None
        self.bare: list[int] | None = None

    def check(self, event: AuditEventRecord) -> list[ChainProblem]:
        """The problems of ``event``'s seal (a run is reported when it ends)."""
        problems: list[ChainProblem] = []
        if event.seal is None or event.seal_key_id is None:
            problems.extend(self._end_foreign())
            self.unsealed += 1
            if self.key is not None:
                # Fail safe: an unsealed event may predate seals or have been stripped, and
                # only the key can tell a rewritten trail from an old one, so none passes.
                if self.bare is not None and self.bare[1] == event.seq - 1:
                    self.bare[1] = event.seq
                else:
                    problems.extend(self._end_bare())
                    self.bare = [event.seq, event.seq]
            elif self.first_sealed is not None:
                problems.append(
                    ChainProblem(
                        event.seq,
                        "altered",
                        f"event {event.seq} has no seal, but event {self.first_sealed} before it is sealed",
                    )
                )
            return problems
        problems.extend(self._end_bare())
        if self.first_sealed is None:
            self.first_sealed = event.seq
        if self.key is None:
            return problems
        if event.seal_key_id != self.key.key_id:
            run = self.foreign
            if run is not None and run[1] == event.seq - 1 and run[2] == event.seal_key_id:
                run[1] = event.seq
            else:
                problems.extend(self._end_foreign())
                self.foreign = [event.seq, event.seq, event.seal_key_id]
            return problems
        problems.extend(self._end_foreign())
        if not self.key.verifies(event.event_hash, event.seal):
            problems.append(
                ChainProblem(
                    event.seq,
                    "altered",
                    f"event {event.seq} is not sealed by audit key {self.key.key_id}: its seal does "
                    "not match its event_hash",
                )
            )
        return problems

    def finish(self) -> list[ChainProblem]:
        """The runs in progress, one problem each (empty when there is none)."""
        return self._end_foreign() + self._end_bare()

    def _end_bare(self) -> list[ChainProblem]:
        if self.bare is None or self.key is None:
            return []
        (first, last), self.bare = self.bare, None
        events = f"event {first} carries" if first == last else f"events {first}..{last} carry"
        return _run_altered(
            first,
            last,
            f"{events} no seal, so audit key {self.key.key_id} cannot vouch for them (written "
            "before events were sealed, or stripped of their seals)",
        )

    def _end_foreign(self) -> list[ChainProblem]:
        if self.foreign is None or self.key is None:
            return []
        (first, last, key_id), self.foreign = self.foreign, None
        events = f"event {first} is" if first == last else f"events {first}..{last} are"
        return _run_altered(
            first,
            last,
            f"{events} sealed under audit key {str(key_id)[:32]!r}, not under this key "
            f"{self.key.key_id} (another home's key, or a forged seal)",
        )


@dataclass(frozen=True)
class _Unloadable:
    """A stored row that fails to load as an event (RECORD_INTEGRITY), known by its seq."""

    seq: int
    detail: str


def _pages(records: RecordStore, page: int) -> Iterator[list[AuditEventRecord | _Unloadable]]:
    after = 0
    while True:
        try:
            # Only events past the last page: a store that repeats a page cannot loop this forever.
            batch: list[AuditEventRecord | _Unloadable] = [
                event for event in records.audit_records(after_seq=after, limit=page) if event.seq > after
            ]
        except RecordError as exc:
            if exc.code != RECORD_INTEGRITY or not isinstance(exc.details.get("seq"), int):
                raise
            # A row altered past loading (a scope that is no JSON, bytes that are no number):
            # the events before it one by one, then the row itself by its seq.
            batch = _rows_up_to(records, after, exc.details["seq"], exc.message)
        if not batch:
            return
        yield batch
        after = batch[-1].seq


def _rows_up_to(
    records: RecordStore, after: int, bad_seq: int, detail: str
) -> list[AuditEventRecord | _Unloadable]:
    rows: list[AuditEventRecord | _Unloadable] = []
    while after < bad_seq:
        try:
            found = [event for event in records.audit_records(after_seq=after, limit=1) if event.seq > after]
        except RecordError as exc:
            if exc.code != RECORD_INTEGRITY or exc.details.get("seq") != bad_seq:
                raise
            break
        if not found or found[0].seq >= bad_seq:
            break
        rows.append(found[0])
        after = found[0].seq
    rows.append(_Unloadable(bad_seq, detail))
    return rows


def _link_problems(
    records: RecordStore, unlinked: list[AuditEventRecord], found: list[ChainProblem]
) -> list[ChainProblem]:
    # Events whose prev_hash is not their predecessor's event_hash: one lookup per page for
    # the events those hashes name. An untouched trail has none and makes no lookup.
    if not unlinked:
        return []
    named = {
        event.event_hash: event.seq
        for event in records.audit_records_with_hashes({event.prev_hash for event in unlinked})
    }
    problems = []
    for event in unlinked:
        target = named.get(event.prev_hash)
        if target is not None:
            problems.append(
                ChainProblem(
                    event.seq,
                    "reordered",
                    f"event {event.seq} links to event {target}, not to the event before it",
                )
            )
        elif event.prev_hash == GENESIS_HASH:
            problems.append(
                ChainProblem(event.seq, "reordered", f"event {event.seq} links to the start of the trail")
            )
        elif event.seq > 1:
            if _gap_covers(found, event.seq - 1):
                continue  # its predecessor is in a gap already reported
            problems.append(
                ChainProblem(
                    event.seq - 1,
                    "deleted",
                    f"event {event.seq} links to an event that is not in the trail "
                    f"(the event at {event.seq - 1} was removed or replaced)",
                )
            )
        else:
            problems.append(ChainProblem(1, "altered", "event 1 does not link to the start of the trail"))
    return problems


def _gap_covers(problems: list[ChainProblem], seq: int) -> bool:
    return any(p.kind == "deleted" and p.seq <= seq < p.seq + p.count for p in problems)


def _witness_problems(
    witness: tuple[int, str], witnessed: AuditEventRecord | None, head: AuditEventRecord | None
) -> list[ChainProblem]:
    seq, event_hash = witness
    head_seq = 0 if head is None else head.seq
    if seq > head_seq:
        missing = seq - head_seq
        return [
            ChainProblem(
                head_seq + 1,
                "deleted",
                f"events {head_seq + 1}..{seq} are missing from the end of the trail ({missing}); "
                f"the witness saw event {seq}",
                count=missing,
            )
        ]
    if witnessed is not None and witnessed.event_hash != event_hash:
        return [ChainProblem(seq, "altered", f"event {seq} is not the event the witness saw")]
    return []


def _run_altered(first: int, last: int, detail: str) -> list[ChainProblem]:
    # One problem for a run of consecutive events: a long run stays one line of the report.
    return [ChainProblem(first, "altered", detail, count=last - first + 1)]
