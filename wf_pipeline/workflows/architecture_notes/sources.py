"""What one source file declares: its imports and its entry points, each with the line that shows it.

Pure functions of a file's path and text; every finding carries a whole line of the text
(stripped), so a quote taken from a finding holds in the file, and in its extract
(``context_extract`` keeps exactly these lines). The rules, per kind of file:

- Python (``.py``, ``.pyi``): every ``import`` and ``from ... import`` statement, at any
  depth, with its level (``from ..a import b`` is level 2) and the names it imports; a
  file that does not parse is read line by line (statements starting with ``import`` or
  ``from``). Entry points come from the syntax tree, never from strings, docstrings or
  comments: an ``if __name__ == "__main__":`` guard; a ``Definitions(...)`` call (Dagster)
  that is a module-level statement or the value of an assignment (``X = Definitions(``);
  route decorators ``@<name>.<get|post|put|patch|delete|head|options|route|api_route|websocket>("/path"``
  (Flask, FastAPI, Starlette and the like). Each is cited by its line (the decorator's, the
  call's, the ``if``'s), which must also read as the declaration line by line (the
  patterns below): that reading names it, and is what an extract of the file
  (`context_extract`, whole lines only, so it rarely parses) is read with. A whole file
  that does not parse declares no entry point (a ``__main__.py`` still is one).
- JavaScript / TypeScript (``.js .jsx .mjs .cjs .ts .tsx .mts .cts``): ``import ... from "x"``,
  ``import "x"``, ``export ... from "x"``, ``require("x")`` and ``import("x")``; route calls
  ``<app|router|server>.<get|post|...>("/path"`` (Express, Koa, Fastify). Comment lines
  (``//``, and every line of a ``/* ... */`` block) are skipped.

A file lists each entry point (kind, name) once, at its first declaring line.
- ``pyproject.toml``: entries of ``[project.scripts]``, ``[project.gui-scripts]`` and
  ``[tool.poetry.scripts]``.
- ``setup.cfg``: ``console_scripts`` and ``gui_scripts`` entries under ``[options.entry_points]``.
- ``package.json``: ``bin`` (a string, named after the package, or an object) and ``scripts``.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass

from wf_pipeline.text.evidence import parsed_python

PYTHON_SUFFIXES = (".py", ".pyi")
SCRIPT_SUFFIXES = (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts")
SOURCE_SUFFIXES = PYTHON_SUFFIXES + SCRIPT_SUFFIXES
_HTTP_METHODS = "get|post|put|patch|delete|head|options|route|api_route|websocket|all"
_PY_ROUTE = re.compile(rf"^\s*@\s*[A-Za-z_][\w.]*\.({_HTTP_METHODS})\(\s*[rbuf]*[\"']([^\"']*)[\"']")
_JS_ROUTE = re.compile(
    rf"\b(?:app|router|server|api|fastify)\.({_HTTP_METHODS})\(\s*[\"'`]([^\"'`]*)[\"'`]", re.IGNORECASE
)
_DEFINITIONS = re.compile(r"^\s*(?:([A-Za-z_]\w*)\s*(?::[^=]*)?=\s*)?(?:[\w.]*\.)?Definitions\(")
_MAIN_GUARD = re.compile(r"""^\s*if\s+__name__\s*==\s*["']__main__["']\s*:""")
_JS_IMPORT = re.compile(
    r"""(?:\bimport\s+(?:[^'";]*?\s+from\s+)?|\bexport\s+[^'";]*?\s+from\s+)["']([^"']+)["']"""
    r"""|\brequire\(\s*["']([^"']+)["']\s*\)|\bimport\(\s*["']([^"']+)["']\s*\)"""
)
_TOML_SECTION = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*$")
_TOML_ENTRY = re.compile(r"""^\s*["']?([A-Za-z0-9_.\-]+)["']?\s*=\s*["']([^"']+)["']""")
_CFG_SECTION = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*$")
_CFG_ENTRY = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*=\s*([A-Za-z0-9_.]+(?::[A-Za-z0-9_.]+)?)")
_SCRIPT_SECTIONS = ("project.scripts", "project.gui-scripts", "tool.poetry.scripts")


@dataclass(frozen=True)
class ImportFinding:
    """One import statement.

    Attributes:
        module: the module named (``a.b`` for Python, the specifier for JS/TS); empty for
            ``from . import x``.
        level: Python's relative level (0 absolute, 1 for ``.``); 0 for JS/TS.
        names: the names a Python ``from`` import takes (for submodules); empty otherwise.
        line: the statement's first line, stripped.
        language: ``python`` or ``script``.
    """

    module: str
    level: int
    names: tuple[str, ...]
    line: str
    language: str


@dataclass(frozen=True)
class EntryFinding:
    """One declared entry point (see `wf_pipeline.workflows.architecture_notes.payloads.EntryPoint`).

    Attributes:
        kind: the entry kind.
        name: its name.
        line: the declaring line, stripped (None for a ``__main__.py`` file).
        reference: what it runs (``pkg.mod:func``, a script command), when given.
    """

    kind: str
    name: str
    line: str | None
    reference: str | None = None


def is_python(path: str) -> bool:
    """Whether ``path`` is a Python source by its suffix."""
    return path.endswith(PYTHON_SUFFIXES)


def is_script(path: str) -> bool:
    """Whether ``path`` is a JavaScript or TypeScript source by its suffix."""
    return path.endswith(SCRIPT_SUFFIXES)


def python_imports(text: str) -> list[ImportFinding]:
    """Every import statement of Python ``text``, in line order (see the module docstring)."""
    lines = text.splitlines()
    module = parsed_python(text)
    found: list[ImportFinding] = []
    if module is None:
        return _python_imports_by_line(lines)
    nodes = [n for n in ast.walk(module) if isinstance(n, (ast.Import, ast.ImportFrom))]
    for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
        line = lines[node.lineno - 1].strip()
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(ImportFinding(alias.name, 0, (), line, "python"))
        else:
            names = tuple(alias.name for alias in node.names if alias.name != "*")
            found.append(ImportFinding(node.module or "", node.level, names, line, "python"))
    return found


_FROM_IMPORT = re.compile(r"^from\s+(\.*)([\w.]*)\s+import\s+(.+)$")
_PLAIN_IMPORT = re.compile(r"^import\s+([\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*)")


def _python_imports_by_line(lines: list[str]) -> list[ImportFinding]:
    """Imports read line by line, for a text that does not parse (an extract with indented
    imports, a file of another Python version); a parenthesised name list may span lines."""
    found: list[ImportFinding] = []
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        index += 1
        match = _FROM_IMPORT.match(stripped)
        if match:
            names_text = match.group(3)
            if names_text.startswith("(") and ")" not in names_text:
                while index < len(lines) and ")" not in names_text:
                    names_text += " " + lines[index].strip()
                    index += 1
            names = tuple(
                part.split()[0]
                for part in names_text.split("#")[0].strip("() \\").replace(")", "").split(",")
                if part.strip() and part.split()[0] != "*"
            )
            found.append(ImportFinding(match.group(2), len(match.group(1)), names, stripped, "python"))
            continue
        match = _PLAIN_IMPORT.match(stripped)
        if match:
            for part in match.group(1).split(","):
                found.append(ImportFinding(part.split()[0], 0, (), stripped, "python"))
    return found


def script_imports(text: str) -> list[ImportFinding]:
    """Every import, re-export and require of JavaScript / TypeScript ``text``, in line order."""
    found = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith(("//", "*", "/*")):
            continue
        for match in _JS_IMPORT.finditer(raw):
            specifier = next(group for group in match.groups() if group)
            found.append(ImportFinding(specifier, 0, (), stripped, "script"))
    return found


def imports_of(path: str, text: str) -> list[ImportFinding]:
    """The imports of the file at ``path`` (by its suffix); empty for other files."""
    if is_python(path):
        return python_imports(text)
    if is_script(path):
        return script_imports(text)
    return []


def _line_entry(raw: str) -> EntryFinding | None:
    """The entry point one Python line reads as (guard, route decorator, ``Definitions(``), or None."""
    stripped = raw.strip()
    if _MAIN_GUARD.match(raw):
        return EntryFinding("main_guard", "", stripped)
    route = _PY_ROUTE.match(raw)
    if route:
        method = route.group(1).upper()
        method = "ROUTE" if method in ("ROUTE", "API_ROUTE") else method
        return EntryFinding("http_route", f"{method} {route.group(2) or '/'}", stripped)
    definitions = _DEFINITIONS.match(raw)
    if definitions:
        return EntryFinding("dagster_definitions", definitions.group(1) or "Definitions", stripped)
    return None


def _is_main_guard(node: ast.If) -> bool:
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(mains) == 1


def _is_route_decorator(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _HTTP_METHODS.split("|")
    )


def _is_definitions_call(node: ast.expr | None) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Name) and func.id == "Definitions") or (
        isinstance(func, ast.Attribute) and func.attr == "Definitions"
    )


