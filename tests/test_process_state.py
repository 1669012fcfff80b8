"""The package leaves process-wide state alone, and reads the environment in one module only.

Checked on the source (ast), so a new module is covered the day it is added.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wf_pipeline"
SETTINGS_MODULE = PACKAGE / "settings.py"
MODULES = sorted(PACKAGE.rglob("*.py"))

# Calls that change the whole process: its environment, logger levels, warning filters.
PROCESS_STATE_CALLS = {
    ("os", "putenv"),
    ("os", "unsetenv"),
    ("warnings", "simplefilter"),
    ("warnings", "filterwarnings"),
    ("warnings", "resetwarnings"),
}
ENVIRON_WRITES = {"update", "pop", "setdefault", "clear", "popitem", "__setitem__", "__delitem__"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _findings(source: str) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner, name = _dotted(node.func.value), node.func.attr
            if (owner, name) in PROCESS_STATE_CALLS:
                found.append((node.lineno, f"{owner}.{name}"))
            if name == "setLevel":
                found.append((node.lineno, "setLevel"))
            if owner == "os.environ" and name in ENVIRON_WRITES:
                found.append((node.lineno, f"os.environ.{name}"))
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            if _dotted(node.value) == "os.environ":
                found.append((node.lineno, "os.environ[...] ="))
    return found


def _environment_reads(source: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if (isinstance(node, ast.Attribute) and _dotted(node) in ("os.environ", "os.getenv", "os.environb"))
    ]


@pytest.mark.parametrize("module", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_changes_process_wide_state(module):
    assert _findings(module.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "module", [m for m in MODULES if m != SETTINGS_MODULE], ids=lambda path: str(path.relative_to(PACKAGE))
)
def test_only_the_settings_module_reads_the_environment(module):
    assert _environment_reads(module.read_text(encoding="utf-8")) == []


def test_the_checks_catch_what_they_look_for():
    offending = (
        "import os, logging, warnings\n"
        "os.environ['A'] = '1'\n"
        "os.environ.update(B='2')\n"
        "del os.environ['A']\n"
        "logging.getLogger('dagster').setLevel(50)\n"
        "warnings.simplefilter('ignore')\n"
        "value = os.environ.get('C')\n"
    )
    assert sorted(line for line, _ in _findings(offending)) == [2, 3, 4, 5, 6]
    assert sorted(_environment_reads(offending)) == [2, 3, 4, 7]
    assert _environment_reads(SETTINGS_MODULE.read_text(encoding="utf-8"))  # the one reader


# Signal handlers are process-wide too: only the CLI, and the service's context manager
# that restores the previous handlers when its block ends, may install them.
SIGNAL_HANDLER_MODULES = {PACKAGE / "service" / "interrupts.py"}


def _signal_installs(source: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and _dotted(node.func) in ("signal.signal", "signal.setitimer", "signal.siginterrupt")
    ]


@pytest.mark.parametrize(
    "module",
    [m for m in MODULES if m not in SIGNAL_HANDLER_MODULES and "cli" not in m.relative_to(PACKAGE).parts],
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_only_the_cli_and_the_run_stopper_install_signal_handlers(module):
    assert _signal_installs(module.read_text(encoding="utf-8")) == []


def test_the_signal_check_catches_a_handler():
    assert _signal_installs("import signal\nsignal.signal(signal.SIGTERM, print)\n") == [2]
