"""The Dagster instance the CLI, the UI and every step process share.

The embedded default is SQLite storage in DAGSTER_HOME with no usage telemetry (the
machine may have no route out, and a CLI run should not phone home). Event batching is
part of the instance's own configuration (its dagster.yaml), so every process that
loads the instance (the CLI, step processes, the UI, the daemon) batches alike, and no
process has to change its environment for it:

- `WfDagsterInstance` carries the event batch size, which Dagster otherwise reads from
  the ``DAGSTER_EVENT_BATCH_SIZE`` variable on every event
  (``DagsterInstance._get_event_batch_size``);
- the event log storage (`BatchedSqliteEventLogStorage`) answers Dagster's question
  whether planned events carry a partition subset.

deploy/dagster-postgres.yaml is the PostgreSQL one; a dagster.yaml of the user's is
used as it is.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from dagster import DagsterInstance, DagsterRunStatus, Field, RunsFilter
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

from wf_pipeline.compiler.launch.instance_check import check_postgres_instance
from wf_pipeline.runtime.leases import host_name, process_is_gone
from wf_pipeline.settings import Settings

# Events of one batch (a step's per-partition materializations, a run's planned events)
# stored at once; Dagster's default, 0, stores them one by one.
DEFAULT_EVENT_BATCH_SIZE = 1000

EVENT_LOG_MODULE = "wf_pipeline.compiler.launch.event_log"
INSTANCE_MODULE = "wf_pipeline.compiler.launch.instance"

# Tags of a run the CLI launches: the host and pid of the process that executes it.
HOST_TAG = "wf/host"
PID_TAG = "wf/pid"
# A run the CLI created and whose process may stop before Dagster records its end: in
# progress, or not started yet (a stop while the run is being created leaves it NOT_STARTED).
UNFINISHED_RUN_STATUSES = [*IN_PROGRESS_RUN_STATUSES, DagsterRunStatus.NOT_STARTED]
# Tag of a run marked failed because its process ended: its steps' attempts never finished.
PROCESS_ENDED_TAG = "wf/process_ended"


class WfDagsterInstance(DagsterInstance):
    """A Dagster instance whose event batch size is configuration (``event_batch_size``).

    Named in dagster.yaml as ``instance_class: {module: wf_pipeline.compiler.launch.instance,
    class: WfDagsterInstance}`` with an optional top-level ``event_batch_size: N`` (events,
    default 1000; 0 turns batching off). Dagster passes that key to the constructor
    (``dagster._core.instance.factory.create_instance_from_ref``).
    """

    def __init__(self, *args: Any, event_batch_size: int = DEFAULT_EVENT_BATCH_SIZE, **kwargs: Any) -> None:
        self._wf_event_batch_size = int(event_batch_size)
        super().__init__(*args, **kwargs)

    @classmethod
    def config_schema(cls) -> dict[str, Field]:
        """The dagster.yaml keys this class adds to Dagster's instance schema."""
        return {"event_batch_size": Field(int, is_required=False, default_value=DEFAULT_EVENT_BATCH_SIZE)}

    @staticmethod
    def config_defaults(base_dir: str) -> Any:
        """The storages a dagster.yaml leaves out: Dagster's defaults (SQLite under ``base_dir``)."""
        return InstanceRef.config_defaults(base_dir)

    def _get_event_batch_size(self) -> int:
        # Where Dagster reads the batch size; the base class reads DAGSTER_EVENT_BATCH_SIZE.
        return self._wf_event_batch_size


def embedded_instance_yaml(dagster_home: Path) -> str:
    """The dagster.yaml this release writes into an empty DAGSTER_HOME (text, UTF-8)."""
    return yaml.safe_dump(
        {
            "instance_class": {"module": INSTANCE_MODULE, "class": WfDagsterInstance.__name__},
            "event_batch_size": DEFAULT_EVENT_BATCH_SIZE,
            "telemetry": {"enabled": False},
            # The UI's first-visit community modal (Dagster's ``nux`` setting).
            "nux": {"enabled": False},
            # Step processes of out-of-process runs log to their console at this level (the
            # run's events are stored in full): engine chatter stays out of the terminal.
            "python_logs": {"python_log_level": "INFO"},
            "event_log_storage": {
                "module": EVENT_LOG_MODULE,
                "class": "BatchedSqliteEventLogStorage",
                # Where Dagster's default SQLite storage keeps its event logs.
                "config": {"base_dir": str(dagster_home.resolve() / "history" / "runs")},
            },
        },
        sort_keys=False,
    )


