/**
 * Display helpers for the station dashboard: value formatting, trend arrows and
 * a small text sparkline. Plain JavaScript so it can be loaded without a build.
 */

export const UNIT_LABELS = Object.freeze({
  C: "\u00b0C",
  F: "\u00b0F",
  "%": "%",
  hPa: "hPa",
});

const SPARK_LEVELS = " .:-=+*#";

/** Format a reading's value with its unit label, e.g. "12.5 °C". */
export function formatReading(reading, digits = 1) {
  const label = UNIT_LABELS[reading.unit] ?? reading.unit;
  return `${reading.value.toFixed(digits)} ${label}`;
}

/** Return "up", "down" or "steady" comparing two values within a relative tolerance. */
export function trendArrow(previous, current, tolerance = 0.005) {
  const scale = Math.max(Math.abs(previous), 1);
  const change = (current - previous) / scale;
  if (change > tolerance) return "up";
  if (change < -tolerance) return "down";
  return "steady";
}

/** Fixed-width text sparkline that keeps only the most recent values. */
export class Sparkline {
  constructor(width = 24) {
    this.width = width;
    this.values = [];
  }

  /** Add one value, dropping the oldest once the line is full. */
  push(value) {
    this.values.push(value);
    if (this.values.length > this.width) {
      this.values.shift();
    }
    return this;
  }

  /** Render the stored values as one character each, lowest to highest level. */
  render() {
    if (this.values.length === 0) return "";
    const low = Math.min(...this.values);
    const high = Math.max(...this.values);
    return this.values.map((value) => levelChar(value, low, high)).join("");
  }
}

function levelChar(value, low, high) {
  if (high === low) return SPARK_LEVELS[Math.floor(SPARK_LEVELS.length / 2)];
  const position = (value - low) / (high - low);
  return SPARK_LEVELS[Math.round(position * (SPARK_LEVELS.length - 1))];
}
