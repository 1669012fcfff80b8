"""Durations: one parser for retention windows, grace periods and report ranges."""

from __future__ import annotations

import pytest

from wf_pipeline.errors import METADATA_BAD_DURATION, MetadataError
from wf_pipeline.metadata.durations import format_duration_ms, parse_duration_ms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", 1_000),
        ("12h", 43_200_000),
        ("7d", 604_800_000),
        ("2w", 1_209_600_000),
        ("250ms", 250),
        ("90m", 5_400_000),
        (" 3d ", 259_200_000),
        ("forever", None),
    ],
)
def test_durations_parse_to_milliseconds(text, expected):
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "7", "d", "-1d", "1.5h", "7 d", "7D", "1y", "forever!", "1d2h"])
def test_anything_else_is_a_bad_duration(text):
    with pytest.raises(MetadataError) as caught:
        parse_duration_ms(text)
    assert caught.value.code == METADATA_BAD_DURATION


def test_a_non_text_duration_is_a_bad_duration():
    with pytest.raises(MetadataError) as caught:
        parse_duration_ms(7)  # type: ignore[arg-type]
    assert caught.value.code == METADATA_BAD_DURATION


@pytest.mark.parametrize("duration_ms", [None, 1, 1_000, 90_000, 86_400_000, 1_209_600_000, 1_500])
def test_formatting_round_trips(duration_ms):
    assert parse_duration_ms(format_duration_ms(duration_ms)) == duration_ms


@pytest.mark.parametrize("text", ["0s", "0ms", "0d", "000h"])
def test_zero_only_when_allowed(text):
    # A grace period may be none; a window of zero is still refused.
    assert parse_duration_ms(text, allow_zero=True) == 0
    with pytest.raises(MetadataError) as caught:
        parse_duration_ms(text)
    assert caught.value.code == METADATA_BAD_DURATION


def test_zero_formats_as_zero_seconds():
    assert format_duration_ms(0) == "0s"
    assert parse_duration_ms(format_duration_ms(0), allow_zero=True) == 0


@pytest.mark.parametrize("text", ["36500d", "5214w", "876000h"])
def test_durations_up_to_one_hundred_years_are_accepted(text):
    assert parse_duration_ms(text) <= 36_500 * 86_400_000


@pytest.mark.parametrize("text", ["36501d", "5215w", "99999999999d", "999999999999w"])
def test_durations_beyond_one_hundred_years_are_bad_with_the_figure(text):
    with pytest.raises(MetadataError) as caught:
        parse_duration_ms(text)
    assert caught.value.code == METADATA_BAD_DURATION
    assert text in str(caught.value) and "36500d" in str(caught.value)


# Python's int() and a bare \d take any Unicode decimal digit: "١h" (Arabic-Indic one) would
# be an hour, "１d" (full-width one) a day. Only ASCII digits are a duration's number.
@pytest.mark.parametrize("text", ["\u0661h", "\uff11d", "1\u0660s", "\u09e7w", "\U0001d7cfm", "\u0967ms"])
def test_only_ascii_digits_make_a_duration(text):
    with pytest.raises(MetadataError) as caught:
        parse_duration_ms(text)
    assert caught.value.code == METADATA_BAD_DURATION
    with pytest.raises(MetadataError):
        parse_duration_ms(text, allow_zero=True)
