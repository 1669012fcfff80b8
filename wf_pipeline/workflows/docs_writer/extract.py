"""Grounded facts extracted from source text, without a model.

Each extractor reads one file's text and yields `Finding`s: a statement plus the exact
evidence (a symbol or a verbatim quote) that backs it. The offline provider numbers
them into claims. Every quote is a verbatim piece of the text it was read from, so a
verifier can find it again. Prose a statement repeats (docstrings, comments, headings)
keeps its code spans only where the directory's vocabulary resolves them (see
``grounding``).
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from wf_pipeline.metadata.payloads import ContextChild, ContextFile
from wf_pipeline.text.docstrings import drop_explicit_markup, rst_to_markdown
from wf_pipeline.text.languages import canonical_language, extension_language, shebang_language
from wf_pipeline.text.markdown import read_markdown
from wf_pipeline.text.names import code_span
from wf_pipeline.workflows.docs_writer.grounding import (
    Vocabulary,
    constructor_parameters,
    parsed_python,
    python_defined_names,
    python_parameters,
    script_defined_names,
    shell_defined_names,
)
from wf_pipeline.workflows.docs_writer.payloads import README_SECTIONS, ClaimKind

# Longest first line that still reads as a useful description of a data/config file.
MAX_FILE_LINE_CHARS = 120
# Caps keep a single large document from flooding the evidence map.
MAX_HEADINGS_PER_FILE = 20
MAX_SCRIPT_HEADER_LINES = 6
# A child without a Purpose is summarised by the first names its Scope lists.
MAX_CHILD_SCOPE_NAMES = 6


@dataclass(frozen=True)
class Finding:
    """A statement about ``path`` and its evidence: a ``symbol``, a verbatim ``quote``, or both."""

    kind: ClaimKind
    path: str
    statement: str
    symbol: str | None = None
    quote: str | None = None


# --- language detection -------------------------------------------------------------

# Languages an extractor reads; every other file gets a plain file claim.
EXTRACTED_LANGUAGES = frozenset({"python", "javascript", "typescript", "shell", "markdown"})


def detect_language(file: ContextFile) -> str | None:
    """The extractor language of ``file``: by its name in the language table, then the
    scanner's label, then an interpreter line; None when no extractor applies."""
    by_name = extension_language(file.name)
    if by_name in EXTRACTED_LANGUAGES:
        return by_name
    label = canonical_language(file.language)
    if label in EXTRACTED_LANGUAGES:
        return label
    by_shebang = shebang_language(file.text or "")
    return by_shebang if by_shebang in EXTRACTED_LANGUAGES else None


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, stripped ("" when there is none)."""
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def first_paragraph(text: str) -> str:
    """The first paragraph of ``text`` on one line (a docstring summary wrapped over lines)."""
    lines: list[str] = []
    for line in text.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip())
    return " ".join(lines)


def code(text: str) -> str:
    """``text`` as an inline code span (`wf_pipeline.text.names.code_span`: any name, one line)."""
    return code_span(text)


# --- Python ---------------------------------------------------------------------------


def _format_arg(arg: ast.arg, default: ast.expr | None) -> str:
    rendered = arg.arg
    if arg.annotation is not None:
        rendered += f": {ast.unparse(arg.annotation)}"
    if default is not None:
        rendered += (" = " if arg.annotation is not None else "=") + ast.unparse(default)
    return rendered


def python_signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """`(params) -> ret` rebuilt from the syntax tree."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    parts: list[str] = []
    for index, (arg, default) in enumerate(zip(positional, defaults)):
        parts.append(_format_arg(arg, default))
        if index == len(args.posonlyargs) - 1:
            parts.append("/")
    if args.vararg is not None:
        parts.append("*" + _format_arg(args.vararg, None))
    elif args.kwonlyargs:
        parts.append("*")
    parts.extend(_format_arg(arg, default) for arg, default in zip(args.kwonlyargs, args.kw_defaults))
    if args.kwarg is not None:
        parts.append("**" + _format_arg(args.kwarg, None))
    returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
    return f"({', '.join(parts)}){returns}"


