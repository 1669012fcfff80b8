"""Which inline-code spans a README of one directory may keep.

Prose quoted from a source file (a docstring, a comment, a heading) often marks words
as code that name nothing in the directory: environment variables, command names,
URLs, examples. A README keeps a span as code only when it names something real where
the README stands: a file or child directory, a name the directory's sources define,
or a parameter of the function the sentence documents. Every other span becomes plain
text, so a README never presents as code a symbol or path that does not exist there.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Re-exported: the one Python parser (with its lock) lives with the shared evidence rules.
from wf_pipeline.text.evidence import parsed_python as parsed_python
from wf_pipeline.text.markdown import has_emphasis

_NAME = r"[A-Za-z_$][\w$]*"
_DOTTED = re.compile(rf"{_NAME}(?:\.{_NAME})*")
_CALL = re.compile(rf"(?:async\s+)?(?P<name>{_NAME}(?:\.{_NAME})*)\s*\(")
_BACKTICKS = re.compile(r"`+")
_SCRIPT_DECLARATION = re.compile(
    rf"\b(?:function\s*\*?|class|const|let|var|interface|type|enum)\s+(?P<name>{_NAME})"
)
_SHELL_FUNCTION = re.compile(rf"^\s*(?:function\s+)?(?P<name>{_NAME})\s*\(\s*\)", re.MULTILINE)
# Characters that would turn plain text into markup once a span's backticks are gone.
_MARKUP = re.compile(r"[\\`*<\[\]]|(?<!\w)_|_(?!\w)")
_MARKUP_BUT_UNDERSCORE = re.compile(r"[\\`*<\[\]]")


def _escaped(text: str, index: int) -> bool:
    """Whether the character at ``index`` follows an odd run of backslashes."""
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def code_spans(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, content) of each CommonMark inline-code span in ``text``."""
    position = 0
    while opening := _BACKTICKS.search(text, position):
        start = opening.start() + (1 if _escaped(text, opening.start()) else 0)
        run = text[start : opening.end()]
        position = opening.end()
        if not run:
            continue
        closing = next((m for m in _BACKTICKS.finditer(text, opening.end()) if m.group() == run), None)
        if closing is None:
            continue  # an unmatched run is literal text
        content = text[opening.end() : closing.start()].replace("\n", " ")
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        yield start, closing.end(), content
        position = closing.end()


def plain_text(content: str, *, escape_underscores: bool = True) -> str:
    """A span's content as markdown text that renders the same characters.

    With ``escape_underscores=False`` an ``_`` stays as it is: the caller checks that the
    whole line then holds no emphasis (`Vocabulary.ground`).
    """
    pattern = _MARKUP if escape_underscores else _MARKUP_BUT_UNDERSCORE
    return pattern.sub(lambda found: "\\" + found.group(), content)


# --- what sources define --------------------------------------------------------------


def _assigned_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Attribute):
        yield target.attr  # ``self.path = ...`` defines the attribute ``path``
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _assigned_names(element)
    elif isinstance(target, ast.Starred):
        yield from _assigned_names(target.value)


def python_defined_names(module: ast.Module) -> set[str]:
    """Classes, functions, methods and assigned names anywhere in a module."""
    names: set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.update(_assigned_names(target))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
            names.update(_assigned_names(node.target))
    return names


def python_parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> frozenset[str]:
    """Every parameter name of a function, ``*args`` and ``**kwargs`` included."""
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return frozenset(arg.arg for arg in every if arg is not None)


def constructor_parameters(node: ast.ClassDef) -> frozenset[str]:
    """Parameters of a class's ``__init__``, without the instance itself."""
    for member in node.body:
        if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and member.name == "__init__":
            return python_parameters(member) - {"self"}
    return frozenset()


def script_defined_names(text: str) -> set[str]:
    """Declared names of a JavaScript or TypeScript source, found by their keyword."""
    return {found["name"] for found in _SCRIPT_DECLARATION.finditer(text)}


def shell_defined_names(text: str) -> set[str]:
    """Function names a shell script defines (``name()`` or ``function name()``)."""
    return {found["name"] for found in _SHELL_FUNCTION.finditer(text)}


# --- the vocabulary of one directory --------------------------------------------------


@dataclass(frozen=True)
class Vocabulary:
    """What an inline-code span in one directory's README may name."""

    names: frozenset[str] = frozenset()
    files: frozenset[str] = frozenset()
    directories: frozenset[str] = frozenset()

    def resolves(self, span: str, parameters: Iterable[str] = ()) -> bool:
        """Whether code span ``span`` names something here: an entry, a defined name, a call of
        one, a dotted name whose parts are all defined, or one of ``parameters``."""
        span = span.strip()
        if not span:
            return False
        if "/" in span:
            entry = span.removesuffix("/")
            if "/" in entry:
                return False  # deeper paths are not known from one directory's context
            return entry in self.directories or (entry in self.files and not span.endswith("/"))
        if call := _CALL.match(span):
            return self._defines(call["name"])
        if _DOTTED.fullmatch(span):
            return (
                span in self.files
                or span in self.directories
                or self._defines(span)
                or span in set(parameters)
            )
        return False

    def _defines(self, dotted: str) -> bool:
        return all(part in self.names for part in dotted.split("."))

    def ground(self, text: str, parameters: Iterable[str] = ()) -> str:
        """``text`` with each code span kept only when it resolves, and stray backticks escaped.

        A span that does not resolve becomes plain text; its ``_`` are escaped (``\\_``) only
        when, left as they are, they would pair into emphasis (`has_emphasis`), so
        ``_sql.select`` reads as written.
        """
        parameters = frozenset(parameters)
        strict: list[str] = []
        relaxed: list[str] = []
        position = 0
        for start, end, content in code_spans(text):
            between = _escape_backticks(text[position:start])
            strict.append(between)
            relaxed.append(between)
            if self.resolves(content, parameters):
                strict.append(text[start:end])
                relaxed.append(text[start:end])
            else:
                strict.append(plain_text(content))
                relaxed.append(plain_text(content, escape_underscores=False))
            position = end
        tail = _escape_backticks(text[position:])
        strict.append(tail)
        relaxed.append(tail)
        as_written = "".join(relaxed)
        return as_written if not has_emphasis(as_written) else "".join(strict)


def _escape_backticks(text: str) -> str:
    # An unmatched backtick would pair with one from a later span on the same README line.
    return "".join(
        "\\`" if char == "`" and not _escaped(text, index) else char for index, char in enumerate(text)
    )
