"""The architecture notes' per-file extract: the lines that declare imports and entry points.

Registered as the context extractor of frame type ``architecture``; the profile's
``context: {scope: tree}`` makes every file of the repository appear as this extract
(`wf_pipeline.tree.build_tree_context`). An extract keeps whole lines of the file,
verbatim and in order, so every quote `sources` takes from it also holds in the file:

- Python: every import statement whole (all its lines), the ``__main__`` guard's ``if``
  line, ``Definitions(`` lines and route decorator lines;
- JavaScript / TypeScript: the import, require, re-export and route lines;
- ``pyproject.toml`` and ``setup.cfg``: the script sections' headers and entries;
- ``package.json``: the whole file (an extract of JSON would not parse); None, so the
  context builder keeps it whole;
- any other file: nothing (its path and size stay in the context).
"""

from __future__ import annotations

import ast
import posixpath

from wf_pipeline.text.evidence import parsed_python
from wf_pipeline.workflows.architecture_notes.sources import (
    declaring_lines,
    is_python,
    is_script,
)

_MANIFESTS = ("pyproject.toml", "setup.cfg")


def _import_spans(text: str) -> set[int]:
    """0-based line numbers of every line of every import statement, when ``text`` parses."""
    module = parsed_python(text)
    if module is None:
        return set()
    spans: set[int] = set()
    for node in ast.walk(module):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            spans.update(range(node.lineno - 1, node.end_lineno or node.lineno))
    return spans


def _manifest_lines(lines: list[str], wanted: set[str]) -> set[int]:
    """Section headers of the script sections, and the lines ``wanted`` (stripped)."""
    keep: set[int] = set()
    for index, raw in enumerate(lines):
        stripped = raw.strip()
        if stripped in wanted:
            keep.add(index)
        elif stripped.startswith("[") and any(
            section in stripped
            for section in (
                "project.scripts",
                "project.gui-scripts",
                "tool.poetry.scripts",
                "options.entry_points",
            )
        ):
            keep.add(index)
        elif stripped.replace(" ", "").startswith(("console_scripts=", "gui_scripts=")):
            keep.add(index)
    return keep


def architecture_extract(name: str | None, text: str) -> str | None:
    """The extract of one file (see the module docstring).

    Args:
        name: the file's name; None for a child's head frame (a tree-scope context has
            none; given one, nothing is kept).
        text: the file's whole text.

    Returns:
        The kept lines joined with newlines (empty when nothing is kept), or None for a
        ``package.json`` (kept whole).
    """
    if name is None:
        return ""
    if name == "package.json":
        return None
    lines = text.splitlines()
    wanted = declaring_lines(name, text)
    if is_python(name):
        keep = _import_spans(text) | {i for i, raw in enumerate(lines) if raw.strip() in wanted}
    elif is_script(name):
        keep = {i for i, raw in enumerate(lines) if raw.strip() in wanted}
    elif posixpath.basename(name) in _MANIFESTS:
        keep = _manifest_lines(lines, wanted)
    else:
        return ""
    return "".join(lines[i] + "\n" for i in sorted(keep))
