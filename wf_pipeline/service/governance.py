"""The governance trail: every accepted feature has a spec, and every spec's gates exist.

A spec is one Markdown file under ``docs/specs/`` of the checkout, ``<id>.md``, that opens
with a front-matter block: YAML between two ``---`` lines, the convention of Jekyll, Hugo
and markdown-it-py's front-matter plugin. Its fields (`SpecFront`) are ``id``, ``title``,
``owner_domain`` (a package under ``wf_pipeline/``), ``status`` (``accepted``),
``exit_criteria`` and ``gates``. A gate is either

- a pytest node id, ``tests/test_x.py::test_name``, ``tests/test_x.py::TestClass::test_name``
  or with a parameter id, ``tests/test_x.py::test_name[sqlite]``; or
- a benchmark script, ``bench/p4_cas_encrypted.py``.

``docs/specs/index.md`` is the index: it links every spec, and only specs that exist.

`check_governance` (``wf governance check``, run by ``make lint``) reads every spec and
reports each problem with its code: ``GOVERNANCE_SPEC_INVALID`` for a malformed spec,
``GOVERNANCE_GATE_MISSING`` for a gate that names a test or benchmark that is not there,
``GOVERNANCE_INDEX_INCOMPLETE`` for an index that misses a spec or links a missing one.
A test id is resolved the way pytest collects it, without importing anything: the file is
parsed with `ast`, and the test must be a function (or a method of a ``Test`` class)
defined there. These checks read the checkout's files only; no home, store or setting is
involved, so they take no `Settings`.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from wf_pipeline.errors import (
    GOVERNANCE_GATE_MISSING,
    GOVERNANCE_INDEX_INCOMPLETE,
    GOVERNANCE_SPEC_INVALID,
    GOVERNANCE_SPECS_NOT_FOUND,
    GovernanceError,
)

#: Where the specs live, relative to the checkout's root.
SPECS_DIR = PurePosixPath("docs/specs")
#: The index of the spec folder: a Markdown file that links every spec.
INDEX_NAME = "index.md"
#: Benchmark scripts live here, relative to the checkout's root.
BENCH_DIR = PurePosixPath("bench")
#: The statuses a spec may have. Only accepted features carry a spec; each one's gates must exist.
STATUSES = ("accepted",)

# pytest's defaults (``python_files``, ``python_classes``, ``python_functions``); the project's
# pytest configuration in pyproject.toml keeps them.
_TEST_FILES = ("test_*.py", "*_test.py")
_TEST_CLASS_PREFIX = "Test"
_TEST_FUNCTION_PREFIX = "test"
# A front-matter block: ``---`` on the first line, YAML, ``---`` on a line of its own.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?P<yaml>.*?)^---[ \t]*$", re.DOTALL | re.MULTILINE)
# The last part of a node id, with an optional parameter id: ``test_name[sqlite-1]``.
_LAST_PART = re.compile(r"^(?P<name>[^\[\]]+)(?P<param>\[.*\])?$")
_SPEC_ID = r"^[a-z0-9]+(-[a-z0-9]+)*$"

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class SpecFront(BaseModel):
    """The front matter of one spec, validated strictly (no coercion, no unknown field).

    Attributes:
        id: lowercase words joined by ``-``; equal to the file's name without ``.md``.
        title: the feature's name.
        owner_domain: the package under ``wf_pipeline/`` that owns the feature (``cas``,
            ``retention``...); checked against the checkout by `load_spec`.
        status: ``accepted``.
        exit_criteria: what must hold for the feature to count as done, at least one.
        gates: the verification gates that prove the criteria (test node ids or benchmark
            scripts), at least one, no duplicate.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[str, StringConstraints(pattern=_SPEC_ID)]
    title: _Text
    owner_domain: _Text
    status: Literal["accepted"]
    exit_criteria: list[_Text] = Field(min_length=1)
    gates: list[_Text] = Field(min_length=1)

    @field_validator("gates")
    @classmethod
    def _unique_gates(cls, gates: list[str]) -> list[str]:
        duplicates = sorted({gate for gate in gates if gates.count(gate) > 1})
        if duplicates:
            raise ValueError(f"gates named twice: {', '.join(duplicates)}")
        return gates


