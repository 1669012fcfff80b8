"""The docs writer's per-file extracts: what a README needs of a file, in whole lines of it.

The generic context builder (`wf_pipeline.tree.context`) asks for these when a
directory's files do not fit the context budget whole. An extract keeps only lines of the
file, verbatim and in their order, so every quote and symbol the offline extractors
(``extract``) take from an extract also holds in the file, and the evidence rule
(``evidence``) judges claims on the extract exactly as on the whole text:

- Python: the module docstring, imports, ``__all__``, and for every top-level function and
  class its decorators, signature lines and docstring (a class also keeps its public
  methods' signature lines), and a ``__main__`` guard's ``if`` line. Bodies are replaced
  by an indented ``...`` line, so the extract is still Python that parses, and the same
  findings come out of it. A module with nothing public (data tables) is its first line,
  as the findings describe it; a file that does not parse gets no extract.
- Markdown (and child READMEs): heading lines, the first prose line after the first
  heading, and the first `MAX_SECTION_ITEMS` top-level list items of each section.
- JavaScript / TypeScript: ``export`` lines with the JSDoc block right above each.
- Shell: the interpreter line and the leading comment header.
- Anything else: its first non-blank line.
"""

from __future__ import annotations

import ast

from wf_pipeline.metadata.payloads import ContextFile
from wf_pipeline.text.markdown import read_markdown
from wf_pipeline.workflows.docs_writer.extract import (
    MAX_SCRIPT_HEADER_LINES,
    detect_language,
    first_line,
    first_paragraph_line,
    markdown_headings,
    python_findings,
)
from wf_pipeline.workflows.docs_writer.grounding import parsed_python

# List items kept per Markdown section: enough for a child README's Purpose and Scope summary.
MAX_SECTION_ITEMS = 6


def _docstring_node(node: ast.AST) -> ast.Expr | None:
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            return body[0]
    return None


class _PythonLines:
    """Line numbers (0-based) kept from a module, and where a ``...`` body goes."""

    def __init__(self) -> None:
        self.keep: set[int] = set()
        self.stubs: dict[int, int] = {}  # line after which a "..." goes -> its indentation

    def span(self, node: ast.AST) -> None:
        self.keep.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))  # type: ignore[attr-defined]

    def header(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, *, docstring: bool) -> int:
        """Keep decorators and signature lines (and the docstring); returns the last line kept."""
        start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
        body_start = node.body[0].lineno - 1
        self.keep.update(range(start, max(body_start, node.lineno)))
        last = max(body_start, node.lineno) - 1
        doc = _docstring_node(node) if docstring else None
        if doc is not None:
            self.span(doc)
            last = (doc.end_lineno or doc.lineno) - 1
        return last

    def stub_after(self, line: int, indent: int) -> None:
        self.stubs.setdefault(line, indent)


def _one_line_body(node: ast.stmt) -> bool:
    # "def f(): return 1": the body sits on the signature line, which is kept whole.
    body = getattr(node, "body", [])
    return bool(body) and body[0].lineno == node.lineno