def _all_method_call(statement: ast.stmt) -> tuple[str, ast.expr] | None:
    """(method, argument) of an ``__all__.extend(...)`` / ``.append(...)`` / ``.remove(...)`` statement."""
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
        return None
    call = statement.value
    func = call.func
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "__all__"
        and func.attr in ("extend", "append", "remove")
        and len(call.args) == 1
        and not call.keywords
    ):
        return func.attr, call.args[0]
    return None


def _static_all(module: ast.Module) -> list[str] | None:
    """Names in a literal ``__all__``; None when absent or computed.

    The forms are those the typing specification's "Library interface" rules let a type
    checker read: ``__all__ = [...]`` (or a tuple), ``__all__ += [...]``,
    ``__all__.extend([...])``, ``__all__.append("x")`` and ``__all__.remove("x")``. A value
    that is not a literal (``__all__ += core.__all__``) makes the whole list unknown.
    """
    names: list[str] | None = None
    for statement in module.body:
        method_call = _all_method_call(statement)
        if isinstance(statement, ast.Assign):
            targets, value, mode = statement.targets, statement.value, "set"
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value, mode = [statement.target], statement.value, "set"
        elif isinstance(statement, ast.AugAssign) and isinstance(statement.op, ast.Add):
            targets, value, mode = [statement.target], statement.value, "extend"
        elif method_call is not None:
            targets, (mode, value) = [ast.Name(id="__all__")], method_call
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            continue
        try:
            literal = ast.literal_eval(value)
        except ValueError:
            return None
        if mode in ("append", "remove"):
            literal = [literal]
        if not isinstance(literal, (list, tuple)) or not all(isinstance(n, str) for n in literal):
            return None
        if mode == "set":
            names = list(literal)
        elif mode == "remove":
            names = [name for name in names or [] if name not in literal]
        else:
            names = [*(names or []), *literal]
    return names


def docstring_summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line, its reStructuredText read as Markdown
    (`rst_to_markdown`); "" for no docstring. Every docstring summary a README shows comes from here."""
    return rst_to_markdown(first_paragraph(drop_explicit_markup(doc))) if doc else ""


def _doc_summary(node: ast.AST, vocabulary: Vocabulary, parameters: frozenset[str] = frozenset()) -> str:
    summary = docstring_summary(ast.get_docstring(node))  # type: ignore[arg-type]
    return vocabulary.ground(summary, parameters) if summary else ""


def _described(rendered: str, *details: str) -> str:
    described = " ".join(detail for detail in details if detail)
    return f"{rendered} — {described}" if described else rendered


def _source_line(lines: list[str], lineno: int) -> str | None:
    return lines[lineno - 1].strip() if 0 < lineno <= len(lines) and lines[lineno - 1].strip() else None


def _is_main_guard(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.If) or not isinstance(statement.test, ast.Compare):
        return False
    operands = [statement.test.left, *statement.test.comparators]
    has_name = any(isinstance(o, ast.Name) and o.id == "__name__" for o in operands)
    has_main = any(isinstance(o, ast.Constant) and o.value == "__main__" for o in operands)
    return has_name and has_main


def _is_overload(node: ast.stmt) -> bool:
    """Whether ``node`` is decorated ``@overload`` (``typing``'s, or any module's ``.overload``)."""
    decorators = getattr(node, "decorator_list", [])
    return any(
        (isinstance(d, ast.Name) and d.id == "overload")
        or (isinstance(d, ast.Attribute) and d.attr == "overload")
        for d in decorators
    )


def _collapsed(definitions: list[ast.stmt]) -> tuple[ast.stmt, ast.stmt]:
    """(the definition an API entry shows, the one whose docstring it quotes) for one name.

    Overloads collapse into one entry (PEP 484: the ``@overload`` variants describe the one
    implementation that follows them): the last definition that is not an overload (what
    the name is bound to at run time), else the first overload (a stub without an
    implementation). Its docstring, or the first docstring among the variants.
    """
    implementations = [d for d in definitions if not _is_overload(d)]
    shown = implementations[-1] if implementations else definitions[0]
    documented = shown if ast.get_docstring(shown) else None  # type: ignore[arg-type]
    documented = documented or next((d for d in definitions if ast.get_docstring(d)), shown)  # type: ignore[arg-type]
    return shown, documented


@dataclass(frozen=True)
class ReExport:
    """A name a module exports by importing it: ``name`` as bound, ``source`` the module as
    written (``.registry``, ``os.path``; ``.caching`` for ``from . import caching``),
    ``original`` its name there ("" when the name is the module itself), ``line`` the
    1-based line of the imported name."""

    name: str
    source: str
    original: str
    line: int


def _import_statements(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Top-level imports, also inside ``try`` and ``if`` blocks (optional imports)."""
    for statement in body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            yield statement
        elif isinstance(statement, ast.Try):
            for block in (statement.body, *(h.body for h in statement.handlers), statement.orelse):
                yield from _import_statements(block)
        elif isinstance(statement, ast.If) and not _is_main_guard(statement):
            yield from _import_statements(statement.body)
            yield from _import_statements(statement.orelse)


