"""In-memory reading store, used by tests and by short command-line runs.

Readings are kept in arrival order. An optional capacity turns the store into a
ring buffer that forgets the oldest readings first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from stationkit.sensors import Reading


class MemoryStore:
    """Keeps readings in arrival order and answers simple queries over them."""

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._readings: deque[Reading] = deque(maxlen=capacity)

    def add(self, reading: Reading) -> None:
        """Store one reading, evicting the oldest one if the store is full."""
        self._readings.append(reading)

    def extend(self, readings: Iterable[Reading]) -> int:
        """Store several readings and return how many were added."""
        added = 0
        for reading in readings:
            self.add(reading)
            added += 1
        return added

    def latest(self, sensor_id: str) -> Reading | None:
        """Return the most recent reading of ``sensor_id``, or None if there is none."""
        for reading in reversed(self._readings):
            if reading.sensor_id == sensor_id:
                return reading
        return None

    def query(
        self,
        sensor_id: str | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> list[Reading]:
        """Return readings matching every given filter.

        ``start`` is inclusive and ``end`` exclusive, both in station seconds.
        """
        return [r for r in self._readings if _matches(r, sensor_id, start, end)]

    def sensor_ids(self) -> list[str]:
        """Return the ids of all sensors with at least one stored reading, sorted."""
        return sorted({reading.sensor_id for reading in self._readings})

    def __len__(self) -> int:
        return len(self._readings)

    def __iter__(self) -> Iterator[Reading]:
        return iter(list(self._readings))


def _matches(reading: Reading, sensor_id: str | None, start: int | None, end: int | None) -> bool:
    if sensor_id is not None and reading.sensor_id != sensor_id:
        return False
    if start is not None and reading.timestamp < start:
        return False
    if end is not None and reading.timestamp >= end:
        return False
    return True
