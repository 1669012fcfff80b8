"""Storage back ends for readings: an in-memory store and an append-only CSV log."""

from stationkit.storage.csvlog import CsvLog, CsvLogError, load_readings
from stationkit.storage.memory import MemoryStore
