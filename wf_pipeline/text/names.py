"""File names as text shows them: one line, every character visible, Markdown-safe where asked.

A file system allows any character in a name but ``/`` and NUL (POSIX), so a name may
hold spaces, control characters, line separators or Markdown punctuation. Titles,
code spans and messages show names through these functions, so a name never breaks a
line, a heading or a code span.
"""

from __future__ import annotations

import re
import unicodedata

# Control characters, line and paragraph separators, and the surrogates Python uses for
# bytes that are not UTF-8 (PEP 383): shown as escapes, never as themselves.
_INVISIBLE = ("Cc", "Zl", "Zp", "Cs")
# Inline Markdown punctuation that can change how a heading's text renders (CommonMark
# 0.31, section 2.4: any ASCII punctuation may be backslash-escaped).
# An underscore between two letters or digits never delimits emphasis (CommonMark 6.2, intraword),
# so "sample_repo" stays as it is.
_INLINE_MARKUP = re.compile(r"([\\`*\[\]<>#&]|(?<![^\W_])_|_(?![^\W_]))")
_BACKSLASH_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_BACKTICKS = re.compile(r"`+")


def display_name(name: str) -> str:
    """A name on one line with every character visible.

    Args:
        name: a file name or any short text.

    Returns:
        ``name`` with control characters, line/paragraph separators and surrogates
        written as Python escapes (``\\x07``, ``\\u2028``, ``\\udcff``); unchanged for
        every ordinary name.
    """
    return "".join(
        char.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(char) in _INVISIBLE
        else char
        for char in name
    )


def escape_inline(text: str) -> str:
    """``text`` backslash-escaped so Markdown renders it literally (CommonMark backslash escapes).

    Args:
        text: one line of text (see `display_name`).

    Returns:
        The escaped text; `unescape_inline` gives ``text`` back.
    """
    return _INLINE_MARKUP.sub(r"\\\1", text)


def unescape_inline(text: str) -> str:
    """Markdown text with its backslash escapes of ASCII punctuation removed (CommonMark 0.31, 2.4)."""
    return _BACKSLASH_ESCAPE.sub(r"\1", text)


def code_span(text: str) -> str:
    """``text`` as a CommonMark inline code span that renders exactly ``display_name(text)``.

    The backtick fence is one longer than the longest run of backticks inside, and a
    space pads both ends when the text starts or ends with a backtick or is wrapped in
    spaces (CommonMark 0.31, section 6.1).

    Args:
        text: any text; shown through `display_name`.

    Returns:
        The code span.
    """
    shown = display_name(text)
    longest = max((len(run) for run in _BACKTICKS.findall(shown)), default=0)
    fence = "`" * (longest + 1)
    padded = (
        shown.startswith("`")
        or shown.endswith("`")
        or (shown.startswith(" ") and shown.endswith(" ") and shown.strip() != "")
    )
    pad = " " if padded else ""
    return f"{fence}{pad}{shown}{pad}{fence}"
