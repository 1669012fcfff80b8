"""reStructuredText in docstrings, read as Markdown.

Python docstrings are mostly written for Sphinx: inline literals ````x````, roles such as
``:class:`Foo``` or ``:func:`~pkg.mod.run```, hyperlink references `` `text <url>`_ ``
and a ``::`` that introduces a literal block. Quoted into Markdown as they are, they
read as stray backticks and colons. `rst_to_markdown` is the one conversion; everything
that puts docstring text into a generated document, and any rule that compares quotes,
call it.

The forms follow the Docutils reStructuredText specification (inline markup, interpreted
text, hyperlink references, literal blocks) and Sphinx's roles:

- ````x```` (inline literal) becomes `` `x` ``.
- A Python-domain role (``:class:``, ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``,
  ``:exc:``, ``:data:``, ``:obj:``, ``:const:``, ``:type:``, ``:py:class:`` and the other
  ``:py:*:`` forms, also other domains' ``:c:func:`` and the like) becomes its target in
  backticks: ``~a.b.C`` shows ``C`` (Sphinx's tilde keeps the last component), a leading
  ``.`` or ``!`` is dropped, and an explicit title (``title <target>``) shows the title.
- Other code-like roles (``:envvar:``, ``:option:``, ``:file:``, ``:samp:``, ``:kbd:``,
  ``:command:``, ``:program:``, ``:makevar:``, ``:regexp:``, ``:code:``, ``:literal:``)
  become backticks; prose roles (``:ref:``, ``:doc:``, ``:term:``, ``:abbr:``, ``:dfn:``,
  ``:guilabel:``, ``:menuselection:``, ``:emphasis:``, ``:strong:``...) become their
  text (a title when one is given); ``:pep:`8``` and ``:rfc:`9110``` become ``PEP 8`` and
  ``RFC 9110``.
- A backslash right after inline markup (``:func:`option`\\s``) goes, with the space it
  escapes (``\\ ``).
- A hyperlink reference `` `text <url>`_ `` or `` `text`_ `` becomes ``text``; a trailing
  ``::`` becomes ``:`` (an expanded literal-block marker), and a lone ``::`` goes.
- An explicit markup block (Docutils: a line starting with ``..`` and a space: a directive
  such as ``.. deprecated:: 1.6.0``, ``.. note::`` or Sphinx extensions' ``.. dialect::``,
  a comment, a hyperlink target) goes with its indented options and body
  (`drop_explicit_markup`): it is markup for the documentation builder, not prose.
"""

from __future__ import annotations

import re

# :role:`content`, with an optional domain (``:py:class:``) and Sphinx's ``!`` / ``~`` forms.
_ROLE = re.compile(r":(?P<role>[A-Za-z][\w+.-]*(?::[A-Za-z][\w+.-]*)?):`(?P<content>[^`]+)`")
_INLINE_LITERAL = re.compile(r"``(?P<content>(?:(?!``).)+?)``")
_HYPERLINK = re.compile(r"`(?P<text>[^`<]+?)\s*(?:<[^`>]*>)?`__?(?![\w])")
_EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
_LITERAL_MARKER = re.compile(r"(?<=\S)::(?=\s*$)", re.MULTILINE)
# An escaped character right after inline markup (``:func:`option`\s``) ends the markup and
# reads as the character; an escaped space (``\ ``) reads as nothing (Docutils: escaping mechanism).
_ESCAPE_AFTER_MARKUP = re.compile(r"(?<=`)\\(?: |(?=\w))")
_LONE_LITERAL_MARKER = re.compile(r"(?:(?<=\s)|^)::(?=\s*$)", re.MULTILINE)
# Docutils' explicit markup start: ".." then whitespace or the end of the line.
_EXPLICIT_MARKUP = re.compile(r"^(?P<indent>[ \t]*)\.\.(?:[ \t]|$)")

# Roles whose content is code: shown in backticks.
CODE_ROLES = frozenset(
    {
        "envvar",
        "option",
        "file",
        "samp",
        "kbd",
        "command",
        "program",
        "makevar",
        "regexp",
        "code",
        "literal",
        "mailheader",
        "mimetype",
        "token",
        "keyword",
    }
)
# Roles whose content is text: shown as it reads.
TEXT_ROLES = frozenset(
    {
        "ref",
        "doc",
        "term",
        "abbr",
        "dfn",
        "guilabel",
        "menuselection",
        "emphasis",
        "strong",
        "sub",
        "sup",
        "subscript",
        "superscript",
        "title-reference",
        "title",
        "t",
        "numref",
        "download",
        "manpage",
    }
)


def _object_name(target: str) -> str:
    """How Sphinx shows a cross-reference target: ``~a.b.C`` as ``C``; ``!`` and a leading ``.`` dropped."""
    target = target.strip().lstrip("!")
    if target.startswith("~"):
        return target[1:].rsplit(".", 1)[-1]
    return target.lstrip(".")


def _role(found: re.Match[str]) -> str:
    role = found["role"].lower()
    name = role.rsplit(":", 1)[-1]
    content = found["content"]
    explicit = _EXPLICIT_TITLE.match(content)
    if name == "pep":
        return f"PEP {content.strip()}"
    if name == "rfc":
        return f"RFC {content.strip()}"
    if name in TEXT_ROLES:
        return (explicit["title"] if explicit else content).strip()
    if name in CODE_ROLES:
        return f"`{content.strip()}`"
    # Cross-references of the Python domain and the other programming-language domains.
    shown = explicit["title"].strip() if explicit else _object_name(content)
    return f"`{shown}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def drop_explicit_markup(text: str) -> str:
    """``text`` without its reStructuredText explicit markup blocks (Docutils: explicit markup blocks).

    A block starts at a line whose first non-blank characters are ``..`` followed by
    whitespace or the line's end, and runs over every following line that is blank or
    indented deeper than that line (the directive's options and content).

    Args:
        text: docstring text.

    Returns:
        The text without those lines; a blank line stays where a block stood, so the
        paragraphs around it stay apart. Raises nothing.
    """
    if ".." not in text:
        return text
    kept: list[str] = []
    block_indent: int | None = None
    for line in text.split("\n"):
        if block_indent is not None:
            if not line.strip() or _indent(line) > block_indent:
                continue
            block_indent = None
            kept.append("")
        found = _EXPLICIT_MARKUP.match(line)
        if found:
            block_indent = len(found["indent"])
            continue
        kept.append(line)
    return "\n".join(kept)


def rst_to_markdown(text: str) -> str:
    """``text`` with reStructuredText inline markup rewritten as Markdown (see the module doc).

    Args:
        text: docstring text (a line, a paragraph or a whole docstring).

    Returns:
        The converted text; text without reStructuredText markup comes back unchanged.
        Raises nothing.
    """
    text = drop_explicit_markup(text)
    if "`" not in text and "::" not in text:
        return text
    text = _ROLE.sub(_role, text)
    text = _INLINE_LITERAL.sub(lambda found: f"`{found['content']}`", text)
    text = _HYPERLINK.sub(lambda found: found["text"], text)
    text = _ESCAPE_AFTER_MARKUP.sub("", text)
    text = _LITERAL_MARKER.sub(":", text)
    return _LONE_LITERAL_MARKER.sub("", text)
