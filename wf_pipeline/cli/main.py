"""The ``wf`` command: parse arguments, call one function, format the answer.

Exit statuses: 0 success; 1 an error (every failure the product knows about is a WfError,
printed as ``CODE: message`` on stderr, or as JSON with ``--json``), or a run in which a
thread failed; 2 a usage error, anything the command line alone shows to be wrong (an
unknown command or option, a missing argument, options that exclude each other), printed
by argparse with the usage line. Output goes through `wf_pipeline.cli.output`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wf_pipeline import __version__
from wf_pipeline.cli.output import (
    emit,
    plural,
    print_line,
    print_table,
    print_warnings,
    stderr_console,
    warnings_to,
    write_csv_rows,
    write_json_rows,
)
from wf_pipeline.errors import WfError
from wf_pipeline.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # argparse's own status for a bad command line


def _settings(args: argparse.Namespace | None = None) -> Settings:
    # The one place the command reads its settings: the process environment, once; a
    # command-line switch that mirrors a setting overrides its variable.
    settings = Settings.from_env()
    if args is not None and getattr(args, "follow_external_links", False):
        settings = settings.model_copy(update={"follow_external_links": True})
    if args is not None and getattr(args, "no_reuse_responses", False):
        settings = settings.model_copy(update={"reuse_responses": False})
    from wf_pipeline.service.telemetry import settings_warnings

    print_warnings(settings_warnings(settings))
    return settings


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _emit(args: argparse.Namespace, payload: Any, render: Callable[[Console, Any], None]) -> None:
    emit(args.json, payload, render)


#: Rows a ``wf telemetry query`` table shows at most; --json and --csv stream every row.
TABLE_ROW_LIMIT = 1000

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

    summary = service.scan(_settings(args), Path(args.path))

    def render(console: Console, s: dict) -> None:
        print_line(console, f"{s['root']}  root {s['root_id']}")
        omitted = [plural(count, f"{reason} file") for reason, count in sorted(s["omitted"].items()) if count]
        console.print(
            f"{plural(s['directories'], 'directory')}, {plural(s['files'], 'file')}; "
            f"left out of prompts: {', '.join(omitted) if omitted else 'none'}",
            highlight=False,
        )
        print_warnings(s["warnings"])

    _emit(args, summary, render)
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    """``wf profiles list|validate|show``: list, validate or show the workflow profiles.

    Args:
        args: the parsed command line (``action``, ``workflow_id`` and ``resolved`` for show,
            ``file`` for validate, ``json``).

    Returns:
        The exit status. ``list`` prints one row per profile (0); ``validate`` the valid
        workflow ids and each bad file with its code, 1 when any file is bad; ``show`` the
        resolved profile as JSON (0); ``show --resolved`` every field of the resolved profile
        with the layer and base, fragment or profile file it came from (a table, or
        `wf_pipeline.profiles.describe_resolved` with ``--json``) (0). A bad file never hides
        the good ones.

    Raises:
        WfError: ``CONFIG_*`` for bad settings, ``PROFILE_NOT_FOUND`` and the loader's other
            ``PROFILE_*`` errors; `main` prints them and exits 1. ``show`` without a
            WORKFLOW_ID is a usage error (`main` exits 2).
    """
    from wf_pipeline import service

    settings = _settings()
    if args.action == "validate":
        result = service.validate_profiles(settings, Path(args.file) if args.file else None)

        def render_validation(console: Console, p: dict) -> None:
            print_line(console, f"valid: {', '.join(p['valid']) or 'none'}")
            for bad in p["invalid"]:
                print_line(console, f"{bad['code']}: {bad['message']}", style="red")

        _emit(args, result, render_validation)
        return EXIT_FAILED if result["invalid"] else EXIT_OK
    if args.action == "show" and args.resolved:
        shown = service.show_profile(settings, args.workflow_id, resolved=True)

        def render_resolved(console: Console, p: dict) -> None:
            family = f"  family {p['family']}" if p["family"] else ""
            print_line(
                console, f"{p['workflow_id']}  {p['code_version']}  ({p['layer']}: {p['source']}){family}"
            )
            # Each document once with its file, in the order applied; the table names documents only.
            for source in p["sources"]:
                print_line(
                    console, f"  {source['kind']} {source['id']} ({source['layer']}): {source['path']}"
                )
            print_table(
                console,
                ("field", "value", "layer", "from"),
                [
                    (
                        r["field"],
                        # Long values (a description) are cut; --json gives them whole.
                        _cut(json.dumps(r["value"]), 60),
                        r["layer"] or "-",
                        f"{r['kind']} {r['id']}" if r["kind"] else "default",
                    )
                    for r in p["fields"]
                ],
            )

        _emit(args, shown, render_resolved)
        return 0
    if args.action == "show":
        _emit(args, service.show_profile(settings, args.workflow_id), lambda c, p: c.print_json(data=p))
        return 0

    def render(console: Console, data: list[dict]) -> None:
        print_table(
            console,
            ("workflow_id", "version", "layer", "source", "title"),
            [(r["workflow_id"], r["version"], r["layer"], r["source"], r["title"]) for r in data],
        )

    _emit(args, service.list_profiles(settings), render)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``wf run WORKFLOW_ID PATH`` or ``wf run --agent AGENT PATH``: run over a tree bottom-up and write the outputs.

    With ``--agent`` each target runs the workflow the agent's policy selects
    (`service.run_agent`); the report is one block per workflow, its targets and threads.

    Args:
        args: the parsed command line (``workflow_id``, ``path``, ``out``, ``in_place``,
            ``overwrite``, ``json``).

    Returns:
        The exit status: 0 when every thread succeeded (or the tree has nothing to
        document, which it says plainly), 1 (``EXIT_FAILED``) otherwise. Prints the run
        summary: one row per thread, how many directories were documented, reused and
        failed, provider calls, where the READMEs went, and ``failed: PATH: CODE: message``
        for each failed directory; a progress bar goes to stderr only when it is a terminal
        and ``--json`` is off.

    Raises:
        WfError: those of `service.run_workflow` (``CONFIG_*``, ``TREE_*``, ``PROFILE_*``,
            ``RUN_*``); `main` prints them and exits 1.
    """
    from wf_pipeline import service

    if args.agent is not None:
        return _run_agent(args)
    with _progress(args) as on_progress:
        summary = service.run_workflow(
            _settings(args),
            args.workflow_id,
            Path(args.path),
            out_dir=Path(args.out).resolve() if args.out else None,
            in_place=args.in_place,
            overwrite=args.overwrite,
            on_progress=on_progress,
        )
    _emit(args, summary.to_json(), _render_run)
    return 0 if summary.ok else EXIT_FAILED


def _run_agent(args: argparse.Namespace) -> int:
    from wf_pipeline import service

    summary = service.run_agent(
        _settings(args),
        args.agent,
        Path(args.path),
        out_dir=Path(args.out).resolve() if args.out else None,
        in_place=args.in_place,
        overwrite=args.overwrite,
    )

    def render(console: Console, data: dict) -> None:
        print_line(console, f"agent {data['agent_id']}")
        for run in data["runs"]:
            print_line(console, f"workflow {run['workflow_id']}: {len(run['targets'])} target(s)")
            _render_run(console, run["summary"])

    _emit(args, summary.to_json(), render)
    return 0 if summary.ok else EXIT_FAILED


def cmd_workflows(args: argparse.Namespace) -> int:
    """``wf workflows graph [--json|--dot]``: print the activation graph of the loaded profiles.

    Args:
        args: the parsed command line (``action``, ``json``, ``dot``).

    Returns:
        The exit status, 0. Prints one line per workflow and per activation edge
        (``A -> B when CONDITION (target)``), the graph as JSON with ``--json``, or as
        Graphviz DOT with ``--dot``.

    Raises:
        WfError: ``CONFIG_*`` for bad settings; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    graph = service.workflow_graph(_settings())
    if args.dot:
        sys.stdout.write(service.workflow_graph_dot(graph))
        return 0

    def render(console: Console, data: dict) -> None:
        print_line(console, f"workflows: {', '.join(data['nodes']) or 'none'}")
        for edge in data["edges"]:
            print_line(console, f"{edge['from']} -> {edge['to']} when {edge['when']} ({edge['target']})")
        if not data["edges"]:
            print_line(console, "no activations")

    _emit(args, graph, render)
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    """``wf agents list``: the agents of every layer with their bindings, and the agent files that failed.

    Returns:
        The exit status: 0, or 1 (``EXIT_FAILED``) when an agent file failed to load (each
        is printed as ``CODE: message``).

    Raises:
        WfError: ``CONFIG_*`` for bad settings; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    result = service.list_agents(_settings())

    def render(console: Console, data: dict) -> None:
        rows = [
            (
                a["agent_id"],
                a["layer"],
                ", ".join(
                    f"{b['workflow']}@{b['target']}:{b['priority']}" + (" (default)" if b["default"] else "")
                    for b in a["bindings"]
                ),
            )
            for a in data["agents"]
        ]
        print_table(console, ("agent_id", "layer", "bindings"), rows)
        for bad in data["invalid"]:
            print_line(console, f"{bad['code']}: {bad['message']}", style="red")

    _emit(args, result, render)
    return EXIT_FAILED if result["invalid"] else 0


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
        summary = service.backfill(
            _settings(args), args.workflow_id, Path(args.path), on_progress=on_progress
        )
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
        _settings(args),
        args.workflow,
        Path(args.path),
        out_dir=Path(args.out).resolve() if args.out else None,
        in_place=args.in_place,
        overwrite=args.overwrite,
    )

    def render(console: Console, r: dict) -> None:
        print_warnings(r["warnings"])
        print_line(
            console,
            f"{plural(len(r['targets']), 'target')} in {plural(r['levels'], 'level')} "
            f"registered as partitions {r['partitions']}",
        )
        place = "in place" if r["in_place"] else "under"
        print_line(console, f"tree {r['tree']}: outputs are written {place} {r['out_dir']}")

    _emit(args, result, render)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``wf export TREE [--out DIR]``: write the latest outputs of a registered tree from the CAS.

    Args:
        args: the parsed command line (``tree``: a path, tree key or base name; ``out``;
            ``workflow``; ``json``).

    Returns:
        The exit status: 0, or 1 (``EXIT_FAILED``) when a directory's output was deleted
        by retention or shredded (each printed as ``output not written: PATH:
        CAS_ARTIFACT_EXPIRED: ...`` or ``CAS_KEY_DESTROYED``; JSON ``expired``, ``shredded``). Prints how many outputs were written and where.

    Raises:
        WfError: ``RUN_UNKNOWN_TREE`` and the errors of `service.export_outputs`; `main`
            prints them and exits 1.
    """
    from wf_pipeline import service

    result = service.export_outputs(
        _settings(args),
        args.tree,
        out_dir=Path(args.out).resolve() if args.out else None,
        workflow_id=args.workflow,
    )

    def render(console: Console, r: dict) -> None:
        expired = f"; {plural(len(r['expired']), 'output')} expired" if r["expired"] else ""
        shredded = f"; {plural(len(r['shredded']), 'output')} shredded" if r["shredded"] else ""
        print_line(
            console,
            f"{plural(len(r['written']), 'output')} of {r['tree']} written under {r['out_dir']}; "
            f"{plural(len(r['missing']), 'directory')} without one yet{expired}{shredded}",
        )
        for item in [*r["expired"], *r["shredded"]]:
            print_line(console, f"output not written: {item['path']}: {item['code']}: {item['message']}")

    _emit(args, result, render)
    # An expired or shredded output is that directory's output failure, as in a run's summary.
    return EXIT_FAILED if result["expired"] or result["shredded"] else 0


def cmd_resume(args: argparse.Namespace) -> int:
    """``wf resume THREAD_ID``: re-run a failed or interrupted thread and write its output.

    Args:
        args: the parsed command line (``thread_id``, ``out``, ``json``).

    Returns:
        The exit status: 0 when the thread succeeded, 1 (``EXIT_FAILED``) otherwise. Prints
        what the resume did: turns run again, turns reused, the thread's final status, and
        its ``CODE: message`` when it failed again.

    Raises:
        WfError: ``RUN_UNKNOWN_THREAD``, ``RUN_THREAD_STALE`` and the errors of
            `service.resume_thread`; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    summary = service.resume_thread(
        _settings(args), args.thread_id, out_dir=Path(args.out).resolve() if args.out else None
    )
    _emit(args, summary.to_json(), _render_resume)
    return 0 if summary.ok else EXIT_FAILED