def python_reexports(module: ast.Module, *, package_init: bool) -> list[ReExport]:
    """The imported names a module exports, each once, in source order.

    The rule is the one type checkers apply to a library's public API (the typing
    specification's "Library interface" rules, as pyright and mypy read them): with a
    literal ``__all__``, exactly the imported names it lists; without one, a name imported
    ``as`` itself (``from .x import a as a``), and, in a package's ``__init__.py``, every
    public name of a relative import (``from .x import a``, ``from . import mod``). Star
    imports are not followed.

    Args:
        module: the module's syntax tree.
        package_init: whether the module is a package's ``__init__.py``.

    Returns:
        The re-exports, a name bound twice listed at its first import. Raises nothing.
    """
    exported = _static_all(module)
    found: dict[str, ReExport] = {}
    for statement in _import_statements(module.body):
        relative = isinstance(statement, ast.ImportFrom) and statement.level > 0
        source = (
            "." * statement.level + (statement.module or "") if isinstance(statement, ast.ImportFrom) else ""
        )
        for alias in statement.names:
            if alias.name == "*":
                continue
            if isinstance(statement, ast.Import):
                bound = alias.asname or alias.name.split(".")[0]
                where, original = (alias.name if alias.asname else bound), ""
            elif source == ".":
                # ``from . import caching``: the package's own submodule.
                bound, where, original = alias.asname or alias.name, f".{alias.name}", ""
            else:
                bound, where, original = alias.asname or alias.name, source, alias.name
            if exported is not None:
                public = bound in exported
            else:
                public = not bound.startswith("_") and (
                    alias.asname == alias.name or (package_init and relative)
                )
            if public and bound not in found:
                found[bound] = ReExport(bound, where, original, getattr(alias, "lineno", statement.lineno))
    return list(found.values())


def local_module(source: str, directory: str) -> list[str] | None:
    """The components of an imported module below the importing file's ``directory``, or None.

    ``.registry`` (from a file of that directory) is ``["registry"]``; so is
    ``stationkit.sensors.registry`` imported in ``src/stationkit/sensors``, an absolute
    import whose package is the directory itself (its dotted prefix ends with the
    directory's trailing path components). Modules elsewhere (``..x``, ``os.path``) are None.

    Args:
        source: the module as written in the import (`ReExport.source`).
        directory: the importing file's directory, POSIX, relative to the scanned root ("" for it).
    """
    if source.startswith("."):
        if source.startswith("..") or source == ".":
            return None
        return source[1:].split(".")
    parts = source.split(".")
    directory_parts = [part for part in directory.split("/") if part]
    for size in range(min(len(directory_parts), len(parts) - 1), 0, -1):
        if parts[:size] == directory_parts[-size:]:
            return parts[size:]
    return None


def sibling_reexports(files: Iterable[ContextFile]) -> dict[str, frozenset[str]]:
    """File name -> the names a directory's ``__init__.py`` re-exports from that sibling module.

    ``from .registry import register_implementation`` in ``__init__.py`` makes
    ``register_implementation`` part of the package's API, so ``registry.py`` documents it
    even when its own ``__all__`` leaves it out (`local_module` says which imports are of
    siblings). Empty without a readable ``__init__.py``.
    """
    init = next((f for f in files if f.name == "__init__.py" and f.text is not None), None)
    module = parsed_python(init.text or "") if init is not None else None
    if init is None or module is None:
        return {}
    directory = posixpath.dirname(init.path)
    by_file: dict[str, set[str]] = {}
    for reexport in python_reexports(module, package_init=True):
        local = local_module(reexport.source, directory)
        if reexport.original and local is not None and len(local) == 1:
            by_file.setdefault(f"{local[0]}.py", set()).add(reexport.original)
    return {name: frozenset(names) for name, names in by_file.items()}