def _declaring_line_numbers(module: ast.Module) -> list[int]:
    """1-based lines of the code that declares entry points: main guards, route decorators,
    ``Definitions(`` calls that are module-level statements or assigned (module docstring)."""
    found: set[int] = set()
    for statement in module.body:
        if isinstance(statement, ast.Expr) and _is_definitions_call(statement.value):
            found.add(statement.value.lineno)
    for node in ast.walk(module):
        if isinstance(node, ast.If) and _is_main_guard(node):
            found.add(node.lineno)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.update(d.lineno for d in node.decorator_list if _is_route_decorator(d))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_definitions_call(node.value):
            found.add(node.value.lineno)  # type: ignore[union-attr]
    return sorted(found)


def _python_entries(path: str, text: str, *, extract: bool) -> Iterator[EntryFinding]:
    if posixpath.basename(path) == "__main__.py":
        yield EntryFinding("main_module", path, None)
    lines = text.splitlines()
    module = None if extract else parsed_python(text)
    if module is not None:
        candidates = [lines[number - 1] for number in _declaring_line_numbers(module)]
    elif extract:
        # An extract holds only lines the whole file's syntax tree declared (`declaring_lines`).
        candidates = lines
    else:
        candidates = []
    for raw in candidates:
        finding = _line_entry(raw)
        if finding is not None and finding.kind == "main_guard":
            finding = EntryFinding("main_guard", path, finding.line)
        if finding is not None:
            yield finding


