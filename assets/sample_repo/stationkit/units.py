"""Unit conversions used across stationkit.

Every function is pure and works on plain floats, so the same helpers serve the
sensors, the storage back ends and the command line.
"""

from __future__ import annotations

import math

ABSOLUTE_ZERO_C = -273.15

_PRESSURE_FACTORS: dict[str, float] = {
    "hpa": 1.0,
    "kpa": 0.1,
    "inhg": 0.029529983,
    "mmhg": 0.750061683,
}

# Coefficients of the Magnus approximation over water (Alduchov and Eskridge).
_MAGNUS_A = 17.62
_MAGNUS_B = 243.12


def celsius_to_fahrenheit(value: float) -> float:
    """Convert a temperature from degrees Celsius to degrees Fahrenheit."""
    _check_above_absolute_zero(value)
    return value * 9.0 / 5.0 + 32.0


def fahrenheit_to_celsius(value: float) -> float:
    """Convert a temperature from degrees Fahrenheit to degrees Celsius."""
    celsius = (value - 32.0) * 5.0 / 9.0
    _check_above_absolute_zero(celsius)
    return celsius


def convert_pressure(value_hpa: float, unit: str) -> float:
    """Convert a pressure given in hectopascals to ``unit``.

    Supported units are ``hpa``, ``kpa``, ``inhg`` and ``mmhg`` (case-insensitive).
    """
    try:
        factor = _PRESSURE_FACTORS[unit.lower()]
    except KeyError:
        known = ", ".join(sorted(_PRESSURE_FACTORS))
        raise ValueError(f"unknown pressure unit {unit!r}; expected one of {known}") from None
    return value_hpa * factor


def dew_point(temperature_c: float, relative_humidity: float) -> float:
    """Estimate the dew point in degrees Celsius using the Magnus formula.

    ``relative_humidity`` is a percentage in the range (0, 100].
    """
    if not 0.0 < relative_humidity <= 100.0:
        raise ValueError(f"relative humidity must be in (0, 100], got {relative_humidity}")
    gamma = math.log(relative_humidity / 100.0) + _MAGNUS_A * temperature_c / (
        _MAGNUS_B + temperature_c
    )
    return _MAGNUS_B * gamma / (_MAGNUS_A - gamma)


def _check_above_absolute_zero(celsius: float) -> None:
    if celsius < ABSOLUTE_ZERO_C:
        raise ValueError(f"{celsius} C is below absolute zero")
