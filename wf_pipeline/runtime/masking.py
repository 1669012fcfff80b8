"""Masking of the context payload, per the profile's redaction policy: the generic step every workflow gets.

The runtime builds a thread's context payload from the tree (`wf_pipeline.runtime.threads.
context_snapshot`); unless the profile opts the ``context_payload`` class out
(``redaction.unmasked_classes``), each file's text and each child's head frame passes
through the one masked view (`wf_pipeline.security.redaction.masked_text`) before the payload
is fitted, stored and rendered into any prompt. So no provider sees a secret-shaped value, and
the gate that checks evidence against the same view (the docs writer's ``claim_evidence``)
can never verify a quote that holds one.

What is logged follows the policy (`wf_pipeline.profiles.redaction`): the count of masked
values per context, or with ``log_findings`` each file's placeholders (kind and 8 hex of the
value's digest, never the value); under ``hash_free_text`` the target is named by its node id,
not its path. A context built unmasked is logged as a warning naming the policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from wf_pipeline.profiles.redaction import RedactionPolicy
from wf_pipeline.security.redaction import PLACEHOLDER_PATTERN, masked_text

log = logging.getLogger(__name__)

CONTEXT_PAYLOAD = "context_payload"


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
        log.info(
            "context of %s: %d secret-shaped values masked in %d texts (redaction %s)",
            where,
            self.count,
            len(self.masked),
            self.policy.preset,
        )
        if self.policy.log_findings and not self.policy.hash_free_text:
            for name, placeholders in self.masked:
                log.info("context of %s: %s: %s", where, name or "child frame", ", ".join(placeholders))


def context_view(policy: RedactionPolicy) -> MaskingView | None:
    """The view a new context payload is built through: masked, or None when the profile opts out.

    Args:
        policy: the profile's resolved redaction policy (`LoadedProfile.redaction`).

    Returns:
        A fresh `MaskingView`, or None when ``context_payload`` is in ``unmasked_classes``.

    Raises nothing.
    """
    return MaskingView(policy) if policy.masks(CONTEXT_PAYLOAD) else None
