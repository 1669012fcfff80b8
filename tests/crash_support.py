"""Running ``wf run`` as a real process and SIGKILLing it at chosen moments.

While runs come and go the harness only observes (SQLite connections in ``mode=ro``,
directory listings), so watching never changes what a killed process left behind or
what the next run finds.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from e2e_support import REPO_ROOT

from wf_pipeline.runtime.targets import tree_key_for

WF = REPO_ROOT / ".venv" / "bin" / "wf"
README_NAME = "README.md"
README_TEMP_PREFIX = ".README."  # temporary files of the docs writer's output sink (runtime/sinks.py)
POLL_S = 0.003
RUN_TIMEOUT_S = 300


@dataclass(frozen=True)
class WfHome:
    """One isolated installation: WF_HOME with its CAS, records, Dagster instance and outputs."""

    home: Path
    extra_env: tuple[tuple[str, str], ...] = ()

    @property
    def records_db(self) -> Path:
        return self.home / "records.db"

    @property
    def records_url(self) -> str:
        return f"sqlite:///{self.records_db}"

    @property
    def cas_root(self) -> Path:
        return self.home / "cas"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    def out_dir(self, tree: Path) -> Path:
        return self.home / "out" / tree_key_for(tree)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
        env.update(
            WF_HOME=str(self.home),
            WF_CONFIG_DIR=str(self.home / "user-config"),
            DAGSTER_HOME=str(self.dagster_home),
            **dict(self.extra_env),
        )
        return env

    def start_run(self, workflow_id: str, tree: Path, cwd: Path) -> WfProcess:
        logs = self.home.parent / f"{self.home.name}-logs"
        logs.mkdir(parents=True, exist_ok=True)
        number = len(list(logs.glob("*.stdout"))) + 1
        stdout_path, stderr_path = logs / f"{number:03d}.stdout", logs / f"{number:03d}.stderr"
        # Output goes to files, not pipes: helpers the run starts (Dagster's compute log
        # watchers) would hold a pipe open after the kill and delay reading it.
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [str(WF), "run", workflow_id, str(tree), "--json"],
                cwd=cwd,
                env=self.env(),
                stdout=stdout,
                stderr=stderr,
                # A session of its own, so whatever it starts can be found again afterwards.
                start_new_session=True,
            )
        return WfProcess(process, stdout_path, stderr_path)


@dataclass(frozen=True)
class WfProcess:
    process: subprocess.Popen
    stdout_path: Path
    stderr_path: Path


def session_members(session_id: int) -> list[int]:
    """Live processes (zombies excluded) whose session is ``session_id``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces, so split after it.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == session_id and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


@dataclass(frozen=True)
class Progress:
    """What the stores show at one moment, read without writing anything."""

    threads: int = 0
    completed_threads: int = 0
    turn_records: int = 0
    dagster_runs: int = 0
    readmes: int = 0
    readme_temp_files: int = 0
    # thread_id -> created_at_ms, and turn_record_id -> (started_at_ms, ended_at_ms,
    # output_artifact_id) of completed turns; read only when asked for
    thread_created: dict[str, int] = field(default_factory=dict, compare=False)
    completed_turns: dict[str, tuple[int, int | None, str | None]] = field(
        default_factory=dict, compare=False
    )


def _query(db: Path, sql: str) -> list[tuple]:
    """Rows of ``sql`` from a read-only connection; none while the database or table is not there yet."""
    if not db.exists():
        return []
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        connection.close()


def count_readmes(out_dir: Path) -> tuple[int, int]:
    """README.md files and leftover README temporary files under ``out_dir``."""
    readmes = temps = 0
    if not out_dir.exists():
        return 0, 0
    for _dirpath, _dirnames, filenames in os.walk(out_dir):
        for name in filenames:
            if name == README_NAME:
                readmes += 1
            elif name.startswith(README_TEMP_PREFIX):
                temps += 1
    return readmes, temps


def progress(home: WfHome, tree: Path, *, with_turns: bool = False) -> Progress:
    threads = _query(home.records_db, "SELECT status FROM wf_threads")
    turn_count = _query(home.records_db, "SELECT count(*) FROM wf_turns")
    # One event log database per Dagster run, created as the run starts; counting files
    # needs no SQLite read of runs.db, which a killed writer may leave with a hot journal.
    runs_dir = home.dagster_home / "history" / "runs"
    dagster_runs = sum(1 for p in runs_dir.glob("*.db") if p.name != "index.db") if runs_dir.exists() else 0
    readmes, temps = count_readmes(home.out_dir(tree))
    completed, created = {}, {}
    if with_turns:
        created = dict(_query(home.records_db, "SELECT thread_id, created_at_ms FROM wf_threads"))
        rows = _query(
            home.records_db,
            "SELECT turn_record_id, started_at_ms, ended_at_ms, output_artifact_id FROM wf_turns "
            "WHERE status = 'completed'",
        )
        completed = {row[0]: tuple(row[1:]) for row in rows}
    return Progress(
        threads=len(threads),
        completed_threads=sum(1 for (status,) in threads if status == "completed"),
        turn_records=turn_count[0][0] if turn_count else 0,
        dagster_runs=dagster_runs,
        readmes=readmes,
        readme_temp_files=temps,
        thread_created=created,
        completed_turns=completed,
    )


