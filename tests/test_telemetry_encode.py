"""The one JSON encoding of query values: valid JSON for every DuckDB value type."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid

import pytest

from wf_pipeline.telemetry.encode import iso_duration, json_value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.timedelta(0), "PT0S"),
        (dt.timedelta(days=1), "P1D"),
        (dt.timedelta(hours=1, minutes=30), "PT1H30M"),
        (dt.timedelta(days=2, microseconds=250_000), "P2DT0.25S"),
        (dt.timedelta(seconds=-5), "-PT5S"),
        (dt.timedelta(days=30, hours=2, seconds=0.5), "P30DT2H0.5S"),
    ],
)
def test_intervals_are_iso_8601_durations(value, expected):
    assert iso_duration(value) == expected


def test_every_value_becomes_strict_json():
    row = [
        float("inf"),
        float("-inf"),
        float("nan"),
        decimal.Decimal("NaN"),
        decimal.Decimal("12.50"),
        b"\x00\xff",
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.time(10, 11, 12),
        uuid.UUID(int=1),
        {"a": [float("nan"), b"x"]},
        (1, 2.5),
        True,
    ]
    encoded = [json_value(value) for value in row]
    text = json.dumps(encoded, allow_nan=False)  # raises on any NaN/Infinity left
    assert json.loads(text) == [
        None,
        None,
        None,
        None,
        "12.50",
        "AP8=",
        "2026-01-02T03:04:05+00:00",
        "10:11:12",
        "00000000-0000-0000-0000-000000000001",
        {"a": [None, "eA=="]},
        [1, 2.5],
        True,
    ]