def _source_reference(source: str, directory: str, vocabulary: Vocabulary) -> str:
    """Where a re-export comes from, as the README shows it: a sibling file or a child
    directory as a code span, any other module as text."""
    local = local_module(source, directory)
    if local:
        if len(local) == 1 and f"{local[0]}.py" in vocabulary.files:
            return code(f"{local[0]}.py")
        if local[0] in vocabulary.directories:
            return code(f"{local[0]}/")
    return vocabulary.ground(code(source))


def _reexport_finding(
    file: ContextFile, reexport: ReExport, lines: list[str], vocabulary: Vocabulary
) -> Finding:
    origin = _source_reference(reexport.source, posixpath.dirname(file.path), vocabulary)
    if not reexport.original:
        statement = f"{code(reexport.name)} — re-exported module ({origin})"
    else:
        statement = f"{code(reexport.name)} — re-exported from {origin}"
        if reexport.original != reexport.name:
            statement += f" (named {vocabulary.ground(code(reexport.original))} there)"
    return Finding(
        "export", file.path, statement, symbol=reexport.name, quote=_source_line(lines, reexport.line)
    )


def python_findings(
    file: ContextFile, vocabulary: Vocabulary | None = None, also_public: Iterable[str] = ()
) -> Iterator[Finding]:
    """The module docstring, public functions and classes, re-exported names and a
    ``__main__`` guard of a Python file.

    A name is public when ``__all__`` lists it (else when it has no leading underscore),
    or when it is in ``also_public`` (the names the package's ``__init__.py`` re-exports
    from this module, `sibling_reexports`). A name defined more than once (``@overload``
    variants, a redefinition) is one entry (`_collapsed`). Imported names the module
    exports are entries too (`python_reexports`).
    """
    text = file.text or ""
    module = parsed_python(text)
    if module is None:
        return
    vocabulary = vocabulary or vocabulary_of([file])
    lines = text.splitlines()
    doc = ast.get_docstring(module)
    doc_line = first_line(drop_explicit_markup(doc)) if doc else ""
    if doc_line and doc_line in text:
        summary = vocabulary.ground(docstring_summary(doc))
        yield Finding("module", file.path, f"{code(file.name)} — {summary}", quote=doc_line)

    exported = _static_all(module)
    extra = frozenset(also_public)

    def is_public(name: str) -> bool:
        listed = name in exported if exported is not None else not name.startswith("_")
        return listed or name in extra

    definitions: dict[str, list[ast.stmt]] = {}
    for statement in module.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            definitions.setdefault(statement.name, []).append(statement)
    package_init = file.name == "__init__.py"
    reexports = [r for r in python_reexports(module, package_init=package_init) if r.name not in definitions]
    emitted: set[str] = set()
    for statement in module.body:
        end_line = statement.end_lineno or statement.lineno
        for reexport in reexports:
            if statement.lineno <= reexport.line <= end_line:
                yield _reexport_finding(file, reexport, lines, vocabulary)
        if not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if _is_main_guard(statement):
                guard = _source_line(lines, statement.lineno)
                if guard:
                    yield Finding(
                        "script",
                        file.path,
                        f"{code(file.name)} — script entry point ({code(guard)})",
                        quote=guard,
                    )
            continue
        if statement.name in emitted or not is_public(statement.name):
            continue
        emitted.add(statement.name)
        shown, documented = _collapsed(definitions[statement.name])
        if isinstance(shown, (ast.FunctionDef, ast.AsyncFunctionDef)):
            prefix = "async " if isinstance(shown, ast.AsyncFunctionDef) else ""
            rendered = code(f"{prefix}{shown.name}{python_signature(shown)}")
            summary = _doc_summary(documented, vocabulary, python_parameters(shown))
            yield Finding(
                "function",
                file.path,
                _described(rendered, summary),
                symbol=shown.name,
                quote=_source_line(lines, shown.lineno),
            )
        elif isinstance(shown, ast.ClassDef):
            methods = dict.fromkeys(
                member.name
                for member in shown.body
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef))
                and not member.name.startswith("_")
            )
            listed = f"Methods: {', '.join(code(m) for m in methods)}." if methods else ""
            summary = _doc_summary(documented, vocabulary, constructor_parameters(shown))
            yield Finding(
                "class",
                file.path,
                _described(code(shown.name), summary, listed),
                symbol=shown.name,
                quote=_source_line(lines, shown.lineno),
            )


