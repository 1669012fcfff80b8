"""Retention use cases: plan and apply a sweep, place and release legal holds.

Called by ``wf retention ...`` and by the Dagster retention job; each opens the runtime
over ``settings`` (the profiles give each workflow's windows) and returns JSON-ready
values: ids, classes, counts, bytes and ms, never artifact content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.metadata.records import HoldRecord, now_ms
from wf_pipeline.retention.archive import RecordArchive
from wf_pipeline.retention.holds import place_hold, release_holds
from wf_pipeline.retention.policies import effective_windows, policy_problems, require_policies
from wf_pipeline.retention.sweep import Progress, apply_retention, plan_retention
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry.query import archive_location


def _open_env(settings: Settings, workspace_dir: Path | None, *, warn: bool = True) -> RuntimeEnv:
    # The catalog comes from the one loader that registers the built-in workflows first, so
    # a workflow's registered artifact classes are known when its retention block is read.
    # warn=False: the sweep reports the problems itself (in its result, or by refusing).
    catalog = load_profiles(settings, workspace_dir or Path.cwd(), warn=warn)
    return RuntimeEnv.open(settings, catalog=catalog)


def _archive(settings: Settings) -> RecordArchive:
    # Compaction's archive: archived threads' artifacts expire (and are held) like live ones.
    return RecordArchive(Path(archive_location(settings)))


def retention_plan(
    settings: Settings, now_ms: int | None = None, *, workspace_dir: Path | None = None
) -> dict[str, Any]:
    """What a sweep would delete now (a dry run: nothing is written).

    Args:
        settings: the stores.
        now_ms: the sweep's clock (Unix epoch ms), default the wall clock.
        workspace_dir: the workspace profile layer (default the working directory).

    Returns:
        ``{"now_ms", "count", "bytes", "groups": [{"artifact_class", "workflow_id", "count",
        "bytes"}], "kept": {reason: artifacts}, "shreds": [{"artifact_class",
        "period_start_ms", "period_start", "period_ms", "kek_ids", "artifacts", "moves"}],
        "shredded_artifacts", "plaintext_in_shred_mode": {class: artifacts}}``
        (`RetentionPlan.to_dict`; shreds are the KEK lineages of shred-mode classes a sweep
        destroys, `wf_pipeline.retention.shred`), plus
        ``"policies"`` (each workflow's effective windows and grace,
        `wf_pipeline.retention.policies.effective_windows`), ``"problems"`` (profile files
        that failed to load) and ``"apply_refused"`` (True when problems would make
        `retention_apply` refuse with ``RETENTION_POLICY_UNAVAILABLE``: this plan is then not
        what apply would do).

    Raises:
        RecordError: ``RECORD_*``. CasError: ``CAS_INVALID_URL``, ``CAS_BACKEND_ERROR``.
        ProfileError: the loader's ``PROFILE_*`` codes (``PROFILE_RETENTION_INVALID``...).
        RetentionError: ``RETENTION_ARCHIVE_ERROR`` (an archive file cannot be read).
    """
    with _open_env(settings, workspace_dir, warn=False) as env:
        result = plan_retention(env, now_ms=_clock(now_ms), archive=_archive(settings)).to_dict()
        problems = policy_problems(env.catalog)
        return {
            **result,
            "policies": effective_windows(env.catalog),
            "problems": problems,
            "apply_refused": bool(problems),
        }


def retention_apply(
    settings: Settings,
    now_ms: int | None = None,
    on_progress: Progress | None = None,
    *,
    workspace_dir: Path | None = None,
) -> dict[str, Any]:
    """Sweep now: a tombstone for every expired artifact, then its CAS object deleted.

    Args:
        settings: the stores.
        now_ms: the sweep's clock (Unix epoch ms), default the wall clock.
        on_progress: called with (artifacts done, artifacts planned) after each batch.
        workspace_dir: the workspace profile layer (default the working directory).

    Returns:
        ``{"now_ms", "deleted", "bytes_freed", "tombstones_written", "groups": [{"artifact_class",
        "workflow_id", "count", "bytes"}], "kept": {reason: artifacts}, "shredded":
        [{"artifact_class", "period_start_ms", "period_start", "period_ms", "kek_ids",
        "artifacts", "moved", "status"}], "shredded_lineages", "shredded_artifacts",
        "moved_keys", "deferred_lineages", "plaintext_in_shred_mode"}``
        (`RetentionResult.to_dict`) plus ``"policies"`` (as `retention_plan`); ``deleted``
        counts artifacts, ``bytes_freed`` bytes. Shredding destroys KEKs with the runtime's
        keyring; the shredded artifacts' objects stay in the store. Only what THIS call deleted is counted (and
        emitted as telemetry): sweeps of one home run one at a time under the home's sweep
        lock (`RecordArchive.locked`, shared with `wf compact`) and the record store's
        (`RecordStore.sweep_lock`: a PostgreSQL advisory lock, for homes sharing one
        store), so a second concurrent sweep waits, then finds nothing due.

    Raises:
        RetentionError: ``RETENTION_POLICY_UNAVAILABLE`` (a profile file failed to load;
            nothing deleted). KeysError: ``KEYS_MASTER_KEY_INVALID`` (lineages are due and no
            keyring is configured; nothing deleted), ``KEYS_MANAGER_ERROR``. As
            `retention_plan` otherwise; a failure mid-way leaves every
            deleted object with its tombstone, and the next sweep finishes the rest.
    """
    archive = _archive(settings)
    with archive.locked(), _open_env(settings, workspace_dir, warn=False) as env:
        require_policies(env.catalog, "retention apply")
        # Planned under both locks: a sweep that waited (here, or on another machine sharing
        # a PostgreSQL record store) sees the tombstones of the one before.
        with env.records.sweep_lock():
            result = apply_retention(
                env, now_ms=_clock(now_ms), on_progress=on_progress, archive=archive, keyring=env.keyring
            )
        return {**result.to_dict(), "policies": effective_windows(env.catalog)}


def hold(
    settings: Settings,
    *,
    thread_id: str | None = None,
    workflow_id: str | None = None,
    reason: str = "",
    workspace_dir: Path | None = None,
) -> dict[str, Any]:
    """Place a legal hold on one thread or one workflow: retention deletes nothing it refers to.

    Args:
        settings: the stores.
        thread_id, workflow_id: the scope; exactly one.
        reason: why (ids, case numbers).
        workspace_dir: the workspace profile layer, for the workflows it defines.

    Returns:
        The hold: ``{"hold_id", "thread_id", "workflow_id", "reason", "created_at_ms",
        "released_at_ms"}``.

    Raises:
        RetentionError: ``RETENTION_SCOPE_UNKNOWN``, ``RETENTION_ARCHIVE_ERROR``. RecordError: ``RECORD_*``.
    """
    with _open_env(settings, workspace_dir) as env:
        placed = place_hold(
            env.records,
            thread_id=thread_id,
            workflow_id=workflow_id,
            reason=reason,
            known_workflows=env.catalog.profiles,
            archived_threads=_archive(settings).archived_threads() if thread_id is not None else (),
        )
        return _hold_dict(placed)


def release(
    settings: Settings,
    *,
    thread_id: str | None = None,
    workflow_id: str | None = None,
    hold_id: str | None = None,
) -> list[dict[str, Any]]:
    """Release the active holds on a thread or a workflow, or one hold by id.

    Returns:
        The released holds (as `hold` returns them, ``released_at_ms`` set), oldest first.

    Raises:
        RetentionError: ``RETENTION_HOLD_NOT_FOUND``. RecordError: ``RECORD_*``.
    """
    with _open_env(settings, None) as env:
        released = release_holds(env.records, thread_id=thread_id, workflow_id=workflow_id, hold_id=hold_id)
        return [_hold_dict(env.records.get_hold(h.hold_id) or h) for h in released]


def list_holds(settings: Settings) -> list[dict[str, Any]]:
    """The active holds, oldest first, each as `hold` returns it."""
    with _open_env(settings, None) as env:
        return [_hold_dict(h) for h in env.records.active_holds()]


def _hold_dict(record: HoldRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude={"schema_version"})


def _clock(at_ms: int | None) -> int:
    return now_ms() if at_ms is None else at_ms
