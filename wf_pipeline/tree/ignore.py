"""Which paths a scan skips.

Three sources, checked in this order: built-in names (version-control metadata, virtual
environments, caches and build output, `is_builtin_ignored`) that nothing can re-include; caller patterns
(``extra_ignores``), which outrank the tree's own files the way git's command-line
excludes do; then every ``.gitignore`` from the deepest directory up to the root, where
the deepest file with a matching pattern decides (so a nested ``!pattern`` can re-include
what a parent ignored).

A ``.gitignore`` is read the way git reads it (``add_patterns_from_buffer`` in git's
``dir.c``): a leading UTF-8 byte order mark is dropped, lines end at LF with one CR before
it dropped, and each line is matched with pathspec's ``GitIgnoreSpec`` (git's wildmatch
rules: negation, anchoring, ``**``, unescaped trailing spaces, ``\\#`` and ``\\!``).
A ``.gitignore`` that is a symlink is not read, as git does not follow it.
``tests/test_tree_gitignore.py`` compares the scan with ``git ls-files`` on the same tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pathspec import GitIgnoreSpec

from wf_pipeline.errors import TREE_IGNORE_PATTERN_INVALID, TreeError

GITIGNORE_NAME = ".gitignore"
VENV_MARKER = "pyvenv.cfg"
UTF8_BOM = b"\xef\xbb\xbf"

# Version-control metadata is skipped whether it is a directory or a file (a worktree's
# `.git` is a file).
BUILTIN_IGNORED_NAMES = frozenset({".git", ".hg", ".svn"})
# Caches, build output and installed packages: generated, often huge, never documentation
# (the XDG cache folder `.cache` holds pip's and other tools' downloads under a home folder;
# `.npm` and its content store `_cacache` are npm's cache; Jupyter keeps notebook and file
# copies in `.ipynb_checkpoints`).
BUILTIN_IGNORED_DIR_NAMES = frozenset(
    {
        "__pycache__",
        "node_modules",
        "site-packages",
        ".cache",
        ".npm",
        "_cacache",
        ".ipynb_checkpoints",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".eggs",
        "venv",
    }
)
# Build output by its conventional name (setuptools' `build/`, `dist/`). Such a name is also a
# fine name for a source package (pip's `_internal/operations/build`), so a directory that is a
# Python package (holds `__init__.py`) is kept; the scan skips the others with a warning.
BUILD_OUTPUT_DIR_NAMES = frozenset({"build", "dist"})
PACKAGE_MARKER = "__init__.py"
# `.venv`, `.venv311`, `.venv-docs`...: the names tools and people give virtual environments.
BUILTIN_IGNORED_DIR_PREFIXES = (".venv",)
BUILTIN_IGNORED_DIR_SUFFIXES = (".egg-info",)


def is_builtin_ignored(name: str, is_dir: bool) -> bool:
    """Whether ``name`` is always skipped; no pattern can re-include it.

    Args:
        name: the entry's base name.
        is_dir: whether it is a directory (after following a link).

    Returns:
        True for version-control metadata (``.git``, ``.hg``, ``.svn``; file or directory), and
        for directories named in ``BUILTIN_IGNORED_DIR_NAMES`` (caches such as ``.cache``,
        ``.tox``, ``.mypy_cache``, ``.pytest_cache``, ``__pycache__``; ``site-packages``;
        ``.eggs``), starting with ``.venv`` or ending with ``.egg-info``. A directory
        holding ``pyvenv.cfg`` is skipped by the scan too, whatever its name, and so is a
        ``build`` or ``dist`` directory that is not a Python package (`is_build_output`).
    """
    if name in BUILTIN_IGNORED_NAMES:
        return True
    return is_dir and (
        name in BUILTIN_IGNORED_DIR_NAMES
        or name.startswith(BUILTIN_IGNORED_DIR_PREFIXES)
        or name.endswith(BUILTIN_IGNORED_DIR_SUFFIXES)
    )


def is_build_output(name: str, entry_names: Sequence[str]) -> bool:
    """Whether a directory is build output the scan skips (with a ``TREE_BUILD_OUTPUT_SKIPPED`` warning).

    Args:
        name: the directory's base name.
        entry_names: the base names of its entries.

    Returns:
        True for a directory named ``build`` or ``dist`` (setuptools' and most packagers'
        output folders) that holds no ``__init__.py``; a Python package of that name is
        source and is kept.
    """
    return name in BUILD_OUTPUT_DIR_NAMES and PACKAGE_MARKER not in entry_names


def gitignore_lines(data: bytes) -> list[str]:
    """The pattern lines of a ``.gitignore`` file's bytes, split the way git splits them.

    Args:
        data: the file's bytes.

    Returns:
        One str per line: a leading UTF-8 byte order mark is dropped (git's
        ``skip_utf8_bom``), lines are split at LF only and lose one trailing CR (git's
        ``add_patterns_from_buffer``). Bytes that are not UTF-8 survive as lone surrogates
        (``surrogateescape``), so they match only the same bytes. Comments and blank lines
        are left to the pattern parser, which skips them as git does.
    """
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    text = data.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def compile_patterns(lines: Sequence[str]) -> tuple[GitIgnoreSpec, list[int]]:
    """Compile gitignore lines; returns the spec and the 1-based numbers of invalid lines.

    Git skips a pattern it cannot parse and keeps the rest, so one bad line must not
    discard the whole file. An invalid line becomes a blank one, so the spec's pattern
    indexes stay the line indexes.
    """
    try:
        return GitIgnoreSpec.from_lines(lines), []
    except ValueError:
        pass
    valid: list[str] = []
    invalid: list[int] = []
    for number, line in enumerate(lines, start=1):
        try:
            GitIgnoreSpec.from_lines([line])
        except ValueError:
            invalid.append(number)
            valid.append("")
        else:
            valid.append(line)
    return GitIgnoreSpec.from_lines(valid), invalid


def _is_directory_pattern(line: str) -> bool:
    # git's PATTERN_FLAG_MUSTBEDIR: the pattern, without its unescaped trailing spaces, ends in "/".
    return not line.startswith("#") and line.rstrip(" ").endswith("/")


@dataclass(frozen=True)
class IgnoreLayer:
    """Patterns anchored at ``base`` (a POSIX path relative to the scan root, "." for the root).

    Built the way git's ``dir.c`` treats a pattern line: a directory-only pattern
    ("build/") loses its trailing slash and applies to directories only (``dir_spec``);
    every other pattern applies to files and directories (``spec``). Lines that belong to
    the other spec are blank in each, so pattern indexes are line indexes in both and the
    later matching line wins, as in git.
    """

    base: str
    spec: GitIgnoreSpec
    dir_spec: GitIgnoreSpec | None = None

    @classmethod
    def from_lines(cls, base: str, lines: Sequence[str]) -> tuple[IgnoreLayer, list[int]]:
        """The layer of ``lines`` (gitignore syntax) anchored at ``base``.

        Returns:
            The layer and the 1-based numbers of the lines that are not valid patterns
            (skipped, as git skips them).
        """
        _, invalid = compile_patterns(lines)
        bad = set(invalid)
        file_lines: list[str] = []
        dir_lines: list[str] = []
        for number, line in enumerate(lines, start=1):
            if number in bad:
                file_lines.append("")
                dir_lines.append("")
            elif _is_directory_pattern(line):
                file_lines.append("")
                dir_lines.append(line.rstrip(" ")[:-1])
            else:
                file_lines.append(line)
                dir_lines.append("")
        dir_spec = GitIgnoreSpec.from_lines(dir_lines) if any(dir_lines) else None
        return cls(base, GitIgnoreSpec.from_lines(file_lines), dir_spec), invalid

    def verdict(self, path: str, is_dir: bool) -> bool | None:
        """True if the last matching pattern ignores ``path``, False if it re-includes it,
        None if no pattern here matches. ``path`` lies under ``base``.

        A path is matched by its own name, never with a trailing slash: pathspec reads a
        trailing slash as "anything below", which would make ``nested/**`` (everything
        inside ``nested``) or ``dd/**/`` (directories inside ``dd``) ignore the directory
        itself, where git ignores only what is inside it.
        """
        relative = path if self.base == "." else path[len(self.base) + 1 :]
        result = self.spec.check_file(relative)
        if not is_dir or self.dir_spec is None:
            return result.include
        as_dir = self.dir_spec.check_file(relative)
        if as_dir.include is None:
            return result.include
        if result.include is None or (as_dir.index or 0) > (result.index or 0):
            return as_dir.include
        return result.include


@dataclass(frozen=True)
class IgnoreRules:
    """The layers in force inside one directory: caller patterns, then .gitignore files
    deepest first."""

    extra: tuple[IgnoreLayer, ...] = ()
    gitignores: tuple[IgnoreLayer, ...] = ()

    @classmethod
    def from_extra_patterns(cls, patterns: Sequence[str]) -> IgnoreRules:
        """Rules holding only the caller's patterns, anchored at the scan root.

        Args:
            patterns: gitignore-syntax lines (git's command-line excludes rule: they outrank
                every ``.gitignore``).

        Returns:
            The rules; empty when ``patterns`` is empty.

        Raises:
            TreeError: ``TREE_IGNORE_PATTERN_INVALID`` (figure: the 1-based positions) when a
                pattern is not valid gitignore syntax; nothing is compiled then.
        """
        if not patterns:
            return cls()
        layer, invalid = IgnoreLayer.from_lines(".", list(patterns))
        if invalid:
            raise TreeError(
                TREE_IGNORE_PATTERN_INVALID,
                f"extra ignore pattern(s) at position(s) {invalid} are not valid gitignore patterns",
                positions=invalid,
            )
        return cls(extra=(layer,))

    def with_gitignore(self, layer: IgnoreLayer) -> IgnoreRules:
        """Rules below a directory with its own .gitignore, which outranks its ancestors'."""
        return IgnoreRules(self.extra, (layer, *self.gitignores))

    def is_ignored(self, path: str, is_dir: bool) -> bool:
        """Whether ``path`` (POSIX, relative to the scan root) is skipped.

        Caller patterns decide first, then ``.gitignore`` files deepest first; the first layer
        with a matching pattern decides (git's precedence). False when no layer matches.
        """
        for layer in (*self.extra, *self.gitignores):
            verdict = layer.verdict(path, is_dir)
            if verdict is not None:
                return verdict
        return False