@dataclass(frozen=True)
class Spec:
    """One loaded spec: its front matter and where it was read from.

    Attributes:
        path: the spec file.
        front: its validated front matter.
    """

    path: Path
    front: SpecFront


# --- locating ----------------------------------------------------------------------------


def find_checkout(start: Path) -> Path:
    """The root of the wf_pipeline checkout that holds ``start``.

    The nearest of ``start`` and its parents that holds both ``pyproject.toml`` and the
    ``wf_pipeline`` package (``wf_pipeline/__init__.py``).

    Args:
        start: a directory inside the checkout, usually the current directory.

    Returns:
        The checkout's root directory, resolved.

    Raises:
        GovernanceError: ``GOVERNANCE_SPECS_NOT_FOUND`` when no parent is a checkout.
    """
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "wf_pipeline" / "__init__.py").is_file():
            return candidate
    raise GovernanceError(
        GOVERNANCE_SPECS_NOT_FOUND,
        f"no wf_pipeline checkout (pyproject.toml beside wf_pipeline/) at or above {start}",
        start=str(start),
    )


def owner_domains(root: Path) -> list[str]:
    """The packages directly under ``wf_pipeline/`` of the checkout, the possible owner domains.

    Args:
        root: the checkout's root.

    Returns:
        Package names (directories holding ``__init__.py``), sorted. Raises nothing.
    """
    package = root / "wf_pipeline"
    return sorted(
        child.name
        for child in package.iterdir()
        if child.is_dir() and not child.name.startswith(("_", ".")) and (child / "__init__.py").is_file()
    )


# --- loading one spec -----------------------------------------------------------------------


def load_spec(path: Path, domains: Iterable[str]) -> Spec:
    """Read and validate one spec file.

    Args:
        path: the spec, ``<id>.md``.
        domains: the owner domains the checkout has (`owner_domains`).

    Returns:
        The `Spec`. Its gates are not checked here (`check_gate`).

    Raises:
        GovernanceError: ``GOVERNANCE_SPEC_INVALID`` when the file cannot be read as UTF-8,
            has no front-matter block, holds YAML that does not parse or is not a mapping,
            misses a field, has a field of the wrong type or an unknown one, an id that
            is not its file name, a status other than ``accepted``, an owner domain that is
            no package of ``wf_pipeline``, or no text after its front matter.
    """
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GovernanceError(GOVERNANCE_SPEC_INVALID, f"{name}: cannot be read: {exc}", spec=name) from exc
    match = _FRONT_MATTER.match(text)
    if match is None:
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID,
            f"{name}: no front matter (YAML between a first line '---' and a closing '---' line)",
            spec=name,
        )
    try:
        data = yaml.safe_load(match.group("yaml"))
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID, f"{name}: front matter is not YAML: {reason}", spec=name
        ) from exc
    if not isinstance(data, dict):
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID,
            f"{name}: front matter is a {type(data).__name__}, not a mapping of fields",
            spec=name,
        )
    try:
        front = SpecFront.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'front matter'}: {error['msg']}"
            for error in exc.errors()
        )
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID, f"{name}: {problems}", spec=name, fields=_error_fields(exc)
        ) from exc
    if front.id != path.stem:
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID,
            f"{name}: id {front.id!r} is not the file's name {path.stem!r}",
            spec=name,
        )
    known = sorted(domains)
    if front.owner_domain not in known:
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID,
            f"{name}: owner_domain {front.owner_domain!r} is no package of wf_pipeline "
            f"(one of: {', '.join(known)})",
            spec=name,
            owner_domain=front.owner_domain,
        )
    if not text[match.end() :].strip():
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID,
            f"{name}: nothing after the front matter says what the feature is",
            spec=name,
        )
    return Spec(path=path, front=front)


