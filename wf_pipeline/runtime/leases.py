"""Per-thread leases as the runtime takes them: one turn of one thread runs in one place.

Two `wf run` processes on one home (or two executors' steps) may reach the same turn of
the same thread. Before a turn runs, its thread's lease is taken in the record store
(`RecordStore.acquire_lease`); whoever waits for it reads the records again once it is
free and finds the turn completed, so it reuses the output instead of calling the
provider a second time.

- A lease lives `LEASE_TTL_MS` and is renewed every third of that by a daemon thread
  while its turn runs; a holder that dies stops renewing, and the lease expires.
- A holder id is ``<host>:<pid>:<random>``. A lease held by a process of this host that
  no longer exists is taken over at once instead of waiting for its expiry.
- A waiter gives up after its bound (`RUN_THREAD_BUSY`), or when its run is interrupted
  (`RUN_INTERRUPTED`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wf_pipeline.errors import RUN_INTERRUPTED, RUN_THREAD_BUSY, RunError, WfError
from wf_pipeline.records import RecordStore
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

# How long a lease lives without renewal: the longest a killed holder's thread waits (ms).
LEASE_TTL_MS = 30_000
# First and longest pause between two tries of a waiter (s); the pause doubles in between.
FIRST_POLL_S = 0.05
MAX_POLL_S = 0.5


def host_name() -> str:
    """This machine's host name, as lease holders and run tags record it."""
    return socket.gethostname()


def process_is_gone(host: str, pid: int) -> bool:
    """Whether the process ``pid`` of ``host`` has certainly ended.

    Only a process of this host can be checked: another host's is never called gone.
    A zombie (ended, not yet reaped by its parent) counts as gone. A pid reused by a
    new process reads as alive; the lease's expiry still bounds that case.

    Args:
        host: the host name the process ran on.
        pid: its process id.

    Returns:
        True when ``host`` is this host and no live process has ``pid``.
    """
    if host != host_name() or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: existence check only (kill(2))
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by someone else
    stat = Path(f"/proc/{pid}/stat")
    try:
        # proc(5): the state letter follows the parenthesised command name.
        return stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def new_holder_id() -> str:
    """A fresh lease holder id: ``<host>:<pid>:<12 hex>``."""
    return f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def holder_is_gone(holder: str) -> bool:
    """Whether the process named in a holder id (`new_holder_id`) has certainly ended."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # not one of ours: only its expiry ends it
    return process_is_gone(parts[0], int(parts[1]))


def holder_is_this_process(holder: str) -> bool:
    """Whether a holder id (`new_holder_id`) names this very process."""
    parts = holder.rsplit(":", 2)
    return len(parts) == 3 and parts[0] == host_name() and parts[1] == str(os.getpid())


@contextmanager
def thread_lease(
    records: RecordStore, thread_id: str, *, wait_ms: int, interrupt: threading.Event | None = None
) -> Iterator[str]:
    """Hold the lease of ``thread_id`` for the block, waiting up to ``wait_ms`` for it.

    Args:
        records: the record store the lease lives in.
        thread_id: the thread whose turn the block runs.
        wait_ms: the longest wait for another live holder (ms).
        interrupt: when set, a waiter stops waiting.

    Yields:
        The holder id. The lease is renewed while the block runs and released after it.

    Raises:
        RunError: ``RUN_THREAD_BUSY`` when another live holder keeps the lease past
            ``wait_ms`` (figures: the holder, the wait); ``RUN_INTERRUPTED`` when
            ``interrupt`` is set while waiting.
        RecordError: ``RECORD_UNAVAILABLE`` from the store.
    """
    holder = new_holder_id()
    started = time.monotonic()
    pause = FIRST_POLL_S
    while True:
        if interrupt is not None and interrupt.is_set():
            raise RunError(RUN_INTERRUPTED, f"run interrupted while waiting for thread {thread_id}")
        lease = records.acquire_lease(thread_id, holder, LEASE_TTL_MS)
        if lease.holder == holder:
            break
        if holder_is_gone(lease.holder):
            # Its process ended without releasing (killed): no need to wait for the expiry.
            log.info("thread %s: taking over the lease of ended process %s", thread_id, lease.holder)
            records.release_lease(thread_id, lease.holder)
            continue
        waited_ms = int((time.monotonic() - started) * 1000)
        if waited_ms >= wait_ms:
            raise RunError(
                RUN_THREAD_BUSY,
                f"thread {thread_id} is in progress in {lease.holder}: waited {waited_ms} ms, "
                f"bound {wait_ms} ms",
                thread_id=thread_id,
                holder=lease.holder,
                waited_ms=waited_ms,
            )
        if interrupt is not None:
            interrupt.wait(pause)
        else:
            time.sleep(pause)
        pause = min(pause * 2, MAX_POLL_S)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew_until, args=(records, thread_id, holder, stop), name="wf-lease", daemon=True
    )
    renewer.start()
    try:
        yield holder
    finally:
        stop.set()
        renewer.join()
        try:
            records.release_lease(thread_id, holder)
        except WfError as exc:  # it expires by itself
            log.warning("thread %s: lease not released: %s", thread_id, exc.code)


def _renew_until(records: RecordStore, thread_id: str, holder: str, stop: threading.Event) -> None:
    while not stop.wait(LEASE_TTL_MS / 3000):
        try:
            if not records.renew_lease(thread_id, holder, LEASE_TTL_MS):
                log.warning("thread %s: lease of %s lost (expired and taken over)", thread_id, holder)
                return
        except WfError as exc:
            log.warning("thread %s: lease renewal failed: %s", thread_id, exc.code)
