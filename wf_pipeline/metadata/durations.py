"""Durations as people write them in profiles and on the command line: ``7d``, ``12h``, ``90s``, ``forever``.

One parser serves retention windows, grace periods and report ranges (``--since 7d``), so
a window means the same everywhere it is written.
"""

from __future__ import annotations

import re

from wf_pipeline.errors import METADATA_BAD_DURATION, MetadataError

__all__ = ["FOREVER", "UNIT_MS", "format_duration_ms", "parse_duration_ms"]

FOREVER = "forever"

# Milliseconds per unit; a week is the longest unit people write for retention.
UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

_DURATION_RE = re.compile(r"(\d{1,12})(ms|s|m|h|d|w)")


def parse_duration_ms(text: str, *, allow_zero: bool = False) -> int | None:
    """The length of ``text`` in milliseconds; None for ``forever``.

    Args:
        text: one positive whole number and a unit (``ms``, ``s``, ``m``, ``h``, ``d``,
            ``w``) with no space, e.g. ``7d``, ``12h``, ``1s``; or ``forever``.
        allow_zero: accept a zero such as ``0s`` (a grace period may be none; a window may not).

    Returns:
        The duration in ms (> 0, or >= 0 with ``allow_zero``), or None for ``forever``.

    Raises:
        MetadataError: ``METADATA_BAD_DURATION`` (figure: the text) for anything else,
            zero included unless ``allow_zero``.
    """
    if not isinstance(text, str):
        raise MetadataError(
            METADATA_BAD_DURATION, f"a duration must be text such as '7d', got {type(text).__name__}"
        )
    value = text.strip()
    if value == FOREVER:
        return None
    match = _DURATION_RE.fullmatch(value)
    if match is None or (int(match.group(1)) == 0 and not allow_zero):
        raise MetadataError(
            METADATA_BAD_DURATION,
            f"duration {text!r} is not a positive number with a unit ({', '.join(UNIT_MS)}) or '{FOREVER}'",
            duration=text,
        )
    return int(match.group(1)) * UNIT_MS[match.group(2)]


def format_duration_ms(duration_ms: int | None) -> str:
    """The shortest exact spelling of ``duration_ms`` (the inverse of `parse_duration_ms`).

    Args:
        duration_ms: a duration in ms (>= 0), or None for ``forever``.

    Returns:
        Text such as ``7d`` or ``90s``; ``0s`` for 0 (no grace); ``forever`` for None.
    """
    if duration_ms is None:
        return FOREVER
    if duration_ms == 0:
        return "0s"
    for unit, size in sorted(UNIT_MS.items(), key=lambda item: -item[1]):
        if duration_ms % size == 0:
            return f"{duration_ms // size}{unit}"
    return f"{duration_ms}ms"
