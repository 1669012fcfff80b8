"""stationkit: sample, store and summarise readings from a small weather station.

The package is split into three layers:

* ``stationkit.sensors`` produces :class:`~stationkit.sensors.Reading` records,
* ``stationkit.storage`` keeps them in memory or in a CSV log,
* ``stationkit.stats`` and ``stationkit.units`` turn them into something readable.

``stationkit.cli`` ties the layers together for command-line use.
"""

__version__ = "0.3.1"