def cmd_replay(args: argparse.Namespace) -> int:
    """``wf replay THREAD_ID | --tree PATH [--verify]``: re-execute threads from their recorded answers.

    Args:
        args: the parsed command line (``thread_id`` or ``tree``, ``workflow``, ``verify``,
            ``provider``, ``json``).

    Returns:
        0 when every replay matched its records (``--verify``) or completed, 1
        (``EXIT_FAILED``) otherwise. Prints one line per thread and, for each divergence,
        the turn, artifact class, expected and actual digests and the first differing input;
        on a verified tree, one line per re-judged activation and each of its differences.

    Raises:
        WfError: ``RUN_UNKNOWN_THREAD``, ``REPLAY_NOTHING_RECORDED``, ``TREE_*``,
            ``PROFILE_*``, ``PROVIDER_*`` of `service.replay.replay`; `main` prints them.
    """
    from wf_pipeline.service.replay import replay

    if (args.thread_id is None) == (args.tree is None):
        args.parser.error("name one THREAD_ID or --tree PATH")
    with _progress(args) as on_progress:
        report = replay(
            _settings(args),
            thread_id=args.thread_id,
            tree=Path(args.tree) if args.tree else None,
            workflow_id=args.workflow,
            verify=args.verify,
            pinned=args.pinned,
            provider_name=args.provider,
            on_progress=on_progress,
        )
    _emit(args, report.to_json(), _render_replay)
    return 0 if report.matched else EXIT_FAILED


def _render_replay(console: Console, r: dict) -> None:
    for t in r["threads"]:
        if t["unreplayable"]:
            state = f"not replayed: {t['unreplayable']}"
        elif t["matched"]:
            state = "matched" if r["verified"] else "completed"
        else:
            state = "diverged" if t["divergences"] else f"{t['status']} ({t['error_code']})"
        print_line(console, f"{t['thread_id']} {t['target_path']}: {state}")
        for d in t["divergences"]:
            why = d["first_difference"]
            cause = (
                f"; first difference: {why['input']} {why['expected']} -> {why['actual']}"
                + (f" ({why['detail']})" if why["detail"] else "")
                if why
                else ""
            )
            print_line(
                console,
                f"  {d['turn_id']} attempt {d['attempt']} {d['artifact_class']}: "
                f"expected {d['expected']}, got {d['actual']}{cause}",
            )
    for g in r["gone"]:
        print_line(console, f"{g['thread_id']} {g['target_path']}: recorded, no longer in the tree")
    for a in r.get("activations", []):
        edge = f"{a['source_workflow_id']} -> {a['target_workflow_id']} ({a['condition']})"
        print_line(console, f"{a['activation_id']} {edge}: {'matched' if a['matched'] else 'diverged'}")
        for why in a["differences"]:
            print_line(
                console,
                f"  activation: expected {a['expected']}, got {a['actual']}; difference: "
                f"{why['input']} {why['expected']} -> {why['actual']}"
                + (f" ({why['detail']})" if why["detail"] else ""),
            )
    c = r["counts"]
    if r["verified"]:
        diverged = c["divergences"] + c.get("activation_divergences", 0)
        verdict = "every digest equal" if r["matched"] else f"{plural(diverged, 'divergence')}"
    else:
        verdict = f"{c['matched']} completed, {c['threads'] - c['matched']} not"
    extra = [f"{plural(c['provider_calls'], 'provider call')}"]
    if c["unrecorded"]:
        extra.append(f"{plural(c['unrecorded'], 'directory', 'directories')} with no finished thread")
    if c["gone"]:
        extra.append(f"{plural(c['gone'], 'recorded directory', 'recorded directories')} gone")
    if c.get("activations"):
        extra.append(
            f"{plural(c['activations'], 'activation')} re-judged, {c['activation_divergences']} diverged"
        )
    print_line(
        console,
        f"{plural(c['threads'], 'thread')} replayed with {r['provider']}"
        f"{' and verified' if r['verified'] else ''}: {verdict}; " + "; ".join(extra),
    )


def cmd_migrate(args: argparse.Namespace) -> int:
    """``wf migrate WORKFLOW_ID --plan | --apply``: threads on older versions, their re-run cost, the re-run.

    Args:
        args: the parsed command line (``workflow_id``, ``apply`` (False for ``--plan``), ``json``).

    Returns:
        The exit status, 0. Prints per outdated thread its id, target path, pinned and
        current code versions and the turns whose request changes out of all, then the
        totals (threads, turns that will call the provider, turns answered from recorded
        responses); with ``--apply``, the backfill runs launched.

    Raises:
        WfError: those of `service.migrate_workflow`; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    settings = _settings(args)
    if args.apply:
        with _progress(args) as on_progress:
            report = service.migrate_workflow(settings, args.workflow_id, apply=True, on_progress=on_progress)
    else:
        report = service.migrate_workflow(settings, args.workflow_id)
    _emit(args, report.to_json(), _render_migrate)
    return 0


def cmd_threads(args: argparse.Namespace) -> int:
    """``wf threads list|show``: list the recorded threads, or show one with its turns.

    Args:
        args: the parsed command line (``action``, ``thread_id`` for show, ``workflow`` to
            filter the list, ``json``).

    Returns:
        The exit status, 0.

    Raises:
        WfError: ``RUN_UNKNOWN_THREAD`` for show, the record store's ``RECORD_*`` errors;
            `main` prints them and exits 1. ``show`` without a THREAD_ID is a usage error
            (`main` exits 2).
    """
    from wf_pipeline import service

    if args.action == "show":
        _emit(args, service.show_thread(_settings(), args.thread_id), _render_thread)
        return 0

    def render(console: Console, rows: list[dict]) -> None:
        print_table(
            console,
            ("thread_id", "workflow", "target", "status", "last turn"),
            [(r["thread_id"], r["workflow_id"], r["target"], r["status"], r["last_turn_seq"]) for r in rows],
        )

    _emit(args, service.list_threads(_settings(), args.workflow), render)
    return 0


def cmd_gates(args: argparse.Namespace) -> int:
    """``wf gates explain THREAD_ID [--turn T]``: each turn's latest gate findings, grouped by rule.

    Args:
        args: the parsed command line (``action``, ``thread_id``, ``turn``, ``json``).

    Returns:
        The exit status, 0. Prints `service.explain_gates` (per turn: gate, outcome,
        attempt, then each rule id with its findings' code, pointer and hint), as JSON
        with ``--json``.

    Raises:
        WfError: ``RUN_UNKNOWN_THREAD``, ``RUN_UNKNOWN_TURN``, the record store's
            ``RECORD_*`` errors; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    _emit(args, service.explain_gates(_settings(args), args.thread_id, args.turn), _render_gate_findings)
    return 0


def _render_gate_findings(console: Console, d: dict) -> None:
    print_line(console, f"{d['thread_id']} {d['workflow_id']}")
    if not d["turns"]:
        print_line(console, "no gate verdicts recorded")
    for turn in d["turns"]:
        print_line(
            console,
            f"{turn['turn_id']} attempt {turn['attempt']}: gate {turn['gate_id']} {turn['outcome']}"
            + ("" if turn["rules"] else " (no findings)"),
        )
        for rule_id, findings in turn["rules"].items():
            print_line(console, f"  {rule_id}")
            for finding in findings:
                print_line(console, f"    {finding['reason']} at {finding['pointer']}: {finding['hint']}")


def cmd_ui(args: argparse.Namespace) -> int:
    """``wf ui``: serve the Dagster UI over the same instance and profiles as every ``wf`` command.

    Args:
        args: the parsed command line (``port``, ``host``).

    Returns:
        Does not return on success: the process becomes ``dg dev`` (so Ctrl-C reaches
        Dagster's own shutdown, which stops every process it started).

    Raises:
        WfError: ``CONFIG_UI_UNAVAILABLE``, ``CONFIG_INSTANCE_*`` and the settings'
            ``CONFIG_*`` errors; `main` prints them and exits 1.
    """
    from wf_pipeline import service

    argv, env = service.dagster_ui_command(_settings(), port=args.port, host=args.host)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)
    return EXIT_FAILED  # not reached: execve replaces the process or raises OSError


def cmd_cas(args: argparse.Namespace) -> int:
    """``wf cas verify [--repair]``: check every CAS object against its id, quarantine corrupt ones.

    Args:
        args: the parsed command line (``action``, ``repair``, ``json``).

    Returns:
        The exit status: 0 when every object is intact (or, with ``--repair``, was
        repaired), 1 (``EXIT_FAILED``) when anything stays corrupt. A progress bar of
        objects goes to stderr when it is a terminal and ``--json`` is off.

    Raises:
        WfError: those of `service.verify_cas` (``CAS_*``, ``RECORD_*``, ``PROFILE_*``,
            ``CONFIG_*``); `main` prints them and exits 1.
    """
    from wf_pipeline import service

    with _progress(args, label="objects") as on_progress:
        result = service.verify_cas(_settings(), repair=args.repair, on_progress=on_progress)
    _emit(args, result, _render_verify)
    return 0 if result["ok"] else EXIT_FAILED