def _error_fields(exc: ValidationError) -> list[str]:
    return sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})


# --- gates ------------------------------------------------------------------------------------


def check_gate(root: Path, gate: str) -> str:
    """Check that one gate names a real test or benchmark of the checkout.

    A gate with ``::`` is a pytest node id: ``FILE::[CLASS::...]FUNCTION[PARAM]``. ``FILE``
    is a path relative to the root, inside it, named as pytest collects (``test_*.py`` or
    ``*_test.py``). The file is parsed with `ast`, nothing is imported. Each ``CLASS`` is a
    class named ``Test...`` defined at that level, without an ``__init__`` (nested classes
    nest); ``FUNCTION`` is a function named ``test...`` defined in the module or in the
    class body, or in a base class that the same module defines. A ``[PARAM]`` suffix (a parametrized id) needs a
    function that takes an argument a parametrize mark or a parametrized fixture can feed.
    Which parameter ids exist is only known to pytest's collection, so they are not checked.

    A gate without ``::`` is a benchmark script: ``bench/NAME.py``, an existing file.

    Args:
        root: the checkout's root.
        gate: the gate as the spec writes it.

    Returns:
        ``"test"`` or ``"benchmark"``, the gate's kind.

    Raises:
        GovernanceError: ``GOVERNANCE_SPEC_INVALID`` for a gate that is neither form (a
            path outside the checkout, a file pytest would not collect, a bare test file
            without ``::``, a parameter id on a class); ``GOVERNANCE_GATE_MISSING`` when the
            file, a class or the function is not there, or a parameter id is given for a
            function that takes no argument.
    """
    if "::" not in gate:
        return _check_benchmark(root, gate)
    file_part, *parts = gate.split("::")
    path = _inside(root, file_part, gate)
    if not any(fnmatch.fnmatch(path.name, pattern) for pattern in _TEST_FILES):
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID,
            f"gate {gate}: {file_part} is not a test file pytest collects (test_*.py or *_test.py)",
            gate=gate,
        )
    if not path.is_file():
        raise GovernanceError(GOVERNANCE_GATE_MISSING, f"gate {gate}: no file {file_part}", gate=gate)
    try:
        module = ast.parse(path.read_bytes(), filename=file_part)
    except (SyntaxError, ValueError) as exc:
        raise GovernanceError(
            GOVERNANCE_GATE_MISSING, f"gate {gate}: {file_part} does not parse as Python: {exc}", gate=gate
        ) from exc
    if not parts or any(not part for part in parts):
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID, f"gate {gate}: an empty part in the node id", gate=gate
        )
    *class_names, last = parts
    match = _LAST_PART.match(last)
    if match is None or any("[" in name or "]" in name for name in class_names):
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID,
            f"gate {gate}: a parameter id belongs on the test function, the last part only",
            gate=gate,
        )
    scope: list[ast.stmt] = module.body
    where = file_part
    for class_name in class_names:
        found = _test_class(scope, class_name)
        if found is None:
            raise GovernanceError(
                GOVERNANCE_GATE_MISSING, f"gate {gate}: no test class {class_name} in {where}", gate=gate
            )
        scope = _class_body(module.body, found)
        where = f"{where}::{class_name}"
    function = _test_function(scope, match.group("name"))
    if function is None:
        raise GovernanceError(
            GOVERNANCE_GATE_MISSING,
            f"gate {gate}: no test function {match.group('name')} in {where}",
            gate=gate,
        )
    if match.group("param") is not None and not _takes_arguments(function, in_class=bool(class_names)):
        raise GovernanceError(
            GOVERNANCE_GATE_MISSING,
            f"gate {gate}: {match.group('name')} takes no argument, so it has no parametrized id "
            f"{match.group('param')}",
            gate=gate,
        )
    return "test"


