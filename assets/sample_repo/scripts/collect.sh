#!/usr/bin/env bash
# collect.sh - sample the station and append the readings to a CSV log.
#
# Usage: scripts/collect.sh [SAMPLES] [INTERVAL_SECONDS] [CSV_PATH]
#
#   SAMPLES           readings per sensor (default 24)
#   INTERVAL_SECONDS  spacing between readings (default 3600)
#   CSV_PATH          log to append to, relative to the project root
#                     (default data/readings.csv; data/ is git-ignored)
#
# Can be run from any directory; the project root is found from the script path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
samples="${1:-24}"
interval="${2:-3600}"
csv_path="${3:-data/readings.csv}"

cd "$root"
mkdir -p "$(dirname "$csv_path")"
exec "${PYTHON:-python3}" -m stationkit.cli \
    --samples "$samples" --interval "$interval" --csv "$csv_path"
