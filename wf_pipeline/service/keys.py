"""Key lifecycle use cases: list, create, rotate, rewrap, retire, destroy KEKs, and the shredding report.

Called by ``wf keys ...`` and by the Dagster ``wf_keys_rewrap`` job. Each opens the record
store and the keyring from ``settings`` (`wf_pipeline.crypto.open.open_keyring`, a master
key required), does one thing, and returns JSON-ready values: ids, states, counts and
times (Unix epoch ms; ``elapsed_ms`` in ms), never key material, data keys or wrapped keys.

Every lifecycle event (create, rotate, rewrap, retire, destroy) is recorded as a
``key_events`` telemetry row (`wf_pipeline.telemetry.schema.KEY_EVENT_COLUMNS`), a refused
or failed one with its code. The rows are emitted here, not by the keyring, which stays
free of telemetry.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wf_pipeline.crypto.keyring import Keyring, keys_under_decrypt_only, shredded_keys
from wf_pipeline.crypto.open import open_keyring
from wf_pipeline.crypto.store import UNCLASSIFIED
from wf_pipeline.errors import (
    KEYS_CLASS_UNKNOWN,
    KEYS_CONFIRMATION_REQUIRED,
    KEYS_KEK_NOT_FOUND,
    KeysError,
    WfError,
)
from wf_pipeline.metadata.records import KekRecord
from wf_pipeline.profiles.retention import known_artifact_classes
from wf_pipeline.records import open_settings_record_store
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.records.registry import open_record_store
from wf_pipeline.retention.archive import RecordArchive
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import Recorder, open_recorder
from wf_pipeline.telemetry.query import archive_location
from wf_pipeline.telemetry.recorder import record_kek_event

#: Progress callback of `rewrap_keys`: (data keys moved so far, data keys to move at the start).
RewrapProgressCallback = Callable[[int, int], None]

# ``CLASS:YYYYMMDD``: the class is everything before the last colon.
_LINEAGE = re.compile(r"^(?P<cls>.+):(?P<day>\d{8})$")


# --- opening ---------------------------------------------------------------------------


@contextmanager
def _keyring(settings: Settings) -> Iterator[tuple[RecordStore, Keyring]]:
    # Like every service: the record store of the settings, closed afterwards. The keyring
    # is required: every key command needs the master key (or the configured KMS).
    settings.ensure_dirs()
    records = open_record_store(settings.records_url, schema=settings.records_schema)
    try:
        keyring = open_keyring(settings, records, required=True)
        assert keyring is not None  # required=True raises instead of returning None
        yield records, keyring
    finally:
        records.close()


@contextmanager
def _events(settings: Settings) -> Iterator[Recorder]:
    # Telemetry observes the lifecycle; a telemetry failure never fails a key command.
    recorder = open_recorder(settings)
    try:
        yield recorder
    finally:
        recorder.flush_safely()


def _event(
    recorder: Recorder,
    event: str,
    kek: KekRecord | None = None,
    *,
    data_keys: int | None = None,
    elapsed_ms: int | None = None,
    error: WfError | None = None,
) -> None:
    record_kek_event(
        recorder,
        event,
        kek,
        data_keys=data_keys,
        elapsed_ms=elapsed_ms,
        error_code=None if error is None else error.code,
    )


def _check_class(name: str) -> None:
    # Lineages exist per class the product stores: a typo would make a KEK nothing uses.
    known = (*known_artifact_classes(), UNCLASSIFIED)
    if name not in known:
        raise KeysError(
            KEYS_CLASS_UNKNOWN,
            f"{name!r} is not an artifact class (classes: {', '.join(known)})",
            artifact_class=str(name)[:80],
        )


def _elapsed(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


# --- shapes ----------------------------------------------------------------------------


def _day(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def kek_dict(kek: KekRecord, data_keys: int | None = None) -> dict[str, Any]:
    """One KEK as the commands show it: ids, lineage, state, times (ms) and data keys; never ``key_ref``.

    Args:
        kek: the KEK record.
        data_keys: how many data keys it wraps now (None: not counted).

    Returns:
        ``{"kek_id", "artifact_class", "period_start" (YYYY-MM-DD, UTC), "period_start_ms",
        "period_ms", "generation", "state", "manager", "created_at_ms", "rotated_at_ms",
        "retired_at_ms", "destroyed_at_ms", "data_keys"}``. Raises nothing.
    """
    return {
        "kek_id": kek.kek_id,
        "artifact_class": kek.artifact_class,
        "period_start": _day(kek.period_start_ms),
        "period_start_ms": kek.period_start_ms,
        "period_ms": kek.period_ms,
        "generation": kek.generation,
        "state": kek.state,
        "manager": kek.manager,
        "created_at_ms": kek.created_at_ms,
        "rotated_at_ms": kek.rotated_at_ms,
        "retired_at_ms": kek.retired_at_ms,
        "destroyed_at_ms": kek.destroyed_at_ms,
        "data_keys": data_keys,
    }


def lineage_problem(text: str) -> str | None:
    """Why ``text`` is not a lineage ``CLASS:YYYYMMDD`` (a UTC day), or None when it is one. Raises nothing."""
    match = _LINEAGE.match(text)
    if match is None:
        return f"--lineage {text!r} is not CLASS:YYYYMMDD"
    try:
        datetime.strptime(match["day"], "%Y%m%d")
    except ValueError:
        return f"--lineage {text!r}: {match['day']} is not a date (YYYYMMDD)"
    return None


def _parse_lineage(text: str) -> tuple[str, int, int]:
    # (class, first ms of the UTC day, first ms of the next day).
    problem = lineage_problem(text)
    if problem is not None:
        raise KeysError(KEYS_KEK_NOT_FOUND, problem, lineage=text)
    match = _LINEAGE.match(text)
    assert match is not None
    start = datetime.strptime(match["day"], "%Y%m%d").replace(tzinfo=UTC)
    start_ms = int(start.timestamp() * 1000)
    return match["cls"], start_ms, start_ms + 86_400_000


# --- use cases -------------------------------------------------------------------------


def list_keys(settings: Settings, artifact_class: str | None = None) -> dict[str, Any]:
    """Every KEK of the keyring (or of one class), with the data keys each wraps.

    Reads records only: no master key is needed, and none is made.

    Args:
        settings: the record store.
        artifact_class: only this class's KEKs (None: all).

    Returns:
        ``{"keks": [kek_dict...] (by class, period, generation), "data_keys": total wrapped
        by the listed KEKs, "under_decrypt_only": data keys a rewrap would move}``.

    Raises:
        RecordError: ``RECORD_*``.
    """
    with open_settings_record_store(settings) as records:
        counts = records.count_data_keys()
        keks = records.list_keks(artifact_class)
        return {
            "keks": [kek_dict(kek, counts.get(kek.kek_id, 0)) for kek in keks],
            "data_keys": sum(counts.get(kek.kek_id, 0) for kek in keks),
            "under_decrypt_only": keys_under_decrypt_only(records),
        }


def create_key(settings: Settings, artifact_class: str) -> dict[str, Any]:
    """The primary KEK of ``artifact_class`` for the current period, made now when the lineage has none.

    Args:
        settings: the record store, master key, ``WF_KEY_MANAGER`` and ``WF_KEK_PERIOD``.
        artifact_class: the class (``prompt_render``, ``output``...).

    Returns:
        ``kek_dict`` of the primary plus ``"created"``: False when it existed already
        (nothing made, no telemetry row).

    Raises:
        KeysError: ``KEYS_CLASS_UNKNOWN``, ``KEYS_MASTER_KEY_INVALID``, ``KEYS_MANAGER_UNKNOWN``,
            ``KEYS_MANAGER_ERROR``.
        RecordError: ``RECORD_*``.
    """
    _check_class(artifact_class)
    with _keyring(settings) as (records, keyring), _events(settings) as events:
        started = time.monotonic()
        start = keyring.period_start(keyring.clock())
        before = {kek.kek_id for kek in keyring.lineage(artifact_class, start)}
        try:
            kek = keyring.create_kek(artifact_class)
        except WfError as exc:
            events.key_event(
                event="create", artifact_class=artifact_class, outcome="failed", error_code=exc.code
            )
            raise
        created = kek.kek_id not in before
        if created:
            _event(events, "create", kek, data_keys=0, elapsed_ms=_elapsed(started))
        return {**kek_dict(kek, records.count_data_keys().get(kek.kek_id, 0)), "created": created}


def rotate_keys(settings: Settings, artifact_classes: Iterable[str] | None = None) -> dict[str, Any]:
    """Rotate every lineage that has a primary (of ``artifact_classes``, default all): a new generation becomes primary.

    The old primaries become decrypt-only (they still unwrap their data keys until
    `rewrap_keys` moves them).

    Returns:
        ``{"rotated": [kek_dict of each new primary], "under_decrypt_only": data keys a
        rewrap would move now}``.

    Raises:
        KeysError: ``KEYS_CLASS_UNKNOWN``, ``KEYS_MASTER_KEY_INVALID``, ``KEYS_MANAGER_ERROR``.
        RecordError: ``RECORD_*``.
    """
    wanted = None if artifact_classes is None else list(artifact_classes) or None
    for name in wanted or ():
        _check_class(name)
    with _keyring(settings) as (_, keyring), _events(settings) as events:
        started = time.monotonic()
        try:
            made = keyring.rotate(wanted)
        except WfError as exc:
            events.key_event(event="rotate", outcome="failed", error_code=exc.code)
            raise
        elapsed = _elapsed(started)
        for kek in made:
            _event(events, "rotate", kek, elapsed_ms=elapsed)
        return {
            "rotated": [kek_dict(kek, 0) for kek in made],
            "under_decrypt_only": keyring.keys_under_decrypt_only(),
        }


def rewrap_keys(
    settings: Settings, on_progress: RewrapProgressCallback | None = None, *, page: int | None = None
) -> dict[str, Any]:
    """Move every data key under a decrypt-only KEK to its lineage's primary; payloads are not touched.

    Resumable: each page of rows is one compare-and-set transaction
    (`wf_pipeline.crypto.keyring.Keyring.rewrap`), so a killed rewrap loses at most the
    page in flight and running it again finishes the job.

    Args:
        settings: the record store and master key.
        on_progress: called with (data keys moved so far, data keys under decrypt-only
            KEKs at the start) after each page.
        page: rows per transaction (default the keyring's, 1,000).

    Returns:
        ``{"rewrapped", "skipped" (moved by another writer first), "remaining" (still under
        decrypt-only KEKs: 0 when done), "elapsed_ms" (ms)}``.

    Raises:
        KeysError: ``KEYS_MASTER_KEY_INVALID``, ``KEYS_MANAGER_ERROR``. CasError:
        ``CAS_DECRYPT_FAILED`` (a wrapped key that does not authenticate). RecordError: ``RECORD_*``.
    """
    with _keyring(settings) as (_, keyring), _events(settings) as events:
        total = keyring.keys_under_decrypt_only()
        done = 0

        def on_page(moved: int) -> None:
            nonlocal done
            done += moved
            if on_progress is not None:
                on_progress(min(done, total), total)

        if on_progress is not None:
            on_progress(0, total)
        started = time.monotonic()
        options: dict[str, Any] = {} if page is None else {"page": page}
        try:
            progress = keyring.rewrap(on_page=on_page, **options)
        except WfError as exc:
            _event(events, "rewrap", data_keys=done, elapsed_ms=_elapsed(started), error=exc)
            raise
        _event(events, "rewrap", data_keys=progress.rewrapped, elapsed_ms=progress.elapsed_ms)
        return {
            "rewrapped": progress.rewrapped,
            "skipped": progress.skipped,
            "remaining": progress.remaining,
            "elapsed_ms": progress.elapsed_ms,
        }


def rewrap_figures(settings: Settings) -> dict[str, int]:
    """`rewrap_keys` cut down to Dagster metadata: ``{"rewrapped", "skipped", "remaining", "elapsed_ms"}`` (counts, ms)."""
    return {name: int(value) for name, value in rewrap_keys(settings).items()}


def retire_key(settings: Settings, kek_id: str) -> dict[str, Any]:
    """Retire a decrypt-only KEK no data key depends on; its material is erased.

    Returns:
        ``kek_dict`` of the retired KEK.

    Raises:
        KeysError: ``KEYS_KEK_NOT_FOUND``, ``KEYS_KEK_STATE`` (not decrypt-only),
        ``KEYS_KEK_IN_USE`` (data keys still under it: rewrap first), ``KEYS_MASTER_KEY_INVALID``,
        ``KEYS_MANAGER_ERROR``. RecordError: ``RECORD_*``.
    """
    with _keyring(settings) as (records, keyring), _events(settings) as events:
        started = time.monotonic()
        try:
            kek = keyring.retire(kek_id)
        except WfError as exc:
            events.key_event(event="retire", kek_id=kek_id, outcome="failed", error_code=exc.code)
            raise
        _event(events, "retire", kek, data_keys=0, elapsed_ms=_elapsed(started))
        return kek_dict(kek, 0)


def destroy_keys(
    settings: Settings, kek_id: str | None = None, *, lineage: str | None = None, confirm: bool = False
) -> dict[str, Any]:
    """Destroy one KEK, or every KEK of a lineage (``CLASS:YYYYMMDD``): crypto-shredding, for good.

    Every artifact whose data key a destroyed KEK wraps becomes unreadable
    (``CAS_KEY_DESTROYED``); its records, and its data key row, stay (`keys_report` lists
    them). A lineage names a class and a UTC day: every KEK of that class whose period
    starts on that day is destroyed.

    Args:
        settings: the record store and master key.
        kek_id: the KEK; or
        lineage: ``CLASS:YYYYMMDD`` (exactly one of the two).
        confirm: must be True (the command's ``--yes``); otherwise nothing is destroyed.

    Returns:
        ``{"destroyed": [kek_dict with "data_keys" = data keys it shredded now (0 for a KEK
        destroyed before)], "already_gone": [ids of the lineage's KEKs already retired or
        destroyed, left as they are], "data_keys_shredded": total}``.

    Raises:
        KeysError: ``KEYS_CONFIRMATION_REQUIRED`` (``confirm`` False: nothing read or
        written), ``KEYS_KEK_NOT_FOUND`` (no such KEK, no KEK in the lineage, or a malformed
        lineage), ``KEYS_MASTER_KEY_INVALID``, ``KEYS_MANAGER_ERROR``. RecordError: ``RECORD_*``.
    """
    if (kek_id is None) == (lineage is None):
        raise ValueError("give exactly one of kek_id and lineage")
    if not confirm:
        target = kek_id if kek_id is not None else f"every KEK of lineage {lineage}"
        raise KeysError(
            KEYS_CONFIRMATION_REQUIRED,
            f"destroying {target} makes every artifact it wraps unreadable for good; "
            "run again with --yes to destroy",
            kek_id=kek_id,
            lineage=lineage,
        )
    with _keyring(settings) as (records, keyring), _events(settings) as events:
        gone: list[str] = []
        if lineage is not None:
            artifact_class, start, end = _parse_lineage(lineage)
            keks = [k for k in records.list_keks(artifact_class) if start <= k.period_start_ms < end]
            if not keks:
                raise KeysError(
                    KEYS_KEK_NOT_FOUND, f"no KEK of lineage {lineage} in the keyring", lineage=lineage
                )
            # Retired and destroyed KEKs hold no material any more: nothing to erase.
            ids = [k.kek_id for k in keks if k.state in ("primary", "decrypt_only")]
            gone = [k.kek_id for k in keks if k.state not in ("primary", "decrypt_only")]
        else:
            assert kek_id is not None
            one = records.get_kek(kek_id)
            # As for a lineage: a retired or destroyed KEK holds no material; it is left as it is.
            if one is not None and one.state not in ("primary", "decrypt_only"):
                ids, gone = [], [kek_id]
            else:
                ids = [kek_id]
        destroyed = []
        for one in ids:
            started = time.monotonic()
            before = records.get_kek(one)
            # A KEK destroyed before shreds nothing now (destroy is idempotent).
            shredded = (
                0 if before is None or before.state == "destroyed" else records.count_data_keys().get(one, 0)
            )
            try:
                kek = keyring.destroy(one)
            except WfError as exc:
                events.key_event(event="destroy", kek_id=one, outcome="failed", error_code=exc.code)
                raise
            _event(events, "destroy", kek, data_keys=shredded, elapsed_ms=_elapsed(started))
            destroyed.append(kek_dict(kek, shredded))
        return {
            "destroyed": destroyed,
            "already_gone": gone,
            "data_keys_shredded": sum(d["data_keys"] for d in destroyed),
        }


def keys_report(settings: Settings, *, include_archived: bool = True) -> dict[str, Any]:
    """The artifacts made unreadable by destroyed KEKs, per class and per thread, and each one's links.

    Threads are found through the record store's artifact links
    (`RecordStore.list_artifact_links`) and, with ``include_archived``, the record archive's
    (threads compaction moved out of the record store; `wf_pipeline.retention.archive`).

    Returns:
        ``{"destroyed_keks": [kek_dict with "data_keys"], "shredded": total artifacts,
        "by_class": {class: artifacts}, "by_thread": [{"thread_id", "archived", "artifacts"}]
        (most first), "artifacts": [{"artifact_id", "artifact_class", "kek_id", "links":
        [{"thread_id", "turn_id", "attempt", "role", "archived"}]}] (by artifact id)}``. Ids,
        classes and counts only.

    Reads records (and the archive) only: no master key is needed, and none is made.

    Raises:
        RecordError: ``RECORD_*``. RetentionError: ``RETENTION_ARCHIVE_ERROR`` (an archive file
        cannot be read).
    """
    with open_settings_record_store(settings) as records:
        counts = records.count_data_keys()
        destroyed = [k for k in records.list_keks() if k.state == "destroyed"]
        rows = list(shredded_keys(records))
        wanted = {row.artifact_id for row in rows}
        links: dict[str, list[dict[str, Any]]] = {}
        if wanted:
            for link in records.list_artifact_links():
                if link.artifact_id in wanted:
                    links.setdefault(link.artifact_id, []).append(
                        {
                            "thread_id": link.thread_id,
                            "turn_id": link.turn_id,
                            "attempt": link.attempt,
                            "role": link.role,
                            "archived": False,
                        }
                    )
            if include_archived:
                _archived_links(RecordArchive(Path(archive_location(settings))), wanted, links)
        by_thread: Counter[tuple[str, bool]] = Counter()
        for artifact_id in sorted(wanted):
            for thread in {(link["thread_id"], link["archived"]) for link in links.get(artifact_id, [])}:
                by_thread[thread] += 1
        return {
            "destroyed_keks": [kek_dict(k, counts.get(k.kek_id, 0)) for k in destroyed],
            "shredded": len(rows),
            "by_class": dict(sorted(Counter(row.artifact_class for row in rows).items())),
            "by_thread": [
                {"thread_id": thread_id, "archived": archived, "artifacts": count}
                for (thread_id, archived), count in sorted(
                    by_thread.items(), key=lambda item: (-item[1], item[0])
                )
            ],
            "artifacts": [
                {
                    "artifact_id": row.artifact_id,
                    "artifact_class": row.artifact_class,
                    "kek_id": row.kek_id,
                    "links": links.get(row.artifact_id, []),
                }
                for row in rows
            ],
        }


def _archived_links(archive: RecordArchive, wanted: set[str], links: dict[str, list[dict[str, Any]]]) -> None:
    # Only the four columns are read from each archive file (column projection).
    columns = ("artifact_id", "thread_id", "turn_id", "attempt", "role")
    for part in archive.read_columns("artifact_links", columns):
        for artifact_id, thread_id, turn_id, attempt, role in zip(*(part[c] for c in columns), strict=True):
            if artifact_id in wanted:
                links.setdefault(artifact_id, []).append(
                    {
                        "thread_id": thread_id,
                        "turn_id": turn_id,
                        "attempt": attempt,
                        "role": role,
                        "archived": True,
                    }
                )
