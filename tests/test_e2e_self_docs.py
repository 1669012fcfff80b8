"""The offline docs writer on this repository's own package.

Every generated README may only mark as code what really exists in its directory, and
it must name every public class and function of that directory's modules.

What a README's inline-code span may be, resolved against the README's directory:
- a path (ends with "/", contains "/", or is a file name): it exists there;
- a signature (``name(...) -> T``): its leading name is defined there; parameter
  types and defaults are not checked;
- a name or dotted name (``Name``, ``Name.method``): every part is defined there by a
  class, function, method or assignment (found with ``ast``), or it is a parameter of
  the function or class the same README line documents;
- anything else (a code snippet): it is a whole source line of a module there.
A line in "Related components" describes a child directory: its spans after the
leading ``child/`` are resolved against that child instead.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT, copy_tree, isolated_settings

from wf_pipeline.service import run_workflow

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"
PACKAGE = REPO_ROOT / "wf_pipeline"
RELATED_HEADING = "Related components"

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"{_NAME}(?:\.{_NAME})*")
_SIGNATURE = re.compile(rf"(?:async\s+)?(?P<name>{_NAME}(?:\.{_NAME})*)\s*\(")
_BACKTICKS = re.compile(r"`+")


# --- reading markdown -------------------------------------------------------------------


def _backslashes_before(line: str, index: int) -> int:
    count = 0
    while index - count - 1 >= 0 and line[index - count - 1] == "\\":
        count += 1
    return count


def code_spans(line: str) -> list[str]:
    """Inline-code spans of one markdown line, as CommonMark delimits them."""
    spans = []
    position = 0
    while opening := _BACKTICKS.search(line, position):
        position = opening.end()
        # A backslash-escaped backtick is literal; the rest of its run may still open a span.
        run = opening.group()[_backslashes_before(line, opening.start()) % 2 :]
        if not run:
            continue
        closing = next(
            (m for m in _BACKTICKS.finditer(line, opening.end()) if m.group() == run),
            None,
        )
        if closing is None:
            continue  # an unmatched run is literal text; spans may still start after it
        content = line[opening.end() : closing.start()]
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        spans.append(content)
        position = closing.end()
    return spans


def sections(readme: str) -> dict[str, list[str]]:
    """Level-2 heading -> the lines of its section."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in readme.splitlines():
        if line.startswith("## "):
            current = found.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return found


def leading_name(span: str) -> str:
    signature = _SIGNATURE.match(span)
    return signature["name"] if signature else span


# --- reading Python ---------------------------------------------------------------------


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Attribute):
        yield target.attr
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _target_names(element)
    elif isinstance(target, ast.Starred):
        yield from _target_names(target.value)


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    args = function.args
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return {arg.arg for arg in named if arg is not None}


@dataclass
class Directory:
    """What one directory of the documented tree defines."""

    path: Path
    names: set[str] = field(default_factory=set)
    parameters: dict[str, set[str]] = field(default_factory=dict)  # function or class -> its parameters
    source_lines: set[str] = field(default_factory=set)
    public: dict[str, list[str]] = field(default_factory=dict)  # module file -> public classes and functions
    files: set[str] = field(default_factory=set)  # names of the directory's own files

    @classmethod
    def read(cls, path: Path) -> Directory:
        directory = cls(path, files={child.name for child in path.iterdir() if child.is_file()})
        for module_path in sorted(path.glob("*.py")):
            text = module_path.read_text()
            module = ast.parse(text)
            directory.source_lines.update(line.strip() for line in text.splitlines() if line.strip())
            directory.public[module_path.name] = public_names(module)
            for node in ast.walk(module):
                directory._define(node)
        return directory

    def _define(self, node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.names.add(node.name)
            self.parameters.setdefault(node.name, set()).update(_parameters(node))
        elif isinstance(node, ast.ClassDef):
            self.names.add(node.name)
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and member.name == "__init__":
                    self.parameters.setdefault(node.name, set()).update(_parameters(member) - {"self"})
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self.names.update(_target_names(target))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
            self.names.update(_target_names(node.target))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            # An imported name is bound in the module (a package's re-exports are its API).
            self.names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)

    def unresolved(self, line: str, spans: list[str]) -> list[str]:
        """The spans of one README line that name nothing in this directory."""
        owner = leading_name(spans[0]).rsplit(".", 1)[-1] if spans else ""
        parameters = self.parameters.get(owner, set())
        return [span for span in spans if not self._resolves(span, parameters)]

    def _resolves(self, span: str, parameters: set[str]) -> bool:
        span = span.strip()
        if not span or span.startswith("/"):
            return False
        # A signature first: its defaults may hold a slash (``title: str = 'p95 / budget'``).
        if signature := _SIGNATURE.match(span):
            return self._names_defined(signature["name"])
        if span.endswith("/") or "/" in span or span in self.files:
            # A path, or a file of this directory by name (``0001_baseline.py`` is no identifier).
            return (self.path / span).exists()
        if _DOTTED.fullmatch(span):
            return (self.path / span).exists() or self._names_defined(span) or span in parameters
        return span in self.source_lines

    def _names_defined(self, dotted: str) -> bool:
        return all(part in self.names for part in dotted.split("."))


