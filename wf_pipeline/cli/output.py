"""How every ``wf`` command writes: JSON or text, tables, plurals, warnings, and closed pipes.

Every command formats through these few functions, so the rules hold for new commands
without being repeated:

- `emit`: the command's answer, as JSON (``--json``) or through a text renderer; a reader
  that closes the pipe early (``wf threads list --json | head -1``) ends the output
  quietly, without a traceback, and the command keeps its exit status.
- `print_table`: a table whose cells are never cut. On a terminal it is a rich table
  whose columns fold rather than end in an ellipsis; otherwise (a pipe, a file) it is
  plain aligned lines, one row per line, so ids can be copied and grepped whole.
- `plural`: ``1 directory``, ``2 directories``.
- `write_json_rows` / `write_csv_rows`: a query result streamed row by row (valid JSON,
  or RFC 4180 CSV), so its size never has to fit in memory.
- `print_warnings`: a command's warnings, ``CODE: message`` on stderr, never mixed with
  its results on stdout.
- Names are shown through `display_name`: control characters never reach the terminal raw.
- `warnings_to`: for the duration of a command, Python logging warnings go through the
  given rich console (the progress bar's, when one is shown), so they print above the
  bar instead of through it. The handler is removed again afterwards; no logger's level
  is changed.
- Stdout and stderr are log sinks: everything written through these functions and their
  consoles passes the one sink filter (`wf_pipeline.security.sinks.scrub`: secret-shaped
  values masked) on its way out, tables, JSON, CSV and warnings alike.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from wf_pipeline.security.sinks import SINK_FILTER, scrub
from wf_pipeline.text.names import display_name

# Gap between the columns of a plain (not a terminal) table, in spaces.
PLAIN_COLUMN_GAP = 2


def _quiet_closed_stdout() -> None:
    # The reader went away: later writes (including the interpreter's final flush) go to
    # /dev/null, which is the remedy Python's documentation gives for SIGPIPE.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class _ScrubbedStream:
    """A text stream that writes through `scrub` to the stream ``target()`` returns.

    The target is looked up at each write (``sys.stdout`` may be replaced, as under a test's
    capture). Everything else (``isatty``, ``fileno``, ``encoding``, ``flush``) is the
    target's, so rich sees a terminal where there is one.
    """

    def __init__(self, target: Callable[[], Any]) -> None:
        self._target = target

    def write(self, text: str) -> int:
        self._target().write(scrub(text))
        # The caller's count: rich and csv compare it with what they handed over.
        return len(text)

    def __getattr__(self, name: str) -> Any:
        if name == "rich_proxied_file":
            # While a live display redirects sys.stdout, rich would unwrap this stream to the
            # real file and bypass the filter; writes keep going through the proxy instead.
            raise AttributeError(name)
        return getattr(self._target(), name)


def scrubbed_stdout() -> _ScrubbedStream:
    """``sys.stdout`` behind the sink filter: what a command writes there is scrubbed (`scrub`)."""
    return _ScrubbedStream(lambda: sys.stdout)


def scrubbed_stderr() -> _ScrubbedStream:
    """``sys.stderr`` behind the sink filter (`scrub`)."""
    return _ScrubbedStream(lambda: sys.stderr)


class _StdoutConsole(Console):
    """A rich console whose closed pipe ends the output, not the command."""

    def on_broken_pipe(self) -> None:
        # rich's default exits with status 1; the command's own status should stand.
        self.quiet = True
        _quiet_closed_stdout()


def stdout_console() -> Console:
    """A console on stdout that never wraps printed lines (``soft_wrap``): a path or id
    stays on one line, whatever the terminal's or the pipe's assumed width. A closed
    pipe silences it (later prints write nothing) and raises nothing. What it prints is
    scrubbed on the way out (`scrubbed_stdout`)."""
    return _StdoutConsole(soft_wrap=True, file=scrubbed_stdout())


def stderr_console() -> Console:
    """A console on stderr, for progress bars and warnings (so ``--json`` stdout stays clean);
    what it prints is scrubbed on the way out (`scrubbed_stderr`)."""
    return Console(soft_wrap=True, file=scrubbed_stderr())


def emit(json_output: bool, payload: Any, render: Callable[[Console, Any], None]) -> None:
    """Write a command's answer: ``payload`` as indented JSON, or ``render(console, payload)``.

    Args:
        json_output: True for ``--json``: the payload as JSON with sorted keys on stdout.
        payload: JSON-ready values (ids, counts, paths; never prompt text or model output).
        render: writes the text form on the stdout console it is given (use `print_table`
            and `plural` there).

    Returns:
        None. A closed stdout (``BrokenPipeError``) ends the output quietly: nothing is
        raised and nothing more is written.
    """
    try:
        if json_output:
            out = scrubbed_stdout()
            out.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
            out.flush()
        else:
            render(stdout_console(), payload)
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_closed_stdout()


def write_json_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write ``{"columns": [...], "rows": [[...], ...]}`` to stdout, one row per line, as rows arrive.

    Args:
        columns: the column names.
        rows: JSON-ready rows (already encoded: no NaN, bytes or dates), consumed once.

    Returns:
        None. The output is one valid JSON object (RFC 8259; ``allow_nan=False``). A closed
        stdout ends it quietly, as `emit` does.
    """
    try:
        out = scrubbed_stdout()
        out.write('{\n  "columns": ' + json.dumps(list(columns), allow_nan=False) + ',\n  "rows": [')
        first = True
        for row in rows:
            out.write(("\n    " if first else ",\n    ") + json.dumps(list(row), allow_nan=False))
            first = False
        out.write("]\n}\n" if first else "\n  ]\n}\n")
        out.flush()
    except BrokenPipeError:
        _quiet_closed_stdout()