def _previous_embedded_instance_yamls(dagster_home: Path) -> tuple[str, ...]:
    """What earlier releases wrote: the same storage files, without this release's batching set-up.

    Such a home gets the current configuration; any other existing dagster.yaml is the user's.
    """
    first = "telemetry:\n  enabled: false\npython_logs:\n  python_log_level: INFO\n"
    batched_event_log = yaml.safe_dump(
        {
            "telemetry": {"enabled": False},
            "python_logs": {"python_log_level": "INFO"},
            "event_log_storage": {
                "module": "wf_pipeline.compiler.event_log",
                "class": "BatchedSqliteEventLogStorage",
                "config": {"base_dir": str(dagster_home.resolve() / "history" / "runs")},
            },
        },
        sort_keys=False,
    )
    without_nux = yaml.safe_dump(
        {
            "instance_class": {"module": INSTANCE_MODULE, "class": WfDagsterInstance.__name__},
            "event_batch_size": DEFAULT_EVENT_BATCH_SIZE,
            "telemetry": {"enabled": False},
            "python_logs": {"python_log_level": "INFO"},
            "event_log_storage": {
                "module": EVENT_LOG_MODULE,
                "class": "BatchedSqliteEventLogStorage",
                "config": {"base_dir": str(dagster_home.resolve() / "history" / "runs")},
            },
        },
        sort_keys=False,
    )
    return first, batched_event_log, without_nux


@contextmanager
def home_lock(dagster_home: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``dagster_home`` for the block: flock(2) on a lock file.

    Serialises what processes sharing one home must not do at once (creating and migrating
    the instance, rewriting a workflow's partitions). Raises OSError when the lock file
    cannot be opened.
    """
    with open(dagster_home / ".wf-instance.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield


def open_instance(settings: Settings) -> DagsterInstance:
    """The Dagster instance in ``settings.dagster_home``, created and migrated on first use.

    Writes the embedded dagster.yaml when there is none, or when it is one an earlier
    release wrote; a dagster.yaml of the user's is left as it is. Returns the loaded
    instance (a `WfDagsterInstance` for the embedded configuration).
    """
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    # Two processes opening a new home at once would both create Dagster's SQLite storages
    # and run their migrations, which collide (a table created twice, two alembic heads).
    with home_lock(settings.dagster_home):
        config = settings.dagster_home / "dagster.yaml"
        if not config.exists() or config.read_text(encoding="utf-8") in _previous_embedded_instance_yamls(
            settings.dagster_home
        ):
            staged = config.with_name(f".dagster.yaml.{os.getpid()}")
            staged.write_text(embedded_instance_yaml(settings.dagster_home))
            os.replace(staged, config)  # a killed first run never leaves a truncated config
        check_postgres_instance(config, settings.secrets)  # CONFIG_* before Dagster's retries
        instance = DagsterInstance.from_config(str(settings.dagster_home))
        ready = settings.dagster_home / ".wf-instance-ready"
        if not ready.exists():
            # Dagster creates its SQLite storages in several steps and never completes an index
            # database that a killed first open left without tables; the migration `dagster
            # instance migrate` runs completes whatever is missing (quietly: the embedded
            # event log's upgrade prints nothing).
            instance.upgrade(print_fn=None)
            ready.touch()
        # Under the lock: two processes opening at once report a dead run's end only once.
        fail_runs_of_ended_processes(instance)
    return instance


def launcher_tags() -> dict[str, str]:
    """The run tags naming this process as the one executing the run (``wf/host``, ``wf/pid``)."""
    return {HOST_TAG: host_name(), PID_TAG: str(os.getpid())}


def fail_runs_of_ended_processes(instance: DagsterInstance) -> list[str]:
    """Mark failed every unfinished run whose executing process has ended; returns their ids.

    A run the CLI executes carries its process's host and pid (`launcher_tags`). When
    that process was killed (SIGKILL, a crash, a lost machine's reboot) Dagster never
    records the run's end and it would stay STARTED for good. Each open of the instance
    checks the in-progress runs tagged with a pid of this host and reports the ones whose
    process is gone as failed (`DagsterInstance.report_run_failed`), tagged
    ``wf/process_ended`` so the next launch treats its partitions as not recorded
    (`wf_pipeline.compiler.launch.levels.unrecorded_keys`). Runs launched from
    the UI or the daemon run in Dagster's own run workers; Dagster's run monitoring
    (``run_monitoring`` in dagster.yaml, run by the daemon) is what covers those.
    """
    return _fail_runs(
        instance,
        lambda host, pid: process_is_gone(host, pid),
        "the process that executed this run (pid {pid} on {host}) has ended",
    )


def fail_runs_of_this_process(instance: DagsterInstance) -> list[str]:
    """Mark failed every unfinished run this process executes; returns their ids.

    For a run stopped by a signal before Dagster took charge of it (while it was being
    created, before its steps), which Dagster would otherwise leave NOT_STARTED or STARTED.
    Tagged ``wf/process_ended`` like the runs of dead processes.
    """
    this = (host_name(), os.getpid())
    return _fail_runs(
        instance, lambda host, pid: (host, pid) == this, "run interrupted by a signal (pid {pid} on {host})"
    )


def _fail_runs(instance: DagsterInstance, ended: Callable[[str, int], bool], message: str) -> list[str]:
    failed = []
    for record in instance.get_run_records(filters=RunsFilter(statuses=UNFINISHED_RUN_STATUSES)):
        run = record.dagster_run
        host, pid = run.tags.get(HOST_TAG, ""), run.tags.get(PID_TAG, "")
        if not pid.isdigit() or not ended(host, int(pid)):
            continue
        instance.add_run_tags(run.run_id, {PROCESS_ENDED_TAG: "true"})
        instance.report_run_failed(run, message.format(pid=pid, host=host))
        failed.append(run.run_id)
    return failed
