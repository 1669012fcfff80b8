"""Sensor drivers for stationkit.

Only the names listed in ``__all__`` are part of the public API; the modules
themselves may change layout between releases.
"""

from stationkit.sensors.base import FIELDS, Reading, Sensor, SensorError
from stationkit.sensors.simulated import Barometer, Hygrometer, Thermometer, default_sensors

__all__ = [
    "FIELDS",
    "Barometer",
    "Hygrometer",
    "Reading",
    "Sensor",
    "SensorError",
    "Thermometer",
    "default_sensors",
]
