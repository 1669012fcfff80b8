"""Crypto-shredding as a retention mode: destroying whole KEK lineages instead of deleting objects.

A class in ``shred`` mode (`wf_pipeline.profiles.retention`) loses its expired artifacts
by losing their keys. The keyring (`wf_pipeline.crypto.keyring`) wraps the data key of
every artifact of one class put during one period by that class-and-period *lineage* of
KEKs, so destroying the lineage makes exactly those artifacts unreadable
(``CAS_KEY_DESTROYED``) while their objects and their threads' records stay.

Planning (`plan_shreds`, pure: it only reads records):

- a lineage is a candidate when its class is in ``shred`` mode in some workflow's policy
  with a finite window, its period has ended, and it ended at least the longest such
  window plus grace before the sweep's clock; a lineage whose every KEK is already
  destroyed (or retired without material) is done and not planned again;
- every data key under the lineage's live KEKs is judged by the sweep's plan: an artifact
  whose every reference expired may go; every other one (a safety rule protects it, a
  longer window through another reference, class or workflow keeps it, or no record
  refers to it) is *moved* first, to the current period's primary KEK of its class.

Applying (`apply_shreds`): per lineage, move the keys that stay, read the lineage again
(moving any key that arrived meanwhile, a few passes), then destroy its KEKs, older
generations first and the primary last. A kill after the moves leaves every artifact
readable (moved keys under the current KEK, the others still under the lineage's); the
next sweep plans the lineage again, finds nothing left to move and destroys it. A kill
between two destroys leaves the lineage partly destroyed; the next sweep destroys the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from wf_pipeline.crypto.keyring import Keyring, data_keys_of
from wf_pipeline.metadata.records import KekRecord
from wf_pipeline.profiles.retention import RetentionPolicy
from wf_pipeline.records import RecordStore
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

#: Passes `apply_shreds` makes over a lineage to move keys that arrive while it moves.
MOVE_PASSES = 5
#: What a lineage whose period holds the keyring's clock, or whose keys kept changing, reports.
DEFERRED = "deferred"
DESTROYED = "destroyed"


class Lineage(NamedTuple):
    """One KEK lineage: an artifact class and a period (start, Unix epoch ms; length, ms)."""

    artifact_class: str
    period_start_ms: int
    period_ms: int

    @property
    def period_end_ms(self) -> int:
        """The end of the period (Unix epoch ms, exclusive)."""
        return self.period_start_ms + self.period_ms

    def period_start_utc(self) -> str:
        """The period's start as an ISO 8601 UTC timestamp, for reports."""
        return datetime.fromtimestamp(self.period_start_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def lineage_of(kek: KekRecord) -> Lineage:
    """The lineage a KEK record belongs to."""
    return Lineage(kek.artifact_class, kek.period_start_ms, kek.period_ms)


def is_gone(kek: KekRecord) -> bool:
    """Whether a KEK's material is erased: destroyed, or retired (a retired KEK's ``key_ref`` is dropped)."""
    return kek.state == "destroyed" or (kek.state == "retired" and kek.key_ref is None)


@dataclass(frozen=True)
class PlannedShred:
    """One lineage a sweep destroys.

    Attributes:
        lineage: its class and period.
        kek_ids: its KEKs that still hold material, older generations first (the primary
            last), in the order `apply_shreds` destroys them.
        artifact_ids: the artifacts whose data keys it takes with it (every reference
            expired), in artifact id order.
        moves: how many data keys under it belong to artifacts that stay, to be moved to
            the current period's KEK first.
    """

    lineage: Lineage
    kek_ids: tuple[str, ...]
    artifact_ids: tuple[str, ...]
    moves: int

    @property
    def artifacts(self) -> int:
        """How many artifacts the destroy shreds."""
        return len(self.artifact_ids)

    def to_dict(self) -> dict[str, Any]:
        """``{"artifact_class", "period_start_ms", "period_start", "period_ms", "kek_ids", "artifacts", "moves"}``: ids and counts only."""
        return {
            "artifact_class": self.lineage.artifact_class,
            "period_start_ms": self.lineage.period_start_ms,
            "period_start": self.lineage.period_start_utc(),
            "period_ms": self.lineage.period_ms,
            "kek_ids": list(self.kek_ids),
            "artifacts": self.artifacts,
            "moves": self.moves,
        }


@dataclass(frozen=True)
class ShredResult:
    """What `apply_shreds` did to one planned lineage.

    Attributes:
        lineage: its class and period.
        kek_ids: the KEKs destroyed (``destroyed``), or planned (``deferred``).
        artifacts: data keys the destroyed KEKs wrapped (their artifacts now read as
            ``CAS_KEY_DESTROYED``); 0 when deferred.
        moved: data keys this call moved to the current period's KEK before the destroy.
        status: ``destroyed``, or ``deferred`` (the lineage's period holds the keyring's
            clock, or its keys kept changing: the next sweep tries again).
    """

    lineage: Lineage
    kek_ids: tuple[str, ...]
    artifacts: int
    moved: int
    status: str

    def to_dict(self) -> dict[str, Any]:
        """``{"artifact_class", "period_start_ms", "period_start", "period_ms", "kek_ids", "artifacts", "moved", "status"}``."""
        return {
            "artifact_class": self.lineage.artifact_class,
            "period_start_ms": self.lineage.period_start_ms,
            "period_start": self.lineage.period_start_utc(),
            "period_ms": self.lineage.period_ms,
            "kek_ids": list(self.kek_ids),
            "artifacts": self.artifacts,
            "moved": self.moved,
            "status": self.status,
        }


def shred_lifetimes(policies: Mapping[str, RetentionPolicy]) -> dict[str, int]:
    """Artifact class -> the longest window + grace (ms) of the policies that shred it with a finite window.

    A lineage of the class is a candidate once its period ended that long ago. A policy that
    shreds a class it keeps forever adds nothing: its artifacts are protected by their window
    and moved out of every lineage destroyed.
    """
    lifetimes: dict[str, int] = {}
    for policy in policies.values():
        classes = set(policy.windows_ms) | set(policy.modes)
        for artifact_class in classes:
            if not policy.shreds(artifact_class):
                continue
            lifetime = policy.expires_at_ms(artifact_class, 0)
            if lifetime is not None:
                lifetimes[artifact_class] = max(lifetime, lifetimes.get(artifact_class, 0))
    return lifetimes


def live_lineages(records: RecordStore) -> dict[Lineage, list[KekRecord]]:
    """Every lineage with a KEK that still holds material -> its live KEKs, older generations first, the primary last."""
    found: dict[Lineage, list[KekRecord]] = defaultdict(list)
    for kek in records.list_keks():
        if not is_gone(kek):
            found[lineage_of(kek)].append(kek)
    return {
        lineage: sorted(keks, key=lambda k: (k.state == "primary", k.generation))
        for lineage, keks in found.items()
    }


def plan_shreds(
    records: RecordStore,
    policies: Mapping[str, RetentionPolicy],
    expired: Collection[str],
    *,
    now_ms: int,
) -> list[PlannedShred]:
    """The lineages a sweep at ``now_ms`` destroys, each with the artifacts it shreds and the keys it moves first.

    Args:
        records: the keyring's records (KEKs and data keys); only read.
        policies: workflow id -> its retention policy.
        expired: the artifacts whose every reference has expired (the sweep's judgement);
            any other data key in a candidate lineage is moved before the destroy.
        now_ms: the sweep's clock, Unix epoch ms.

    Returns:
        The `PlannedShred` list in (class, period) order. Nothing is written.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    lifetimes = shred_lifetimes(policies)
    if not lifetimes:
        return []
    planned: list[PlannedShred] = []
    for lineage, keks in sorted(live_lineages(records).items()):
        lifetime = lifetimes.get(lineage.artifact_class)
        if lifetime is None or lineage.period_end_ms + lifetime > now_ms:
            continue
        going: list[str] = []
        moves = 0
        for row in data_keys_of(records, [kek.kek_id for kek in keks]):
            if row.artifact_id in expired:
                going.append(row.artifact_id)
            else:
                moves += 1
        planned.append(PlannedShred(lineage, tuple(kek.kek_id for kek in keks), tuple(going), moves))
    return planned


def apply_shreds(keyring: Keyring, shreds: Iterable[PlannedShred]) -> list[ShredResult]:
    """Carry out planned shreds: per lineage, move the keys that stay, then destroy every KEK of it.

    Args:
        keyring: the keyring (moves and destroys go through its key managers).
        shreds: the plan's lineages (`plan_shreds`).

    Returns:
        One `ShredResult` per planned lineage, in plan order. A lineage whose period holds
        the keyring's clock (new keys would still go to it) is ``deferred`` untouched; so is
        one where keys kept arriving through `MOVE_PASSES` passes (moved ones stay moved).

    Raises:
        KeysError: ``KEYS_MANAGER_ERROR``, ``KEYS_MANAGER_UNKNOWN`` (the lineage in hand is
            left readable, or partly destroyed: the next sweep finishes it).
        CasError: ``CAS_DECRYPT_FAILED`` (a wrapped key that does not authenticate: nothing
            of that page is moved, nothing destroyed).
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    return [_shred_one(keyring, shred) for shred in shreds]


def _shred_one(keyring: Keyring, shred: PlannedShred) -> ShredResult:
    lineage = shred.lineage
    now = keyring.clock()
    if lineage.period_end_ms > now:
        # The current period's lineage receives new keys: never destroyed under a writer.
        return ShredResult(lineage, shred.kek_ids, 0, 0, DEFERRED)
    going = set(shred.artifact_ids)
    moved = 0
    for _ in range(MOVE_PASSES):
        live = _live_kek_ids(keyring.records, lineage)
        staying = [row for row in data_keys_of(keyring.records, live) if row.artifact_id not in going]
        if not staying:
            break
        moved += keyring.move_keys(staying)
    else:
        log.warning(
            "retention deferred shredding lineage %s %s: its keys kept changing",
            lineage.artifact_class,
            lineage.period_start_utc(),
        )
        return ShredResult(lineage, shred.kek_ids, 0, moved, DEFERRED)
    live = _live_kek_ids(keyring.records, lineage)
    counts = keyring.records.count_data_keys()
    shredded = sum(counts.get(kek_id, 0) for kek_id in live)
    for kek_id in live:  # older generations first, the primary last: see the module docstring
        keyring.destroy(kek_id)
    log.info(
        "retention shredded lineage %s %s: %d KEKs destroyed, %d data keys, %d moved first",
        lineage.artifact_class,
        lineage.period_start_utc(),
        len(live),
        shredded,
        moved,
    )
    destroyed = tuple(dict.fromkeys((*shred.kek_ids, *live)))
    return ShredResult(lineage, destroyed, shredded, moved, DESTROYED)


def _live_kek_ids(records: RecordStore, lineage: Lineage) -> list[str]:
    # Read again each pass: a rotation may have added a generation since the plan.
    return [kek.kek_id for kek in live_lineages(records).get(lineage, [])]