def cmd_compact(args: argparse.Namespace) -> int:
    """``wf compact``: archive old threads' records, sweep orphan CAS objects and scratch files, merge telemetry.

    Args:
        args: the parsed command line (``json``).

    Returns:
        0. A progress bar of the parts goes to stderr when it is a terminal and ``--json`` is off.

    Raises:
        WfError: those of `service.compact` (``METADATA_BAD_DURATION``,
            ``RETENTION_ARCHIVE_ERROR``, ``CAS_*``, ``RECORD_*``, ``PROFILE_*``,
            ``TELEMETRY_WRITE_FAILED``); `main` prints them and exits 1.
    """
    from wf_pipeline import service

    with _progress(args, label="compaction parts") as on_progress:
        result = service.compact(_settings(), on_progress=on_progress)
    _emit(args, result.to_dict(), _render_compact)
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    """``wf retention plan|apply|hold|release|holds``: retention sweeps and legal holds.

    Args:
        args: the parsed command line (``action``; ``thread_id``, ``workflow``, ``reason``,
            ``hold_id`` for holds; ``json``).

    Returns:
        The exit status, 0. ``plan`` prints per class and workflow the count and bytes a
        sweep would delete; ``apply`` deletes them (a progress bar of artifacts on stderr)
        and prints deleted count, bytes freed and tombstones written.

    Raises:
        WfError: ``RETENTION_HOLD_NOT_FOUND``, ``RETENTION_SCOPE_UNKNOWN``, ``PROFILE_*``,
            ``RECORD_*``, ``CAS_*``; `main` prints them and exits 1.
    """
    from wf_pipeline.service import retention

    settings = _settings()
    if args.action == "plan":
        _emit(args, retention.retention_plan(settings), _render_retention)
    elif args.action == "apply":
        with _progress(args, label="artifacts") as on_progress:
            result = retention.retention_apply(settings, on_progress=on_progress)
        _emit(args, result, _render_retention)
    elif args.action == "hold":
        placed = retention.hold(
            settings, thread_id=args.thread_id, workflow_id=args.workflow, reason=args.reason or ""
        )
        _emit(args, placed, lambda console, h: print_line(console, f"held: {_hold_line(h)}"))
    elif args.action == "release":
        released = retention.release(
            settings, thread_id=args.thread_id, workflow_id=args.workflow, hold_id=args.hold_id
        )
        _emit(args, released, lambda c, rows: [print_line(c, f"released: {_hold_line(h)}") for h in rows])
    else:
        _emit(args, retention.list_holds(settings), _render_holds)
    return 0


def cmd_telemetry(args: argparse.Namespace) -> int:
    """``wf telemetry query "SQL" [--json|--csv]``, ``views``, ``synth``, ``report KIND [--since] [--png]``.

    Args:
        args: the parsed command line (``action``; ``sql`` and ``csv`` for query; ``rows``,
            ``days``, ``workflow`` for synth; ``report``, ``since``, ``png`` for report; ``json``).

    Returns:
        The exit status, 0. ``query`` prints a table of the result (CSV with a header line
        with ``--csv``, ``{"columns", "rows"}`` with ``--json``); ``views`` the views with
        their columns; ``synth`` the rows written and the writer's rows per second, with a
        progress bar of rows on a terminal; ``report`` the report's table and, with
        ``--png``, where its chart went (`wf_pipeline.service.telemetry_reports`).

    Raises:
        WfError: ``TELEMETRY_QUERY_INVALID`` (bad SQL), ``TELEMETRY_WRITE_FAILED``,
            ``TELEMETRY_BAD_ARGUMENTS`` (an unknown report), ``METADATA_BAD_DURATION``
            (``--since``), ``TELEMETRY_CHART_WRITE_FAILED`` (``--png``),
            ``CONFIG_*``; `main` prints them and exits 1.
    """
    from wf_pipeline.service import telemetry

    settings = _settings()
    if args.action == "query":
        if args.json or args.csv:
            # Streamed: a result of millions of rows is never held whole.
            with telemetry.stream_query(settings, args.sql) as (columns, rows):
                (write_json_rows if args.json else write_csv_rows)(columns, rows)
        else:
            _emit(args, telemetry.query_telemetry(settings, args.sql, limit=TABLE_ROW_LIMIT), _render_query)
    elif args.action == "views":
        _emit(args, telemetry.telemetry_views(settings), _render_views)
    elif args.action == "report":
        from wf_pipeline.service.telemetry_reports import telemetry_report

        png = Path(args.png) if args.png is not None else None
        _emit(args, telemetry_report(settings, args.report, since=args.since, png=png), _render_report)
    else:
        with _progress(args, label="rows") as on_progress:
            result = telemetry.synth_telemetry(
                settings, args.rows, args.days, workflow=args.workflow, on_progress=on_progress
            )
        _emit(args, result, _render_synth)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """``wf keys list|create|rotate|rewrap|retire|destroy|report``: the key lifecycle (`wf_pipeline.service.keys`).

    Args:
        args: the parsed command line (``action``; ``artifact_class`` for create and
            ``--class`` for list and rotate; ``page`` for rewrap; ``kek_id``, ``lineage`` and
            ``yes`` for destroy; ``kek_id`` for retire; ``json``).

    Returns:
        The exit status, 0. Prints ids, states, counts and times (ms), never key material:
        ``list`` a table of KEKs; ``create`` the primary KEK; ``rotate`` the new primaries;
        ``rewrap`` the counts (a progress bar of data keys on stderr); ``retire`` and
        ``destroy`` the KEKs changed; ``report`` the shredded artifacts per class and thread.

    Raises:
        WfError: ``KEYS_CONFIRMATION_REQUIRED`` (destroy without ``--yes``), ``KEYS_KEK_NOT_FOUND``,
            ``KEYS_KEK_STATE``, ``KEYS_KEK_IN_USE``, ``KEYS_MASTER_KEY_INVALID``,
            ``KEYS_MANAGER_*``, ``RECORD_*``; `main` prints them and exits 1.
    """
    from wf_pipeline.service import keys

    settings = _settings()
    if args.action == "list":
        _emit(args, keys.list_keys(settings, args.artifact_class), _render_keys)
    elif args.action == "create":
        _emit(args, keys.create_key(settings, args.artifact_class), _render_created_key)
    elif args.action == "rotate":
        _emit(args, keys.rotate_keys(settings, args.artifact_class or None), _render_rotated)
    elif args.action == "rewrap":
        with _progress(args, label="data keys") as on_progress:
            result = keys.rewrap_keys(settings, on_progress, page=args.page)
        _emit(args, result, _render_rewrap)
    elif args.action == "retire":
        _emit(
            args,
            keys.retire_key(settings, args.kek_id),
            lambda c, k: print_line(c, f"retired {_kek_line(k)}"),
        )
    elif args.action == "destroy":
        result = keys.destroy_keys(settings, args.kek_id, lineage=args.lineage, confirm=args.yes)
        _emit(args, result, _render_destroyed)
    else:
        _emit(args, keys.keys_report(settings), _render_keys_report)
    return 0


def cmd_identity(args: argparse.Namespace) -> int:
    """``wf identity create|list``: Ed25519 identities (`wf_pipeline.service.grants`).

    Args:
        args: the parsed command line (``action``; ``name``, ``admin``, ``approved_by`` and
            ``out`` for create; ``json``).

    Returns:
        The exit status, 0. ``create`` prints the name, role, public key fingerprint and
        the key file's path (the private key is never printed); ``list`` a table of
        identities.

    Raises:
        WfError: ``IDENTITY_INVALID``, ``IDENTITY_EXISTS``, ``IDENTITY_ADMIN_APPROVAL_REQUIRED``,
            ``IDENTITY_NOT_ADMIN``, ``RECORD_*``; `main` prints them and exits 1.
    """
    from wf_pipeline.service import grants

    settings = _settings()
    if args.action == "create":
        out = Path(args.out) if args.out is not None else None
        approved_by = Path(args.approved_by) if args.approved_by is not None else None
        _emit(
            args,
            grants.create_identity_file(
                settings, args.name, admin=args.admin, out_dir=out, approved_by=approved_by
            ),
            _render_identity,
        )
    else:
        _emit(args, grants.list_identities(settings), _render_identities)
    return 0


def cmd_grants(args: argparse.Namespace) -> int:
    """``wf grants issue|revoke|list``: signed, scoped, expiring read grants (`wf_pipeline.service.grants`).

    Args:
        args: the parsed command line (``action``; for issue ``admin``, ``grantee``,
            ``capability``, ``workflow``, ``thread``, ``node``, ``turns``, ``expires``,
            ``not_before``, ``reason``, ``max_bytes``, ``rate``, ``out``; ``grant_id``,
            ``admin`` and ``reason`` for revoke; ``json``).

    Returns:
        The exit status, 0. Prints grant ids, scopes, limits, usage and states; ``issue``
        also the grant file's path.

    Raises:
        WfError: ``IDENTITY_*``, ``GRANT_MALFORMED``, ``GRANT_SCOPE_INVALID``, ``GRANT_SELF_ISSUED``,
            ``GRANT_UNKNOWN``, ``AUDIT_UNAVAILABLE`` (revoke: nothing revoked), ``RECORD_*``;
            `main` prints them and exits 1.
    """
    from wf_pipeline.service import grants

    settings = _settings()
    if args.action == "issue":
        result = grants.issue_grant_file(
            settings,
            admin_key_file=Path(args.admin),
            grantee=args.grantee,
            capability=args.capability,
            workflow_id=args.workflow,
            thread_id=args.thread,
            node_id=args.node,
            turns=args.turns,
            expires=args.expires,
            not_before=args.not_before,
            reasons=args.reason,
            max_bytes=args.max_bytes,
            rate=args.rate,
            out=Path(args.out),
        )
        _emit(args, result, lambda c, g: print_line(c, f"issued {_grant_line(g)} -> {g['grant_file']}"))
    elif args.action == "revoke":
        _emit(
            args,
            grants.revoke_grant(settings, args.grant_id, admin_key_file=Path(args.admin), reason=args.reason),
            lambda c, g: print_line(c, f"{_grant_line(g)}"),
        )
    else:
        _emit(args, grants.list_grants(settings), _render_grants)
    return 0


