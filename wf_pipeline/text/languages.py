"""The one language table: file name, extension or interpreter line -> language label.

The tree labels every file of a context payload with it, and extraction picks its
extractor from it, so both always agree on what a file is.
"""

from __future__ import annotations

import re

LANGUAGE_BY_EXTENSION: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "restructuredtext",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".txt": "text",
    ".html": "html",
    ".css": "css",
    ".sql": "sql",
    ".xml": "xml",
    ".csv": "csv",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".rb": "ruby",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
}
LANGUAGE_BY_NAME: dict[str, str] = {"Makefile": "makefile", "Dockerfile": "dockerfile"}
# Interpreter named by a shebang (after `/usr/bin/env` if present), version digits removed.
LANGUAGE_BY_INTERPRETER: dict[str, str] = {
    "sh": "shell",
    "bash": "shell",
    "dash": "shell",
    "zsh": "shell",
    "python": "python",
    "node": "javascript",
}
# Short labels other tools use for the same languages.
LANGUAGE_ALIASES: dict[str, str] = {
    "js": "javascript",
    "ts": "typescript",
    "bash": "shell",
    "sh": "shell",
    "zsh": "shell",
}
_VERSION_SUFFIX = re.compile(r"[\d.]+$")


def canonical_language(label: str | None) -> str | None:
    """``label`` lower-cased with a known alias (``js``, ``sh``...) replaced; None stays None."""
    if not label:
        return None
    lowered = label.lower()
    return LANGUAGE_ALIASES.get(lowered, lowered)


def extension_language(name: str) -> str | None:
    """The language of a file name by its exact name, then by its extension (case-insensitive).

    A name that is only an extension (``.bashrc``) has no extension. Returns None when
    the table does not know the name.
    """
    if name in LANGUAGE_BY_NAME:
        return LANGUAGE_BY_NAME[name]
    stem, dot, extension = name.rpartition(".")
    if dot and stem:
        return LANGUAGE_BY_EXTENSION.get("." + extension.lower())
    return None


def shebang_language(text: str) -> str | None:
    """The language of the interpreter an ``#!`` first line names, or None.

    ``#!/usr/bin/env [-S] python3 -u`` names ``python3``; version digits are dropped
    (``python3.11`` is ``python``).
    """
    if not text.startswith("#!"):
        return None
    words = text[2:].partition("\n")[0].split()
    if not words:
        return None
    interpreter = words[0].rpartition("/")[2]
    if interpreter == "env":
        interpreter = next((word for word in words[1:] if not word.startswith("-")), "")
    return LANGUAGE_BY_INTERPRETER.get(_VERSION_SUFFIX.sub("", interpreter.rpartition("/")[2]))


def detect_language(name: str, text: str | None) -> str | None:
    """Language of a file: by name or extension; a name without extension by its shebang.

    ``text`` is the file's text, or None when it was not read (then only the name counts).
    """
    if name in LANGUAGE_BY_NAME:
        return LANGUAGE_BY_NAME[name]
    stem, dot, _ = name.rpartition(".")
    if dot and stem:
        return extension_language(name)
    return shebang_language(text) if text is not None else None
