"""P7: rewrap of 100,000 data keys after a rotation, in seconds.

A fresh SQLite record store gets 100,000 encrypted artifacts' data keys, made the way
puts make them (`Keyring.data_keys_for_put` in batches of 1,000: fresh data keys wrapped
by the primary KEK of their class's lineage), spread over the four built-in classes.
Then `Keyring.rotate` makes new primaries and the timed part is `Keyring.rewrap`: page
by page, unwrap each data key under the old KEK, wrap it under the new one and
compare-and-set the rows. No payload is read or written (that is the point of envelope
encryption). Afterwards every key must be under a primary and unwrap.

Prints ``P7 rewrap_s=X`` (target X <= 10) with the rate in keys per second.
"""

from __future__ import annotations

import base64
import tempfile
import time
from pathlib import Path

from wf_pipeline.crypto.keyring import Keyring, check_master_key
from wf_pipeline.crypto.managers import LocalKeyManager, new_master_key_text
from wf_pipeline.metadata.artifact_classes import ARTIFACT_CLASSES
from wf_pipeline.metadata.canonical import digest
from wf_pipeline.records import open_record_store

KEYS = 100_000
BATCH = 1_000


def main() -> float:
    with tempfile.TemporaryDirectory(prefix="wf-bench-p7-") as folder:
        records = open_record_store(f"sqlite:///{Path(folder) / 'records.db'}")
        try:
            master = base64.b64decode(new_master_key_text())
            check_master_key(records, master, source="bench")
            keyring = Keyring(records, {"local": LocalKeyManager(master)}, default_manager="local")
            for start in range(0, KEYS, BATCH):
                ids = [digest(f"artifact {n}".encode()) for n in range(start, start + BATCH)]
                keyring.data_keys_for_put(ids, ARTIFACT_CLASSES[(start // BATCH) % len(ARTIFACT_CLASSES)])
            rotated = keyring.rotate()
            started = time.perf_counter()
            progress = keyring.rewrap()
            seconds = time.perf_counter() - started
            if progress.rewrapped != KEYS or progress.remaining != 0:
                raise SystemExit(f"P7 rewrapped {progress.rewrapped} of {KEYS}, {progress.remaining} left")
            primaries = {kek.kek_id for kek in rotated}
            counts = records.count_data_keys()
            if sum(counts.get(kek_id, 0) for kek_id in primaries) != KEYS:
                raise SystemExit("P7: not every data key is under a new primary")
            sample = digest(b"artifact 4242")
            keyring.data_key_for_get(sample)  # unwraps under the new KEK
        finally:
            records.close()
    print(
        f"P7 rewrap_s={seconds:.2f} ({KEYS} data keys, {KEYS / seconds:.0f} keys/s, {len(rotated)} KEKs rotated)",
        flush=True,
    )
    return seconds


if __name__ == "__main__":
    main()
