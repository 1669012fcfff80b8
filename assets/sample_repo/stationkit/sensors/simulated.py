"""Simulated sensors that follow smooth, fully deterministic daily cycles.

They stand in for real hardware during development and in tests: the same
timestamp always yields the same value, and no randomness or clock is involved.
"""

from __future__ import annotations

import math

from stationkit.sensors.base import Sensor, SensorError

DAY_SECONDS = 86_400


class Thermometer(Sensor):
    """Air thermometer, coldest at midnight and warmest at noon."""

    quantity = "temperature"
    unit = "C"

    def __init__(self, sensor_id: str, mean_c: float = 12.0, swing_c: float = 6.0) -> None:
        super().__init__(sensor_id)
        if swing_c < 0:
            raise SensorError("swing_c must not be negative")
        self.mean_c = mean_c
        self.swing_c = swing_c

    def measure(self, timestamp: int) -> float:
        """Return the air temperature in degrees Celsius."""
        return _daily_wave(timestamp, self.mean_c, self.swing_c, phase=-math.pi / 2)


class Hygrometer(Sensor):
    """Relative humidity sensor, most humid when the air is coldest."""

    quantity = "humidity"
    unit = "%"

    def __init__(self, sensor_id: str, mean_pct: float = 70.0, swing_pct: float = 20.0) -> None:
        super().__init__(sensor_id)
        self.mean_pct = mean_pct
        self.swing_pct = swing_pct

    def measure(self, timestamp: int) -> float:
        """Return the relative humidity in percent, clamped to 0..100."""
        raw = _daily_wave(timestamp, self.mean_pct, self.swing_pct, phase=math.pi / 2)
        return _clamp(raw, 0.0, 100.0)


class Barometer(Sensor):
    """Station barometer with a slow drift and a small twice-daily tide."""

    quantity = "pressure"
    unit = "hPa"

    def __init__(self, sensor_id: str, base_hpa: float = 1013.25, drift_per_day: float = -1.5) -> None:
        super().__init__(sensor_id)
        self.base_hpa = base_hpa
        self.drift_per_day = drift_per_day

    def measure(self, timestamp: int) -> float:
        """Return the air pressure in hectopascals."""
        drift = self.drift_per_day * timestamp / DAY_SECONDS
        tide = 0.8 * math.sin(4 * math.pi * (timestamp % DAY_SECONDS) / DAY_SECONDS)
        return self.base_hpa + drift + tide


def default_sensors() -> list[Sensor]:
    """Return the standard roof-mounted trio: thermometer, hygrometer and barometer."""
    return [Thermometer("roof-thermo"), Hygrometer("roof-hygro"), Barometer("roof-baro")]


def _daily_wave(timestamp: int, mean: float, amplitude: float, phase: float = 0.0) -> float:
    angle = 2 * math.pi * (timestamp % DAY_SECONDS) / DAY_SECONDS + phase
    return mean + amplitude * math.sin(angle)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
