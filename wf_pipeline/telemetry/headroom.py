"""How close a key's writes come to its budget: the one rule behind the headroom report and check.

A key's level is judged on its p95 value size (bytes) against its budget (bytes): at 80%
of the budget it is ``warn`` (writes still pass, but the next growth spurt will be
rejected), at 95% ``error`` (rejections are imminent or happening). The report's status
column and the Dagster asset check on ``budget_headroom`` both call `headroom_level`, so
they never disagree.

A key whose values all have one size by schema (a digest: `KeyDescriptor.fixed_width`,
from the key registry's schema type) is ``fixed``: its p95 equals its budget on every
normal run, yet it can never grow, so it is never a warning.
"""

from __future__ import annotations

from typing import Final

from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY, KeyRegistry

__all__ = ["ERROR_RATIO", "LEVELS", "WARN_RATIO", "headroom_level", "headroom_ratio", "is_fixed_width"]

#: p95 / budget at which a key warns (issue 9, item 5: "warns when a key's p95 reaches 80%").
WARN_RATIO: Final = 0.80
#: p95 / budget at which a key fails ("and fails at 95%").
ERROR_RATIO: Final = 0.95
#: Levels from best to worst; ``unbudgeted`` keys have no budget to hold against, ``fixed``
#: keys have values of one size by schema and cannot grow.
LEVELS: Final[tuple[str, ...]] = ("unbudgeted", "fixed", "ok", "warn", "error")


def is_fixed_width(domain: str | None, key: str | None, registry: KeyRegistry = FRAME_KEY_REGISTRY) -> bool:
    """Whether ``key`` of ``domain`` is a registered key whose values have one size by schema.

    Args:
        domain: the telemetry row's domain (the key's owner domain).
        key: the metadata key.
        registry: the key registry the boundary enforces (default `FRAME_KEY_REGISTRY`).

    Returns:
        True when the registry holds the key, owned by ``domain``, with a fixed-width schema
        type (`KeyDescriptor.fixed_width`); False otherwise (unknown keys included).
    """
    descriptor = registry.get(key) if isinstance(key, str) else None
    return descriptor is not None and descriptor.owner_domain == domain and descriptor.fixed_width


def headroom_ratio(p95_bytes: float | None, budget_bytes: float | None) -> float | None:
    """``p95_bytes / budget_bytes``, or None when there is no positive budget or no p95.

    Args:
        p95_bytes: the key's 95th-percentile value size, in bytes.
        budget_bytes: the key's budget, in bytes (None or 0: no budget).

    Returns:
        The share of the budget the p95 uses (1.0 = all of it), or None. Raises nothing.
    """
    if p95_bytes is None or budget_bytes is None or budget_bytes != budget_bytes or budget_bytes <= 0:
        return None
    if p95_bytes != p95_bytes:  # NaN: a key with no measured rows
        return None
    return float(p95_bytes) / float(budget_bytes)


def headroom_level(p95_bytes: float | None, budget_bytes: float | None, *, fixed_width: bool = False) -> str:
    """The level of a key: ``unbudgeted``, ``fixed``, ``ok``, ``warn`` (ratio >= 0.80) or ``error`` (>= 0.95).

    Args:
        p95_bytes: the key's 95th-percentile value size, in bytes.
        budget_bytes: the key's budget, in bytes (None or 0: no budget).
        fixed_width: the key's values have one size by schema (`is_fixed_width`): a
            budgeted key is then ``fixed`` unless its p95 exceeds the budget (which only a
            wrong budget can cause, and which is then an ``error``).

    Returns:
        One of `LEVELS`. Raises nothing.
    """
    ratio = headroom_ratio(p95_bytes, budget_bytes)
    if ratio is None:
        return "unbudgeted"
    if fixed_width and ratio <= 1.0:
        return "fixed"
    if ratio >= ERROR_RATIO:
        return "error"
    if ratio >= WARN_RATIO:
        return "warn"
    return "ok"