def write_csv_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write RFC 4180 CSV (the csv module's default dialect) to stdout: a header line, then each row.

    Args:
        columns: the column names.
        rows: JSON-ready rows, consumed once; None is an empty cell, lists and objects are
            their compact JSON text, everything else its ``str``.

    Returns:
        None. A closed stdout ends the output quietly.
    """

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, (list, dict)):
            return json.dumps(value, allow_nan=False, separators=(",", ":"))
        return value

    writer = csv.writer(scrubbed_stdout(), lineterminator="\n")
    try:
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(value) for value in row])
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_closed_stdout()


def print_table(console: Console, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print ``rows`` under ``columns``, never cutting a cell.

    Args:
        console: where to print (normally `stdout_console`).
        columns: the header of each column.
        rows: one sequence of cells per row; cells are shown with ``str``, None as ``-``.

    Returns:
        None. On a terminal: a rich table whose long cells fold onto more lines. Elsewhere:
        the header and one line per row, columns left-aligned and separated by at least
        two spaces, no borders and no styles.
    """
    # Every character visible and one line per row: a name holding a bell, an escape
    # sequence or a newline is shown escaped (`display_name`), as the READMEs show it.
    cells = [["-" if cell is None else display_name(str(cell)) for cell in row] for row in rows]
    if console.is_terminal:
        table = Table(*columns)
        for column in table.columns:
            column.overflow = "fold"
        for row in cells:
            # Text, not markup: a path or a reason with brackets is shown as it is.
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
        return
    widths = [max([len(column), *(len(row[i]) for row in cells)]) for i, column in enumerate(columns)]
    gap = " " * PLAIN_COLUMN_GAP
    for line in [list(columns), *cells]:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        console.print(Text(gap.join(padded).rstrip()))


def print_line(console: Console, text: str, *, style: str | None = None) -> None:
    """Print one line of a command's result as it is: every character visible, nothing cut.

    Args:
        console: where to print.
        text: the line; names and messages in it may hold any character a file system
            allows, so control characters are shown escaped (`display_name`), brackets are
            not read as markup, and a long line is never broken inside a path or an id.
        style: a rich style for the whole line, or None.

    Returns:
        None. Raises nothing.
    """
    console.print(display_name(text), markup=False, highlight=False, soft_wrap=True, style=style)


def print_warnings(warnings: Sequence[Mapping[str, Any]], console: Console | None = None) -> None:
    """Print each warning as ``CODE: message`` on stderr, every character visible.

    Args:
        warnings: ``{"code", "message"}`` each (a scan's or a run's warnings).
        console: the stderr console to print on (the progress bar's, when one is shown);
            default: a new `stderr_console`.

    Returns:
        None. Warnings go to stderr so stdout holds only the command's results, as
        logged warnings do (`warnings_to`). Raises nothing.
    """
    console = console or stderr_console()
    for warning in warnings:
        print_line(console, f"{warning['code']}: {warning['message']}", style="yellow")


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"<count> <noun>"`` with the noun in the right number.

    Args:
        count: how many.
        singular: the noun for one (``directory``).
        plural_form: the noun for any other count; default: ``singular`` + ``s``, or
            ``ies`` for a consonant + ``y`` ending (English regular plurals).

    Returns:
        e.g. ``"1 directory"``, ``"0 directories"``, ``"2 files"``. Raises nothing.
    """
    if count == 1:
        return f"{count} {singular}"
    if plural_form is None:
        if singular.endswith("y") and singular[-2:-1] not in ("a", "e", "i", "o", "u", ""):
            plural_form = singular[:-1] + "ies"
        else:
            plural_form = singular + "s"
    return f"{count} {plural_form}"


class _ConsoleLogHandler(logging.Handler):
    """Writes log records of WARNING and above through a rich console, as plain text."""

    def __init__(self, console: Console) -> None:
        super().__init__(level=logging.WARNING)
        self._console = console
        # Records of other libraries reach this handler too (it sits on the root logger
        # while a command runs): the sink filter scrubs them here.
        self.addFilter(SINK_FILTER)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = Text(
                display_name(record.getMessage()), style="yellow" if record.levelno < logging.ERROR else "red"
            )
            self._console.print(text)
        except Exception:  # noqa: BLE001 - logging's own rule: a handler never raises
            self.handleError(record)


@contextmanager
def warnings_to(console: Console) -> Iterator[None]:
    """Route Python logging warnings through ``console`` while the block runs.

    Args:
        console: the console to print on; pass the progress bar's console so a warning
            prints above the live bar.

    Yields:
        None. A handler on the root logger (level WARNING, set on the handler only) is
        added on entry and removed on exit; the loggers' own levels are left as they are.
    """
    handler = _ConsoleLogHandler(console)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