def _check_benchmark(root: Path, gate: str) -> str:
    path = _inside(root, gate, gate)
    relative = PurePosixPath(path.relative_to(root).as_posix())
    if relative.parent != BENCH_DIR or relative.suffix != ".py":
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID,
            f"gate {gate}: neither a test id (FILE::TEST) nor a benchmark script ({BENCH_DIR}/NAME.py)",
            gate=gate,
        )
    if not path.is_file():
        raise GovernanceError(
            GOVERNANCE_GATE_MISSING, f"gate {gate}: no benchmark script {relative}", gate=gate
        )
    return "benchmark"


def _inside(root: Path, relative: str, gate: str) -> Path:
    # A gate names a file of this checkout; an absolute path or one that climbs out is malformed.
    candidate = PurePosixPath(relative)
    path = (root / candidate).resolve()
    if candidate.is_absolute() or not path.is_relative_to(root):
        raise GovernanceError(
            GOVERNANCE_SPEC_INVALID, f"gate {gate}: {relative} is not a path inside the checkout", gate=gate
        )
    return path


def _test_class(scope: list[ast.stmt], name: str) -> ast.ClassDef | None:
    if not name.startswith(_TEST_CLASS_PREFIX):
        return None
    # The last definition wins, as at import time. pytest skips a class with its own __init__.
    found = None
    for node in scope:
        if isinstance(node, ast.ClassDef) and node.name == name:
            found = node
    if found is not None and any(
        isinstance(node, ast.FunctionDef) and node.name == "__init__" for node in found.body
    ):
        return None
    return found


def _class_body(module_body: list[ast.stmt], cls: ast.ClassDef) -> list[ast.stmt]:
    # The class's own body, then the bodies of the base classes this module defines (pytest
    # collects inherited test methods); bases from other modules are not followed.
    body: list[ast.stmt] = list(cls.body)
    classes = {node.name: node for node in module_body if isinstance(node, ast.ClassDef)}
    seen = {cls.name}
    pending = [base.id for base in cls.bases if isinstance(base, ast.Name)]
    while pending:
        base_name = pending.pop(0)
        base = classes.get(base_name)
        if base is None or base_name in seen:
            continue
        seen.add(base_name)
        body.extend(base.body)
        pending.extend(inner.id for inner in base.bases if isinstance(inner, ast.Name))
    return body


