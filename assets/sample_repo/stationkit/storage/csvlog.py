"""Append-only CSV log of readings.

The file starts with a header row naming the columns in
:data:`stationkit.sensors.FIELDS` order, followed by one row per reading.
Rows are only ever appended, so a log can be tailed while the station runs.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from stationkit.sensors import FIELDS, Reading


class CsvLogError(ValueError):
    """Raised when a CSV log exists but does not have the expected layout."""


class CsvLog:
    """A reading log stored as a CSV file at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, readings: Iterable[Reading]) -> int:
        """Append readings to the log, writing the header first if the file is new.

        Returns the number of rows written.
        """
        write_header = self._needs_header()
        count = 0
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if write_header:
                writer.writerow(FIELDS)
            for reading in readings:
                writer.writerow(reading.as_row())
                count += 1
        return count

    def read_all(self) -> list[Reading]:
        """Return every reading in the log, oldest first; an absent file yields []."""
        if not self.path.exists():
            return []
        with self.path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return []
        _check_header(rows[0], self.path)
        return [Reading.from_row(row) for row in rows[1:] if row]

    def _needs_header(self) -> bool:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return True
        with self.path.open(newline="", encoding="utf-8") as handle:
            first = next(csv.reader(handle), [])
        _check_header(first, self.path)
        return False


def load_readings(path: str | Path) -> list[Reading]:
    """Read every reading from the CSV log at ``path``."""
    return CsvLog(path).read_all()


def _check_header(row: list[str], path: Path) -> None:
    if tuple(row) != FIELDS:
        raise CsvLogError(f"{path}: unexpected header {row!r}, expected {list(FIELDS)!r}")
