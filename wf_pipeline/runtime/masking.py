"""Masking of the context payload, per the profile's redaction policy: the generic step every workflow gets.

The runtime builds a thread's context payload from the tree (`wf_pipeline.runtime.threads.
context_snapshot`); unless the profile opts the ``context_payload`` class out
(``redaction.unmasked_classes``), each file's text and each child's head frame passes
through the one masked view (`wf_pipeline.security.redaction.masked_text`) before the payload
is fitted, stored and rendered into any prompt. So no provider sees a secret-shaped value, and
the gate that checks evidence against the same view (the docs writer's ``claim_evidence``)
can never verify a quote that holds one.

What is logged follows the policy (`wf_pipeline.profiles.redaction`): the count of masked
values per context, or with ``log_findings`` each file's placeholders (the kind of each,
never the value or a digest of it); under ``hash_free_text`` the target is named by its node id,
not its path.

A context built unmasked (the profile opts ``context_payload`` out) is audited before it is
stored or any provider sees it: one event in the audit trail (`wf_pipeline.security.audit`)
names the profile as requester, reason ``REDACTION_OPT_OUT``, the workflow, thread and node
as scope, the context artifact and its bytes, and the redaction policy as policy version.
If the event cannot be written the turn fails with ``AUDIT_UNAVAILABLE`` and the context is
neither stored nor sent (Vault's audit rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wf_pipeline.metadata.payloads import ContextPayload
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.profiles.redaction import RedactionPolicy
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.security.audit import append_audit_event
from wf_pipeline.security.audit_key import AuditKeySource
from wf_pipeline.security.redaction import PLACEHOLDER_PATTERN, masked_text
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

CONTEXT_PAYLOAD = "context_payload"
#: The reason code of the audit event a context built unmasked appends.
OPT_OUT_REASON = "REDACTION_OPT_OUT"


@dataclass
class MaskingView:
    """The masked view (`wf_pipeline.tree.TextView`) with what it masked, for one context.

    Attributes:
        policy: the profile's redaction policy.
        masked: file name (``None`` for a child's frame) -> placeholders written in it.
    """

    policy: RedactionPolicy
    masked: list[tuple[str | None, tuple[str, ...]]] = field(default_factory=list)

    def __call__(self, name: str | None, text: str) -> str:
        """``text`` as masked for file ``name`` (None: a head frame); records its new placeholders."""
        view = masked_text(text, name)
        if view is not text:  # mask_secrets returns the text itself when it masks nothing
            before = len(PLACEHOLDER_PATTERN.findall(text))
            placeholders = tuple(PLACEHOLDER_PATTERN.findall(view))
            if len(placeholders) > before:
                self.masked.append((name, placeholders))
        return view

    @property
    def count(self) -> int:
        """Placeholders written into this context (a value met twice counts twice)."""
        return sum(len(placeholders) for _, placeholders in self.masked)

    def report(self, target_path: str, node_id: str) -> None:
        """Log what was masked in the context of ``target_path`` (nothing when nothing was)."""
        if not self.masked:
            return
        where = node_id if self.policy.hash_free_text else target_path
        # debug shows its findings where a user looks (stderr, Dagster's compute logs);
        # the other presets keep the count for a log configured to show INFO.
        emit = log.warning if self.policy.log_findings else log.info
        emit(
            "context of %s: %d secret-shaped values masked in %d texts (redaction %s)",
            where,
            self.count,
            len(self.masked),
            self.policy.preset,
        )
        if self.policy.log_findings and not self.policy.hash_free_text:
            for name, placeholders in self.masked:
                emit("context of %s: %s: %s", where, name or "child frame", ", ".join(placeholders))


def context_view(policy: RedactionPolicy) -> MaskingView | None:
    """The view a new context payload is built through: masked, or None when the profile opts out.

    Args:
        policy: the profile's resolved redaction policy (`LoadedProfile.redaction`).

    Returns:
        A fresh `MaskingView`, or None when ``context_payload`` is in ``unmasked_classes``.

    Raises nothing.
    """
    return MaskingView(policy) if policy.masks(CONTEXT_PAYLOAD) else None


def masked_payload(payload: ContextPayload, view: MaskingView) -> ContextPayload:
    """``payload`` with every file text and child head frame passed through ``view``.

    For a context snapshot recorded before its profile masked contexts (an earlier release,
    or an opt-out since removed): ``view.masked`` then says whether anything changed.
    Raises nothing.
    """
    return payload.map_texts(view)


def audit_unmasked_context(
    records: RecordStore,
    policy: RedactionPolicy,
    *,
    audit_key: AuditKeySource,
    workflow_id: str,
    thread_id: str,
    node_id: str,
    artifact_id: str,
    size: int,
) -> None:
    """Append the audit event of a context payload built unmasked, before it is stored or sent.

    Args:
        records: the record store holding the audit trail.
        policy: the profile's redaction policy (its ``source`` is the event's policy version).
        audit_key: the key sealing the event, or the function that finds (or makes) it
            and checks it against the trail
            (`wf_pipeline.security.audit_key.audit_key_source(settings, records)`).
        workflow_id, thread_id, node_id: the scope.
        artifact_id: the context payload's artifact id (``sha256:<hex>``).
        size: its bytes.

    Raises:
        SecurityError: ``AUDIT_UNAVAILABLE`` when the event is not written; the caller then
            stores and sends nothing.
    """
    append_audit_event(
        records,
        key=audit_key,
        requester=f"profile:{workflow_id}",
        grant_id=None,
        reason_code=OPT_OUT_REASON,
        scope={"workflow": workflow_id, "thread": thread_id, "node": node_id, "class": CONTEXT_PAYLOAD},
        artifact_ids=[artifact_id],
        outcome="allow",
        code=None,
        bytes=size,
        policy_version=policy.source,
        now_ms=now_ms(),
    )
    log.warning(
        "%s: context %s of thread %s is stored and sent unmasked: profile %s opts %s out of masking (%s)",
        OPT_OUT_REASON,
        artifact_id,
        thread_id,
        workflow_id,
        CONTEXT_PAYLOAD,
        policy.source,
    )
