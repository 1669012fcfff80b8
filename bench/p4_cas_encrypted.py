"""P4: encrypted CAS put plus verified get of 1 MiB artifacts, against raw sequential writes and reads.

Both sides handle the same 64 distinct 1 MiB payloads (random bytes) in one run, on the
same disk, in a fresh temporary folder each:

- *raw*: for each payload, write a file (write, fsync, like the store's durability) and
  read it back; nothing else;
- *CAS*: `EncryptedArtifactStore.put` of each payload with encryption required (sha256 of
  the plaintext, a fresh data key wrapped by the local keyring's KEK and recorded in
  SQLite, AES-256-GCM sealing, staged write, fsync, rename, fsync of the folder), then
  `get` of each (read, unwrap the data key, open and authenticate the envelope, verify
  the sha256 against the id).

Prints ``P4 ratio=X`` with X = raw seconds / CAS seconds (the CAS's share of raw
throughput; target X >= 0.5), the median of three raw/CAS pairs run back to back, and
each side's MiB/s. For scale it also gives ``plain_ratio``: the same put and verified get
through the plain (unencrypted) store, in the same pairs.
"""

from __future__ import annotations

import base64
import os
import statistics
import tempfile
import time
from pathlib import Path

from wf_pipeline.cas import open_cas
from wf_pipeline.crypto.keyring import Keyring, check_master_key
from wf_pipeline.crypto.managers import LocalKeyManager, new_master_key_text
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.profiles.encryption import EncryptionPolicy
from wf_pipeline.records import open_record_store

MIB = 1 << 20
ARTIFACTS = 64
PAIRS = 3


def raw_side(root: Path, payloads: list[bytes]) -> float:
    """Seconds to write (with fsync) and read back every payload as plain files."""
    root.mkdir(parents=True)
    started = time.perf_counter()
    for number, data in enumerate(payloads):
        path = root / f"{number:04d}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    for number, data in enumerate(payloads):
        if (root / f"{number:04d}").read_bytes() != data:
            raise SystemExit("P4 raw read returned other bytes")
    return time.perf_counter() - started


def cas_side(root: Path, payloads: list[bytes]) -> float:
    """Seconds to put (encrypted) and get (decrypted, verified) every payload through the store."""
    root.mkdir(parents=True)
    records = open_record_store(f"sqlite:///{root / 'records.db'}")
    master = base64.b64decode(new_master_key_text())
    check_master_key(records, master, source="bench")
    keyring = Keyring(records, {"local": LocalKeyManager(master)}, default_manager="local")
    store = EncryptedArtifactStore(
        open_cas((root / "cas").as_uri()), EncryptionPolicy(default="required", source="bench"), keyring
    )
    keyring.primary_kek("context_payload")  # the KEK exists before timing, as in a running home
    try:
        started = time.perf_counter()
        refs = [store.put(data, artifact_class="context_payload") for data in payloads]
        for ref, data in zip(refs, payloads):
            if store.get(ref.artifact_id, size=ref.size, artifact_class="context_payload") != data:
                raise SystemExit("P4 CAS get returned other bytes")
        seconds = time.perf_counter() - started
        stored = store.inner.read_object(refs[0].artifact_id)
        if payloads[0][:64] in stored:
            raise SystemExit("P4 found plaintext in a stored object")
        return seconds
    finally:
        store.close()
        records.close()


def plain_side(root: Path, payloads: list[bytes]) -> float:
    """Seconds to put and get (verified) every payload through the plain store (no encryption)."""
    store = open_cas((root / "cas").as_uri())
    started = time.perf_counter()
    refs = [store.put(data) for data in payloads]
    for ref, data in zip(refs, payloads):
        if store.get(ref.artifact_id, size=ref.size) != data:
            raise SystemExit("P4 plain get returned other bytes")
    return time.perf_counter() - started


def main() -> float:
    payloads = [os.urandom(MIB) for _ in range(ARTIFACTS)]
    ratios, plain_ratios, raw_rates, cas_rates = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="wf-bench-p4-") as folder:
        for pair in range(PAIRS):
            raw = raw_side(Path(folder) / f"raw{pair}", payloads)
            cas = cas_side(Path(folder) / f"cas{pair}", payloads)
            plain = plain_side(Path(folder) / f"plain{pair}", payloads)
            ratios.append(raw / cas)
            plain_ratios.append(raw / plain)
            raw_rates.append(2 * ARTIFACTS / raw)
            cas_rates.append(2 * ARTIFACTS / cas)
    ratio = statistics.median(ratios)
    print(
        f"P4 ratio={ratio:.2f} plain_ratio={statistics.median(plain_ratios):.2f} "
        f"(median of {PAIRS}: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"raw {statistics.median(raw_rates):.0f} MiB/s, encrypted CAS {statistics.median(cas_rates):.0f} MiB/s, "
        f"{ARTIFACTS} x 1 MiB written and read)",
        flush=True,
    )
    return ratio


if __name__ == "__main__":
    main()