def _script_entries(text: str) -> Iterator[EntryFinding]:
    in_block = False
    for raw in text.splitlines():
        stripped = raw.strip()
        if in_block:
            in_block = "*/" not in stripped
            continue
        if stripped.startswith("/*"):
            in_block = "*/" not in stripped[2:]
            continue
        if stripped.startswith(("//", "*")):
            continue
        for match in _JS_ROUTE.finditer(raw):
            yield EntryFinding("http_route", f"{match.group(1).upper()} {match.group(2) or '/'}", stripped)


def _pyproject_entries(text: str) -> Iterator[EntryFinding]:
    section = None
    for raw in text.splitlines():
        header = _TOML_SECTION.match(raw)
        if header:
            section = header.group(1).replace('"', "").replace("'", "")
            continue
        if section in _SCRIPT_SECTIONS:
            entry = _TOML_ENTRY.match(raw)
            if entry:
                yield EntryFinding("console_script", entry.group(1), raw.strip(), entry.group(2))


def _setup_cfg_entries(text: str) -> Iterator[EntryFinding]:
    section, group = None, None
    for raw in text.splitlines():
        header = _CFG_SECTION.match(raw)
        if header:
            section, group = header.group(1), None
            continue
        if section != "options.entry_points" or not raw.strip() or raw.lstrip().startswith(("#", ";")):
            continue
        if not raw[:1].isspace():
            key = raw.split("=", 1)[0].strip()
            group = key
            rest = raw.split("=", 1)[1] if "=" in raw else ""
            entry = _CFG_ENTRY.match(rest)
        else:
            entry = _CFG_ENTRY.match(raw)
        if group in ("console_scripts", "gui_scripts") and entry:
            yield EntryFinding("console_script", entry.group(1), raw.strip(), entry.group(2))


def _json_line(lines: list[str], key: str, value: str | None = None) -> str | None:
    """The first line holding ``"key":`` (and ``value`` when given), stripped."""
    needle = json.dumps(key) + ":"
    for raw in lines:
        compact = raw.replace('": ', '":')
        if needle in compact and (value is None or json.dumps(value) in raw):
            return raw.strip()
    return None


def _package_json_entries(text: str) -> Iterator[EntryFinding]:
    try:
        manifest = json.loads(text)
    except ValueError:
        return
    if not isinstance(manifest, dict):
        return
    lines = text.splitlines()
    bin_field = manifest.get("bin")
    if isinstance(bin_field, str) and isinstance(manifest.get("name"), str):
        line = _json_line(lines, "bin", bin_field)
        if line:
            yield EntryFinding("npm_bin", manifest["name"].split("/")[-1], line, bin_field)
    elif isinstance(bin_field, dict):
        for name, target in bin_field.items():
            if isinstance(target, str):
                line = _json_line(lines, name, target)
                if line:
                    yield EntryFinding("npm_bin", name, line, target)
    scripts = manifest.get("scripts")
    if isinstance(scripts, dict):
        for name, command in scripts.items():
            if isinstance(command, str):
                line = _json_line(lines, name, command)
                if line:
                    yield EntryFinding("npm_script", name, line, command)


def _first_of_each(findings: Iterator[EntryFinding]) -> list[EntryFinding]:
    """Each entry point (kind, name) once, at its first declaring line."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for finding in findings:
        if (finding.kind, finding.name) not in seen:
            seen.add((finding.kind, finding.name))
            kept.append(finding)
    return kept


def entry_points_of(path: str, text: str, *, extract: bool = False) -> list[EntryFinding]:
    """The entry points the file at ``path`` declares (see the module docstring), in line order.

    Args:
        path: the file's path (its suffix or name picks the rules).
        text: its text.
        extract: whether ``text`` is the file's extract (`context_extract`) rather than the
            whole file: a Python extract is read line by line, since its lines were chosen
            by the whole file's syntax tree.

    Returns:
        The findings, each entry point (kind, name) once.
    """
    name = posixpath.basename(path)
    if is_python(path):
        return _first_of_each(_python_entries(path, text, extract=extract))
    if is_script(path):
        return _first_of_each(_script_entries(text))
    if name == "pyproject.toml":
        return _first_of_each(_pyproject_entries(text))
    if name == "setup.cfg":
        return _first_of_each(_setup_cfg_entries(text))
    if name == "package.json":
        return _first_of_each(_package_json_entries(text))
    return []


def declaring_lines(path: str, text: str) -> set[str]:
    """The stripped lines of ``text`` its imports and entry points cite (what an extract keeps)."""
    lines = {finding.line for finding in imports_of(path, text)}
    lines.update(entry.line for entry in entry_points_of(path, text) if entry.line)
    return lines
