"""Stopping a run on SIGTERM or SIGINT within seconds, with every thread accounted for.

`stop_on_signals` is the only place outside the CLI that installs signal handlers, and
it restores the previous ones when its block ends. Inside the block:

- outside Dagster's execution, a signal raises ``KeyboardInterrupt`` in the main thread
  at once (Python's own reaction to SIGINT; SIGTERM gets the same here);
- during a Dagster run, Dagster's own handler (which Dagster installs over ours for the
  run and maps SIGTERM to) raises its execution interrupt in the step; the runtime then
  sets ``env.interrupt``, abandons in-flight provider calls and records them as
  ``RUN_INTERRUPTED``, and Dagster marks the run failed.

Either way the block ends with `RunError` ``RUN_INTERRUPTED``, after the run's unfinished
threads are marked ``failed`` (`wf_pipeline.runtime.interrupted`): the planned ones and
every thread created since the block began for the run's targets (a parent's id is only
known once its children have ended). A second signal while that happens ends the process
at once, with the signal's default action. A block that ends with another `WfError` (the
Dagster instance's storage failing...) marks them ``failed`` with that error's code.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from wf_pipeline.errors import RUN_INTERRUPTED, RunError, WfError
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.interrupted import mark_threads_failed, unfinished_threads_of
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class RunStop:
    """What a stoppable block knows about its stop.

    Attributes:
        thread_ids: the threads of the run, set by the block once it has planned them.
        workflow_id: the run's workflow, set with ``target_keys``.
        target_keys: the run's targets; their threads created during the block are the
            run's too, whatever ids they got.
        started_ms: when the block began, Unix epoch in ms.
        signal_name: the signal's name when this handler saw it (``SIGTERM``, ``SIGINT``);
            None when Dagster's handler took it during a run.
    """

    thread_ids: list[str] = field(default_factory=list)
    workflow_id: str | None = None
    target_keys: list[str] = field(default_factory=list)
    started_ms: int = field(default_factory=now_ms)
    signal_name: str | None = None

    def unfinished(self, env: RuntimeEnv) -> list[str]:
        """The planned threads and the threads created for the targets since the block began.

        Raises:
            RecordError: ``RECORD_UNAVAILABLE``.
        """
        created = (
            unfinished_threads_of(env, self.workflow_id, self.target_keys, self.started_ms)
            if self.workflow_id
            else []
        )
        return list(dict.fromkeys([*self.thread_ids, *created]))


@contextmanager
def stop_on_signals(env: RuntimeEnv) -> Iterator[RunStop]:
    """Run the block so that SIGTERM and SIGINT stop it within seconds.

    Handlers are installed only in the main thread (elsewhere the block runs as is) and
    the previous ones come back when the block ends.

    Args:
        env: the runtime of the run; its ``interrupt`` event is set on a signal.

    Yields:
        A `RunStop`; the block puts its planned thread ids in ``thread_ids``.

    Raises:
        RunError: ``RUN_INTERRUPTED`` (figures: the signal, the threads marked failed)
            when a signal stopped the block; other exceptions of the block unchanged
            (after a `WfError`, the run's unfinished threads are marked failed with its code).
    """
    stop = RunStop()
    previous: dict[int, Any] = {}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if env.interrupt.is_set():
            # A second signal while the run winds down: stop now, as the signal would by default.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stop.signal_name = signal.Signals(signum).name
        env.interrupt.set()
        raise KeyboardInterrupt(stop.signal_name)

    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, on_signal)
    try:
        try:
            yield stop
        except WfError as exc:
            if not env.interrupt.is_set():
                _mark_after_error(env, stop, exc)
                raise
        except BaseException:
            if not env.interrupt.is_set():
                raise
        if env.interrupt.is_set():
            marked = mark_threads_failed(env, stop.unfinished(env), RUN_INTERRUPTED)
            raise RunError(
                RUN_INTERRUPTED,
                f"run stopped by {stop.signal_name or 'a signal (SIGTERM or SIGINT)'}: "
                f"{len(marked)} unfinished threads of {len(stop.target_keys)} directories "
                "are marked failed; run the same command again to finish them",
                signal=stop.signal_name,
                threads_marked=len(marked),
                directories=len(stop.target_keys),
            ) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _mark_after_error(env: RuntimeEnv, stop: RunStop, error: WfError) -> None:
    # The run ends with ``error``: its threads must not stay pending or running. When the
    # records cannot be written either (the same full disk), the run's own error is the one
    # reported; the lease of a dead process expires and the next run takes the thread over.
    try:
        mark_threads_failed(env, stop.unfinished(env), error.code)
    except WfError as exc:
        log.warning("%s", exc)
