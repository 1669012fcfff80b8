"""Source bytes to text, the way the tool each file belongs to reads it.

One judgement for the whole product: the scan calls a file binary exactly when
`decode_source` gives None, and the context payload carries the str it returns, so the
two never disagree about a file.

- Python sources follow PEP 263 as CPython applies it (`tokenize.detect_encoding`): a
  UTF-8 byte order mark, or a ``coding[:=]`` declaration on the first or second line,
  names the encoding; without either the source is UTF-8.
- Every other file is UTF-8; a leading byte order mark is not part of its text (the
  Unicode standard, section 23.8, and what git, Python's ``utf-8-sig`` and editors do).
- A NUL byte in the first 8 KiB marks a file as binary whatever its name (git's and
  grep's heuristic).
"""

from __future__ import annotations

import io
import tokenize

from wf_pipeline.text.languages import detect_language

BINARY_SNIFF_BYTES = 8192
# Enough of a file's start to read a shebang line for a name without an extension.
_SHEBANG_PEEK_BYTES = 256
UTF8_SIGNATURE = "utf-8-sig"


def is_python_source(name: str, data: bytes) -> bool:
    """Whether PEP 263 applies: the one language table calls the file Python.

    Args:
        name: the file's base name (``core.py``; a name without extension is judged by
            its ``#!`` line, e.g. ``#!/usr/bin/env python3``).
        data: the file's bytes (only the first line is looked at, and only without an extension).

    Returns:
        True for ``.py``/``.pyi`` names and for extensionless files with a Python shebang.
    """
    first_line = data[:_SHEBANG_PEEK_BYTES].decode("latin-1")
    return detect_language(name, first_line) == "python"


def source_encoding(name: str, data: bytes) -> str | None:
    """The codec that turns ``data`` into the file's text, or None when no codec does.

    Args:
        name: the file's base name (selects PEP 263 for Python sources).
        data: the file's bytes.

    Returns:
        A Python codec name: ``utf-8-sig`` when the bytes start with a UTF-8 byte order
        mark (the mark is then dropped from the text), the PEP 263 declaration of a Python
        source (``iso-8859-1``, ``cp1252``...), else ``utf-8``. None for a Python source
        whose declaration CPython itself refuses (an unknown codec, or a declaration that
        contradicts the byte order mark).
    """
    if not is_python_source(name, data):
        return UTF8_SIGNATURE
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        return None
    return encoding


def decode_source(data: bytes, name: str) -> str | None:
    """The text of a file, or None when it is binary.

    Args:
        data: the file's complete bytes.
        name: the file's base name (``pkg/mod.py`` -> ``mod.py``), which picks the rule
            (module docstring).

    Returns:
        The decoded text without a byte order mark; line endings are kept as they are.
        None when the first 8 KiB hold a NUL byte, or the bytes are not valid in the
        file's encoding (`source_encoding`).

    Raises nothing: an undecodable file is a judgement (binary), not an error.
    """
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return None
    encoding = source_encoding(name, data)
    if encoding is None:
        return None
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        # LookupError: a declared codec that is not a bytes-to-text codec (e.g. rot13).
        return None
