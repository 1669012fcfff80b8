"""Core sensor types: the :class:`Reading` record and the :class:`Sensor` base class.

Timestamps are whole seconds since the station started sampling. Keeping them
relative (instead of wall-clock time) makes recorded data reproducible.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

FIELDS: tuple[str, ...] = ("sensor_id", "quantity", "value", "unit", "timestamp")
"""Column order used whenever a reading is written as a row."""

_SENSOR_ID = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class SensorError(RuntimeError):
    """Raised when a sensor is misconfigured or cannot produce a reading."""


@dataclass(frozen=True, slots=True)
class Reading:
    """A single measurement taken by one sensor at one moment."""

    sensor_id: str
    quantity: str
    value: float
    unit: str
    timestamp: int

    def as_row(self) -> list[str]:
        """Return the reading as strings in :data:`FIELDS` order."""
        return [self.sensor_id, self.quantity, _format_value(self.value), self.unit, str(self.timestamp)]

    @classmethod
    def from_row(cls, row: Sequence[str]) -> Reading:
        """Build a reading from a row produced by :meth:`as_row`."""
        if len(row) != len(FIELDS):
            raise SensorError(f"expected {len(FIELDS)} columns, got {len(row)}: {list(row)!r}")
        sensor_id, quantity, value, unit, timestamp = row
        return cls(sensor_id, quantity, float(value), unit, int(timestamp))


class Sensor(ABC):
    """Base class for every sensor attached to a station.

    Subclasses set :attr:`quantity` and :attr:`unit` and implement :meth:`measure`;
    :meth:`read` wraps the measured value into a :class:`Reading`.
    """

    quantity: str = ""
    unit: str = ""

    def __init__(self, sensor_id: str) -> None:
        _validate_sensor_id(sensor_id)
        self.sensor_id = sensor_id

    def read(self, timestamp: int) -> Reading:
        """Take one measurement at ``timestamp`` and return it as a reading."""
        if timestamp < 0:
            raise SensorError(f"timestamp must not be negative, got {timestamp}")
        value = round(self.measure(timestamp), 2)
        return Reading(self.sensor_id, self.quantity, value, self.unit, timestamp)

    @abstractmethod
    def measure(self, timestamp: int) -> float:
        """Return the raw measured value at ``timestamp``, in :attr:`unit`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sensor_id!r})"


def _validate_sensor_id(sensor_id: str) -> None:
    if not _SENSOR_ID.match(sensor_id):
        raise SensorError(
            f"invalid sensor id {sensor_id!r}: use lowercase letters, digits, '-' or '_' "
            "and start with a letter"
        )


def _format_value(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
