"""Canonical, versioned record schemas and their deterministic ids.

Every durable row the record store keeps is one of these frozen models. The store
validates on the way in and out; no other domain redefines them. ``SCHEMA_VERSION``
is stored with each row so later migrations know what they read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wf_pipeline.errors import (
    METADATA_THREAD_KEY_INCOMPLETE,
    METADATA_UNKNOWN_THREAD_KEY_FIELD,
    MetadataError,
)
from wf_pipeline.metadata.canonical import derived_id, is_digest

SCHEMA_VERSION = 1

ThreadStatus = Literal["pending", "running", "completed", "failed", "aborted"]
# Statuses of a thread that a resume may pick up again: it still needs what it recorded
# (its context snapshot, its completed turns' outputs), so retention keeps those.
RESUMABLE_STATUSES: tuple[ThreadStatus, ...] = ("failed", "aborted", "running", "pending")
TurnStatus = Literal["pending", "running", "completed", "failed", "skipped"]
# A gate verdict: ``pass`` (no reasons), ``warn`` (reasons, none of which blocks) or ``fail``
# (a blocking reason); `wf_pipeline.gates.registry.verdict_outcome` decides which.
GateOutcome = Literal["pass", "warn", "fail"]
#: Every gate outcome, sorted (the values ``gates.<gate_id>.outcome`` may take in a ``when:``).
GATE_OUTCOMES: tuple[GateOutcome, ...] = ("fail", "pass", "warn")


def gate_outcome_passed(outcome: str | None) -> bool:
    """Whether a recorded gate ``outcome`` is a clean pass (``pass``; ``warn`` and ``fail`` are not).

    Args:
        outcome: a `GateOutcome`, or None.

    Returns:
        True only for ``"pass"``. Raises nothing.
    """
    return outcome == "pass"


def gate_outcome_blocks(outcome: str | None) -> bool:
    """Whether a recorded gate ``outcome`` is a blocking verdict (``fail``): it fails its turn
    and stops its thread under ``failure_policy.mode: stop_on_gate_fail``; ``warn`` never does.

    Args:
        outcome: a `GateOutcome`, or None (no verdict).

    Returns:
        True only for ``"fail"``. Raises nothing.
    """
    return outcome == "fail"


ArtifactRole = Literal[
    "system_prompt", "prompt_template", "rendered_prompt", "context", "input", "output", "provider_response"
]
NodeKind = Literal["file", "dir"]

NonEmpty = Annotated[str, Field(min_length=1)]


def now_ms() -> int:
    """The current wall-clock time in ms since the Unix epoch, the unit of every ``*_at_ms`` field."""
    return time.time_ns() // 1_000_000


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = SCHEMA_VERSION


def _check_digest(value: str | None) -> str | None:
    if value is not None and not is_digest(value):
        raise ValueError("must be an artifact id of the form sha256:<64 hex>")
    return value


class NodeRecord(_Record):
    """One scanned file or directory: its Merkle node id, path, kind and size in bytes; times in ms.

    Built with bad fields it raises pydantic's ``ValidationError``; the record store reports
    that as ``RECORD_INVALID``.
    """

    node_id: NonEmpty
    root_id: NonEmpty  # node id of the scanned root this node was seen under
    path: str  # POSIX, relative to the scanned root; "." for the root
    kind: NodeKind
    parent_path: str | None
    size: int = 0
    content_digest: str | None = None  # files only
    omitted: Literal["binary", "oversized", "unreadable"] | None = None
    scanned_at_ms: int


class ThreadRecord(_Record):
    """One thread: a workflow run over one target directory, with its status; times in ms.

    Built with bad fields it raises pydantic's ``ValidationError``; the record store reports
    that as ``RECORD_INVALID``.
    """

    thread_id: NonEmpty
    workflow_id: NonEmpty
    target_node_id: NonEmpty
    target_frame_id: str = ""
    target_key: str = ""  # the Dagster partition key of the target directory
    target_path: str = "."
    status: ThreadStatus
    created_at_ms: int
    updated_at_ms: int
    last_turn_seq: int = 0
    # Why a failed thread stopped: a catalogue code (or GATE_FAILED) and its message with
    # figures, never payload text; None while the thread is not failed.
    error_code: str | None = None
    error_text: str | None = None
    # What the thread was started with, so a resume uses the same (version pinning): the
    # profile's ``version``, its code version and the artifact holding the profile snapshot.
    profile_version: str | None = None
    code_version: str | None = None
    profile_artifact_id: str | None = None


class TurnRecord(_Record):
    """One attempt of one turn of a thread: its inputs, output artifact id and error code; times in ms.

    Artifact ids must be of the form ``sha256:<64 hex>``. Built with bad fields it raises pydantic's ``ValidationError``; the record store reports
    that as ``RECORD_INVALID``.
    """

    turn_record_id: NonEmpty
    thread_id: NonEmpty
    turn_id: NonEmpty
    turn_seq: int
    attempt: int = Field(ge=1)
    status: TurnStatus
    input_artifact_ids: tuple[str, ...] = ()
    output_artifact_id: str | None = None
    started_at_ms: int
    ended_at_ms: int | None = None
    error_code: str | None = None
    error_text: str | None = None
    # Whether this attempt reached the provider; resumes and reuse are audited by it.
    provider_called: bool = False
    # The request this attempt made (`wf_pipeline.runtime.requests`): ``request`` holds the
    # digests and ids it is derived from (never payload text), ``request_digest`` their
    # canonical digest; None for attempts recorded before requests were.
    request_digest: str | None = None
    request: dict[str, Any] | None = None
    # The provider's raw answer (a ``provider_response`` artifact), None when none came back;
    # ``response_source`` says where it came from: ``provider`` (a call), ``recorded`` (an
    # earlier attempt's answer to the same request, reused) or ``replay`` (a replay).
    response_artifact_id: str | None = None
    response_source: str | None = None
    # The decision of the turn's ``when:`` (`wf_pipeline.profiles.expressions.Decision`:
    # expression, each field read and its value, result), None for an unconditional turn. A
    # turn its branch skipped is recorded with status ``skipped`` and no output.
    branch: dict[str, Any] | None = None
    # The parallel segment the turn ran in (`wf_pipeline.profiles.segments`): turns of one
    # thread with the same segment ran concurrently. None for attempts recorded before
    # segments were.
    segment: int | None = None

    @field_validator("output_artifact_id", "response_artifact_id", "request_digest")
    @classmethod
    def _output_is_digest(cls, value: str | None) -> str | None:
        return _check_digest(value)

    @field_validator("input_artifact_ids")
    @classmethod
    def _inputs_are_digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            _check_digest(item)
        return value


class GateRecord(_Record):
    """One gate verdict on one turn attempt: outcome and reason codes; time in ms.

    Built with bad fields it raises pydantic's ``ValidationError``; the record store reports
    that as ``RECORD_INVALID``.
    """

    gate_record_id: NonEmpty
    thread_id: NonEmpty
    turn_id: NonEmpty
    gate_id: NonEmpty
    attempt: int = Field(ge=1)
    outcome: GateOutcome
    reasons: tuple[str, ...] = ()
    evaluated_at_ms: int
    # Each finding: ``rule_id``, ``code``, ``pointer`` (path:line or claim id) and ``hint``;
    # ids and codes, never payload text (`wf_pipeline.gates.registry`).
    findings: tuple[dict[str, str], ...] = ()
    # Digest of the gate's declaration (type, required fields, rules) the verdict was made under.
    rules_digest: str | None = None


class PromptLinkRecord(_Record):
    """The prompt and context artifact ids one turn attempt used on one node; time in ms.

    Artifact ids must be of the form ``sha256:<64 hex>``. Built with bad fields it raises pydantic's ``ValidationError``; the record store reports
    that as ``RECORD_INVALID``.
    """

    prompt_link_id: NonEmpty
    thread_id: NonEmpty
    turn_id: NonEmpty
    node_id: NonEmpty
    frame_id: str = ""
    system_prompt_artifact_id: str | None = None
    user_prompt_template_artifact_id: str | None = None
    rendered_prompt_artifact_id: str | None = None
    context_artifact_id: str | None = None
    created_at_ms: int

    @field_validator(
        "system_prompt_artifact_id",
        "user_prompt_template_artifact_id",
        "rendered_prompt_artifact_id",
        "context_artifact_id",
    )
    @classmethod
    def _digests(cls, value: str | None) -> str | None:
        return _check_digest(value)


class ArtifactLinkRecord(_Record):
    """One artifact a turn attempt read or wrote, with its role and size in bytes; time in ms.

    The artifact id must be of the form ``sha256:<64 hex>``. Built with bad fields it raises pydantic's ``ValidationError``; the record store reports
    that as ``RECORD_INVALID``.
    """

    artifact_link_id: NonEmpty
    artifact_id: NonEmpty
    thread_id: NonEmpty
    turn_id: NonEmpty
    attempt: int = Field(ge=1)
    role: ArtifactRole
    size: int = Field(ge=0)
    created_at_ms: int

    @field_validator("artifact_id")
    @classmethod
    def _digest(cls, value: str) -> str:
        _check_digest(value)
        return value


class TargetRecord(_Record):
    """A directory registered as a workflow target (one Dagster dynamic partition)."""

    target_key: NonEmpty
    root_path: NonEmpty  # absolute path of the scanned tree root on the machine that registered it
    path: str  # POSIX, relative to root_path; "." for the root itself
    registered_at_ms: int


class TreeRecord(_Record):
    """A tree registered at sync: its identity, where its outputs go; time in ms.

    A tree is identified by its resolved root path, not by its base name, so two trees
    that share a base name never share partitions, threads or output folders.
    Built with bad fields it raises pydantic's ``ValidationError``; the record store
    reports that as ``RECORD_INVALID``.
    """

    root_id: NonEmpty  # `tree_root_id` of the resolved root path
    root_path: NonEmpty  # the resolved absolute root path on the machine that registered it
    display_name: str  # the root's base name, as titles show it
    tree_key: NonEmpty  # the root's partition key (`wf_pipeline.runtime.targets.target_key_for`)
    out_dir: str | None = None  # outputs mirror the tree here; None with in_place or not synced with one
    in_place: bool = False  # outputs are written into the tree itself
    overwrite: bool = False  # in place: replace existing, different outputs
    registered_at_ms: int


class FrameRecord(_Record):
    """One frame: a turn's output artifact attached to a node, with its validated metadata; time in ms.

    Its ``metadata`` passes `FrameMetadataBoundary.validate` before it is written. Built with bad fields it raises pydantic's ``ValidationError``; the record store reports
    that as ``RECORD_INVALID``.
    """

    frame_id: NonEmpty
    node_id: NonEmpty
    frame_type: NonEmpty
    artifact_id: NonEmpty
    thread_id: NonEmpty
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at_ms: int


class TombstoneRecord(_Record):
    """One artifact that retention or compaction deleted from the CAS: what, why, when; bytes and ms.

    Written BEFORE the CAS object is deleted, so a crash between the two leaves a
    tombstone whose object may still exist (the next sweep finishes the delete), never a
    deleted object without its tombstone. The artifact id must be ``sha256:<64 hex>``.
    Built with bad fields it raises pydantic's ``ValidationError``; the record store
    reports that as ``RECORD_INVALID``.

    Attributes:
        artifact_id: the deleted object's id.
        artifact_class: its retention class (``prompt_render``, ``context_payload``, ...,
            or ``orphan`` when no record referred to it).
        workflow_id: a workflow whose records referred to it ("" for an orphan).
        policy: where the window came from (``profile:<id>``, ``preset:<name>``, ...).
        window_ms: the class's window in ms (None: no window, e.g. an orphan).
        reason: why it went (``expired``, ``orphan``, ...).
        bytes: the object's size in bytes when it was deleted.
        deleted_at_ms: when the tombstone was written (Unix epoch ms).
    """

    artifact_id: NonEmpty
    artifact_class: NonEmpty
    workflow_id: str = ""
    policy: str = ""
    window_ms: int | None = None
    reason: NonEmpty
    bytes: int = Field(ge=0)
    deleted_at_ms: int

    @field_validator("artifact_id")
    @classmethod
    def _digest(cls, value: str) -> str:
        _check_digest(value)
        return value


class HoldRecord(_Record):
    """A legal hold: nothing a thread (or every thread of a workflow) refers to is deleted; times in ms.

    Exactly one of ``thread_id`` and ``workflow_id`` is set. A hold is active until
    ``released_at_ms`` is set. Built with bad fields it raises pydantic's
    ``ValidationError``; the record store reports that as ``RECORD_INVALID``.
    """

    hold_id: NonEmpty
    thread_id: str | None = None
    workflow_id: str | None = None
    reason: str = ""
    created_at_ms: int
    released_at_ms: int | None = None

    @model_validator(mode="after")
    def _one_scope(self) -> HoldRecord:
        if bool(self.thread_id) == bool(self.workflow_id):
            raise ValueError("a hold names exactly one of thread_id and workflow_id")
        return self


AnnotationEventKind = Literal["set", "clear", "snapshot"]
#: ``set`` gives a key a value, ``clear`` removes it, ``snapshot`` stands for the events
#: compaction folded: the key's value after them (None: the key was cleared).
ANNOTATION_EVENT_KINDS: tuple[AnnotationEventKind, ...] = ("set", "clear", "snapshot")


class AnnotationEventRecord(_Record):
    """One change of an annotation key on a frame: an entry of the append-only annotation log; time in ms.

    Events of one (frame, key) are numbered 1, 2, ... by ``seq`` in the order they were
    appended; the current value of a key is the value after its last event
    (`AnnotationRecord`, the materialized view). Compaction replaces a key's oldest
    events by one ``snapshot`` event carrying the seq of the last event it stands for, so
    the view does not change. Built with bad fields it raises pydantic's
    ``ValidationError``; the record store reports that as ``RECORD_INVALID``.

    Attributes:
        frame_id: the annotated frame.
        key: an annotation key of the key registry.
        seq: the event's position in the key's log (1-based).
        kind: ``set``, ``clear`` or ``snapshot`` (`ANNOTATION_EVENT_KINDS`).
        value: the value set (None for ``clear``, and for a snapshot of a cleared key).
        domain: the owner domain that made the change.
        at_ms: when the change was appended (Unix epoch ms).
        folded: how many events a ``snapshot`` stands for (0 for other kinds).
    """

    frame_id: NonEmpty
    key: NonEmpty
    seq: int = Field(ge=1)
    kind: AnnotationEventKind
    value: str | None = None
    domain: NonEmpty
    at_ms: int
    folded: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _value_of_kind(self) -> AnnotationEventRecord:
        if self.kind == "set" and self.value is None:
            raise ValueError("a set event carries a value")
        if self.kind == "clear" and self.value is not None:
            raise ValueError("a clear event carries no value")
        if (self.kind == "snapshot") != (self.folded > 0):
            raise ValueError("a snapshot (and only a snapshot) counts the events it folded")
        return self


class AnnotationRecord(_Record):
    """The current value of one annotation key on a frame: a row of the materialized view; time in ms.

    Kept in the same transaction as the event that produced it: ``seq`` and
    ``updated_at_ms`` are that event's, ``domain`` the domain that made it. A cleared key
    has no row.
    """

    frame_id: NonEmpty
    key: NonEmpty
    value: str
    domain: NonEmpty
    seq: int = Field(ge=1)
    updated_at_ms: int


KekState = Literal["primary", "decrypt_only", "retired", "destroyed"]
#: KEK states, in lifecycle order: ``primary`` wraps new data keys of its lineage;
#: ``decrypt_only`` (after a rotation) only unwraps; ``retired`` wraps nothing and no data
#: key depends on it; ``destroyed`` has its key material erased for good (crypto-shredding).
KEK_STATES: tuple[KekState, ...] = ("primary", "decrypt_only", "retired", "destroyed")


class KekRecord(_Record):
    """One key-encryption key (KEK) of the keyring; its material is held by a key manager.

    A KEK belongs to one *lineage*: an artifact class and a period (``period_start_ms`` to
    ``period_start_ms + period_ms``). Data keys of artifacts of that class put during that
    period are wrapped by the lineage's primary KEK, so destroying every KEK of a lineage
    crypto-shreds exactly the artifacts of that class and period. A rotation adds the next
    ``generation`` as primary; older generations become decrypt-only. Times in ms.

    Attributes:
        kek_id: ``kek-<class>-<YYYYMMDD of period start>-g<generation>``; unique.
        manager: the key manager holding the material (``local``, ``aws-kms``, ...).
        key_ref: the manager's reference to the material (the local manager: the KEK
            wrapped under the master key; a KMS: the key's id or ARN). None once destroyed.
        artifact_class: the class of the lineage.
        period_start_ms, period_ms: the lineage's period (Unix epoch ms, length in ms).
        generation: 1 for the lineage's first KEK, +1 per rotation.
        state: see `KEK_STATES`.
        created_at_ms, rotated_at_ms, retired_at_ms, destroyed_at_ms: lifecycle times
            (None until they happen).
    """

    kek_id: NonEmpty
    manager: NonEmpty
    key_ref: bytes | None = None
    artifact_class: NonEmpty
    period_start_ms: int
    period_ms: int = Field(gt=0)
    generation: int = Field(ge=1)
    state: KekState
    created_at_ms: int
    rotated_at_ms: int | None = None
    retired_at_ms: int | None = None
    destroyed_at_ms: int | None = None


class DataKeyRecord(_Record):
    """The wrapped data key of one encrypted artifact; never the data key itself.

    ``wrapped_key`` is the artifact's 256-bit data key encrypted by the KEK ``kek_id`` with
    associated data binding the artifact id, its class, the KEK id and the format version
    (`wf_pipeline.crypto.envelope`). A rewrap replaces ``wrapped_key`` and ``kek_id``
    together; the artifact's payload is never re-encrypted. Times in ms.

    Attributes:
        artifact_id: the plaintext's id (``sha256:<64 hex>``), which is the CAS id.
        artifact_class: the class the payload's associated data names.
        kek_id: the KEK wrapping the data key now.
        wrapped_key: the wrapped data key (manager-specific bytes).
        created_at_ms: when the data key was made.
        rewrapped_at_ms: when it was last moved to another KEK (None: never).
    """

    artifact_id: NonEmpty
    artifact_class: NonEmpty
    kek_id: NonEmpty
    wrapped_key: bytes
    created_at_ms: int
    rewrapped_at_ms: int | None = None

    @field_validator("artifact_id")
    @classmethod
    def _digest(cls, value: str) -> str:
        _check_digest(value)
        return value


IdentityRole = Literal["admin", "reader"]
#: Roles of an identity: an ``admin`` signs grants; a ``reader`` may only be granted reads.
IDENTITY_ROLES: tuple[IdentityRole, ...] = ("admin", "reader")


class IdentityRecord(_Record):
    """One registered identity: its name, Ed25519 public key and role; time in ms.

    The private key never reaches the record store; it stays in the key file its owner
    holds. Built with bad fields it raises pydantic's ``ValidationError``; the record store
    reports that as ``RECORD_INVALID``.

    Attributes:
        name: the identity's unique name.
        public_key: the raw 32-byte Ed25519 public key (RFC 8032).
        role: see `IDENTITY_ROLES`.
        created_at_ms: when it was registered.
        approved_by: the admin whose key approved this admin (None: unapproved, as the
            store's first admin and every identity registered before revision
            0011_identity_approval are); `wf_pipeline.security.identities`.
        approval: ``approved_by``'s Ed25519 signature (64 bytes) over the approval message
            of this name and public key (`wf_pipeline.security.identities.approval_message`).
    """

    name: NonEmpty
    public_key: bytes = Field(min_length=32, max_length=32)
    role: IdentityRole
    created_at_ms: int
    # Loose on purpose: a row altered into a bad approval still loads, and the approval's
    # check (not the loader) says the identity is no admin.
    approved_by: str | None = None
    approval: bytes | None = None


class ActivationRecord(_Record):
    """One chained activation: an upstream workflow's condition held on a tree and started another workflow.

    Written by the activation sensor before it requests the run, so each tree and upstream
    state starts the activated workflow once (the ``activation_id`` is the run key), and a
    replay knows which threads started which run. Time in ms.

    Attributes:
        activation_id: ``act-<32 hex>`` of (source, target, condition, tree, threads digest);
            also the Dagster run key of the requested run.
        source_workflow_id, target_workflow_id: the upstream and the activated workflow.
        condition: the ``when:`` that held (`wf_pipeline.profiles.activations.CONDITIONS`).
        tree_root_id: the tree (`wf_pipeline.runtime.targets.tree_root_id`).
        target_key: the partition the activated workflow runs on (the tree's root).
        thread_ids: the upstream threads the condition was judged on, sorted.
        threads_digest: ``sha256:`` of their canonical JSON list.
        created_at_ms: when the activation was recorded.
    """

    activation_id: NonEmpty
    source_workflow_id: NonEmpty
    target_workflow_id: NonEmpty
    condition: NonEmpty
    tree_root_id: NonEmpty
    target_key: NonEmpty
    thread_ids: tuple[str, ...]
    threads_digest: NonEmpty
    created_at_ms: int


class GrantRecord(_Record):
    """One issued grant as recorded for revocation and metering; the signed document stays with its holder.

    The scope and limits repeat the signed document's, so listings need no file. Usage
    counters change only through `RecordStore.use_grant`, one conditional update, so two
    processes reading at once never both pass a limit. Times in ms, sizes in bytes.

    Attributes:
        grant_id: the grant's unique id (``grant-<hex>``).
        grant_digest: ``sha256:`` of the signed document's canonical bytes.
        issuer, grantee: identity names.
        capability: ``prompt_payload_read`` or ``context_payload_read``.
        workflow_id, thread_id, node_id, min_seq, max_seq: the scope (None: any).
        reasons: the reason codes the grant allows.
        issued_at_ms, not_before_ms, expires_at_ms: validity.
        max_bytes: the byte budget of payloads returned under the grant.
        rate_reads, rate_window_ms: at most ``rate_reads`` reads per window of ``rate_window_ms``.
        revoked_at_ms: when it was revoked (None: not revoked).
        bytes_used, reads: payload bytes returned and reads allowed so far.
        window_start_ms, window_reads: the current rate window and the reads in it.
    """

    grant_id: NonEmpty
    grant_digest: NonEmpty
    issuer: NonEmpty
    grantee: NonEmpty
    capability: NonEmpty
    workflow_id: NonEmpty
    thread_id: str | None = None
    node_id: str | None = None
    min_seq: int | None = None
    max_seq: int | None = None
    reasons: tuple[str, ...]
    issued_at_ms: int
    not_before_ms: int
    expires_at_ms: int
    max_bytes: int = Field(ge=0)
    rate_reads: int = Field(ge=1)
    rate_window_ms: int = Field(gt=0)
    revoked_at_ms: int | None = None
    bytes_used: int = Field(default=0, ge=0)
    reads: int = Field(default=0, ge=0)
    window_start_ms: int = 0
    window_reads: int = Field(default=0, ge=0)


class AuditEventRecord(_Record):
    """One event of the audit trail of privileged reads: a row of an append-only hash chain; times in ms.

    Rows are only ever inserted (`wf_pipeline.records.protocol.RecordStore.append_audit_record`),
    never updated or deleted. ``event_hash`` is the SHA-256 of the canonical JSON of every
    other field but ``schema_version`` (`wf_pipeline.security.audit`); ``prev_hash`` is the
    previous event's ``event_hash``, so deleting, altering or reordering an event breaks the
    chain, as in a certificate-transparency log (RFC 6962).

    Attributes:
        seq: the event's position in the trail, 1 for the first; strictly increasing, no gaps.
        event_id: ``aud-<32 hex>``; unique.
        at_ms: when the request was decided (Unix epoch ms).
        requester: who asked (an identity id).
        grant_id, reason_code: the grant presented and the reason given, when any.
        scope: what the grant allowed (workflow, thread, node, turn range), as JSON.
        artifact_ids: the artifacts asked for (ids, never payloads).
        outcome: ``allow`` or ``deny``; code: the denial's error code (None when allowed).
        bytes: payload bytes returned (0 on a denial).
        policy_version: the version of the policy that decided.
        prev_hash, event_hash: ``sha256:<64 hex>`` digests of the chain.
        seal: ``hmac-sha256:<64 hex>``, the HMAC-SHA256 of ``event_hash`` under the audit key,
            which the store does not hold (`wf_pipeline.security.audit_key`); None for events
            written before events were sealed (revision 0010_audit_seal).
        seal_key_id: the first 16 hex digits of the SHA-256 of the key that made ``seal``
            (None with it): tells an event sealed under another key from a forged seal.
    """

    seq: int = Field(ge=1)
    event_id: NonEmpty
    at_ms: int
    requester: NonEmpty
    grant_id: str | None = None
    reason_code: str | None = None
    scope: dict[str, Any] = Field(default_factory=dict)
    artifact_ids: tuple[str, ...] = ()
    # Plain text and int here: the trail's writer (`wf_pipeline.security.audit`) checks the
    # outcome and the byte count, and a row tampered into a bad value must still load, so
    # the chain's verification can name its position instead of failing to read it.
    outcome: NonEmpty
    code: str | None = None
    bytes: int
    policy_version: NonEmpty
    prev_hash: NonEmpty
    event_hash: NonEmpty
    # Not covered by event_hash (the seal covers it); plain text so a tampered value still loads.
    seal: str | None = None
    seal_key_id: str | None = None


# --- deterministic ids ---------------------------------------------------------------


# The fields a thread's dedupe key may name, in the order their values are hashed. The
# first three are the historical key; its ids must never change, or existing homes would
# stop finding their finished threads.
THREAD_KEY_FIELDS = ("workflow_id", "target_node_id", "target_frame_id", "target_key", "target_path")
# Without the workflow id two workflows would share threads; without the node id a thread
# would outlive the content its context snapshot was built from.
REQUIRED_THREAD_KEY_FIELDS = ("workflow_id", "target_node_id")
_LOCATION_FIELDS = THREAD_KEY_FIELDS[3:]


def thread_key_problems(fields: Iterable[str]) -> tuple[list[str], list[str]]:
    """Check a dedupe key's field names against `THREAD_KEY_FIELDS`.

    Args:
        fields: the field names a profile's ``thread_policy.dedupe_key_fields`` lists.

    Returns:
        ``(unknown, missing)``: names not in `THREAD_KEY_FIELDS` (in the order given), and
        names of `REQUIRED_THREAD_KEY_FIELDS` the key leaves out. Both empty for a usable key.
    """
    chosen = list(fields)
    unknown = [name for name in chosen if name not in THREAD_KEY_FIELDS]
    missing = [name for name in REQUIRED_THREAD_KEY_FIELDS if name not in chosen]
    return unknown, missing


def thread_id_for(workflow_id: str, target_node_id: str, target_frame_id: str = "", **location: str) -> str:
    """Thread identity from the values of a dedupe key.

    Args:
        workflow_id: the profile's workflow id.
        target_node_id: the Merkle id of the target directory.
        target_frame_id: the frame the thread produces; "" when the key leaves it out.
        location: ``target_key`` and/or ``target_path`` values, only for keys that name them.

    Returns:
        ``thread:<24 hex>``. For (workflow_id, target_node_id, target_frame_id) this is the
        id every earlier release derived; a location field adds a ``name=value`` part, so a
        key with it never collides with one without it.

    Raises:
        MetadataError: ``METADATA_UNKNOWN_THREAD_KEY_FIELD`` for a location name outside
            `THREAD_KEY_FIELDS`.
    """
    unknown = sorted(set(location) - set(_LOCATION_FIELDS))
    if unknown:
        raise MetadataError(
            METADATA_UNKNOWN_THREAD_KEY_FIELD,
            f"thread key fields {unknown} are not among {list(THREAD_KEY_FIELDS)}",
            unknown=unknown,
        )
    extra = [f"{name}={location[name]}" for name in _LOCATION_FIELDS if name in location]
    return derived_id("thread", workflow_id, target_node_id, target_frame_id, *extra)


def thread_id_from_key(fields: Iterable[str], values: Mapping[str, str], identity: Iterable[str] = ()) -> str:
    """The thread id for a dedupe key: only the named fields' values take part.

    Args:
        fields: dedupe key field names (order and repeats do not matter).
        values: every field of `THREAD_KEY_FIELDS` -> its value for this thread.
        identity: ``name=value`` parts every thread's identity holds whatever its dedupe
            key names (the tree, the provider and model, the children's outputs); empty
            gives the id of the dedupe key alone.

    Returns:
        The id `thread_id_for` derives from the named fields; a field left out counts as
        absent (``target_frame_id`` as ""). With ``identity`` parts, the id derived from
        that id and the parts.

    Raises:
        MetadataError: ``METADATA_UNKNOWN_THREAD_KEY_FIELD`` for a name outside
            `THREAD_KEY_FIELDS`, ``METADATA_THREAD_KEY_INCOMPLETE`` when a field of
            `REQUIRED_THREAD_KEY_FIELDS` is missing (profiles are checked at load time with
            the same rule, so this only guards profiles built by hand).
    """
    chosen = set(fields)
    unknown, missing = thread_key_problems(sorted(chosen))
    if unknown:
        raise MetadataError(
            METADATA_UNKNOWN_THREAD_KEY_FIELD,
            f"thread key fields {unknown} are not among {list(THREAD_KEY_FIELDS)}",
            unknown=unknown,
        )
    if missing:
        raise MetadataError(
            METADATA_THREAD_KEY_INCOMPLETE, f"a thread key must name {missing}", missing=missing
        )
    keyed = thread_id_for(
        values["workflow_id"],
        values["target_node_id"],
        values["target_frame_id"] if "target_frame_id" in chosen else "",
        **{name: values[name] for name in _LOCATION_FIELDS if name in chosen},
    )
    parts = list(identity)
    return derived_id("thread", keyed, *parts) if parts else keyed


def turn_record_id_for(workflow_id: str, thread_id: str, turn_id: str, attempt: int) -> str:
    """Deterministic id ``turn:<24 hex>`` of one attempt of one turn of a thread."""
    return derived_id("turn", workflow_id, thread_id, turn_id, str(attempt))


def gate_record_id_for(workflow_id: str, thread_id: str, turn_id: str, attempt: int) -> str:
    """Deterministic id ``gate:<24 hex>`` of the gate verdict on one turn attempt."""
    return derived_id("gate", workflow_id, thread_id, turn_id, str(attempt))


def prompt_link_id_for(workflow_id: str, thread_id: str, turn_id: str, attempt: int) -> str:
    """Deterministic id ``plink:<24 hex>`` of one turn attempt's prompt link."""
    return derived_id("plink", workflow_id, thread_id, turn_id, str(attempt))


def artifact_link_id_for(thread_id: str, turn_id: str, attempt: int, role: str, artifact_id: str) -> str:
    """Deterministic id ``alink:<24 hex>`` of one artifact's link to one turn attempt in one role."""
    return derived_id("alink", thread_id, turn_id, str(attempt), role, artifact_id)


def frame_id_for(node_id: str, frame_type: str, artifact_id: str) -> str:
    """Deterministic id ``frame:<24 hex>`` of one frame: node, frame type and artifact id."""
    return derived_id("frame", node_id, frame_type, artifact_id)


def hold_id_for(scope: str, scope_id: str, created_at_ms: int) -> str:
    """Deterministic id ``hold:<24 hex>`` of a hold placed on ``scope`` (``thread``/``workflow``) at a time in ms."""
    return derived_id("hold", scope, scope_id, str(created_at_ms))
