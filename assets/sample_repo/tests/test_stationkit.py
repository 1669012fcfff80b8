"""Tests for the stationkit package: sensors, storage, statistics, units and CLI."""

from __future__ import annotations

import math

import pytest

from stationkit import cli, units
from stationkit.sensors import (
    FIELDS,
    Barometer,
    Hygrometer,
    Reading,
    SensorError,
    Thermometer,
    default_sensors,
)
from stationkit.stats import moving_average, summarize
from stationkit.storage import CsvLog, CsvLogError, MemoryStore, load_readings

NOON = 43_200


def test_thermometer_follows_daily_cycle() -> None:
    thermo = Thermometer("t1", mean_c=10.0, swing_c=5.0)
    assert thermo.read(0).value == 5.0
    assert thermo.read(NOON).value == 15.0
    assert thermo.read(NOON) == thermo.read(NOON)


def test_hygrometer_is_clamped() -> None:
    hygro = Hygrometer("h1", mean_pct=95.0, swing_pct=20.0)
    assert hygro.read(0).value == 100.0


def test_barometer_drifts_per_day() -> None:
    baro = Barometer("b1", base_hpa=1000.0, drift_per_day=-2.0)
    assert baro.read(86_400).value == pytest.approx(998.0)


@pytest.mark.parametrize("bad_id", ["", "Roof", "1st", "has space", "x" * 40])
def test_invalid_sensor_ids_are_rejected(bad_id: str) -> None:
    with pytest.raises(SensorError):
        Thermometer(bad_id)


def test_negative_timestamp_is_rejected() -> None:
    with pytest.raises(SensorError):
        Thermometer("t1").read(-1)


def test_reading_row_round_trip() -> None:
    reading = Reading("roof-baro", "pressure", 1013.25, "hPa", 3600)
    row = reading.as_row()
    assert len(row) == len(FIELDS)
    assert Reading.from_row(row) == reading


def test_memory_store_queries_and_capacity() -> None:
    store = MemoryStore(capacity=4)
    store.extend(Thermometer("t1").read(ts) for ts in range(0, 6 * 3600, 3600))
    assert len(store) == 4
    assert [r.timestamp for r in store.query(start=3 * 3600)] == [10_800, 14_400, 18_000]
    assert store.latest("t1").timestamp == 18_000
    assert store.latest("missing") is None
    assert store.sensor_ids() == ["t1"]


def test_csv_log_appends_and_reads_back(tmp_path) -> None:
    log = CsvLog(tmp_path / "readings.csv")
    first = cli.collect(default_sensors(), samples=2, interval=600)
    second = cli.collect(default_sensors(), samples=1, interval=600, start=1200)
    assert log.append(first) == 6
    assert log.append(second) == 3
    assert load_readings(log.path) == first + second
    assert log.path.read_text().count("sensor_id") == 1


def test_csv_log_rejects_foreign_header(tmp_path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(CsvLogError):
        CsvLog(path).read_all()


def test_summarize_groups_by_sensor() -> None:
    readings = cli.collect(default_sensors(), samples=24, interval=3600)
    summaries = summarize(readings)
    assert list(summaries) == ["roof-baro", "roof-hygro", "roof-thermo"]
    thermo = summaries["roof-thermo"]
    assert (thermo.count, thermo.minimum, thermo.maximum) == (24, 6.0, 18.0)
    assert thermo.mean == pytest.approx(12.0)
    assert "roof-thermo temperature" in thermo.describe()


def test_moving_average() -> None:
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.5, 2.5, 3.5]
    assert moving_average([1.0], 3) == []
    with pytest.raises(ValueError):
        moving_average([1.0], 0)


def test_unit_conversions() -> None:
    assert units.celsius_to_fahrenheit(100.0) == 212.0
    assert units.fahrenheit_to_celsius(32.0) == 0.0
    assert units.convert_pressure(1000.0, "kPa") == pytest.approx(100.0)
    assert math.isclose(units.dew_point(20.0, 100.0), 20.0, abs_tol=1e-9)
    with pytest.raises(ValueError):
        units.convert_pressure(1000.0, "bar")
    with pytest.raises(ValueError):
        units.celsius_to_fahrenheit(-300.0)


def test_cli_prints_summary_and_writes_csv(tmp_path, capsys) -> None:
    csv_path = tmp_path / "out.csv"
    assert cli.main(["--samples", "4", "--interval", "21600", "--csv", str(csv_path), "--fahrenheit"]) == 0
    out = capsys.readouterr().out
    assert "appended 12 readings" in out
    assert "min 42.8 / mean 53.6 / max 64.4 F" in out
    assert len(load_readings(csv_path)) == 12


def test_cli_rejects_bad_arguments(capsys) -> None:
    assert cli.main(["--samples", "0"]) == 2
    assert "must both be positive" in capsys.readouterr().err