# --- JavaScript / TypeScript ----------------------------------------------------------

_EXPORT_DECLARATION = re.compile(
    r"^\s*export\s+(?:declare\s+)?(?P<default>default\s+)?(?:abstract\s+)?(?P<async>async\s+)?"
    r"(?P<keyword>function|class|const|let|var|interface|type|enum)\b\s*\*?\s*(?P<name>[A-Za-z_$][\w$]*)?"
)
_EXPORT_DEFAULT_EXPRESSION = re.compile(r"^\s*export\s+default\s+(?!function|class|async)")
_EXPORT_LIST = re.compile(r"^\s*export\s+(?:type\s+)?\{(?P<names>[^}]*)\}")
_FUNCTION_PARAMS = re.compile(
    r"\s*(?P<generics><[^>]*>)?\s*\((?P<params>[^)]*)\)\s*(?::\s*(?P<returns>[^{=]+?))?\s*(?:\{|$|;)"
)
# Words that can follow an anonymous ``export default class`` where a name would stand.
_NOT_NAMES = frozenset({"extends", "implements"})


def _jsdoc_line(lines: list[str], index: int) -> str:
    """First text line of a ``/** ... */`` block that ends right above line ``index``."""
    end = index - 1
    if end < 0 or not lines[end].strip().endswith("*/"):
        return ""
    start = end
    while start >= 0 and "/**" not in lines[start]:
        start -= 1
    if start < 0:
        return ""
    for raw in lines[start : end + 1]:
        cleaned = raw.strip().removeprefix("/**").removesuffix("*/").strip().lstrip("*").strip()
        if cleaned and not cleaned.startswith("@"):
            return cleaned
    return ""


def _exports_on_line(line: str) -> list[tuple[str, str]]:
    """(exported name, rendered description) for each export a line declares."""
    if listing := _EXPORT_LIST.match(line):
        names = [entry.split(" as ")[-1].strip() for entry in listing["names"].split(",")]
        return [(name, f"{code(name)} (export)") for name in names if re.fullmatch(r"[A-Za-z_$][\w$]*", name)]
    if declaration := _EXPORT_DECLARATION.match(line):
        declared = declaration["name"] if declaration["name"] not in _NOT_NAMES else None
        name = declared or ("default" if declaration["default"] else None)
        if name is None:
            return []
        keyword, rendered = declaration["keyword"], name
        if keyword == "function" and (params := _FUNCTION_PARAMS.match(line, declaration.end())):
            returns = f": {params['returns'].strip()}" if params["returns"] else ""
            rendered = f"{name}{params['generics'] or ''}({params['params'].strip()}){returns}"
        label = (
            ("default " if declaration["default"] else "")
            + ("async " if declaration["async"] else "")
            + keyword
        )
        return [(name, f"{code(rendered)} ({label})")]
    if _EXPORT_DEFAULT_EXPRESSION.match(line):
        return [("default", f"{code('default')} (default export)")]
    return []


def script_export_findings(file: ContextFile, vocabulary: Vocabulary | None = None) -> Iterator[Finding]:
    """One finding per export of a JavaScript or TypeScript file, with its JSDoc summary."""
    vocabulary = vocabulary or vocabulary_of([file])
    lines = (file.text or "").splitlines()
    for index, line in enumerate(lines):
        exports = _exports_on_line(line)
        doc = vocabulary.ground(_jsdoc_line(lines, index)) if exports else ""
        for name, description in exports:
            statement = f"{description} — {doc}" if doc else description
            yield Finding("export", file.path, statement, symbol=name, quote=line.strip())


# --- shell ----------------------------------------------------------------------------

_DIRECTIVE_COMMENT = re.compile(r"^#\s*(shellcheck|-\*-|vim?:)")