def cmd_privileged(args: argparse.Namespace) -> int:
    """``wf privileged read ARTIFACT_ID``: a prompt or context payload under a signed grant.

    Args:
        args: the parsed command line (``artifact_id``, ``identity``, ``grant``, ``reason``,
            ``out``, ``json``).

    Returns:
        The exit status, 0. Without ``--out`` the payload's exact bytes go to stdout;
        with ``--out`` the payload goes to that file (mode 0600) and the ids, digest and
        size are printed (as JSON with ``--json``, which needs ``--out``: a usage error,
        exit 2, otherwise, checked before anything is decided or charged).

    Raises:
        WfError: every denial code of the read (``GRANT_*``, ``PRIVILEGED_*``, among them
            ``PRIVILEGED_OUT_INVALID`` for an ``--out`` that cannot be written or lies in
            the home or a store of the product), each audited,
            ``AUDIT_UNAVAILABLE``, ``IDENTITY_INVALID``, ``CAS_*``, ``KEYS_*``, ``RECORD_*``;
            `main` prints them and exits 1.
    """
    from wf_pipeline.service.privileged import read_privileged_to

    summary, payload = read_privileged_to(
        _settings(),
        args.artifact_id,
        out=Path(args.out) if args.out is not None else None,
        identity_file=Path(args.identity),
        grant_file=Path(args.grant),
        reason=args.reason,
    )
    if payload is not None and not args.json:
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return 0
    _emit(
        args,
        summary,
        lambda c, r: print_line(
            c,
            f"{r['artifact_id']}: {r['bytes']} bytes ({r['sha256']}) -> {r['out']}, audit event {r['audit_event_id']}",
        ),
    )
    return 0


def cmd_governance(args: argparse.Namespace) -> int:
    """``wf governance check [--specs DIR]``: every spec is well formed and every gate it names exists.

    Args:
        args: the parsed command line (``action``, ``specs``, ``json``).

    Returns:
        The exit status: 0 when every spec under the folder (default ``docs/specs`` of the
        checkout that holds the current directory) is valid, its gates name existing tests
        and benchmarks, and the index links every spec; 1 (``EXIT_FAILED``) otherwise, with
        one ``CODE: spec: message`` line per problem (``GOVERNANCE_SPEC_INVALID``,
        ``GOVERNANCE_GATE_MISSING``, ``GOVERNANCE_INDEX_INCOMPLETE``).

    Raises:
        WfError: ``GOVERNANCE_SPECS_NOT_FOUND`` (no checkout, no spec folder, no spec);
            `main` prints it and exits 1.
    """
    from wf_pipeline.service.governance import check_governance

    # Reads the checkout's files only: no settings, no home.
    result = check_governance(Path.cwd(), Path(args.specs) if args.specs else None)
    _emit(args, result, _render_governance)
    return 0 if result["ok"] else EXIT_FAILED


def _render_governance(console: Console, r: dict) -> None:
    gates = r["gates_found"]
    print_line(
        console,
        f"{plural(len(r['specs']), 'spec')} in {r['specs_dir']}; gates found: "
        f"{plural(gates['test'], 'test')}, {plural(gates['benchmark'], 'benchmark')}",
    )
    for problem in r["problems"]:
        print_line(console, f"{problem['code']}: {problem['message']}", style="red")
    if r["ok"]:
        print_line(console, "every spec is valid and every gate exists")


def cmd_audit(args: argparse.Namespace) -> int:
    """``wf audit list|verify|export``: the audit trail of privileged reads (`wf_pipeline.service.audit`).

    Args:
        args: the parsed command line (``action``; ``since``, ``grant_id`` and ``limit`` for
            list; ``json``).

    Returns:
        The exit status, 0. Prints ids, digests, codes, counts and times (ms), never
        payloads: ``list`` a table of events, oldest first; ``verify`` the events checked,
        the chain's head and whether seals were checked (with which audit key id);
        ``export`` how many events were copied to Parquet.

    Raises:
        WfError: ``AUDIT_CHAIN_BROKEN`` (verify: an event was deleted, altered, its seal
            missing or wrong, or reordered; the message names the positions),
            ``AUDIT_KEY_INVALID`` (verify: the audit key is malformed or unreadable),
            ``METADATA_BAD_DURATION`` (``--since``; ``--limit`` outside 1..2**63-1 is a
            usage error, exit 2),
            ``TELEMETRY_*`` (export), ``RECORD_*``; `main` prints them and exits 1.
    """
    from wf_pipeline.service import audit

    settings = _settings()
    if args.action == "list":
        result = audit.list_audit(settings, since=args.since, grant_id=args.grant_id, limit=args.limit)
        _emit(args, result, _render_audit_list)
    elif args.action == "verify":
        _emit(args, audit.verify_audit(settings), _render_audit_verify)
    else:
        _emit(args, audit.export_audit_events(settings), _render_audit_export)
    return 0


def cmd_metadata(args: argparse.Namespace) -> int:
    """``wf metadata keys|show``: the key registry and the default view of metadata (`wf_pipeline.service.metadata`).

    Args:
        args: the parsed command line (``action``; ``target`` for show; ``json``).

    Returns:
        The exit status, 0. ``keys`` prints every registered key with its owner domain,
        schema type, mutability class, hash impact, max bytes, retention, redaction,
        visibility and fold window; ``show`` prints a frame's (or a node's head frames')
        metadata and annotations as the caller may see them by default: values of public
        and internal keys, digests or nothing for privileged ones.

    Raises:
        WfError: ``METADATA_TARGET_NOT_FOUND`` for an unknown NODE|FRAME|THREAD, ``RECORD_*``;
            `main` prints them and exits 1.
    """
    from wf_pipeline.service import metadata

    if args.action == "keys":
        _emit(args, {"keys": metadata.list_keys()}, _render_metadata_keys)
    else:
        _emit(args, metadata.show_metadata(_settings(), args.target), _render_metadata_view)
    return 0


def _render_metadata_keys(console: Console, r: dict) -> None:
    print_table(
        console,
        (
            "key",
            "owner",
            "schema",
            "mutability",
            "hash",
            "max bytes",
            "retention",
            "redaction",
            "visibility",
            "fold after",
        ),
        [
            (
                k["name"],
                k["owner_domain"],
                k["schema_type"],
                k["mutability"],
                "yes" if k["hash_impact"] else "no",
                k["max_bytes"],
                k["retention"],
                k["redaction"],
                k["visibility"],
                k["fold_after"] or "-",
            )
            for k in r["keys"]
        ],
    )
    print_line(console, f"{plural(len(r['keys']), 'key')} registered")


def _render_metadata_view(console: Console, r: dict) -> None:
    for frame in r["frames"]:
        print_line(
            console,
            f"frame {frame['frame_id']} ({frame['frame_type']}) on node {frame['node_id']}: artifact {frame['artifact_id']}",
        )
        rows = []
        for section in ("metadata", "annotations"):
            view = frame[section]
            for key, shown in view["shown"].items():
                text = shown["value"] if "value" in shown else f"digest {shown['digest']}"
                rows.append((section, key, shown["visibility"], text))
            rows += [(section, key, "withheld", "-") for key in view["withheld"]]
        print_table(console, ("section", "key", "visibility", "value"), rows)


#: The largest count an option takes: counts go to SQL as signed 64-bit integers (a larger
#: one overflows SQLite's INTEGER and is a DataError on PostgreSQL).
MAX_COUNT = 2**63 - 1


def _ascii_int(text: str) -> int:
    """``text`` as an integer when it is an optional ``-`` and ASCII digits only; else a usage error.

    int() alone also takes any Unicode decimal digit (``\u0661`` is 1), underscores,
    a ``+`` and surrounding spaces, so a number could be typed in a form nobody reading the
    command line takes for one. Range checks are left to the option (or its service).

    Raises ``argparse.ArgumentTypeError`` (exit 2) naming the text.
    """
    digits = text[1:] if text.startswith("-") else text
    if not digits or not (digits.isascii() and digits.isdigit()):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number written in the digits 0-9")
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} ({len(text)} characters) is too long a number"
        ) from None


def _positive_int(text: str) -> int:
    # A bad count is visible on the command line alone: a usage error (exit 2).
    try:
        value = _ascii_int(text)
    except argparse.ArgumentTypeError:
        value = 0
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a whole number from 1 to {MAX_COUNT} (2**63 - 1)"
        )
    return value


# --- rendering -----------------------------------------------------------------------


def _render_compact(console: Console, r: dict) -> None:
    from wf_pipeline.metadata.durations import format_duration_ms

    grace = format_duration_ms(r["grace_ms"])
    archive, orphans, scratch, telemetry = r["archive"], r["orphans"], r["scratch"], r["telemetry"]
    rows = [
        (
            "archive",
            f"{plural(archive['threads_archived'], 'thread')} moved",
            f"{archive['bytes_written']} bytes written",
            f"{archive['skipped_changed']} changed meanwhile",
        ),
        (
            "orphans",
            f"{plural(orphans['deleted'], 'object')} deleted of {orphans['scanned']}",
            f"{orphans['bytes_freed']} bytes freed",
            f"{orphans['kept_young']} within grace",
        ),
        (
            "scratch",
            f"{plural(scratch['deleted'], 'file')} deleted",
            f"{scratch['bytes_freed']} bytes freed",
            f"{scratch['kept_young']} within grace",
        ),
    ]
    annotations = r.get("annotations")
    if annotations is not None:
        rows.append(
            (
                "annotations",
                f"{plural(annotations['events_folded'], 'event')} folded",
                f"{plural(len(annotations['keys']), 'key')} with a fold window",
                "view unchanged",
            )
        )
    if telemetry is not None:
        rows.append(("audit", f"{plural(r.get('audit_exported', 0), 'event')} copied to telemetry", "", ""))
        rows.append(
            (
                "telemetry",
                f"{plural(telemetry['files_merged'], 'file')} merged",
                f"{telemetry['bytes_before']} -> {telemetry['bytes_after']} bytes",
                f"{plural(telemetry['partitions'], 'partition')}",
            )
        )
    print_table(console, ("part", "done", "bytes", "kept"), rows)
    print_line(console, f"compaction {r['compaction_id']}: grace {grace}; archive in {r['archive_dir']}")


def _hold_line(h: dict) -> str:
    scope = f"thread {h['thread_id']}" if h["thread_id"] else f"workflow {h['workflow_id']}"
    return f"{h['hold_id']} on {scope}" + (f" ({h['reason']})" if h["reason"] else "")


def _render_holds(console: Console, rows: list[dict]) -> None:
    if not rows:
        console.print("no active holds")
        return
    print_table(
        console,
        ("hold_id", "thread", "workflow", "since (ms)", "reason"),
        [
            (h["hold_id"], h["thread_id"] or "-", h["workflow_id"] or "-", h["created_at_ms"], h["reason"])
            for h in rows
        ],
    )


