"""The ``wf`` command: parse arguments, call one function, format the answer.

Every failure the product knows about is a WfError; it is printed as ``code: message``
(or as JSON with ``--json``) and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wf_pipeline import __version__
from wf_pipeline.errors import WfError
from wf_pipeline.settings import Settings

EXIT_FAILED = 1


def _settings() -> Settings:
    # The one place the command reads its settings: the process environment, once.
    return Settings.from_env()


def _emit(args: argparse.Namespace, payload: Any, render: Callable[[Console, Any], None]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, sort_keys=True))
    else:
        render(Console(), payload)


# --- commands ------------------------------------------------------------------------


def cmd_scan(args: argparse.Namespace) -> int:
    """``wf scan PATH``: scan a tree and record its nodes' Merkle ids.

    Args:
        args: the parsed command line (``path``, ``json``).

    Returns:
        The exit status, 0. Prints the summary of `service.scan` (counts of directories,
        files and omitted entries, and the scan's warnings), as JSON with ``--json``.

    Raises:
        WfError: ``CONFIG_*`` for bad settings, ``TREE_*`` for a bad root and the record
            store's ``RECORD_*`` errors; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    summary = service.scan(_settings(), Path(args.path))

    def render(console: Console, s: dict) -> None:
        console.print(f"[bold]{s['root']}[/]  root {s['root_id']}")
        console.print(f"{s['directories']} directories, {s['files']} files; omitted {s['omitted']}")
        for warning in s["warnings"]:
            console.print(f"[yellow]{warning['code']}[/]: {warning['path']}")

    _emit(args, summary, render)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    """``wf profiles list|validate|show``: list, validate or show the workflow profiles.

    Args:
        args: the parsed command line (``action``, ``workflow_id`` for show, ``file`` for
            validate, ``json``).

    Returns:
        The exit status, 0. ``list`` prints one row per profile, ``validate`` the valid
        workflow ids, ``show`` the resolved profile as JSON.

    Raises:
        SystemExit: ``show`` without a WORKFLOW_ID (exit status 1, argparse-style usage error).
        WfError: ``CONFIG_*`` for bad settings, ``PROFILE_NOT_FOUND`` and the loader's other
            ``PROFILE_*`` errors; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    settings = _settings()
    if args.action == "validate":
        result = service.validate_profiles(settings, Path(args.file) if args.file else None)
        _emit(args, result, lambda c, p: c.print(f"valid: {', '.join(p['valid'])}"))
        return 0
    if args.action == "show":
        if not args.workflow_id:
            raise SystemExit("wf profiles show needs a WORKFLOW_ID")
        _emit(args, service.show_profile(settings, args.workflow_id), lambda c, p: c.print_json(data=p))
        return 0

    def render(console: Console, data: list[dict]) -> None:
        table = Table("workflow_id", "version", "layer", "source", "title")
        for row in data:
            table.add_row(row["workflow_id"], row["version"], row["layer"], row["source"], row["title"])
        console.print(table)

    _emit(args, service.list_profiles(settings), render)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``wf run WORKFLOW_ID PATH``: run a workflow over a tree bottom-up and write its outputs.

    Args:
        args: the parsed command line (``workflow_id``, ``path``, ``out``, ``in_place``,
            ``overwrite``, ``json``).

    Returns:
        The exit status: 0 when every thread succeeded, 1 (``EXIT_FAILED``) otherwise. Prints
        the run summary (one row per thread, provider calls); a progress bar goes to stderr
        only when it is a terminal and ``--json`` is off.

    Raises:
        WfError: those of `service.run_workflow` (``CONFIG_*``, ``TREE_*``, ``PROFILE_*``,
            ``RUN_*``); `main` prints them and exits 1.
    """
    from wf_pipeline import service

    with _progress(args) as on_progress:
        summary = service.run_workflow(
            _settings(),
            args.workflow_id,
            Path(args.path),
            out_dir=Path(args.out).resolve() if args.out else None,
            in_place=args.in_place,
            overwrite=args.overwrite,
            on_progress=on_progress,
        )
    _emit(args, summary.to_json(), _render_run)
    return 0 if summary.ok else EXIT_FAILED


def cmd_backfill(args: argparse.Namespace) -> int:
    """``wf backfill WORKFLOW_ID PATH``: run every pending thread in one batched run per depth level.

    Args:
        args: the parsed command line (``workflow_id``, ``path``, ``json``).

    Returns:
        The exit status: 0 when every thread succeeded, 1 (``EXIT_FAILED``) otherwise. The
        outputs are written where the tree's outputs go (``wf targets sync``).

    Raises:
        WfError: those of `service.backfill` (the same as `service.run_workflow`); `main`
            prints them and exits 1.
    """
    from wf_pipeline import service

    with _progress(args) as on_progress:
        summary = service.backfill(_settings(), args.workflow_id, Path(args.path), on_progress=on_progress)
    _emit(args, summary.to_json(), _render_run)
    return 0 if summary.ok else EXIT_FAILED


def cmd_targets(args: argparse.Namespace) -> int:
    """``wf targets sync PATH [--out DIR | --in-place [--overwrite]]``: register a tree, its targets and partitions.

    Args:
        args: the parsed command line (``path``, ``workflow`` (optional when only one workflow
            is loaded), ``out``, ``in_place``, ``overwrite``, ``json``).

    Returns:
        The exit status, 0. Prints the count of targets, of depth levels and the partitions
        definition's name.

    Raises:
        WfError: ``TREE_*`` for a bad root, ``RUN_WORKFLOW_REQUIRED`` when several workflows
            could be meant, ``PROFILE_*`` for an unknown one; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    result = service.sync_targets(
        _settings(),
        args.workflow,
        Path(args.path),
        out_dir=Path(args.out).resolve() if args.out else None,
        in_place=args.in_place,
        overwrite=args.overwrite,
    )

    def render(console: Console, r: dict) -> None:
        console.print(
            f"{len(r['targets'])} targets in {r['levels']} levels registered as partitions {r['partitions']}"
        )
        place = "in place" if r["in_place"] else "under"
        console.print(f"tree {r['tree']}: outputs are written {place} {r['out_dir']}", markup=False)

    _emit(args, result, render)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``wf export TREE [--out DIR]``: write the latest outputs of a registered tree from the CAS.

    Args:
        args: the parsed command line (``tree``: a path, tree key or base name; ``out``;
            ``workflow``; ``json``).

    Returns:
        The exit status, 0. Prints how many outputs were written and where.

    Raises:
        WfError: ``RUN_UNKNOWN_TREE`` and the errors of `service.export_outputs`; `main`
            prints them and exits 1.
    """
    from wf_pipeline import service

    result = service.export_outputs(
        _settings(),
        args.tree,
        out_dir=Path(args.out).resolve() if args.out else None,
        workflow_id=args.workflow,
    )

    def render(console: Console, r: dict) -> None:
        console.print(
            f"{len(r['written'])} outputs of {r['tree']} written under {r['out_dir']}; "
            f"{len(r['missing'])} directories have none yet",
            markup=False,
        )

    _emit(args, result, render)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """``wf resume THREAD_ID``: re-run a failed or interrupted thread and write its output.

    Args:
        args: the parsed command line (``thread_id``, ``out``, ``json``).

    Returns:
        The exit status: 0 when the thread succeeded, 1 (``EXIT_FAILED``) otherwise.

    Raises:
        WfError: ``RUN_UNKNOWN_THREAD``, ``RUN_THREAD_STALE`` and the errors of
            `service.resume_thread`; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    summary = service.resume_thread(
        _settings(), args.thread_id, out_dir=Path(args.out).resolve() if args.out else None
    )
    _emit(args, summary.to_json(), _render_run)
    return 0 if summary.ok else EXIT_FAILED


def cmd_threads(args: argparse.Namespace) -> int:
    """``wf threads list|show``: list the recorded threads, or show one with its turns.

    Args:
        args: the parsed command line (``action``, ``thread_id`` for show, ``workflow`` to
            filter the list, ``json``).

    Returns:
        The exit status, 0.

    Raises:
        SystemExit: ``show`` without a THREAD_ID (exit status 1, a usage error).
        WfError: ``RUN_UNKNOWN_THREAD`` for show, the record store's ``RECORD_*`` errors;
            `main` prints them and exits 1.
    """
    from wf_pipeline import service

    if args.action == "show":
        if not args.thread_id:
            raise SystemExit("wf threads show needs a THREAD_ID")
        _emit(args, service.show_thread(_settings(), args.thread_id), _render_thread)
        return 0

    def render(console: Console, rows: list[dict]) -> None:
        table = Table("thread_id", "workflow", "target", "status", "last turn")
        for row in rows:
            table.add_row(
                row["thread_id"], row["workflow_id"], row["target"], row["status"], str(row["last_turn_seq"])
            )
        console.print(table)

    _emit(args, service.list_threads(_settings(), args.workflow), render)
    return 0


# --- rendering -----------------------------------------------------------------------


def _render_run(console: Console, s: dict) -> None:
    table = Table("directory", "status", "thread_id", "README")
    for t in s["threads"]:
        status = t["status"] + (" (reused)" if t["reused"] else "")
        written = "written" if t["output_path"] else "-"
        table.add_row(t["path"], status, t["thread_id"], written)
    console.print(table)
    console.print(f"provider calls: {s['provider_calls']}, threads reused: {s['threads_reused']}")
    if s["out_dir"]:
        console.print(f"READMEs written under [bold]{s['out_dir']}[/]")


def _render_thread(console: Console, d: dict) -> None:
    console.print(
        f"[bold]{d['thread_id']}[/] {d['workflow_id']} target {d['target_key']} ({d['target_path']}): {d['status']}"
    )
    table = Table("seq", "turn", "attempt", "status", "output artifact", "gate")
    for t in d["turns"]:
        gate = t["gate"]
        verdict = (
            "-"
            if gate is None
            else f"{gate['gate_id']}: {gate['outcome']}"
            + (f" {', '.join(gate['reasons'])}" if gate["reasons"] else "")
        )
        table.add_row(
            str(t["seq"]),
            t["turn_id"],
            str(t["attempt"]),
            t["status"] + (f" {t['error_code']}" if t["error_code"] else ""),
            t["output_artifact_id"] or "-",
            verdict,
        )
    console.print(table)


class _progress:
    """A rich progress bar of threads done of total (stderr, so --json stays clean)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._enabled = not args.json and sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("threads"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int], None]:
        if self._enabled:
            self._progress.start()

        def update(done: int, total: int) -> None:
            if not self._enabled:
                return
            if self._task is None:
                self._task = self._progress.add_task("threads", total=total)
            self._progress.update(self._task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            self._progress.stop()


# --- parser ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``wf`` argument parser: ``--version`` and one subcommand per use case.

    Returns:
        An ``argparse.ArgumentParser`` whose parsed namespace has ``handler`` (the ``cmd_*``
        function to call) and ``json``. ``--version`` prints ``wf <version>`` and exits 0; a bad
        command line exits 2 (argparse's rule). Raises nothing itself.
    """
    parser = argparse.ArgumentParser(
        prog="wf", description="Declarative multi-turn agent workflows over codebases, on Dagster."
    )
    # The installed distribution's version (importlib.metadata), read by wf_pipeline/__init__.py.
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", parents=[common], help="scan a tree and record its Merkle node ids")
    scan.add_argument("path")
    scan.set_defaults(handler=cmd_scan)

    profiles = sub.add_parser("profiles", parents=[common], help="list, validate or show workflow profiles")
    profiles.add_argument("action", choices=["list", "validate", "show"])
    profiles.add_argument("workflow_id", nargs="?", help="for show: the workflow id")
    profiles.add_argument("--file", help="for validate: one profile file instead of every layer")
    profiles.set_defaults(handler=cmd_profiles)

    run = sub.add_parser("run", parents=[common], help="run a workflow over a directory tree, bottom-up")
    run.add_argument("workflow_id")
    run.add_argument("path")
    run.add_argument(
        "--out",
        help="folder the outputs mirror the tree into, recorded for the tree "
        "(default: the place `wf targets sync` recorded, else $WF_OUT/<tree key>)",
    )
    run.add_argument("--in-place", action="store_true", help="write README.md files into the tree itself")
    run.add_argument(
        "--overwrite", action="store_true", help="with --in-place: replace existing README.md files"
    )
    run.set_defaults(handler=cmd_run)

    backfill = sub.add_parser(
        "backfill", parents=[common], help="run every target of a tree in batched runs, one per depth level"
    )
    backfill.add_argument("workflow_id")
    backfill.add_argument("path")
    backfill.set_defaults(handler=cmd_backfill)

    targets = sub.add_parser("targets", parents=[common], help="register a tree's directories as partitions")
    targets.add_argument("action", choices=["sync"])
    targets.add_argument("path")
    targets.add_argument(
        "--workflow", help="the workflow whose partitions to sync (may be left out when only one is loaded)"
    )
    targets.add_argument(
        "--out", help="folder every launch path (UI, sensors, CLI) writes the tree's outputs into"
    )
    targets.add_argument("--in-place", action="store_true", help="write the outputs into the tree itself")
    targets.add_argument(
        "--overwrite", action="store_true", help="with --in-place: replace existing README.md files"
    )
    targets.set_defaults(handler=cmd_targets)

    export = sub.add_parser("export", parents=[common], help="write a tree's latest outputs from the CAS")
    export.add_argument("tree", help="the tree: its path, its key (name~hex) or its base name")
    export.add_argument("--out", help="folder to write into (default: the tree's recorded output place)")
    export.add_argument("--workflow", help="the workflow (may be left out when only one is loaded)")
    export.set_defaults(handler=cmd_export)

    resume = sub.add_parser("resume", parents=[common], help="resume a failed thread per its failure_policy")
    resume.add_argument("thread_id")
    resume.add_argument("--out", help="folder for the thread's output")
    resume.set_defaults(handler=cmd_resume)

    threads = sub.add_parser("threads", parents=[common], help="list threads or show one")
    threads.add_argument("action", choices=["list", "show"])
    threads.add_argument("thread_id", nargs="?")
    threads.add_argument("--workflow", help="only threads of this workflow")
    threads.set_defaults(handler=cmd_threads)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wf`` command: parse ``argv``, run the chosen command, print its error.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv``.

    Returns:
        The exit status: the command's (0 or 1), 1 (``EXIT_FAILED``) after a `WfError`, which is
        printed as ``CODE: message`` on stderr (or ``{"error": {...}}`` on stdout with
        ``--json``), and 2 for a command line argparse cannot parse (its convention).

    Raises:
        SystemExit: from argparse for ``--help``, ``--version`` (0) or a bad command line (2),
            and from a command missing its positional id. Errors that are not `WfError`
            propagate unchanged.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except WfError as exc:
        if args.json:
            print(json.dumps({"error": exc.to_dict()}, indent=2, sort_keys=True, default=str))
        else:
            print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