def shell_findings(file: ContextFile, vocabulary: Vocabulary | None = None) -> Iterator[Finding]:
    """The leading comment header after the interpreter line, as one claim quoting its first line."""
    vocabulary = vocabulary or vocabulary_of([file])
    lines = (file.text or "").splitlines()
    start = 1 if lines and lines[0].startswith("#!") else 0
    header: list[tuple[str, str]] = []  # (verbatim line, comment text)
    for raw in lines[start:]:
        stripped = raw.strip()
        if not stripped and not header:
            continue
        if not stripped.startswith("#") or stripped.startswith("#!"):
            break
        if _DIRECTIVE_COMMENT.match(stripped):
            continue
        content = stripped.lstrip("#").strip()
        if not content:
            if header:
                break  # the first paragraph of the header is its summary
            continue
        header.append((stripped, content))
        if len(header) == MAX_SCRIPT_HEADER_LINES:
            break
    if header:
        summary = vocabulary.ground(" ".join(content for _, content in header))
        yield Finding("script", file.path, f"{code(file.name)} — {summary}", quote=header[0][0])


# --- markdown -------------------------------------------------------------------------

# Lines of a paragraph that are markup rather than prose: tables, images, badges,
# admonitions, HTML comments, and list or quote markers a lazy continuation carries.
_NOT_PROSE = re.compile(r"^\s*([-*+]\s|\d+[.)]\s|>|\||<!--|!\[|\[!)")
_RULE_LINE = re.compile(r"[=\-]{3,}")


def markdown_headings(text: str) -> Iterator[tuple[int, str, str]]:
    """(level, heading text, verbatim line) of each ``#`` heading, as the Markdown reader sees it.

    Headings inside code (of any fence length) or inside a list or quote are not headings.
    """
    document = read_markdown(text)
    for heading in document.atx_headings():
        if heading.text:
            yield heading.level, heading.text, document.lines[heading.line].strip()


def first_paragraph_line(text: str, after_line: str | None = None) -> str:
    """First prose line of a top-level paragraph after the first line equal to ``after_line``.

    Lines that are markup (tables, images, badges, HTML comments) are skipped; so is
    everything that is not a top-level paragraph (headings, lists, quotes, code).
    Returns the stripped line, or "" when there is none.
    """
    document = read_markdown(text)
    stripped = [line.strip() for line in document.lines]
    after = -1
    if after_line is not None and after_line in stripped:
        after = stripped.index(after_line)
    for index in document.paragraph_lines(after):
        line = document.lines[index]
        if stripped[index] and not _NOT_PROSE.match(line) and not _RULE_LINE.fullmatch(stripped[index]):
            return stripped[index]
    return ""


def heading_level(line: str) -> int | None:
    """The level of a line that is a ``#`` heading on its own, None for any other line."""
    headings = read_markdown(line).atx_headings()
    return headings[0].level if headings and headings[0].line == 0 else None


def markdown_findings(file: ContextFile, vocabulary: Vocabulary | None = None) -> Iterator[Finding]:
    """A claim per heading (up to MAX_HEADINGS_PER_FILE) and one for the first prose line."""
    vocabulary = vocabulary or vocabulary_of([file])
    text = file.text or ""
    headings = list(markdown_headings(text))[:MAX_HEADINGS_PER_FILE]
    for _, heading, line in headings:
        yield Finding("heading", file.path, f"{code(file.name)} — {vocabulary.ground(heading)}", quote=line)
    paragraph = first_paragraph_line(text, headings[0][2] if headings else None)
    if paragraph:
        yield Finding(
            "file", file.path, f"{code(file.name)} — {vocabulary.ground(paragraph)}", quote=paragraph
        )


# --- everything else ------------------------------------------------------------------


def plain_file_findings(file: ContextFile, vocabulary: Vocabulary | None = None) -> Iterator[Finding]:
    """A claim quoting the first line of any other file, when it is short enough to describe it."""
    vocabulary = vocabulary or vocabulary_of([file])
    line = first_line(file.text or "")
    if line and len(line) < MAX_FILE_LINE_CHARS:
        yield Finding("file", file.path, f"{code(file.name)} — {vocabulary.ground(line)}", quote=line)


_EXTRACTORS: dict[str | None, Callable[[ContextFile, Vocabulary], Iterator[Finding]]] = {
    "python": python_findings,
    "javascript": script_export_findings,
    "typescript": script_export_findings,
    "shell": shell_findings,
    "markdown": markdown_findings,
}


