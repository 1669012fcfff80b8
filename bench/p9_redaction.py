"""P9: the secret detector (`wf_pipeline.security.redaction`): speed and how often it masks ordinary code.

Every text file of the sample tree and of a few large installed packages (Dagster,
SQLAlchemy, cryptography: real code, no planted secrets) is read once, then
`find_secrets` runs over each with its file name, as the context builder does. The
detector is warmed on one file first.

``ms_per_mb`` = milliseconds spent in `find_secrets` per MB of UTF-8 text (all trees);
``sample_files_masked`` = sample-tree files with at least one finding (should be 0);
``package_files_masked`` = package files with at least one finding, as a fraction: an upper
bound of the false-positive rate, since some findings are real example credentials
(``scott:tiger@`` in SQLAlchemy's docs). Prints
``P9 ms_per_mb=X sample_files_masked=N/M package_files_masked=F (n/m) mb=... kinds=...``.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

import cryptography
import dagster
import sqlalchemy

from wf_pipeline.security.redaction import find_secrets

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_TREE = REPO_ROOT / "assets" / "sample_repo"
PACKAGES = (dagster, sqlalchemy, cryptography)


def _texts(root: Path) -> list[tuple[str, str]]:
    texts = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            try:
                texts.append((path.name, path.read_text(encoding="utf-8")))
            except (UnicodeDecodeError, OSError):
                continue
    return texts


def _scan(texts: list[tuple[str, str]], kinds: collections.Counter) -> tuple[int, int, float]:
    """(files with findings, bytes, seconds in find_secrets)."""
    masked = size = 0
    seconds = 0.0
    for name, text in texts:
        started = time.perf_counter()
        findings = find_secrets(text, filename=name)
        seconds += time.perf_counter() - started
        size += len(text.encode("utf-8"))
        masked += bool(findings)
        kinds.update(finding.kind for finding in findings)
    return masked, size, seconds


def main() -> float:
    """Measure and print the P9 line; returns milliseconds per MB."""
    sample = _texts(SAMPLE_TREE)
    packages = [text for package in PACKAGES for text in _texts(Path(package.__file__).parent)]
    find_secrets(packages[0][1], filename=packages[0][0])  # warm-up
    kinds: collections.Counter = collections.Counter()
    sample_masked, sample_bytes, sample_s = _scan(sample, collections.Counter())
    package_masked, package_bytes, package_s = _scan(packages, kinds)
    mb = (sample_bytes + package_bytes) / 1e6
    ms_per_mb = 1000 * (sample_s + package_s) / mb
    print(
        f"P9 ms_per_mb={ms_per_mb:.0f} sample_files_masked={sample_masked}/{len(sample)} "
        f"package_files_masked={package_masked / len(packages):.4f} ({package_masked}/{len(packages)}) "
        f"mb={mb:.1f} kinds={dict(kinds.most_common())}",
        flush=True,
    )
    return ms_per_mb


if __name__ == "__main__":
    sys.exit(main() and 0)
