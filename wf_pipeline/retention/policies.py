"""Which retention windows a sweep would apply, and whether a destructive sweep may run at all.

A profile file that fails to load may be the one meant to govern a workflow (a workspace
copy with a typo shadows nothing, so the built-in windows would silently apply). The one
rule, shared by ``wf retention apply``, the Dagster retention job and ``wf compact``: any
profile load problem refuses a destructive sweep (`require_policies`); a plan still runs
and says its result is not what apply would do (`policy_problems`).
"""

from __future__ import annotations

from typing import Any

from wf_pipeline.errors import RETENTION_POLICY_UNAVAILABLE, RetentionError
from wf_pipeline.metadata.durations import format_duration_ms
from wf_pipeline.profiles import ProfileCatalog


def policy_problems(catalog: ProfileCatalog) -> list[dict[str, Any]]:
    """The profile files that failed to load: ``[{"path", "layer", "code", "message"}]``, path order."""
    return [problem.to_dict() for problem in catalog.problems]


def require_policies(catalog: ProfileCatalog, action: str) -> None:
    """Refuse a destructive sweep while any profile file fails to load.

    Args:
        catalog: the loaded profiles (with their ``problems``).
        action: what would have run, for the message (``retention apply``, ``compact``).

    Raises:
        RetentionError: ``RETENTION_POLICY_UNAVAILABLE`` (figures: ``files``, ``codes``)
            naming each failed file and its code; nothing was deleted.
    """
    if not catalog.problems:
        return
    listed = ", ".join(f"{problem.path} ({problem.error.code})" for problem in catalog.problems)
    raise RetentionError(
        RETENTION_POLICY_UNAVAILABLE,
        f"{action} refused: {len(catalog.problems)} profile file(s) failed to load and may govern a "
        f"workflow: {listed}; fix them (wf profiles validate) and run again",
        files=[str(problem.path) for problem in catalog.problems],
        codes=sorted({problem.error.code for problem in catalog.problems}),
    )


def effective_windows(catalog: ProfileCatalog) -> list[dict[str, Any]]:
    """Each loaded workflow's windows as a sweep applies them, so a user sees why something is kept.

    Returns:
        One entry per workflow, in workflow id order: ``{"workflow_id", "source", "grace_ms",
        "grace", "output_of_heads", "classes": [{"artifact_class", "window_ms", "window",
        "grace_ms", "lifetime_ms", "mode"}]}``; ``lifetime_ms`` is window + grace (ms), None (and
        ``window`` ``forever``) when the class is kept forever; ``mode`` is ``delete`` or
        ``shred`` (`RetentionPolicy.mode`). A class the policy does not name is kept forever
        and not listed.
    """
    rows = []
    for loaded in catalog.all():
        policy = loaded.retention
        classes = []
        for artifact_class in sorted(policy.windows_ms):
            window = policy.window_ms(artifact_class)
            classes.append(
                {
                    "artifact_class": artifact_class,
                    "window_ms": window,
                    "window": format_duration_ms(window),
                    "grace_ms": policy.grace_ms,
                    "lifetime_ms": policy.expires_at_ms(artifact_class, 0),
                    "mode": policy.mode(artifact_class),
                }
            )
        rows.append(
            {
                "workflow_id": policy.workflow_id,
                "source": policy.source,
                "grace_ms": policy.grace_ms,
                "grace": format_duration_ms(policy.grace_ms),
                "output_of_heads": policy.output_of_heads,
                "classes": classes,
            }
        )
    return rows