def _defined_names(file: ContextFile) -> set[str]:
    text = file.text or ""
    language = detect_language(file)
    if language == "python":
        module = parsed_python(text)
        if module is None:
            return set()
        # A name the module re-exports is bound there as much as one it defines.
        reexported = python_reexports(module, package_init=file.name == "__init__.py")
        return python_defined_names(module) | {reexport.name for reexport in reexported}
    if language in ("javascript", "typescript"):
        return script_defined_names(text)
    if language == "shell":
        return shell_defined_names(text)
    return set()


def vocabulary_of(files: Iterable[ContextFile], child_names: Iterable[str] = ()) -> Vocabulary:
    """What one directory's README may mark as code: its entries and the names its sources define."""
    files = list(files)
    return Vocabulary(
        names=frozenset(name for file in files if file.text is not None for name in _defined_names(file)),
        files=frozenset(file.name for file in files),
        directories=frozenset(child_names),
    )


def file_findings(
    file: ContextFile, vocabulary: Vocabulary | None = None, also_public: Iterable[str] = ()
) -> list[Finding]:
    """Findings for one file with text; a file its extractor finds nothing in still gets a file claim.

    Prose quoted into a statement keeps its code spans only where ``vocabulary`` (the
    file's directory; the file alone when not given) resolves them. ``also_public``: for a
    Python module, the names its package re-exports from it (`sibling_reexports`).
    """
    if file.text is None:
        return []
    vocabulary = vocabulary or vocabulary_of([file])
    language = detect_language(file)
    if language == "python":
        findings = list(python_findings(file, vocabulary, also_public))
    else:
        findings = list(_EXTRACTORS.get(language, plain_file_findings)(file, vocabulary))
    return findings or list(plain_file_findings(file, vocabulary))


# --- child directories ----------------------------------------------------------------


def readme_title_line(readme: str) -> tuple[str, str] | None:
    """(verbatim title line, title text) of a README: its first level-1 heading, else first line."""
    for level, heading, line in markdown_headings(readme):
        if level == 1:
            return line, heading
    line = first_line(readme)
    return (line, line) if line else None


# A generated Purpose item starts with the file it summarises: "`cli.py` — <summary>".
_FILE_NAMED_ITEM = re.compile(r"^`[^`]+`[ \t]+—[ \t]+(?P<text>.+)$")
_LEADING_SPAN = re.compile(r"^(`+).+?\1")


def section_items(readme: str, heading: str) -> Iterator[tuple[str, str]]:
    """(verbatim line, item text) of each top-level list item in every ``## heading`` section.

    A section runs to the next ``#`` or ``##`` heading; headings match case-insensitively.
    """
    document = read_markdown(readme)
    sections = [s for s in document.sections(2) if s.heading.text.lower() == heading.lower()]
    for item in document.list_items:
        if any(item.line in section for section in sections):
            yield document.lines[item.line].strip(), item.text


def readme_summary(readme: str, title_line: str) -> tuple[str, str] | None:
    """(summary, the README line it rests on) of a child directory's README.

    Its first prose line (resting on the title it follows), else its first Purpose
    item without the file name a generated item starts with, else the first names
    its Scope lists.
    """
    paragraph = first_paragraph_line(readme, title_line)
    if paragraph:
        return paragraph, title_line
    for line, text in section_items(readme, README_SECTIONS["purpose"]):
        file_named = _FILE_NAMED_ITEM.match(text)
        return (file_named["text"] if file_named else text), line
    scope = [
        (line, span.group())
        for line, text in section_items(readme, README_SECTIONS["scope"])
        if (span := _LEADING_SPAN.match(text))
    ]
    if not scope:
        return None
    names = [name for _, name in scope[:MAX_CHILD_SCOPE_NAMES]]
    more = ", …" if len(scope) > MAX_CHILD_SCOPE_NAMES else ""
    return ", ".join(names) + more, scope[0][0]


def child_findings(child: ContextChild) -> list[Finding]:
    """One claim summarising a child directory from its README (its head frame); none without one."""
    readme = child.head_frame
    if not readme:
        return []
    title = readme_title_line(readme)
    if title is None:
        return []
    title_line, title_text = title
    summary, quote = readme_summary(readme, title_line) or (title_text, title_line)
    return [Finding("child", child.path, f"{code(child.name + '/')} — {summary}", quote=quote)]