def public_names(module: ast.Module) -> list[str]:
    """Top-level classes and functions that are public: listed in ``__all__``, else not underscored."""
    exported: list[str] | None = None
    for statement in module.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
            targets = [statement.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            listed = list(ast.literal_eval(statement.value))
            exported = [*(exported or []), *listed] if isinstance(statement, ast.AugAssign) else listed
    definitions = [
        statement.name
        for statement in module.body
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    if exported is not None:
        return [name for name in definitions if name in exported]
    return [name for name in definitions if not name.startswith("_")]


# --- the checks -------------------------------------------------------------------------


def unresolved_mentions(readme: str, directory: Path) -> list[str]:
    """Every inline-code span of ``readme`` that names no path or definition it may refer to."""
    here = Directory.read(directory)
    related = set(sections(readme).get(RELATED_HEADING, []))
    problems = []
    for number, line in enumerate(readme.splitlines(), start=1):
        spans = code_spans(line)
        if not spans:
            continue
        if line in related and spans[0].endswith("/"):
            child = directory / spans[0]
            if not child.is_dir():
                problems.append(f"line {number}: {spans[0]!r}")
                continue
            here_or_child, spans = Directory.read(child), spans[1:]
        else:
            here_or_child = here
        problems += [f"line {number}: {span!r}" for span in here_or_child.unresolved(line, spans)]
    return problems


def missing_public_names(readme: str, directory: Path) -> list[str]:
    """Public classes and functions of the directory's modules that no span of ``readme`` names."""
    named = {leading_name(span) for line in readme.splitlines() for span in code_spans(line)}
    return [
        f"{module}:{name}"
        for module, names in Directory.read(directory).public.items()
        for name in names
        if name not in named
    ]


# --- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Documented:
    tree: Path
    readmes: dict[str, Path]  # directory relative to the tree -> its README


@pytest.fixture(scope="module")
def documented(tmp_path_factory) -> Iterator[Documented]:
    base = tmp_path_factory.mktemp("self_docs")
    tree = copy_tree(PACKAGE, base / "wf_pipeline")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(base)
        settings = isolated_settings(monkeypatch, base / "home")
        summary = run_workflow(settings, WORKFLOW, tree)
    assert summary.ok, [(t.path, t.status) for t in summary.threads]
    yield Documented(tree, {t.path: Path(t.output_path) for t in summary.threads})


def test_every_package_directory_gets_a_readme(documented):
    directories = {
        path.parent.relative_to(documented.tree).as_posix() for path in documented.tree.rglob("*.py")
    }
    assert set(documented.readmes) == directories


def test_readmes_mention_only_what_exists_in_their_directory(documented):
    problems = {
        relative: unresolved
        for relative, readme in documented.readmes.items()
        if (unresolved := unresolved_mentions(readme.read_text(), documented.tree / relative))
    }
    assert problems == {}


def test_readmes_name_every_public_class_and_function(documented):
    problems = {
        relative: missing
        for relative, readme in documented.readmes.items()
        if (missing := missing_public_names(readme.read_text(), documented.tree / relative))
    }
    assert problems == {}


def test_the_checks_catch_invented_and_missing_names(documented):
    """The two checks above are only worth something if a wrong README fails them."""
    readme = documented.readmes["workflows/docs_writer"].read_text()
    directory = documented.tree / "workflows" / "docs_writer"
    assert unresolved_mentions(readme, directory) == []
    invented = (
        readme + "\n- `extract.py`\n  - `summarise_everything(text: str) -> str`\n  - `Finding.explode`\n"
    )
    invented += "- `ghost.py`\n- `missing/`\n"
    assert [problem.split(": ", 1)[1] for problem in unresolved_mentions(invented, directory)] == [
        "'summarise_everything(text: str) -> str'",
        "'Finding.explode'",
        "'ghost.py'",
        "'missing/'",
    ]
    assert missing_public_names(readme.replace("`render_readme(", "`render("), directory) == [
        "render.py:render_readme"
    ]
    root = documented.readmes["."].read_text()
    forged_child = root.replace("- `tree/` — ", "- `tree/` — `Settings` and ", 1)
    assert forged_child != root
    assert [p.split(": ", 1)[1] for p in unresolved_mentions(forged_child, documented.tree)] == ["'Settings'"]