def outliving_processes(session_ids: list[int], grace_s: float = 10.0) -> dict[int, list[int]]:
    """Processes of the given sessions still alive after ``grace_s``; they are then killed.

    Killing them (they descend from runs this harness started) keeps a failing test from
    leaving processes behind.
    """
    deadline = time.monotonic() + grace_s
    while True:
        alive = {session: members for session in session_ids if (members := session_members(session))}
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for members in alive.values():
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return alive


# --- when to kill --------------------------------------------------------------------------


@dataclass(frozen=True)
class Trigger:
    """When to kill a run: ``due(elapsed_s, probe)`` is asked until it says yes."""

    name: str
    due: Callable[[float, Callable[[], Progress]], bool]
    settle_s: float = 0.0  # a further pause once due, to land a little later than the event


def before_turns(start: Progress, seconds: float) -> Trigger:
    """After ``seconds``, or earlier as soon as the run commits its first turn record."""
    return Trigger(
        f"after {seconds:.2f}s or a turn record",
        lambda elapsed, probe: elapsed >= seconds or probe().turn_records > start.turn_records,
    )


def after_turn_records(start: Progress, count: int, settle_s: float) -> Trigger:
    """Once ``count`` more turn attempts were committed, then ``settle_s`` later."""
    return Trigger(
        f"after {count} turn record(s) +{settle_s * 1000:.0f}ms",
        lambda _elapsed, probe: probe().turn_records >= start.turn_records + count,
        settle_s,
    )


def after_threads_completed(start: Progress, count: int) -> Trigger:
    """As soon as ``count`` threads are completed (their last turn's records committed)."""
    return Trigger(
        f"after {count} completed threads",
        lambda _elapsed, probe: probe().completed_threads >= start.completed_threads + count,
    )


def when_file_exists(path: Path) -> Trigger:
    return Trigger(f"when {path.name} exists", lambda _elapsed, _probe: path.exists())


def at_readme_writing(start: Progress) -> Trigger:
    """As soon as the run writes a README it had not written before (or its temporary file)."""

    def due(_elapsed: float, probe: Callable[[], Progress]) -> bool:
        now = probe()
        return now.readmes > start.readmes or now.readme_temp_files > start.readme_temp_files

    return Trigger("at README writing", due)


@dataclass(frozen=True)
class RunOutcome:
    trigger: str
    killed: bool  # SIGKILL reached a live process (the run had not exited on its own)
    returncode: int
    seconds: float  # from the start to the kill, or to the exit
    session_id: int
    stdout: str
    stderr: str


def _outcome(run: WfProcess, trigger: str, killed: bool, seconds: float) -> RunOutcome:
    return RunOutcome(
        trigger=trigger,
        killed=killed,
        returncode=run.process.returncode,
        seconds=seconds,
        session_id=run.process.pid,
        stdout=run.stdout_path.read_text(),
        stderr=run.stderr_path.read_text(),
    )


def run_until(run: WfProcess, trigger: Trigger, probe: Callable[[], Progress]) -> RunOutcome:
    """Let the run go on until ``trigger`` is due, then SIGKILL it (unless it exited first)."""
    process = run.process
    started = time.monotonic()
    while True:
        if process.poll() is not None:  # it exited (and is reaped) before its kill was due
            return _outcome(run, trigger.name, False, time.monotonic() - started)
        elapsed = time.monotonic() - started
        if elapsed > RUN_TIMEOUT_S or trigger.due(elapsed, probe):
            break
        time.sleep(POLL_S)
    if trigger.settle_s:
        time.sleep(trigger.settle_s)
    # Unreaped since the last poll, so even a process that exited meanwhile still owns its
    # pid (as a zombie) and the signal cannot reach another process.
    os.kill(process.pid, signal.SIGKILL)
    seconds = time.monotonic() - started
    process.wait(timeout=RUN_TIMEOUT_S)
    return _outcome(run, trigger.name, process.returncode == -signal.SIGKILL, seconds)


def run_to_completion(run: WfProcess) -> RunOutcome:
    started = time.monotonic()
    try:
        run.process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.process.kill()
        run.process.wait()
    return _outcome(run, "none", False, time.monotonic() - started)


@dataclass(frozen=True)
class Timeline:
    """How long an uninterrupted run takes, and how long before its first turn record."""

    startup_s: float
    total_s: float


def timed_run(run: WfProcess, probe: Callable[[], Progress]) -> tuple[RunOutcome, Timeline]:
    started = time.monotonic()
    first_record = None
    while first_record is None and run.process.poll() is None:
        if probe().turn_records:
            first_record = time.monotonic() - started
        time.sleep(0.02)
    outcome = run_to_completion(run)
    total = time.monotonic() - started
    return outcome, Timeline(startup_s=first_record or total, total_s=total)


# --- reading a home after the fact ----------------------------------------------------------


def sqlite_files(root: Path) -> Iterator[Path]:
    """Every SQLite database file under ``root`` (by its header, not its name)."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm", "-journal")):
            with path.open("rb") as handle:
                if handle.read(16) == b"SQLite format 3\x00":
                    yield path


def table_names(db: Path) -> list[str]:
    connection = sqlite3.connect(db, timeout=5)
    try:
        return [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        connection.close()


def integrity(db: Path) -> str:
    """PRAGMA integrity_check; writable, since a killed writer's WAL must be replayed first."""
    connection = sqlite3.connect(db, timeout=5)
    try:
        return "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check").fetchall())
    finally:
        connection.close()


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
