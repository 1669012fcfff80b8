"""The keyring: KEK lineages, the data key of every encrypted artifact, and the key lifecycle.

KEK records and wrapped data keys live in the record store (`KekRecord`, `DataKeyRecord`);
key material stays with the KEK's key manager (`wf_pipeline.crypto.managers`).

KEK granularity, chosen so that crypto-shredding is possible: one *lineage* per artifact
class per period (``WF_KEK_PERIOD``, default one day; periods count from the Unix epoch). The data
key of an artifact put during a period is wrapped by the primary KEK of its class's
lineage for that period. Every artifact of one class and one period thus depends on that
lineage only, and destroying the lineage's KEKs shreds exactly those artifacts. Putting an
artifact again in a later period moves its data key to the current lineage (as a put
again renews an object's age for retention), so a live artifact never depends on an old
period's KEK.

Lifecycle: `rotate` adds the next generation of a lineage as its primary and makes the
old one decrypt-only; `rewrap` moves data keys from decrypt-only KEKs to their lineage's
primary (compare-and-set per row, so it resumes after a kill and never undoes a
concurrent move); `retire` drops a KEK no data key depends on; `destroy` erases a KEK's
material for good.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from wf_pipeline.crypto.envelope import wrap_context
from wf_pipeline.crypto.managers import KeyManager, master_key_check, verify_master_key
from wf_pipeline.errors import (
    CAS_DECRYPT_FAILED,
    CAS_KEY_DESTROYED,
    CAS_NOT_ENCRYPTED,
    KEYS_KEK_IN_USE,
    KEYS_KEK_NOT_FOUND,
    KEYS_KEK_STATE,
    KEYS_MANAGER_UNKNOWN,
    CasError,
    KeysError,
)
from wf_pipeline.metadata.records import DataKeyRecord, KekRecord, now_ms
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

#: The default lineage period: one day, in ms.
DEFAULT_PERIOD_MS = 86_400_000
#: The shortest lineage period, in ms: one KEK per class per minute is already many.
MIN_PERIOD_MS = 60_000
#: The keyring-meta entry holding the master-key check (`wf_pipeline.crypto.managers.master_key_check`).
MASTER_CHECK = "master_key_check"
# How long (ms) a process trusts its cached view of a lineage's primary KEK; a rotation by
# another process is seen within this time, and `rewrap` passes again until none is left.
PRIMARY_CACHE_MS = 2_000
# How long (ms) a process trusts a cached KEK record of a live KEK (primary, decrypt-only).
KEK_CACHE_MS = 2_000
# Rows per rewrap transaction.
REWRAP_PAGE = 1_000


def kek_id_for(artifact_class: str, period_start_ms: int, period_ms: int, generation: int) -> str:
    """The id of a lineage's KEK: ``kek-<class>-<start>[-<period>]-g<generation>``.

    The start is ``YYYYMMDD`` for whole-day periods, else ``YYYYMMDDTHHMMSS`` (UTC). The
    period (``3d``, ``12h``, ``30m``) is named unless it is the default day, so lineages of
    two period settings never share an id.
    """
    start = datetime.fromtimestamp(period_start_ms / 1000, tz=UTC)
    stamp = (
        start.strftime("%Y%m%d") if period_ms % DEFAULT_PERIOD_MS == 0 else start.strftime("%Y%m%dT%H%M%S")
    )
    period = "" if period_ms == DEFAULT_PERIOD_MS else f"-{period_label(period_ms)}"
    return f"kek-{artifact_class}-{stamp}{period}-g{generation}"


def period_label(period_ms: int) -> str:
    """A period in its largest whole unit: ``3d``, ``12h``, ``30m``, else seconds (``90s``)."""
    for unit, size in (("d", DEFAULT_PERIOD_MS), ("h", 3_600_000), ("m", 60_000)):
        if period_ms % size == 0:
            return f"{period_ms // size}{unit}"
    return f"{period_ms // 1000}s"


@dataclass(frozen=True)
class RewrapProgress:
    """What a rewrap did: data keys moved, rows another writer moved first, and KEKs drained.

    Attributes:
        rewrapped: data keys now wrapped by their lineage's primary.
        skipped: rows moved by someone else between read and write (left alone).
        remaining: data keys still under decrypt-only KEKs afterwards (0 when done).
        elapsed_ms: wall time of the rewrap in ms.
    """

    rewrapped: int
    skipped: int
    remaining: int
    elapsed_ms: int


class Keyring:
    """KEK lineages and data keys over a record store and the key managers that hold the material.

    Args:
        records: where KEK records and wrapped data keys live.
        managers: key manager name -> manager; a KEK record names its manager.
        default_manager: the manager new KEKs are made with.
        period_ms: the lineage period in ms (> 0).
        clock: the time in ms (default: the wall clock).
        on_event: called as ``on_event(event, kek, data_keys)`` after this keyring makes a
            KEK (``create``), moves keys to a lineage (``rewrap``, by `move_keys`, with the
            keys moved) or destroys one (``destroy``, with the data keys it shredded),
            e.g. to record telemetry; the keyring itself records nothing. Exceptions it
            raises propagate.

    Raises ``KEYS_MANAGER_UNKNOWN`` when ``default_manager`` is not in ``managers``.
    """

    def __init__(
        self,
        records: RecordStore,
        managers: Mapping[str, KeyManager],
        *,
        default_manager: str,
        period_ms: int = DEFAULT_PERIOD_MS,
        clock: Callable[[], int] = now_ms,
        on_event: Callable[[str, KekRecord, int], None] | None = None,
    ) -> None:
        if default_manager not in managers:
            raise KeysError(
                KEYS_MANAGER_UNKNOWN, f"no key manager {default_manager!r}", manager=default_manager
            )
        if period_ms <= 0:
            raise ValueError("period_ms must be positive")
        self.records = records
        self.managers = dict(managers)
        self.default_manager = default_manager
        self.period_ms = period_ms
        self.clock = clock
        self.on_event = on_event
        self._lock = threading.Lock()
        self._keks: dict[str, tuple[KekRecord, int]] = {}
        self._primary: dict[tuple[str, int], tuple[KekRecord, int]] = {}

    def __repr__(self) -> str:
        return f"Keyring(default_manager={self.default_manager!r}, period_ms={self.period_ms})"

    # -- periods and KEKs -------------------------------------------------------------

    def period_start(self, at_ms: int) -> int:
        """The start (Unix epoch ms) of the period holding ``at_ms``, aligned to the epoch (UTC)."""
        return at_ms - at_ms % self.period_ms

    def kek(self, kek_id: str) -> KekRecord | None:
        """The KEK record ``kek_id``, or None.

        Destroyed and retired KEKs never change again and are cached for good; others for
        `KEK_CACHE_MS`, so a destroy or retire by another process is seen within that time
        (this keyring's own lifecycle calls update the cache at once).
        """
        now = self.clock()
        with self._lock:
            cached = self._keks.get(kek_id)
        if cached is not None and (
            cached[0].state in ("destroyed", "retired") or now - cached[1] <= KEK_CACHE_MS
        ):
            return cached[0]
        record = self.records.get_kek(kek_id)
        if record is not None:
            with self._lock:
                self._keks[kek_id] = (record, now)
        return record

    def primary_kek(self, artifact_class: str, at_ms: int | None = None) -> KekRecord:
        """The primary KEK of ``artifact_class``'s lineage for the period holding ``at_ms`` (default now).

        Made on first use (generation 1, or the next generation when every KEK of the
        lineage was destroyed or retired); concurrent makers agree on one (first writer
        wins). Raises ``KEYS_MANAGER_ERROR`` from the manager.
        """
        at = self.clock() if at_ms is None else at_ms
        start = self.period_start(at)
        key = (artifact_class, start)
        with self._lock:
            cached = self._primary.get(key)
        if cached is not None and self.clock() - cached[1] <= PRIMARY_CACHE_MS:
            return cached[0]
        lineage = self.lineage(artifact_class, start)
        primary = next((kek for kek in reversed(lineage) if kek.state == "primary"), None)
        if primary is None:
            generation = max((kek.generation for kek in lineage), default=0) + 1
            primary = self._make_kek(artifact_class, start, generation)
        with self._lock:
            self._primary[key] = (primary, self.clock())
        return primary

    def lineage(self, artifact_class: str, period_start_ms: int) -> list[KekRecord]:
        """Every KEK of one class and period, by generation."""
        return [
            kek
            for kek in self.records.list_keks(artifact_class)
            if kek.period_start_ms == period_start_ms and kek.period_ms == self.period_ms
        ]

    def create_kek(self, artifact_class: str, at_ms: int | None = None) -> KekRecord:
        """The primary KEK of ``artifact_class`` for the period holding ``at_ms``, made now if missing."""
        return self.primary_kek(artifact_class, at_ms)

    def _make_kek(self, artifact_class: str, period_start_ms: int, generation: int) -> KekRecord:
        kek_id = kek_id_for(artifact_class, period_start_ms, self.period_ms, generation)
        manager = self.managers[self.default_manager]
        record = KekRecord(
            kek_id=kek_id,
            manager=manager.name,
            key_ref=manager.create_kek(kek_id),
            artifact_class=artifact_class,
            period_start_ms=period_start_ms,
            period_ms=self.period_ms,
            generation=generation,
            state="primary",
            created_at_ms=self.clock(),
        )
        stored = self.records.add_kek(record)
        if stored.key_ref == record.key_ref and self.on_event is not None:
            self.on_event("create", stored, 0)  # ours won: another maker's KEK is its event
        return stored

    def _manager(self, kek: KekRecord) -> KeyManager:
        manager = self.managers.get(kek.manager)
        if manager is None:
            raise KeysError(
                KEYS_MANAGER_UNKNOWN,
                f"KEK {kek.kek_id} is held by key manager {kek.manager!r}, which this process has not configured",
                kek_id=kek.kek_id,
                manager=kek.manager,
            )
        return manager

    # -- data keys --------------------------------------------------------------------

    def data_keys_for_put(
        self, artifact_ids: Sequence[str], artifact_class: str
    ) -> dict[str, tuple[bytes, DataKeyRecord]]:
        """The data key to seal each artifact with: ``artifact_id -> (data key, its record)``.

        An artifact without a data key gets a fresh one under the current primary KEK of its
        class (first writer wins: concurrent writers of one artifact all get the stored key).
        One with a key keeps it, bound to the class it was first put with; if its KEK is of
        an earlier period, or was destroyed (the artifact was shredded and is put again), the
        key moves to or is replaced under the current period's primary, so a live artifact
        never depends on an old period. Raises ``CAS_DECRYPT_FAILED``, ``KEYS_MANAGER_ERROR``,
        ``KEYS_MANAGER_UNKNOWN``.
        """
        at = self.clock()
        wanted = list(dict.fromkeys(artifact_ids))
        stored = self.records.data_keys_for(wanted)
        made: dict[str, tuple[bytes, DataKeyRecord]] = {}
        missing = [artifact_id for artifact_id in wanted if artifact_id not in stored]
        if missing:
            primary = self.primary_kek(artifact_class, at)
            manager = self._manager(primary)
            for artifact_id in missing:
                data_key, wrapped = manager.generate_data_key(
                    primary, wrap_context(artifact_id, artifact_class, primary.kek_id)
                )
                row = DataKeyRecord(
                    artifact_id=artifact_id,
                    artifact_class=artifact_class,
                    kek_id=primary.kek_id,
                    wrapped_key=wrapped,
                    created_at_ms=at,
                )
                made[artifact_id] = (data_key, row)
            stored.update(self.records.claim_data_keys(row for _, row in made.values()))
        keys: dict[str, tuple[bytes, DataKeyRecord]] = {}
        renew: list[tuple[DataKeyRecord, KekRecord, bool]] = []
        current_period = self.period_start(at)
        for artifact_id in wanted:
            row = stored[artifact_id]
            ours = made.get(artifact_id)
            if ours is not None and ours[1].wrapped_key == row.wrapped_key:
                keys[artifact_id] = ours  # this process's key won the claim
                continue
            kek = self.kek(row.kek_id)
            if kek is None:
                raise _not_ours(row)
            if (
                kek.state in ("destroyed", "retired")
                or kek.period_start_ms != current_period
                or kek.period_ms != self.period_ms
            ):
                renew.append((row, kek, False))
                continue
            try:
                keys[artifact_id] = (self._unwrap(row, kek), row)
            except CasError as exc:
                if exc.code != CAS_DECRYPT_FAILED:
                    raise
                # The stored wrapped key is damaged; the plaintext is in hand, so the
                # artifact is sealed again under a new data key rather than blocked for good.
                log.warning("%s: the data key of %s is replaced on put", CAS_DECRYPT_FAILED, artifact_id)
                renew.append((row, kek, True))
        if renew:
            keys.update(self._renew(renew, at))
        return keys

    def _renew(
        self, rows: Sequence[tuple[DataKeyRecord, KekRecord, bool]], at_ms: int
    ) -> dict[str, tuple[bytes, DataKeyRecord]]:
        # Move each key to the current period's primary of its class; a key whose KEK is gone
        # (or that no longer unwraps: ``replace``) cannot be moved, so the artifact (being put
        # again) gets a new data key instead.
        keys: dict[str, tuple[bytes, DataKeyRecord]] = {}
        moved: list[DataKeyRecord] = []
        expected: dict[str, str] = {}
        for row, kek, replace in rows:
            target = self.primary_kek(row.artifact_class, at_ms)
            manager = self._manager(target)
            context = wrap_context(row.artifact_id, row.artifact_class, target.kek_id)
            if replace or kek.state in ("destroyed", "retired") or kek.key_ref is None:
                data_key, wrapped = manager.generate_data_key(target, context)
            else:
                data_key = self._unwrap(row, kek)
                wrapped = self._rewrapped(row, kek, target)
            new = row.model_copy(
                update={"kek_id": target.kek_id, "wrapped_key": wrapped, "rewrapped_at_ms": at_ms}
            )
            moved.append(new)
            expected[row.artifact_id] = row.kek_id
            keys[row.artifact_id] = (data_key, new)
        self.records.rewrap_data_keys(moved, expected_kek_ids=expected)
        # A concurrent writer may have moved a row first: read back and use what is stored.
        current = self.records.data_keys_for(list(keys))
        for artifact_id, (_, new) in list(keys.items()):
            row = current.get(artifact_id)
            if row is not None and row.wrapped_key != new.wrapped_key:
                kek = self.kek(row.kek_id)
                if kek is None:
                    raise _not_ours(row)
                keys[artifact_id] = (self._unwrap(row, kek), row)
        return keys

    def data_key_for_get(self, artifact_id: str) -> tuple[bytes, DataKeyRecord]:
        """The data key of an encrypted artifact, unwrapped, and its record.

        Raises ``CAS_NOT_ENCRYPTED`` when this keyring holds no data key for the artifact or
        does not know its KEK (an object sealed under someone else's keys),
        ``CAS_KEY_DESTROYED`` when its KEK was destroyed or retired, ``CAS_DECRYPT_FAILED``
        when the wrapped key does not authenticate (moved to another artifact, class or
        KEK), ``KEYS_MANAGER_ERROR``, ``KEYS_MANAGER_UNKNOWN``.
        """
        row = self.records.data_keys_for([artifact_id]).get(artifact_id)
        if row is None:
            raise CasError(
                CAS_NOT_ENCRYPTED,
                f"{artifact_id} is sealed, but this keyring holds no data key for it",
                artifact_id=artifact_id,
            )
        kek = self.kek(row.kek_id)
        if kek is None:
            raise _not_ours(row)
        return self._unwrap(row, kek), row

    def data_key_record(self, artifact_id: str) -> DataKeyRecord | None:
        """The data key record of ``artifact_id``, or None when it has none."""
        return self.records.data_keys_for([artifact_id]).get(artifact_id)

    def _unwrap(self, row: DataKeyRecord, kek: KekRecord) -> bytes:
        if kek.state == "destroyed" or (kek.state == "retired" and kek.key_ref is None):
            raise CasError(
                CAS_KEY_DESTROYED,
                f"{row.artifact_id} ({row.artifact_class}) was shredded: its KEK {kek.kek_id} was "
                f"{kek.state} at {kek.destroyed_at_ms or kek.retired_at_ms} ms",
                artifact_id=row.artifact_id,
                artifact_class=row.artifact_class,
                kek_id=kek.kek_id,
            )
        return self._manager(kek).unwrap(
            kek, row.wrapped_key, wrap_context(row.artifact_id, row.artifact_class, kek.kek_id)
        )

    def _rewrapped(self, row: DataKeyRecord, source: KekRecord, target: KekRecord) -> bytes:
        source_context = wrap_context(row.artifact_id, row.artifact_class, source.kek_id)
        target_context = wrap_context(row.artifact_id, row.artifact_class, target.kek_id)
        if source.manager == target.manager:
            return self._manager(source).rewrap(
                source, target, row.wrapped_key, source_context, target_context
            )
        # Across managers (e.g. local -> KMS after WF_KEY_MANAGER changed): unwrap with the
        # source's manager, wrap with the target's; the payload is untouched either way.
        data_key = self._manager(source).unwrap(source, row.wrapped_key, source_context)
        return self._manager(target).wrap(target, data_key, target_context)

    # -- lifecycle --------------------------------------------------------------------

    def rotate(self, artifact_classes: Iterable[str] | None = None) -> list[KekRecord]:
        """Add the next generation as primary to every lineage that has a primary (of ``artifact_classes``, default all).

        The old primaries become decrypt-only: they still unwrap their data keys until
        `rewrap` moves them. Returns the new primaries. Raises ``KEYS_MANAGER_ERROR``.
        """
        wanted = None if artifact_classes is None else set(artifact_classes)
        made: list[KekRecord] = []
        at = self.clock()
        for kek in self.records.list_keks():
            if kek.state != "primary" or (wanted is not None and kek.artifact_class not in wanted):
                continue
            if self.records.update_kek(
                kek.kek_id, expected_state="primary", state="decrypt_only", rotated_at_ms=at
            ):
                made.append(self._make_kek(kek.artifact_class, kek.period_start_ms, kek.generation + 1))
        with self._lock:
            self._primary.clear()
        return made

    def rewrap(
        self, *, page: int = REWRAP_PAGE, on_page: Callable[[int], None] | None = None
    ) -> RewrapProgress:
        """Move every data key under a decrypt-only KEK to its lineage's primary; payloads are not touched.

        Pages of ``page`` rows, each one compare-and-set transaction: a kill loses at most
        the page in flight, and running it again finishes the job. Passes again until no
        key is left under a decrypt-only KEK (writers that still held the old primary in
        their cache are caught). ``on_page(rows)`` is called after each page. Returns a
        `RewrapProgress`. Raises ``CAS_DECRYPT_FAILED``, ``KEYS_MANAGER_ERROR``.
        """
        started = time.monotonic()
        rewrapped = skipped = 0
        for _ in range(10):
            moved, lost = self._rewrap_pass(page, on_page)
            rewrapped += moved
            skipped += lost
            if moved == 0 and lost == 0:
                break
        remaining = self.keys_under_decrypt_only()
        return RewrapProgress(rewrapped, skipped, remaining, int((time.monotonic() - started) * 1000))

    def move_keys(self, rows: Sequence[DataKeyRecord], *, at_ms: int | None = None) -> int:
        """Move data keys to the primary KEK of their class for the period holding ``at_ms`` (default now), across lineages.

        Used before a lineage is destroyed (crypto-shredding, `wf_pipeline.retention.sweep`):
        the artifacts that must stay readable leave it first. Payloads are not touched: each
        data key is unwrapped by its KEK and wrapped again by the target under the target's
        wrap context. One compare-and-set transaction per `REWRAP_PAGE` rows; a row another
        writer moved first (a put renewing it, a concurrent move) is left as it is.

        Args:
            rows: data key records, as read from the record store.
            at_ms: picks the target period (Unix epoch ms); default the keyring's clock.

        Returns:
            How many rows this call moved.

        Raises ``KEYS_KEK_STATE`` (a row's KEK is destroyed or retired: its key cannot be
        moved), ``KEYS_KEK_NOT_FOUND``, ``CAS_DECRYPT_FAILED``, ``KEYS_MANAGER_ERROR``,
        ``KEYS_MANAGER_UNKNOWN``.
        """
        at = self.clock() if at_ms is None else at_ms
        moved = 0
        for start in range(0, len(rows), REWRAP_PAGE):
            updates: list[DataKeyRecord] = []
            expected: dict[str, str] = {}
            for row in rows[start : start + REWRAP_PAGE]:
                source = self._require(row.kek_id)
                if source.state in ("destroyed", "retired") or source.key_ref is None:
                    raise KeysError(
                        KEYS_KEK_STATE,
                        f"the data key of {row.artifact_id} is under KEK {source.kek_id}, which is "
                        f"{source.state}; it cannot be moved",
                        kek_id=source.kek_id,
                        artifact_id=row.artifact_id,
                    )
                target = self.primary_kek(row.artifact_class, at)
                if target.kek_id == source.kek_id:
                    continue
                updates.append(
                    row.model_copy(
                        update={
                            "kek_id": target.kek_id,
                            "wrapped_key": self._rewrapped(row, source, target),
                            "rewrapped_at_ms": at,
                        }
                    )
                )
                expected[row.artifact_id] = row.kek_id
            if updates:
                changed = self.records.rewrap_data_keys(updates, expected_kek_ids=expected)
                moved += changed
                if changed and self.on_event is not None:
                    # Counted per target lineage, as a rewrap is: how many keys now depend on it.
                    for kek_id, count in Counter(row.kek_id for row in updates).items():
                        target_kek = self.kek(kek_id)
                        if target_kek is not None:
                            self.on_event("rewrap", target_kek, count)
        return moved

    def keys_under_decrypt_only(self) -> int:
        """How many data keys are still wrapped by decrypt-only KEKs."""
        counts = self.records.count_data_keys()
        return sum(
            counts.get(kek.kek_id, 0) for kek in self.records.list_keks() if kek.state == "decrypt_only"
        )

    def _rewrap_pass(self, page: int, on_page: Callable[[int], None] | None) -> tuple[int, int]:
        sources = {kek.kek_id: kek for kek in self.records.list_keks() if kek.state == "decrypt_only"}
        if not sources:
            return 0, 0
        moved = lost = 0
        after: str | None = None
        while True:
            rows = self.records.data_keys_under(sources, after_artifact_id=after, limit=page)
            if not rows:
                break
            after = rows[-1].artifact_id
            updates: list[DataKeyRecord] = []
            expected: dict[str, str] = {}
            at = self.clock()
            for row in rows:
                source = sources[row.kek_id]
                target = self.primary_kek(row.artifact_class, source.period_start_ms)
                if target.period_ms != source.period_ms:
                    target = self.primary_kek(row.artifact_class, at)
                wrapped = self._rewrapped(row, source, target)
                updates.append(
                    row.model_copy(
                        update={"kek_id": target.kek_id, "wrapped_key": wrapped, "rewrapped_at_ms": at}
                    )
                )
                expected[row.artifact_id] = row.kek_id
            changed = self.records.rewrap_data_keys(updates, expected_kek_ids=expected)
            moved += changed
            lost += len(updates) - changed
            if on_page is not None:
                on_page(changed)
        return moved, lost

    def retire(self, kek_id: str) -> KekRecord:
        """Retire a decrypt-only KEK no data key depends on; its material is erased.

        Raises ``KEYS_KEK_NOT_FOUND``, ``KEYS_KEK_STATE`` (not decrypt-only: a primary is
        rotated first), ``KEYS_KEK_IN_USE`` (with the number of data keys still under it).
        """
        kek = self._require(kek_id)
        if kek.state != "decrypt_only":
            raise KeysError(
                KEYS_KEK_STATE,
                f"KEK {kek_id} is {kek.state}; only a decrypt-only KEK can be retired",
                kek_id=kek_id,
            )
        in_use = self.records.count_data_keys().get(kek_id, 0)
        if in_use:
            raise KeysError(
                KEYS_KEK_IN_USE,
                f"KEK {kek_id} still wraps {in_use} data keys; run rewrap first",
                kek_id=kek_id,
                data_keys=in_use,
            )
        updated = self.records.update_kek(
            kek_id, expected_state="decrypt_only", state="retired", key_ref=None, retired_at_ms=self.clock()
        )
        if updated is None:
            raise KeysError(KEYS_KEK_STATE, f"KEK {kek_id} changed state meanwhile", kek_id=kek_id)
        self._manager(kek).destroy_kek(kek)
        with self._lock:
            self._keks[kek_id] = (updated, self.clock())
        return updated

    def destroy(self, kek_id: str) -> KekRecord:
        """Erase a KEK for good (crypto-shredding): every artifact whose data key it wraps becomes unreadable.

        Idempotent for a destroyed KEK. Raises ``KEYS_KEK_NOT_FOUND``, ``KEYS_MANAGER_ERROR``.
        """
        kek = self._require(kek_id)
        if kek.state == "destroyed":
            return kek
        shredded = self.records.count_data_keys().get(kek_id, 0) if self.on_event is not None else 0
        updated = self.records.update_kek(
            kek_id, expected_state=kek.state, state="destroyed", key_ref=None, destroyed_at_ms=self.clock()
        )
        if updated is None:
            return self.destroy(kek_id)  # changed meanwhile: judge the new state
        self._manager(kek).destroy_kek(kek)
        if self.on_event is not None:
            self.on_event("destroy", updated, shredded)
        with self._lock:
            self._keks[kek_id] = (updated, self.clock())
            self._primary.clear()
        return updated

    def shredded_keys(self, *, page: int = REWRAP_PAGE) -> Iterator[DataKeyRecord]:
        """Every data key wrapped by a destroyed KEK (its artifact is unreadable), by artifact id (`shredded_keys`)."""
        return shredded_keys(self.records, page=page)

    def _require(self, kek_id: str) -> KekRecord:
        kek = self.records.get_kek(kek_id)
        if kek is None:
            raise KeysError(KEYS_KEK_NOT_FOUND, f"no KEK {kek_id!r} in the keyring", kek_id=kek_id)
        return kek


def keys_under_decrypt_only(records: RecordStore) -> int:
    """How many data keys are still wrapped by decrypt-only KEKs; reads records only (no key material)."""
    counts = records.count_data_keys()
    return sum(counts.get(kek.kek_id, 0) for kek in records.list_keks() if kek.state == "decrypt_only")


def shredded_keys(records: RecordStore, *, page: int = REWRAP_PAGE) -> Iterator[DataKeyRecord]:
    """Every data key wrapped by a destroyed KEK (its artifact is unreadable), by artifact id.

    Reads records only, so reports need no master key. Pages of ``page`` rows.
    """
    destroyed = [kek.kek_id for kek in records.list_keks() if kek.state == "destroyed"]
    return data_keys_of(records, destroyed, page=page)


def data_keys_of(
    records: RecordStore, kek_ids: Collection[str], *, page: int = REWRAP_PAGE
) -> Iterator[DataKeyRecord]:
    """Every data key wrapped by one of ``kek_ids``, by artifact id, ``page`` rows a query (keyset paging)."""
    if not kek_ids:
        return
    after: str | None = None
    while True:
        rows = records.data_keys_under(kek_ids, after_artifact_id=after, limit=page)
        if not rows:
            return
        yield from rows
        after = rows[-1].artifact_id


def check_master_key(records: RecordStore, master_key: bytes, *, source: str) -> None:
    """Check ``master_key`` against the keyring's stored check value, storing one for a new keyring.

    Call before anything is read or written with the key. Raises ``KEYS_MASTER_KEY_INVALID``
    (not the key the keyring was made with), ``RECORD_UNAVAILABLE``.
    """
    stored = records.keyring_meta(MASTER_CHECK)
    if stored is None:
        stored = records.claim_keyring_meta(MASTER_CHECK, master_key_check(master_key))
    verify_master_key(master_key, stored, source=source)


def _not_ours(row: DataKeyRecord) -> CasError:
    return CasError(
        CAS_NOT_ENCRYPTED,
        f"{row.artifact_id} is sealed under KEK {row.kek_id}, which this keyring does not hold",
        artifact_id=row.artifact_id,
        kek_id=row.kek_id,
    )