def _test_function(scope: list[ast.stmt], name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    if not name.startswith(_TEST_FUNCTION_PREFIX):
        return None
    for node in scope:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node
    return None


def _takes_arguments(function: ast.FunctionDef | ast.AsyncFunctionDef, *, in_class: bool) -> bool:
    arguments = [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]
    if in_class and arguments:
        arguments = arguments[1:]  # self
    return bool(arguments)


# --- the index --------------------------------------------------------------------------------


def index_links(index: Path) -> set[str]:
    """The relative link targets of a Markdown file, without their ``#fragment``.

    Parsed with markdown-it-py (CommonMark), so a link inside code is no link.

    Args:
        index: the Markdown file.

    Returns:
        Link targets as written (``cas-store.md``), for links that are neither absolute
        URLs nor in-page anchors. Raises ``OSError`` or ``UnicodeDecodeError`` when the
        file cannot be read.
    """
    tokens = MarkdownIt("commonmark").parse(index.read_text(encoding="utf-8"))
    links: set[str] = set()
    for token in tokens:
        for child in token.children or ():
            if child.type != "link_open":
                continue
            href = str(child.attrGet("href") or "").split("#", 1)[0]
            if href and "://" not in href and not href.startswith(("/", "mailto:")):
                links.add(href)
    return links


def _check_index(specs_dir: Path, spec_names: list[str]) -> list[dict[str, Any]]:
    index = specs_dir / INDEX_NAME
    try:
        links = index_links(index)
    except (OSError, UnicodeDecodeError) as exc:
        error = GovernanceError(
            GOVERNANCE_INDEX_INCOMPLETE, f"{INDEX_NAME}: the spec index cannot be read: {exc}"
        )
        return [{**error.to_dict(), "spec": INDEX_NAME}]
    problems = []
    for name in spec_names:
        if name not in links:
            error = GovernanceError(GOVERNANCE_INDEX_INCOMPLETE, f"{INDEX_NAME}: does not link {name}")
            problems.append({**error.to_dict(), "spec": name})
    for href in sorted(links):
        if href.endswith(".md") and not (specs_dir / href).is_file():
            error = GovernanceError(
                GOVERNANCE_INDEX_INCOMPLETE, f"{INDEX_NAME}: links {href}, which does not exist"
            )
            problems.append({**error.to_dict(), "spec": INDEX_NAME})
    return problems


# --- the check --------------------------------------------------------------------------------


def check_governance(start: Path, specs: Path | None = None) -> dict[str, Any]:
    """Check every spec of the checkout: its front matter, each of its gates, and the index.

    The specs are the ``*.md`` files directly in the spec folder, the index aside.

    Args:
        start: a directory inside the checkout (the CLI passes the current directory);
            test ids and benchmark scripts are resolved against the checkout's root.
        specs: the spec folder; None means ``docs/specs`` of the checkout. A relative path
            is taken from ``start``.

    Returns:
        ``{"ok", "specs_dir", "specs", "gates_found", "problems"}``: ``specs`` has one
        entry per spec file (``file``, ``id``, ``title``, ``owner_domain``, ``gates``: the
        count, ``ok``); ``gates_found`` counts the gates found to exist, by kind
        (``test``, ``benchmark``); ``problems`` has one entry per problem (``code``, ``message``,
        ``spec``: the file, and ``gate`` for a gate problem). ``ok`` is True when there is no
        problem.

    Raises:
        GovernanceError: ``GOVERNANCE_SPECS_NOT_FOUND`` when ``start`` is in no checkout,
            or the spec folder does not exist or holds no ``*.md`` spec. Each other
            problem is reported in ``problems``, not raised, so one bad spec hides none.
    """
    root = find_checkout(start)
    specs_dir = (root / SPECS_DIR) if specs is None else (start / specs).resolve()
    if not specs_dir.is_dir():
        raise GovernanceError(
            GOVERNANCE_SPECS_NOT_FOUND, f"no spec folder {_shown(specs_dir, root)}", specs_dir=str(specs_dir)
        )
    files = sorted(path for path in specs_dir.glob("*.md") if path.name != INDEX_NAME)
    if not files:
        raise GovernanceError(
            GOVERNANCE_SPECS_NOT_FOUND,
            f"the spec folder {_shown(specs_dir, root)} holds no spec (*.md besides {INDEX_NAME})",
            specs_dir=str(specs_dir),
        )
    domains = owner_domains(root)
    problems: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    kinds = {"test": 0, "benchmark": 0}
    for path in files:
        try:
            spec = load_spec(path, domains)
        except GovernanceError as exc:
            problems.append({**exc.to_dict(), "spec": path.name})
            summaries.append({"file": path.name, "id": None, "ok": False})
            continue
        spec_ok = True
        for gate in spec.front.gates:
            try:
                kinds[check_gate(root, gate)] += 1
            except GovernanceError as exc:
                spec_ok = False
                problems.append(
                    {
                        **exc.to_dict(),
                        "message": f"{path.name}: {exc.message}",
                        "spec": path.name,
                        "gate": gate,
                    }
                )
        summaries.append(
            {
                "file": path.name,
                "id": spec.front.id,
                "title": spec.front.title,
                "owner_domain": spec.front.owner_domain,
                "gates": len(spec.front.gates),
                "ok": spec_ok,
            }
        )
    problems.extend(_check_index(specs_dir, [path.name for path in files]))
    for problem in problems:
        problem.pop("details", None)  # the figures are in the message; spec and gate are fields
    return {
        "ok": not problems,
        "specs_dir": _shown(specs_dir, root),
        "specs": summaries,
        "gates_found": kinds,
        "problems": problems,
    }


def _shown(path: Path, root: Path) -> str:
    # Inside the checkout, a path relative to its root: output names no machine path.
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