def _render_retention(console: Console, r: dict) -> None:
    print_table(
        console,
        ("class", "workflow", "artifacts", "bytes"),
        [(g["artifact_class"], g["workflow_id"], g["count"], g["bytes"]) for g in r["groups"]],
    )
    kept = ", ".join(f"{count} {reason}" for reason, count in r["kept"].items()) or "none"
    # KEK lineages of shred-mode classes: planned ("shreds") or done ("shredded").
    lineages = r.get("shredded", r.get("shreds", []))
    if lineages:
        print_table(
            console,
            ("class", "period start", "KEKs", "artifacts", "keys moved", "status"),
            [
                (
                    s["artifact_class"],
                    s["period_start"],
                    " ".join(s["kek_ids"]),
                    s["artifacts"],
                    s.get("moved", s.get("moves")),
                    s.get("status", "planned"),
                )
                for s in lineages
            ],
        )
    for artifact_class, count in r.get("plaintext_in_shred_mode", {}).items():
        print_line(console, f"{artifact_class}: {plural(count, 'plaintext artifact')} deleted, not shredded")
    # Each workflow's effective windows, so a user sees why something is kept.
    print_table(
        console,
        ("workflow", "class", "window", "grace", "mode", "source"),
        [
            (
                p["workflow_id"],
                c["artifact_class"],
                c["window"],
                p["grace"],
                c.get("mode", "delete"),
                p["source"],
            )
            for p in r.get("policies", [])
            for c in p["classes"]
        ],
    )
    for problem in r.get("problems", []):
        print_line(console, f"profile not loaded: {problem['path']} ({problem['code']})")
    if r.get("apply_refused"):
        print_line(
            console,
            "apply would refuse (RETENTION_POLICY_UNAVAILABLE): this plan is not what apply would do",
        )
    if "deleted" in r:
        shredded = ""
        if r.get("shredded"):
            shredded = (
                f"; shredded {plural(r['shredded_artifacts'], 'artifact')} "
                f"({plural(r['shredded_lineages'], 'KEK lineage')} destroyed, "
                f"{r['deferred_lineages']} deferred, {plural(r['moved_keys'], 'key')} moved first)"
            )
        console.print(
            f"deleted {plural(r['deleted'], 'artifact')} ({r['bytes_freed']} bytes), "
            f"{plural(r['tombstones_written'], 'tombstone')} written{shredded}; kept by rule: {kept}",
            highlight=False,
        )
    else:
        shreds = ""
        if r.get("shreds"):
            shreds = (
                f"; would shred {plural(r['shredded_artifacts'], 'artifact')} "
                f"({plural(len(r['shreds']), 'KEK lineage')})"
            )
        console.print(
            f"would delete {plural(r['count'], 'artifact')} ({r['bytes']} bytes){shreds}; kept by rule: {kept}",
            highlight=False,
        )


def _kek_line(k: dict) -> str:
    return f"{k['kek_id']} ({k['artifact_class']}, period {k['period_start']}, generation {k['generation']}): {k['state']}"


def _render_keys(console: Console, r: dict) -> None:
    if not r["keks"]:
        console.print("no KEKs yet")
        return
    print_table(
        console,
        ("kek_id", "class", "period", "gen", "state", "manager", "data keys", "created (ms)"),
        [
            (
                k["kek_id"],
                k["artifact_class"],
                k["period_start"],
                k["generation"],
                k["state"],
                k["manager"],
                k["data_keys"],
                k["created_at_ms"],
            )
            for k in r["keks"]
        ],
    )
    print_line(
        console,
        f"{plural(len(r['keks']), 'KEK')} wrapping {plural(r['data_keys'], 'data key')}; "
        f"{r['under_decrypt_only']} under decrypt-only KEKs (wf keys rewrap moves them)",
    )


def _render_identity(console: Console, i: dict) -> None:
    print_line(
        console,
        f"created {i['role']} {i['name']} ({i['public_key_sha256']}); key file written to {i['key_file']}",
    )


def _render_identities(console: Console, rows: list[dict]) -> None:
    if not rows:
        console.print("no identities yet")
        return
    print_table(
        console,
        ("name", "role", "standing", "approved by", "public key", "created (ms)"),
        [
            (
                i["name"],
                i["role"],
                i["standing"] or "",
                i["approved_by"] or "",
                i["public_key_sha256"],
                i["created_at_ms"],
            )
            for i in rows
        ],
    )


def _grant_line(g: dict) -> str:
    return f"{g['grant_id']} ({g['capability']} for {g['grantee']} by {g['issuer']}, {g['workflow_id']}): {g['state']}"


def _render_grants(console: Console, rows: list[dict]) -> None:
    if not rows:
        console.print("no grants yet")
        return
    print_table(
        console,
        ("grant_id", "grantee", "capability", "workflow", "state", "expires (ms)", "bytes used", "reads"),
        [
            (
                g["grant_id"],
                g["grantee"],
                g["capability"],
                g["workflow_id"],
                g["state"],
                g["expires_at_ms"],
                f"{g['bytes_used']}/{g['max_bytes']}",
                g["reads"],
            )
            for g in rows
        ],
    )


def _render_created_key(console: Console, k: dict) -> None:
    print_line(console, f"{'created' if k['created'] else 'already primary'}: {_kek_line(k)}")


def _render_rotated(console: Console, r: dict) -> None:
    if not r["rotated"]:
        console.print("no lineage has a primary KEK: nothing rotated")
    for k in r["rotated"]:
        print_line(console, f"new primary {_kek_line(k)}")
    print_line(
        console, f"{plural(r['under_decrypt_only'], 'data key')} under decrypt-only KEKs: run wf keys rewrap"
    )


def _render_rewrap(console: Console, r: dict) -> None:
    print_line(
        console,
        f"rewrapped {plural(r['rewrapped'], 'data key')} in {r['elapsed_ms']} ms; "
        f"{r['skipped']} moved by another writer first; {r['remaining']} left under decrypt-only KEKs",
    )


def _render_destroyed(console: Console, r: dict) -> None:
    for k in r["destroyed"]:
        print_line(console, f"destroyed {_kek_line(k)}: {plural(k['data_keys'], 'artifact')} shredded")
    for kek_id in r["already_gone"]:
        print_line(console, f"{kek_id} was already retired or destroyed")
    print_line(
        console, f"{plural(r['data_keys_shredded'], 'artifact')} shredded in all (wf keys report lists them)"
    )


def _short_digest(value: str) -> str:
    # Enough of a digest to tell events apart in a table; --json prints it whole.
    return value[: len("sha256:") + 12]


def _render_audit_list(console: Console, r: dict) -> None:
    events = r["events"]
    if not events:
        console.print("no audit events" + ("" if r["since_ms"] is None else f" since {r['since']} ago"))
        return
    print_table(
        console,
        (
            "seq",
            "at (ms)",
            "event_id",
            "requester",
            "grant",
            "reason",
            "outcome",
            "code",
            "bytes",
            "artifacts",
            "hash",
        ),
        [
            (
                e["seq"],
                e["at_ms"],
                e["event_id"],
                e["requester"],
                e["grant_id"] or "-",
                e["reason_code"] or "-",
                e["outcome"],
                e["code"] or "-",
                e["bytes"],
                len(e["artifact_ids"]),
                _short_digest(e["event_hash"]),
            )
            for e in events
        ],
    )
    denied = sum(1 for e in events if e["outcome"] == "deny")
    print_line(console, f"{plural(len(events), 'event')}, {denied} denied")


def _render_audit_verify(console: Console, r: dict) -> None:
    if not r["events"]:
        console.print("the audit trail is empty")
        return
    witness = r["witness"]
    problem = r.get("witness_error")
    if problem is not None:
        seen = f"head NOT checked: the Parquet copy is unreadable ({problem['code']}: {problem['message']})"
    elif witness is None:
        seen = "no Parquet copy to compare the head with"
    else:
        seen = f"Parquet copy up to seq {witness['seq']}"
    if r["sealed_checked"]:
        sealed = f"seals checked with audit key {r['key_id']}"
    else:
        sealed = "seals NOT checked: this home has no audit key (WF_AUDIT_KEY, WF_AUDIT_KEY_FILE)"
    if r["unsealed"]:
        sealed += f"; {plural(r['unsealed'], 'event')} without a seal"
    print_line(
        console,
        f"audit trail verifies: {plural(r['events'], 'event')}, head seq {r['head_seq']} ({r['head_hash']}); "
        f"{sealed}; {seen}",
        style="yellow" if problem is not None or not r["sealed_checked"] else None,
    )


def _render_audit_export(console: Console, r: dict) -> None:
    if r["telemetry"] is None:
        console.print("telemetry is off (WF_TELEMETRY=0): nothing exported")
        return
    print_line(
        console,
        f"exported {plural(r['exported'], 'audit event')} (after seq {r['after_seq']}, up to {r['head_seq']}) "
        f"to {r['telemetry']}",
    )


def _render_keys_report(console: Console, r: dict) -> None:
    print_line(
        console,
        f"{plural(r['shredded'], 'artifact')} unreadable under {plural(len(r['destroyed_keks']), 'destroyed KEK')}",
    )
    if r["by_class"]:
        print_table(console, ("class", "artifacts"), sorted(r["by_class"].items()))
    if r["by_thread"]:
        print_table(
            console,
            ("thread", "archived", "artifacts"),
            [(t["thread_id"], "yes" if t["archived"] else "no", t["artifacts"]) for t in r["by_thread"]],
        )
    if r["artifacts"]:
        print_table(
            console,
            ("artifact", "class", "kek_id", "threads / turns"),
            [
                (
                    a["artifact_id"],
                    a["artifact_class"],
                    a["kek_id"],
                    ", ".join(f"{link['thread_id']}/{link['turn_id']}" for link in a["links"]) or "-",
                )
                for a in r["artifacts"]
            ],
        )


def _render_query(console: Console, r: dict) -> None:
    print_table(console, r["columns"], r["rows"])
    if r["omitted_rows"]:
        print_line(
            console,
            f"{plural(r['row_count'], 'row')}, first {len(r['rows'])} shown, "
            f"{r['omitted_rows']} left out (--json or --csv give all)",
        )
    else:
        console.print(plural(r["row_count"], "row"), highlight=False)


def _render_report(console: Console, r: dict) -> None:
    print_table(console, r["columns"], [[row[c] for c in r["columns"]] for row in r["rows"]])
    print_line(console, f"{r['report']} since {r['since']}: {plural(len(r['rows']), 'row')}")
    chart = r["chart"]
    if chart is not None:
        print_line(
            console,
            f"chart: {chart['path']} ({chart['width']} x {chart['height']} px, {chart['bytes']} bytes)",
        )


def _render_views(console: Console, r: dict) -> None:
    rows = [(v["name"], ", ".join(f"{c['name']} {c['type']}" for c in v["columns"])) for v in r["views"]]
    print_table(console, ("view", "columns"), rows)


