"""The one Markdown reader: block structure of a document, parsed by markdown-it-py.

Everything that looks at Markdown (extraction of claims from documents, gates that
judge a Markdown output) reads it through here, so all agree on what is a heading and what is
code. Parsing follows CommonMark (markdown-it-py's ``commonmark`` preset): a ``## x``
line inside a fence opened by four backticks is code until a fence of at least four
backticks closes it (CommonMark 0.31, section 4.5), and so are lines of an indented
code block or an HTML block.

Only top-level blocks are reported: a heading or list inside a list item or a block
quote belongs to that container, not to the document's outline.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from markdown_it import MarkdownIt

# CommonMark recognises these three line endings (spec section 2.1); markdown-it-py
# normalises them the same way, so token line numbers index this split.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LIST_MARKER = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]+(?P<text>.*?))?[ \t]*$")
# Block structure only: inline content (emphasis, links) is never read here, and skipping it
# halves the parse time; each block keeps its raw text in ``Token.content``.
_PARSER = MarkdownIt("commonmark").disable("inline")
# Inline structure of one line, for the question whether it holds emphasis (`has_emphasis`).
_INLINE_PARSER = MarkdownIt("commonmark")
# Documents are small and are read several times per turn (title, summary, sections).
_CACHE_SIZE = 64


@dataclass(frozen=True)
class Heading:
    """One top-level heading.

    ``level`` is 1 to 6; ``text`` is its content without the ``#`` marks or a closing
    sequence, stripped; ``line`` is its zero-based first line in the document; ``atx``
    is False for a setext heading (text underlined with ``===`` or ``---``).
    """

    level: int
    text: str
    line: int
    atx: bool = True


@dataclass(frozen=True)
class CodeBlock:
    """A fenced or indented code block: ``info`` string (empty if none), its lines [start, end)."""

    info: str
    content: str
    start_line: int
    end_line: int
    fenced: bool


@dataclass(frozen=True)
class ListItem:
    """One item of a top-level list: its first ``line`` and the text after its marker there."""

    line: int
    text: str


@dataclass(frozen=True)
class Section:
    """A heading and the lines it governs: [start_line, end_line), the heading line excluded."""

    heading: Heading
    start_line: int
    end_line: int

    def __contains__(self, line: int) -> bool:
        return self.start_line <= line < self.end_line


@dataclass(frozen=True)
class MarkdownDocument:
    """The block structure of one Markdown text.

    ``lines`` are the text split at CommonMark line endings; every line number below
    indexes them. ``paragraphs`` holds the [start, end) line ranges of top-level
    paragraphs.
    """

    lines: tuple[str, ...]
    headings: tuple[Heading, ...]
    code_blocks: tuple[CodeBlock, ...]
    paragraphs: tuple[tuple[int, int], ...]
    list_items: tuple[ListItem, ...]

    def atx_headings(self) -> list[Heading]:
        """The ``#`` headings, in document order (setext headings left out)."""
        return [heading for heading in self.headings if heading.atx]

    def sections(self, level: int, *, atx_only: bool = True) -> list[Section]:
        """One section per heading of ``level``; it ends at the next heading of ``level`` or above."""
        headings = self.atx_headings() if atx_only else list(self.headings)
        found = []
        for index, heading in enumerate(headings):
            if heading.level != level:
                continue
            end = next((h.line for h in headings[index + 1 :] if h.level <= level), len(self.lines))
            found.append(Section(heading=heading, start_line=heading.line + 1, end_line=end))
        return found

    def paragraph_lines(self, after: int = -1) -> list[int]:
        """Line numbers of top-level paragraph lines after line ``after``, in document order."""
        return [line for start, end in self.paragraphs for line in range(max(start, after + 1), end)]


def split_lines(text: str) -> list[str]:
    """``text`` split at CommonMark line endings (LF, CRLF, CR); a final ending leaves an empty last line."""
    return _LINE_BREAK.split(text)


def has_emphasis(text: str) -> bool:
    """Whether ``text``, read as one CommonMark paragraph, holds emphasis or strong emphasis.

    Args:
        text: inline Markdown (one line of a list item, a sentence).

    Returns:
        True when an ``_`` or ``*`` delimiter run pairs with another (CommonMark 0.31,
        section 6.2); code spans and backslash escapes are read as CommonMark reads them.
    """
    return any(
        child.type in ("em_open", "strong_open")
        for token in _INLINE_PARSER.parseInline(text)
        for child in token.children or ()
    )


@functools.lru_cache(maxsize=_CACHE_SIZE)
def read_markdown(text: str) -> MarkdownDocument:
    """Parse ``text`` (CommonMark) into its top-level block structure. Never raises on any input."""
    lines = tuple(split_lines(text))
    tokens = _PARSER.parse(text)
    headings: list[Heading] = []
    code_blocks: list[CodeBlock] = []
    paragraphs: list[tuple[int, int]] = []
    items: list[ListItem] = []
    for index, token in enumerate(tokens):
        if token.map is None:
            continue
        start, end = token.map
        if token.type == "heading_open" and token.level == 0:
            content = tokens[index + 1].content if index + 1 < len(tokens) else ""
            headings.append(
                Heading(
                    level=int(token.tag[1]),
                    text=content.strip(),
                    line=start,
                    atx=token.markup.startswith("#"),
                )
            )
        elif token.type in ("fence", "code_block"):
            code_blocks.append(
                CodeBlock(
                    info=token.info.strip(),
                    content=token.content,
                    start_line=start,
                    end_line=end,
                    fenced=token.type == "fence",
                )
            )
        elif token.type == "paragraph_open" and token.level == 0:
            paragraphs.append((start, end))
        elif token.type == "list_item_open" and token.level == 1:
            marker = _LIST_MARKER.match(lines[start]) if start < len(lines) else None
            if marker and marker["text"]:
                items.append(ListItem(line=start, text=marker["text"]))
    return MarkdownDocument(
        lines=lines,
        headings=tuple(headings),
        code_blocks=tuple(code_blocks),
        paragraphs=tuple(paragraphs),
        list_items=tuple(items),
    )
