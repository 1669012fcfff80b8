"""One JSON encoding of query values, for ``wf telemetry query --json/--csv`` and the reports.

DuckDB hands Python values that ``json`` cannot write or writes as non-JSON (``Infinity``,
``NaN``, ``b'...'`` reprs, ``1 day, 0:00:00``). `json_value` maps every one of them to
stable JSON:

- non-finite floats (and decimals) -> ``null`` (RFC 8259 has no Infinity or NaN);
- blobs -> standard base64 text (RFC 4648 section 4, with padding);
- dates, times, timestamps -> ISO 8601 text (``datetime.isoformat``; offsets kept);
- intervals (``timedelta``) -> ISO 8601 durations, e.g. ``P1D``, ``PT1H30M``, ``-PT0.5S``
  (days, hours, minutes, seconds with up to 6 decimals; DuckDB months arrive as 30 days);
- decimals -> their exact decimal text (``"12.50"``), never a rounded float;
- UUIDs -> canonical text; lists, tuples and structs (dicts) -> arrays and objects of
  encoded values; numpy/pandas scalars -> their Python value.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import uuid
from typing import Any

__all__ = ["iso_duration", "json_value"]


def iso_duration(value: dt.timedelta) -> str:
    """``value`` as an ISO 8601 duration (``PnDTnHnMnS``, zero parts left out; zero is ``PT0S``).

    Args:
        value: a ``datetime.timedelta``.

    Returns:
        Text such as ``P1D``, ``PT1H30M``, ``P2DT0.25S`` or ``-PT5S`` (a leading minus for a
        negative duration, as ISO 8601-2 allows). Raises nothing.
    """
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    days, micros = divmod(micros, 86_400 * 1_000_000)
    hours, micros = divmod(micros, 3_600 * 1_000_000)
    minutes, micros = divmod(micros, 60 * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    date_part = f"{days}D" if days else ""
    time_part = "".join(
        [
            f"{hours}H" if hours else "",
            f"{minutes}M" if minutes else "",
            (f"{seconds}.{fraction:06d}".rstrip("0") + "S")
            if fraction
            else (f"{seconds}S" if seconds else ""),
        ]
    )
    if not date_part and not time_part:
        return "PT0S"
    return f"{sign}P{date_part}" + (f"T{time_part}" if time_part else "")


def json_value(value: Any) -> Any:
    """``value`` as a value ``json.dumps`` writes as valid, stable JSON (module docstring gives the rules).

    Args:
        value: one cell of a DuckDB result (or a pandas/numpy scalar).

    Returns:
        None, bool, int, finite float, str, list or dict (recursively encoded). Values of
        other types fall back to ``str(value)``. Raises nothing.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return iso_duration(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(item) for item in value]
    if hasattr(value, "isoformat"):  # pandas Timestamp / Timedelta-free datetime-likes
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return json_value(value.item())
    return str(value)
