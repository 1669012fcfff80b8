"""Durations as people write them in profiles and on the command line: ``7d``, ``12h``, ``90s``, ``forever``.

One parser serves retention windows, grace periods and report ranges (``--since 7d``), so
a window means the same everywhere it is written.
"""

from __future__ import annotations

import re

from wf_pipeline.errors import METADATA_BAD_DURATION, MetadataError

__all__ = ["FOREVER", "MAX_DURATION_MS", "UNIT_MS", "format_duration_ms", "parse_duration_ms"]

FOREVER = "forever"

# Milliseconds per unit; a week is the longest unit people write for retention.
UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

#: The longest duration accepted: 100 years of 365 days (36500d), in ms. Longer spans
#: overflow date arithmetic (a date before year 1) and mean "forever" anyway, which has
#: its own spelling.
MAX_DURATION_MS = 36_500 * UNIT_MS["d"]

# ASCII digits only: a bare \d and int() take any Unicode decimal digit, so "\u0661h" (an
# Arabic-Indic one) or a full-width "\uff11d" would pass for an hour or a day.
_DURATION_RE = re.compile(r"([0-9]{1,12})(ms|s|m|h|d|w)")


def parse_duration_ms(text: str, *, allow_zero: bool = False) -> int | None:
    """The length of ``text`` in milliseconds; None for ``forever``.

    Args:
        text: one positive whole number in ASCII digits (``0``-``9``, nothing else that
            Unicode calls a digit) and a unit (``ms``, ``s``, ``m``, ``h``, ``d``, ``w``)
            with no space, e.g. ``7d``, ``12h``, ``1s``; or ``forever``.
        allow_zero: accept a zero such as ``0s`` (a grace period may be none; a window may not).

    Returns:
        The duration in ms (> 0, or >= 0 with ``allow_zero``; at most `MAX_DURATION_MS`,
        36500d), or None for ``forever``.

    Raises:
        MetadataError: ``METADATA_BAD_DURATION`` (figure: the text) for anything else:
            zero unless ``allow_zero``, and anything longer than 36500d.
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
    duration_ms = int(match.group(1)) * UNIT_MS[match.group(2)]
    if duration_ms > MAX_DURATION_MS:
        raise MetadataError(
            METADATA_BAD_DURATION,
            f"duration {text!r} is {duration_ms} ms, longer than the limit of "
            f"{format_duration_ms(MAX_DURATION_MS)} ({MAX_DURATION_MS} ms); write '{FOREVER}' for no limit",
            duration=text,
        )
    return duration_ms


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