def _render_synth(console: Console, r: dict) -> None:
    console.print(
        f"{plural(r['rows'], 'row')} over {plural(r['days'], 'day')} in {plural(r['files'], 'file')}: "
        f"{r['seconds']} s, writer {r['rows_per_s']} rows/s",
        highlight=False,
    )


def _render_verify(console: Console, r: dict) -> None:
    shredded = f"; {r['shredded']} shredded (KEK destroyed), not checked" if r.get("shredded") else ""
    print_line(
        console, f"checked {r['checked']} objects ({r['bytes_checked']} bytes) in {r['cas_url']}{shredded}"
    )
    for item in r["corrupt"]:
        print_line(
            console,
            f"{item['code']}: {item['artifact_id']} ({item['size']} bytes) is corrupt; "
            f"moved to {item['quarantined_to'] or '-'}",
        )
    for artifact_id in r["missing"]:
        print_line(console, f"CAS_NOT_FOUND: {artifact_id} is referenced by the records but not stored")
    for outcome in r["outcomes"]:
        reason = f": {outcome['reason']}" if outcome["reason"] else ""
        print_line(console, f"{outcome['artifact_id']} {outcome['status']}{reason}")
    if r["ok"]:
        lost = r["corrupt"] or r["missing"]
        console.print("every corrupt or missing object was repaired" if lost else "every object is intact")
    elif r["repair"]:
        console.print(f"{plural(r['unrepaired'], 'object')} could not be repaired")
    else:
        console.print(
            f"{plural(r['unrepaired'], 'object')} corrupt or missing; "
            "wf cas verify --repair runs their turns again"
        )


def _render_run(console: Console, s: dict) -> None:
    print_warnings(s.get("warnings", []))
    if not s["threads"]:
        print_line(console, f"nothing to document: no directory under {s['root']} has a readable text file")
        return
    rows = [
        (
            t["path"],
            t["status"]
            + (" (reused)" if t["reused"] else "")
            + (f" {t['error_code']}" if t["error_code"] else ""),
            t["thread_id"],
            "written" if t["output_path"] else ("failed" if t.get("output_error") else "-"),
        )
        for t in s["threads"]
    ]
    print_table(console, ("directory", "status", "thread_id", "output"), rows)
    _render_outcome(console, s)


def _render_outcome(console: Console, s: dict) -> None:
    c = s["counts"]
    parts = [f"{c['documented']} documented", f"{c['reused']} reused", f"{c['failed']} failed"]
    if c["unfinished"]:
        parts.append(f"{c['unfinished']} unfinished")
    if c.get("output_failed"):
        parts.append(f"{plural(c['output_failed'], 'output')} not written")
    console.print(f"{plural(len(s['threads']), 'directory')}: {', '.join(parts)}", highlight=False)
    answered = s.get("recorded_answers", 0)
    console.print(
        plural(s["provider_calls"], "provider call")
        + (f", {plural(answered, 'turn')} answered from recorded responses" if answered else ""),
        highlight=False,
    )
    if c["written"]:
        where = s["out_dir"] or s["root"]
        print_line(console, f"{plural(c['written'], 'output')} written under {where}")
    for t in s["threads"]:
        if t["status"] == "failed":
            # CODE: message, with the figures the message carries (never payload text).
            print_line(console, f"failed: {t['path']}: {t['error_code']}: {t['error_text'] or ''}")
        elif t.get("output_error"):
            # The thread completed; its output stays in the CAS (`wf export` writes it later).
            print_line(console, f"output not written: {t['path']}: {t['output_error']}")


def _render_resume(console: Console, s: dict) -> None:
    for t in s["threads"]:
        print_line(
            console,
            f"thread {t['thread_id']} ({t['path']}): {plural(t['turns_run'], 'turn')} run again, "
            f"{plural(t['turns_reused'], 'turn')} reused; now {t['status']}",
        )
    _render_outcome(console, s)


def _render_migrate(console: Console, r: dict) -> None:
    if not r["threads"]:
        print_line(
            console, f"{r['workflow_id']}: every thread is on the current code version {r['code_version']}"
        )
        return
    rows = [
        (
            t["thread_id"],
            t["path"],
            t["pinned_code_version"],
            t["current_code_version"],
            f"{t['turns_changing']}/{t['turns_total']}",
        )
        for t in r["threads"]
    ]
    print_table(console, ("thread_id", "target", "pinned", "current", "turns changing"), rows)
    totals = r["totals"]
    console.print(
        f"{plural(totals['threads'], 'thread')} on older versions: "
        f"{plural(totals['provider_calls'], 'turn')} will call the provider, "
        f"{plural(totals['answered'], 'turn')} answered from recorded responses",
        highlight=False,
    )
    for run in r["runs"]:
        print_line(
            console,
            f"re-ran {run['root']}: {plural(run['threads'], 'thread')}, {run['failed']} failed, "
            f"{plural(run['provider_calls'], 'provider call')}",
        )
    for root in r["missing_roots"]:
        print_line(console, f"not re-run: {root} is not on this machine")
    if not r["applied"]:
        print_line(console, f"wf migrate {r['workflow_id']} --apply launches the re-runs")


def _render_thread(console: Console, d: dict) -> None:
    print_line(
        console,
        f"{d['thread_id']} {d['workflow_id']} target {d['target_key']} ({d['target_path']}): {d['status']}",
    )
    if d.get("archived"):
        compaction = d["compaction"]
        print_line(
            console,
            f"archived by compaction {compaction['compaction_id']} at {compaction['archived_at_ms']} ms "
            "(read from the archive; wf threads list shows live threads only)",
        )
    rows = []
    for t in d["turns"]:
        gate = t["gate"]
        verdict = (
            "-"
            if gate is None
            else f"{gate['gate_id']}: {gate['outcome']}"
            + (f" {', '.join(gate['reasons'])}" if gate["reasons"] else "")
        )
        rows.append(
            (
                t["seq"],
                t["turn_id"],
                t["attempt"],
                t["status"] + (f" {t['error_code']}" if t["error_code"] else ""),
                t.get("response_source") or "-",
                t["output_artifact_id"],
                verdict,
            )
        )
    print_table(console, ("seq", "turn", "attempt", "status", "answer", "output artifact", "gate"), rows)
    decisions = [
        (
            t["turn_id"],
            t["attempt"],
            t["decision"]["branch"],
            t["decision"]["expression"],
            ", ".join(f"{name}={json.dumps(value)}" for name, value in t["decision"]["reads"].items()) or "-",
            t["decision"]["decision_digest"],
        )
        for t in d["turns"]
        if t.get("decision")
    ]
    if decisions:
        print_table(console, ("turn", "attempt", "branch", "when", "values read", "decision"), decisions)
    findings = [
        (t["turn_id"], t["attempt"], f["rule_id"], f.get("reason") or f["code"], f["pointer"], f["hint"])
        for t in d["turns"]
        if t["gate"] is not None
        for f in t["gate"].get("findings", [])
    ]
    if findings:
        print_table(console, ("turn", "attempt", "rule", "reason", "pointer", "hint"), findings)
    artifacts = d.get("artifacts", [])
    if artifacts:
        print_table(
            console,
            ("turn", "attempt", "role", "artifact", "bytes", "state"),
            [
                (a["turn_id"], a["attempt"], a["role"], a["artifact_id"], a["size"], a["state"])
                for a in artifacts
            ],
        )
    if d.get("error_code"):
        print_line(console, f"failed: {d['error_code']}: {d.get('error_text') or ''}")


