"""Summary statistics over recorded readings.

The functions here never look at where readings came from; they accept any
iterable of :class:`~stationkit.sensors.Reading`, so they work equally on a
:class:`~stationkit.storage.MemoryStore` and on rows loaded from a CSV log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stationkit.sensors import Reading


@dataclass(frozen=True, slots=True)
class Summary:
    """Minimum, maximum and mean of one sensor's readings."""

    sensor_id: str
    quantity: str
    unit: str
    count: int
    minimum: float
    maximum: float
    mean: float

    def describe(self) -> str:
        """Return a one-line, human-readable description of the summary."""
        return (
            f"{self.sensor_id} {self.quantity}: "
            f"min {self.minimum:.1f} / mean {self.mean:.1f} / max {self.maximum:.1f} {self.unit} "
            f"({self.count} readings)"
        )


def summarize(readings: Iterable[Reading]) -> dict[str, Summary]:
    """Group readings by sensor id and summarise each group.

    The result is ordered by sensor id so that printed output is stable.
    """
    groups: dict[str, list[Reading]] = {}
    for reading in readings:
        groups.setdefault(reading.sensor_id, []).append(reading)
    return {sensor_id: _summarize_group(groups[sensor_id]) for sensor_id in sorted(groups)}


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Return the simple moving average of ``values`` over ``window`` samples.

    The output has ``len(values) - window + 1`` items; it is empty when there are
    fewer values than the window size.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if len(values) < window:
        return []
    total = sum(values[:window])
    averages = [total / window]
    for index in range(window, len(values)):
        total += values[index] - values[index - window]
        averages.append(total / window)
    return averages


def _summarize_group(group: list[Reading]) -> Summary:
    first = group[0]
    values = [reading.value for reading in group]
    return Summary(
        sensor_id=first.sensor_id,
        quantity=first.quantity,
        unit=first.unit,
        count=len(values),
        minimum=min(values),
        maximum=max(values),
        mean=sum(values) / len(values),
    )
