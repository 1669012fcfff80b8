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
threads are marked ``failed`` (`wf_pipeline.runtime.interrupted`). A second signal while
that happens ends the process at once, with the signal's default action.
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

from wf_pipeline.errors import RUN_INTERRUPTED, RunError
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.interrupted import mark_threads_failed

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class RunStop:
    """What a stoppable block knows about its stop.

    Attributes:
        thread_ids: the threads of the run, set by the block once it has planned them.
        signal_name: the signal's name when this handler saw it (``SIGTERM``, ``SIGINT``);
            None when Dagster's handler took it during a run.
    """

    thread_ids: list[str] = field(default_factory=list)
    signal_name: str | None = None


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
            when a signal stopped the block; other exceptions of the block unchanged.
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
        except BaseException:
            if not env.interrupt.is_set():
                raise
        if env.interrupt.is_set():
            marked = mark_threads_failed(env, stop.thread_ids, RUN_INTERRUPTED)
            raise RunError(
                RUN_INTERRUPTED,
                f"run stopped by {stop.signal_name or 'a signal (SIGTERM or SIGINT)'}: "
                f"{len(marked)} of {len(stop.thread_ids)} threads were unfinished and are marked failed; "
                "run the same command again to finish them",
                signal=stop.signal_name,
                threads_marked=len(marked),
                threads=len(stop.thread_ids),
            ) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