class _progress:
    """A rich progress bar of items (threads, objects) done of total (stderr, so --json stays clean).

    While it is active, logging warnings print through the bar's console, above the bar.
    """

    def __init__(self, args: argparse.Namespace, *, label: str = "threads") -> None:
        self._enabled = not args.json and sys.stderr.isatty()
        self._label = label
        self._progress = Progress(
            TextColumn(label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=args.stderr_console,
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
                self._task = self._progress.add_task(self._label, total=total)
            self._progress.update(self._task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            self._progress.stop()


# --- parser ----------------------------------------------------------------------------


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What the command line alone shows to be wrong (exit 2, argparse-style), or None.

    The rule: a mistake visible without reading any file or setting is a usage error;
    everything else is a WfError (exit 1).
    """
    if args.command == "run":
        if args.agent is not None and args.path is None and args.workflow_id is not None:
            args.path, args.workflow_id = args.workflow_id, None  # `wf run --agent AGENT PATH`
        if args.agent is not None and args.workflow_id is not None:
            return "give either WORKFLOW_ID or --agent AGENT, not both"
        if args.agent is None and (args.workflow_id is None or args.path is None):
            return "give WORKFLOW_ID and PATH (or --agent AGENT PATH)"
        if args.path is None:
            return "give the PATH of the tree"
    if args.command == "run" and args.overwrite and not args.in_place:
        return "--overwrite needs --in-place (it replaces README.md files inside the tree)"
    if args.command == "retention" and args.action in ("hold", "release"):
        scopes = [args.thread_id, args.workflow, getattr(args, "hold_id", None)]
        if sum(scope is not None for scope in scopes) != 1:
            extra = ", --hold-id" if args.action == "release" else ""
            return f"give exactly one of THREAD_ID, --workflow{extra}"
    if args.command == "telemetry":
        return _telemetry_usage_problem(args)
    if args.command == "grants" and args.action == "issue" and not args.out.strip():
        # Path("") is the current folder: say what is wrong instead of ". is a folder".
        return "--out needs a file path for the grant file, e.g. --out grant.json"
    if (
        args.command == "identity"
        and args.action == "create"
        and args.approved_by is not None
        and not args.admin
    ):
        return "--approved-by approves an admin: give it with --admin"
    if args.command == "privileged" and args.json and args.out is None:
        # The payload and a JSON summary cannot share stdout, and a read that delivers
        # nothing must not be charged or audited as an allow.
        return "--json needs --out FILE: the payload goes to the file, its ids and digest to stdout"
    if args.command == "keys" and args.action == "destroy":
        if (args.kek_id is None) == (args.lineage is None):
            return "give exactly one of KEK_ID, --lineage CLASS:YYYYMMDD"
        if args.lineage is not None:
            from wf_pipeline.service.keys import lineage_problem

            return lineage_problem(args.lineage)
    return None


def _telemetry_usage_problem(args: argparse.Namespace) -> str | None:
    # The lists and ranges are the service's; only the verdict (exit 2) is the CLI's.
    if getattr(args, "csv", False) and args.json:
        return "--csv and --json exclude each other"
    if args.action == "report":
        from wf_pipeline.service.telemetry_reports import REPORT_KINDS

        if args.report not in REPORT_KINDS:
            return f"no telemetry report {args.report!r} (reports: {', '.join(REPORT_KINDS)})"
        if args.png is not None and not args.png.strip():
            return "--png needs a file name"
    if args.action == "synth":
        from wf_pipeline.service.telemetry import synthetic_days_problem

        return synthetic_days_problem(args.days)
    return None


def build_parser() -> argparse.ArgumentParser:
    """The ``wf`` argument parser: ``--version``, ``--json`` and one subcommand per use case.

    Returns:
        An ``argparse.ArgumentParser`` whose parsed namespace has ``handler`` (the ``cmd_*``
        function to call), ``command``, ``parser`` (the subcommand's own parser, for usage
        errors) and ``json`` / ``json_first`` (``--json`` after or before the subcommand).
        ``--version`` prints ``wf <version>`` and exits 0; a bad command line exits 2
        (argparse's rule). Raises nothing itself.
    """
    parser = argparse.ArgumentParser(
        prog="wf",
        description="Declarative multi-turn agent workflows over codebases, on Dagster.",
        epilog="Exit status: 0 success, 1 an error (CODE: message) or a failed thread, 2 a usage error.",
    )
    # The installed distribution's version (importlib.metadata), read by wf_pipeline/__init__.py.
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Its own dest: a subcommand's default for --json would otherwise overwrite this one.
    parser.add_argument("--json", dest="json_first", action="store_true", help="machine-readable output")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    # An action's --json leaves the attribute unset when absent, so `wf threads --json list`
    # keeps the value its command parser set.
    action_common = argparse.ArgumentParser(add_help=False)
    action_common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    links = argparse.ArgumentParser(add_help=False)
    links.add_argument(
        "--follow-external-links",
        action="store_true",
        help="read symlinks that resolve outside the tree root (default: skip them with a warning;"
        " also WF_FOLLOW_EXTERNAL_LINKS=1)",
    )
    reuse = argparse.ArgumentParser(add_help=False)
    reuse.add_argument(
        "--no-reuse-responses",
        action="store_true",
        help="call the provider for every turn, even one whose request was answered before"
        " (default: take the recorded response; also WF_REUSE_RESPONSES=0)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        help_text: str,
        handler: Callable[[argparse.Namespace], int],
        parents: tuple[argparse.ArgumentParser, ...] = (),
    ) -> argparse.ArgumentParser:
        sub_parser = sub.add_parser(name, parents=[common, *parents], help=help_text, description=help_text)
        sub_parser.set_defaults(handler=handler, parser=sub_parser)
        return sub_parser

    def actions(
        command_parser: argparse.ArgumentParser, help_text: str
    ) -> Callable[..., argparse.ArgumentParser]:
        # Each action is its own parser with its own positionals: a THREAD_ID after an option
        # is read (`threads show --json ID`), an argument an action does not take is a usage
        # error (`threads list ID`), where one shared optional positional got neither right.
        group = command_parser.add_subparsers(dest="action", required=True, metavar="ACTION", help=help_text)

        def action(name: str, action_help: str) -> argparse.ArgumentParser:
            action_parser = group.add_parser(
                name, parents=[action_common], help=action_help, description=action_help
            )
            action_parser.set_defaults(parser=action_parser)
            return action_parser

        return action

    tree_help = "the directory tree (a folder on this machine)"
    workflow_help = "the workflow id of a loaded profile (see: wf profiles list)"

    scan = command("scan", "scan a tree and record its Merkle node ids", cmd_scan, (links,))
    scan.add_argument("path", metavar="PATH", help=tree_help)

    profiles = command("profiles", "list, validate or show workflow profiles", cmd_profiles)
    profile_action = actions(profiles, "list the profiles, validate them, or show one")
    profile_action("list", "list the loaded profiles")
    validate = profile_action("validate", "validate every profile file and render its templates")
    validate.add_argument("--file", help="one profile file instead of every layer")
    profile_show = profile_action("show", "show one resolved profile")
    profile_show.add_argument("workflow_id", metavar="WORKFLOW_ID", help="the workflow id")
    profile_show.add_argument(
        "--resolved",
        action="store_true",
        help="the fully resolved profile, each field with the layer and base, fragment or profile file it came from",
    )

    run = command("run", "run a workflow over a directory tree, bottom-up", cmd_run, (links, reuse))
    # WORKFLOW_ID PATH, or --agent AGENT PATH: `_usage_problem` moves the lone positional.
    run.add_argument("workflow_id", metavar="WORKFLOW_ID", nargs="?", help=workflow_help)
    run.add_argument("path", metavar="PATH", nargs="?", help=tree_help)
    run.add_argument(
        "--agent",
        metavar="AGENT",
        help="run, for each target, the workflow this agent's policy selects (instead of WORKFLOW_ID)",
    )
    run.add_argument(
        "--out",
        help="folder the outputs mirror the tree into, recorded for the tree "
        "(default: the place `wf targets sync` recorded, else $WF_OUT/<tree key>)",
    )
    run.add_argument("--in-place", action="store_true", help="write README.md files into the tree itself")
    run.add_argument(
        "--overwrite", action="store_true", help="with --in-place: replace existing README.md files"
    )

    workflows = command("workflows", "show how workflows chain into each other", cmd_workflows)
    workflows.add_argument("action", choices=["graph"], help="graph: print the activation graph")
    workflows.add_argument("--dot", action="store_true", help="print the graph as Graphviz DOT")

    agents = command("agents", "list the agents and their workflow bindings", cmd_agents)
    agents.add_argument("action", choices=["list"], help="list: the loaded agents and bad agent files")

    backfill = command(
        "backfill",
        "run every target of a tree in batched runs, one per depth level",
        cmd_backfill,
        (links, reuse),
    )
    backfill.add_argument("workflow_id", metavar="WORKFLOW_ID", help=workflow_help)
    backfill.add_argument("path", metavar="PATH", help=tree_help)

    targets = command("targets", "register a tree's directories as partitions", cmd_targets, (links,))
    targets.add_argument("action", choices=["sync"], help="sync: register the tree's directories")
    targets.add_argument("path", metavar="PATH", help=tree_help)
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

    export = command("export", "write a tree's latest outputs from the CAS", cmd_export)
    export.add_argument(
        "tree", metavar="TREE", help="the tree: its path, its key (name~hex) or its base name"
    )
    export.add_argument("--out", help="folder to write into (default: the tree's recorded output place)")
    export.add_argument("--workflow", help="the workflow (may be left out when only one is loaded)")

    resume = command("resume", "resume a failed thread per its failure_policy", cmd_resume, (reuse,))
    resume.add_argument("thread_id", metavar="THREAD_ID", help="the thread's id (see: wf threads list)")
    resume.add_argument("--out", help="folder for the thread's output")

    replay = command(
        "replay",
        "re-execute threads from their recorded answers in a scratch namespace; --verify compares every digest",
        cmd_replay,
        (links,),
    )
    replay.add_argument("thread_id", metavar="THREAD_ID", nargs="?", help="the thread to replay")
    replay.add_argument(
        "--tree", metavar="PATH", help="replay the latest thread of every directory of this tree"
    )
    replay.add_argument("--workflow", help="the workflow (may be left out when only one is loaded)")
    replay.add_argument(
        "--verify",
        action="store_true",
        help="compare prompt, context, response, output and gate digests with the records; exit 1 on any divergence",
    )
    replay.add_argument(
        "--pinned",
        action="store_true",
        help="replay each thread with the profile it started with (default: the profile loaded now,"
        " so a changed template or threshold shows as a divergence)",
    )
    replay.add_argument(
        "--provider",
        metavar="NAME",
        help="ask this provider instead of the recorded answers (checks a provider against what it said before)",
    )

    migrate = command(
        "migrate",
        "list the threads on older versions of a workflow and what re-running them costs; re-run them",
        cmd_migrate,
        (reuse,),
    )
    migrate.add_argument("workflow_id", metavar="WORKFLOW_ID", help=workflow_help)
    migrate_mode = migrate.add_mutually_exclusive_group(required=True)
    migrate_mode.add_argument(
        "--plan", action="store_true", help="list the threads and the cost (nothing runs)"
    )
    migrate_mode.add_argument(
        "--apply", action="store_true", help="launch the re-runs as a backfill of their trees"
    )

    cas = command("cas", "check the content-addressed store", cmd_cas)
    cas.add_argument("action", choices=["verify"], help="verify: check every object against its id")
    cas.add_argument(
        "--repair",
        action="store_true",
        help="run the turns that produced corrupt objects again (corrupt objects are quarantined either way)",
    )

    command(
        "compact",
        "archive old threads' records to Parquet, delete orphan CAS objects and scratch files "
        "past the grace period (WF_COMPACT_GRACE), merge closed days of telemetry",
        cmd_compact,
    )

    gates = command("gates", "explain a thread's gate verdicts", cmd_gates)
    gate_action = actions(gates, "explain: the findings of each turn's latest gate verdict, by rule")
    gate_explain = gate_action("explain", "the findings of each turn's latest gate verdict, grouped by rule")
    gate_explain.add_argument("thread_id", metavar="THREAD_ID", help="the thread's id (see: wf threads list)")
    gate_explain.add_argument("--turn", metavar="TURN_ID", help="only this turn's verdict")

    threads = command("threads", "list threads or show one", cmd_threads)
    thread_action = actions(threads, "list the threads, or show one with its turns")
    thread_list = thread_action(
        "list",
        "list the live threads in the record store (archived ones: wf threads show ID, or archived_threads)",
    )
    thread_list.add_argument("--workflow", help="only threads of this workflow")
    thread_show = thread_action("show", "show one thread with its turns")
    thread_show.add_argument("thread_id", metavar="THREAD_ID", help="the thread's id (see: wf threads list)")

    retention = command("retention", "plan or apply retention sweeps, place or release holds", cmd_retention)
    retention_action = actions(retention, "plan, apply, hold, release or list holds")
    retention_action("plan", "dry run: per class and workflow, the artifacts and bytes a sweep deletes")
    retention_action(
        "apply",
        "delete expired artifacts (a tombstone for each first); shred expired KEK lineages (mode: shred)",
    )
    for name, help_text in (
        ("hold", "keep everything a thread or workflow refers to until released"),
        ("release", "release the active holds on a thread or workflow"),
    ):
        scope = retention_action(name, help_text)
        scope.add_argument(
            "thread_id", metavar="THREAD_ID", nargs="?", help="the thread (see: wf threads list)"
        )
        scope.add_argument("--workflow", help="a workflow id instead of a thread")
        if name == "hold":
            scope.add_argument("--reason", help="why (kept with the hold)")
        else:
            scope.add_argument("--hold-id", help="one hold by its id instead")
    retention_action("holds", "list the active holds")

    telemetry = command(
        "telemetry", "query the metadata growth telemetry (DuckDB over Parquet)", cmd_telemetry
    )
    telemetry_action = actions(
        telemetry, "run a query over the views, list the views, write synthetic rows, or print a report"
    )
    telemetry_query = telemetry_action("query", "run one DuckDB SQL statement over the telemetry views")
    telemetry_query.add_argument(
        "sql", metavar="SQL", help='e.g. "select * from key_growth order by bytes desc limit 20"'
    )
    telemetry_query.add_argument("--csv", action="store_true", help="CSV output with a header line")
    telemetry_action("views", "list the views with their columns")
    synth = telemetry_action("synth", "write realistic synthetic telemetry rows (tests, benchmarks)")
    synth.add_argument("--rows", type=_positive_int, required=True, help="how many rows")
    synth.add_argument(
        "--days", type=_positive_int, required=True, help="over how many days, ending today (UTC)"
    )
    synth.add_argument("--workflow", help="one workflow id for every row (default: three)")
    report = telemetry_action(
        "report", "print a growth, headroom or rejections report; --png draws its chart"
    )
    # Checked against the service's list of reports (`_usage_problem`: exit 2).
    report.add_argument("report", metavar="REPORT", help="growth, headroom or rejections")
    report.add_argument("--since", default="7d", help="how far back: 12h, 7d, 4w or forever (default 7d)")
    report.add_argument("--png", metavar="FILE", help="also draw the chart into this PNG file")

    keys = command(
        "keys", "list, create, rotate, rewrap, retire or destroy KEKs; report shredded artifacts", cmd_keys
    )
    key_action = actions(keys, "the key lifecycle (ids, states and counts; never key material)")
    key_list = key_action("list", "list the KEKs with their state and the data keys each wraps")
    key_list.add_argument("--class", dest="artifact_class", help="only this artifact class's KEKs")
    key_create = key_action(
        "create", "make the primary KEK of a class for the current period (WF_KEK_PERIOD)"
    )
    key_create.add_argument("artifact_class", metavar="CLASS", help="the artifact class, e.g. output")
    key_rotate = key_action(
        "rotate", "add a new primary generation to every lineage (decrypt-only: the old one)"
    )
    key_rotate.add_argument(
        "--class", dest="artifact_class", action="append", help="only this class (repeatable; default all)"
    )
    key_rewrap = key_action(
        "rewrap", "move data keys from decrypt-only KEKs to their primary (resumable; payloads untouched)"
    )
    key_rewrap.add_argument(
        "--page",
        type=_positive_int,
        help="data keys per transaction (default 1000); a kill loses at most one page",
    )
    key_retire = key_action("retire", "retire a decrypt-only KEK no data key depends on")
    key_retire.add_argument("kek_id", metavar="KEK_ID", help="the KEK (see: wf keys list)")
    key_destroy = key_action(
        "destroy",
        "destroy a KEK or a whole lineage: every artifact it wraps becomes unreadable (crypto-shredding)",
    )
    key_destroy.add_argument("kek_id", metavar="KEK_ID", nargs="?", help="the KEK (see: wf keys list)")
    key_destroy.add_argument("--lineage", metavar="CLASS:YYYYMMDD", help="every KEK of a class and period")
    key_destroy.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    key_action("report", "the artifacts destroyed KEKs made unreadable, per class and thread")

    identity = command("identity", "create or list Ed25519 identities (admins sign grants)", cmd_identity)
    identity_action = actions(identity, "identities: names, roles and public key fingerprints")
    identity_create = identity_action("create", "make a key pair; register its public key and role")
    identity_create.add_argument("name", metavar="NAME", help="the identity's name (a-z 0-9 . _ -)")
    identity_create.add_argument("--admin", action="store_true", help="may sign grants (default: reader)")
    identity_create.add_argument(
        "--approved-by",
        metavar="KEYFILE",
        help="an existing admin's private key file, approving the new admin (needed once a store has an admin)",
    )
    identity_create.add_argument(
        "--out",
        metavar="DIR",
        help="folder of the private key file NAME.pem, mode 0600 (default $WF_HOME/identities)",
    )
    identity_action("list", "list the registered identities")

    grants = command("grants", "issue, revoke or list signed payload-read grants", cmd_grants)
    grant_action = actions(grants, "grants: scoped, signed, expiring, metered")
    grant_issue = grant_action("issue", "sign a grant with an admin key and write the grant file")
    grant_issue.add_argument("--admin", required=True, metavar="KEYFILE", help="the admin's private key file")
    grant_issue.add_argument("--grantee", required=True, metavar="NAME", help="the identity that may read")
    # Capability and reasons are checked by the grant's schema (GRANT_MALFORMED names the field).
    grant_issue.add_argument(
        "--capability", required=True, help="what it may read: prompt_payload_read or context_payload_read"
    )
    grant_issue.add_argument("--workflow", required=True, metavar="WORKFLOW_ID", help="scope: the workflow")
    grant_issue.add_argument("--thread", metavar="THREAD_ID", help="scope: one thread (default any)")
    grant_issue.add_argument("--node", metavar="NODE_ID", help="scope: one node (default any)")
    grant_issue.add_argument("--turns", metavar="N-M", help="scope: turn seqs N to M (default any)")
    grant_issue.add_argument("--expires", required=True, metavar="DURATION", help="validity, e.g. 1h or 7d")
    grant_issue.add_argument(
        "--not-before", metavar="DURATION", help="valid only after this delay (default now)"
    )
    grant_issue.add_argument(
        "--reason",
        required=True,
        action="append",
        help="an allowed reason (repeatable): incident_response, debugging, compliance_review, quality_audit",
    )
    grant_issue.add_argument(
        "--max-bytes",
        required=True,
        type=_ascii_int,
        metavar="N",
        help="byte budget of payloads read under it (>= 1)",
    )
    grant_issue.add_argument("--rate", required=True, metavar="READS/WINDOW", help="rate limit, e.g. 10/min")
    grant_issue.add_argument(
        "--out", required=True, metavar="GRANTFILE", help="the grant file to write (0600)"
    )
    grant_revoke = grant_action("revoke", "revoke a grant (audited): every later read under it is denied")
    grant_revoke.add_argument("grant_id", metavar="GRANT_ID", help="the grant (see: wf grants list)")
    grant_revoke.add_argument("--admin", required=True, metavar="KEYFILE", help="an admin's private key file")
    # Checked by the service (GRANT_REASON_NOT_ALLOWED names the list), as issue's reasons are.
    grant_revoke.add_argument(
        "--reason",
        metavar="CODE",
        help="why: compromised, no_longer_needed, issued_in_error, incident_response, compliance_review",
    )
    grant_action("list", "list recorded grants with their scope, limits, usage and state")

    privileged = command(
        "privileged", "read a prompt or context payload under a signed grant (audited)", cmd_privileged
    )
    privileged_action = actions(privileged, "privileged payload reads")
    privileged_read = privileged_action("read", "the payload of one artifact, if every grant check passes")
    privileged_read.add_argument(
        "artifact_id", metavar="ARTIFACT_ID", help="a rendered prompt or context artifact"
    )
    privileged_read.add_argument("--identity", required=True, metavar="KEYFILE", help="your private key file")
    privileged_read.add_argument("--grant", required=True, metavar="GRANTFILE", help="the signed grant file")
    privileged_read.add_argument(
        "--reason", required=True, metavar="CODE", help="why: one of the grant's reasons"
    )
    privileged_read.add_argument(
        "--out", metavar="FILE", help="write the payload here (mode 0600) instead of stdout"
    )

    governance = command(
        "governance", "check the feature specs and the verification gates they name", cmd_governance
    )
    governance_action = actions(governance, "check: every spec is valid and every gate it names exists")
    governance_check = governance_action(
        "check", "validate every spec under docs/specs and resolve each test id and benchmark it names"
    )
    governance_check.add_argument(
        "--specs",
        metavar="DIR",
        help="the spec folder (default: docs/specs of the checkout of the current directory)",
    )

    audit = command("audit", "list, verify or export the audit trail of privileged reads", cmd_audit)
    audit_action = actions(audit, "the hash-chained audit trail (ids, digests and codes; never payloads)")
    audit_list = audit_action("list", "list the audit events, oldest first")
    audit_list.add_argument(
        "--since", default="forever", help="how far back: 12h, 7d, 4w or forever (default forever)"
    )
    audit_list.add_argument("--grant", dest="grant_id", help="only the events of this grant id")
    audit_list.add_argument("--limit", type=_positive_int, help="at most this many events")
    audit_action("verify", "check the hash chain and seals: deleted, altered or reordered events by position")
    audit_action("export", "copy the events not exported yet to the audit_events telemetry table")
    metadata = command(
        "metadata", "the metadata key registry, and what a node's or frame's metadata shows", cmd_metadata
    )
    metadata_action = actions(metadata, "the key registry and default views (privileged values never shown)")
    metadata_action("keys", "list every registered key with its owner domain and policies")
    metadata_show = metadata_action(
        "show", "show a frame's metadata, a thread's frames' or a node's head frames', as visible by default"
    )
    metadata_show.add_argument(
        "target",
        metavar="NODE|FRAME|THREAD",
        help="a node id, a frame id, or a thread id (the frames it produced)",
    )

    ui = command("ui", "serve the Dagster UI over the same instance as wf (dg dev)", cmd_ui)
    ui.add_argument("--port", type=int, help="the webserver's port (default 3000)")
    ui.add_argument("--host", help="the webserver's host (default 127.0.0.1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wf`` command: parse ``argv``, run the chosen command, print its error.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv``.

    Returns:
        The exit status: the command's (0, or 1 when a thread failed), 1 (``EXIT_FAILED``)
        after a `WfError`, which is printed as ``CODE: message`` on stderr (or
        ``{"error": {...}}`` on stdout with ``--json``). While the command runs, logging
        warnings print through its stderr console (`output.warnings_to`).

    Raises:
        SystemExit: from argparse for ``--help``, ``--version`` (0) or a usage error (2: a
            bad command line, or options that exclude each other, see `_usage_problem`).
            Errors that are not `WfError` propagate unchanged.
    """
    args = build_parser().parse_args(argv)
    args.json = args.json or args.json_first
    problem = _usage_problem(args)
    if problem is not None:
        args.parser.error(problem)  # exits 2 with the subcommand's usage line
    args.stderr_console = stderr_console()
    with warnings_to(args.stderr_console):
        try:
            return args.handler(args)
        except WfError as exc:
            if args.json:
                emit(True, {"error": exc.to_dict()}, lambda console, payload: None)
            else:
                print_line(args.stderr_console, f"{exc.code}: {exc.message}")
            return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
