"""Command-line entry point: sample the station, optionally log to CSV, print a summary.

Usage::

    python -m stationkit.cli --samples 24 --interval 3600 --csv data/readings.csv
    python -m stationkit.cli --fahrenheit
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stationkit import __version__
from stationkit.sensors import Reading, Sensor, default_sensors
from stationkit.stats import Summary, summarize
from stationkit.storage import CsvLog, MemoryStore
from stationkit.units import celsius_to_fahrenheit


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for the ``stationkit`` command."""
    parser = argparse.ArgumentParser(
        prog="stationkit", description="Sample the weather station and summarise the readings."
    )
    parser.add_argument("--samples", type=int, default=24, help="readings per sensor (default 24)")
    parser.add_argument(
        "--interval", type=int, default=3600, help="seconds between samples (default 3600)"
    )
    parser.add_argument("--csv", metavar="PATH", help="also append the readings to this CSV log")
    parser.add_argument(
        "--fahrenheit", action="store_true", help="show temperatures in degrees Fahrenheit"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def collect(sensors: Sequence[Sensor], samples: int, interval: int, start: int = 0) -> list[Reading]:
    """Read every sensor ``samples`` times, ``interval`` seconds apart, from ``start``."""
    if samples < 1 or interval < 1:
        raise ValueError("samples and interval must both be positive")
    return [
        sensor.read(start + step * interval) for step in range(samples) for sensor in sensors
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        readings = collect(default_sensors(), args.samples, args.interval)
    except ValueError as exc:
        print(f"stationkit: {exc}", file=sys.stderr)
        return 2

    store = MemoryStore()
    store.extend(readings)
    if args.csv:
        written = CsvLog(args.csv).append(store)
        print(f"appended {written} readings to {args.csv}")

    for summary in summarize(store).values():
        print(_display(summary, args.fahrenheit).describe())
    return 0


def _display(summary: Summary, fahrenheit: bool) -> Summary:
    if not fahrenheit or summary.unit != "C":
        return summary
    return Summary(
        sensor_id=summary.sensor_id,
        quantity=summary.quantity,
        unit="F",
        count=summary.count,
        minimum=celsius_to_fahrenheit(summary.minimum),
        maximum=celsius_to_fahrenheit(summary.maximum),
        mean=celsius_to_fahrenheit(summary.mean),
    )


if __name__ == "__main__":
    sys.exit(main())
