"""How ``wf`` writes: closed pipes, uncut tables, plurals, readable scan counts, warnings on the console."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess

import pytest
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree
from rich.console import Console
from test_cli import WF, WORKFLOW, Sandbox, make_sandbox

from wf_pipeline.cli.output import plural, print_table, warnings_to

pytestmark = pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")

SHA256_ID = re.compile(r"sha256:[0-9a-f]{64}")


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> tuple[Sandbox, dict]:
    """One directory documented, so threads, turns and artifact ids exist in the home."""
    box = make_sandbox(tmp_path_factory.mktemp("output"))
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "sensors", box.cwd / "sensors")
    return box, box.wf_json("run", WORKFLOW, str(tree))


# --- closed pipes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("threads", "list", "--json"),
        ("threads", "list"),
        ("profiles", "list"),
        ("--json", "profiles", "list"),
    ],
    ids=["threads-json", "threads-table", "profiles-table", "profiles-json-first"],
)
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(one_run, args):
    box, _ = one_run
    process = box.start(*args)
    process.stdout.close()  # the reader is gone before the command writes a byte
    stderr = process.stderr.read()
    process.wait(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr, (
        stderr
    )
    assert process.returncode == 0, stderr


def test_head_reads_the_first_line_of_a_real_shell_pipe(one_run):
    box, _ = one_run
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"'{WF}' threads list --json | head -1"],
        cwd=box.cwd,
        env=box.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout == "[\n"
    assert result.stderr == "", result.stderr
    assert result.returncode == 0


# --- tables -------------------------------------------------------------------------------


def test_piped_tables_never_cut_ids(one_run):
    box, summary = one_run
    thread_id = summary["threads"][0]["thread_id"]
    shown = box.wf_json("threads", "show", thread_id)
    # The turns' outputs, then every artifact the thread's attempts used, with their state.
    artifact_ids = [turn["output_artifact_id"] for turn in shown["turns"]]
    artifact_ids += [artifact["artifact_id"] for artifact in shown["artifacts"]]
    assert len(shown["artifacts"]) > len(shown["turns"])
    assert all(SHA256_ID.fullmatch(artifact_id) for artifact_id in artifact_ids)

    text = box.wf("threads", "show", thread_id)  # stdout is a pipe: no terminal, 80 columns assumed
    assert text.returncode == 0, text.stderr
    assert "…" not in text.stdout
    assert SHA256_ID.findall(text.stdout) == artifact_ids
    assert thread_id in text.stdout

    listed = box.wf("threads", "list").stdout.splitlines()
    assert listed[0].split() == ["thread_id", "workflow", "target", "status", "last", "turn"]
    row = listed[1].split()
    assert row[:2] == [thread_id, WORKFLOW] and row[3:] == ["completed", "4"]
    assert re.fullmatch(r"sensors~[0-9a-f]{6}", row[2])  # the tree's key: base name and root digest


def test_a_terminal_table_folds_long_cells_instead_of_cutting_them():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=40, color_system=None)
    long_id = "sha256:" + "ab" * 32
    print_table(console, ("output artifact",), [(long_id,)])
    assert "…" not in buffer.getvalue()
    body = buffer.getvalue().splitlines()[3:-1]  # the rows between the header rule and the bottom
    assert len(body) > 1  # folded over lines, every character still there, in order
    assert "".join(line.strip(" │") for line in body) == long_id


def test_plain_tables_show_brackets_and_none_as_they_are():
    buffer = io.StringIO()
    print_table(Console(file=buffer, width=20), ("a", "b"), [("[bold]x[/]", None)])
    assert buffer.getvalue().splitlines() == ["a           b", "[bold]x[/]  -"]


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
def test_tables_show_control_characters_escaped_one_row_per_line(terminal):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=terminal, width=120, color_system=None)
    print_table(
        console, ("directory", "status"), [("ctl\x07bell", "ok"), ("nl\nline", "ok"), ("esc\x1b[31m", "ok")]
    )
    text = buffer.getvalue()
    assert "\x07" not in text and "\x1b" not in text  # no bell, no escape sequence reaches the terminal
    assert "ctl\\x07bell" in text and "nl\\nline" in text and "esc\\x1b[31m" in text
    if not terminal:
        assert len(text.splitlines()) == 4  # the header and one line per row


# --- words and counts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [
        (1, "directory", "1 directory"),
        (2, "directory", "2 directories"),
        (0, "file", "0 files"),
        (1, "provider call", "1 provider call"),
        (3, "key", "3 keys"),
    ],
)
def test_plurals(count, noun, expected):
    assert plural(count, noun) == expected


def test_scan_prints_readable_counts_not_a_dict(tmp_path):
    box = make_sandbox(tmp_path)
    tree = box.cwd / "project"
    tree.mkdir()
    (tree / "main.py").write_text("def main():\n    return 0\n")
    (tree / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")

    result = box.wf("scan", str(tree))

    assert result.returncode == 0, result.stderr
    assert "{" not in result.stdout and "'" not in result.stdout
    assert "1 directory, 2 files; left out of prompts: 1 binary file" in result.stdout


# --- JSON and warnings ----------------------------------------------------------------------


def test_json_before_the_subcommand_works_like_after(one_run):
    box, _ = one_run
    before = box.wf("--json", "threads", "list")
    after = box.wf("threads", "list", "--json")
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout)


def test_warnings_go_through_the_commands_console_and_the_handler_leaves_after():
    buffer = io.StringIO()
    console = Console(file=buffer, width=200)
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    levels_before = (root.level, logging.getLogger("wf_pipeline.runtime.turn").level)

    with warnings_to(console):
        logging.getLogger("wf_pipeline.runtime.turn").warning("RUN_X: turn %s failed [gate]", "verification")
        logging.getLogger("wf_pipeline.runtime.turn").info("not shown")

    logging.getLogger("wf_pipeline.runtime.turn").warning("after the command")
    assert buffer.getvalue() == "RUN_X: turn verification failed [gate]\n"
    assert root.handlers == handlers_before
    assert (root.level, logging.getLogger("wf_pipeline.runtime.turn").level) == levels_before


@pytest.mark.parametrize("command", ["scan", "targets"])
def test_scan_warnings_go_to_stderr_not_mixed_with_the_results(tmp_path, command):
    box = make_sandbox(tmp_path)
    tree = box.cwd / "project"
    tree.mkdir()
    (tree / "main.py").write_text("def main():\n    return 0\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tree / "ext").symlink_to(outside, target_is_directory=True)
    args = ("scan", str(tree)) if command == "scan" else ("targets", "sync", str(tree))

    result = box.wf(*args)

    assert result.returncode == 0, result.stderr
    assert "TREE_LINK_OUTSIDE_ROOT" not in result.stdout, result.stdout
    assert result.stderr.count("TREE_LINK_OUTSIDE_ROOT: ") == 1, result.stderr


def test_a_non_utf8_name_gives_the_warning_the_readme_documents(tmp_path):
    box = make_sandbox(tmp_path)
    tree = box.cwd / "project"
    tree.mkdir()
    (tree / "main.py").write_text("x = 1\n")
    bad = os.fsencode(tree) + b"/bad\xff"
    os.mkdir(bad)
    with open(bad + b"/m.py", "w") as handle:
        handle.write("y = 1\n")

    result = box.wf("scan", str(tree))

    warning = "TREE_NON_UTF8_NAME: bad\\xff: name is not valid UTF-8; skipped"
    assert result.returncode == 0, result.stderr
    assert warning in result.stderr, result.stderr
    readme = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    assert warning in readme


def test_a_bad_profile_warning_prints_once_through_the_console(tmp_path):
    box = make_sandbox(tmp_path)
    bad = box.cwd / "profiles" / "broken.yaml"
    bad.parent.mkdir()
    bad.write_text("workflow_id: [unclosed\n")
    result = box.wf("profiles", "list")
    assert result.returncode == 0
    assert result.stderr.count("PROFILE_PARSE_ERROR: ") == 1, result.stderr


def test_every_positional_argument_of_every_command_has_help():
    import argparse

    from wf_pipeline.cli.main import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [
        f"{name} {action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.option_strings and not action.help
    ]
    assert missing == []
    assert len(commands.choices) >= 8