def python_extract(text: str) -> str | None:
    """The Python extract of ``text`` (see the module docstring), or None when it does not parse."""
    module = parsed_python(text)
    if module is None:
        return None
    lines = text.splitlines()
    kept = _PythonLines()
    doc = _docstring_node(module)
    if doc is not None:
        kept.span(doc)
    for statement in module.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            kept.span(statement)
        elif isinstance(statement, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                kept.span(statement)
        elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            last = kept.header(statement, docstring=True)
            if not _one_line_body(statement) and (
                len(statement.body) > 1 or _docstring_node(statement) is None
            ):
                kept.stub_after(last, statement.body[0].col_offset)
        elif isinstance(statement, ast.ClassDef):
            _class_lines(kept, statement)
        elif isinstance(statement, ast.If) and _is_main_guard(statement):
            kept.keep.add(statement.lineno - 1)
            kept.stub_after(statement.lineno - 1, statement.body[0].col_offset)
    out: list[str] = []
    for index, line in enumerate(lines):
        if index in kept.keep:
            out.append(line)
        if index in kept.stubs:
            out.append(" " * kept.stubs[index] + "...")
    extract = "\n".join(out) + "\n" if out else ""
    # The extract must stay Python, or the findings read from it would differ.
    if parsed_python(extract) is None:
        return None
    probe = ContextFile(path="extract.py", name="extract.py", size=len(extract), text=extract)
    if next(python_findings(probe), None) is None:
        # Nothing public to read: the file is described by its first line (`file_findings`).
        line = first_line(text)
        return line + "\n" if line else ""
    return extract


def _class_lines(kept: _PythonLines, node: ast.ClassDef) -> None:
    last = kept.header(node, docstring=True)
    if _one_line_body(node):
        return
    wrote_member = _docstring_node(node) is not None
    for member in node.body:
        if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and not member.name.startswith("_"):
            member_last = kept.header(member, docstring=False)
            if not _one_line_body(member):
                kept.stub_after(member_last, member.body[0].col_offset)
            wrote_member = True
    if not wrote_member:
        kept.stub_after(last, node.body[0].col_offset)


def _is_main_guard(statement: ast.If) -> bool:
    test = statement.test
    if not isinstance(test, ast.Compare):
        return False
    operands = [test.left, *test.comparators]
    return any(isinstance(o, ast.Name) and o.id == "__name__" for o in operands) and any(
        isinstance(o, ast.Constant) and o.value == "__main__" for o in operands
    )


def markdown_extract(text: str) -> str:
    """Heading lines, the first prose line after the first heading, and a few list items per section."""
    document = read_markdown(text)
    keep: set[int] = {heading.line for heading in document.atx_headings() if heading.text}
    headings = list(markdown_headings(text))
    paragraph = first_paragraph_line(text, headings[0][2] if headings else None)
    stripped = [line.strip() for line in document.lines]
    if paragraph and paragraph in stripped:
        keep.add(stripped.index(paragraph))
    per_section: dict[int, int] = {}
    heading_lines = sorted(keep)
    for item in document.list_items:
        section = max((line for line in heading_lines if line < item.line), default=-1)
        if per_section.get(section, 0) < MAX_SECTION_ITEMS and document.lines[item.line].strip():
            per_section[section] = per_section.get(section, 0) + 1
            keep.add(item.line)
    # Blank lines between kept lines keep each one its own block (heading, paragraph, item).
    return "\n\n".join(document.lines[index] for index in sorted(keep)) + "\n"


def _script_extract(text: str) -> str:
    lines = text.splitlines()
    keep: set[int] = set()
    for index, line in enumerate(lines):
        if not line.lstrip().startswith("export"):
            continue
        keep.add(index)
        end = index - 1
        if end >= 0 and lines[end].strip().endswith("*/"):
            start = end
            while start >= 0 and "/**" not in lines[start]:
                start -= 1
            keep.update(range(max(start, 0), end + 1))
    return "\n".join(lines[i] for i in sorted(keep)) + "\n"


def _shell_extract(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if index == 0 and stripped.startswith("#!"):
            out.append(line)
            continue
        if not stripped and len(out) <= 1:
            continue
        if not stripped.startswith("#") or len(out) > MAX_SCRIPT_HEADER_LINES + 2:
            break
        out.append(line)
    return "\n".join(out) + "\n"


def context_extract(name: str | None, text: str) -> str | None:
    """The docs writer's extract of one file, or of a child's README (``name`` None).

    Args:
        name: the file's name (its language is read from it, as the extractors do);
            None for a child directory's README, which is Markdown.
        text: the file's whole text.

    Returns:
        Whole lines of ``text`` as the module docstring lists per language, or None when
        there is no extract (a Python file that does not parse).
    """
    if name is None:
        return markdown_extract(text)
    language = detect_language(ContextFile(path=name, name=name, size=len(text), text=text))
    if language == "python":
        return python_extract(text)
    if language == "markdown":
        return markdown_extract(text)
    if language in ("javascript", "typescript"):
        return _script_extract(text)
    if language == "shell":
        return _shell_extract(text)
    line = first_line(text)
    return line + "\n" if line else ""
