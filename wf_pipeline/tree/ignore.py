"""Which paths a scan skips.

Three sources, checked in this order: built-in names (version-control metadata, virtual
environments, caches and build output) that nothing can re-include; caller patterns
(``extra_ignores``), which outrank the tree's own files the way git's command-line
excludes do; then every ``.gitignore`` from the deepest directory up to the root, where
the deepest file with a matching pattern decides (so a nested ``!pattern`` can re-include
what a parent ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pathspec import GitIgnoreSpec

from wf_pipeline.errors import TREE_IGNORE_PATTERN_INVALID, TreeError

GITIGNORE_NAME = ".gitignore"
VENV_MARKER = "pyvenv.cfg"

# Version-control metadata is skipped whether it is a directory or a file (a worktree's
# `.git` is a file).
BUILTIN_IGNORED_NAMES = frozenset({".git", ".hg", ".svn"})
BUILTIN_IGNORED_DIR_NAMES = frozenset(
    {
        "__pycache__",
        "node_modules",
        "build",
        "dist",
        ".tox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".venv",
        "venv",
    }
)
BUILTIN_IGNORED_DIR_SUFFIXES = (".egg-info",)


def is_builtin_ignored(name: str, is_dir: bool) -> bool:
    """Whether ``name`` is always skipped: version-control metadata, or a cache, build or
    virtual-environment directory (``BUILTIN_IGNORED_*``); no pattern can re-include it.
    """
    if name in BUILTIN_IGNORED_NAMES:
        return True
    return is_dir and (name in BUILTIN_IGNORED_DIR_NAMES or name.endswith(BUILTIN_IGNORED_DIR_SUFFIXES))


def compile_patterns(lines: Sequence[str]) -> tuple[GitIgnoreSpec, list[int]]:
    """Compile gitignore lines; returns the spec and the 1-based numbers of invalid lines.

    Git skips a pattern it cannot parse and keeps the rest, so one bad line must not
    discard the whole file.
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
        else:
            valid.append(line)
    return GitIgnoreSpec.from_lines(valid), invalid


@dataclass(frozen=True)
class IgnoreLayer:
    """Patterns anchored at ``base`` (a POSIX path relative to the scan root, "." for the root)."""

    base: str
    spec: GitIgnoreSpec

    def verdict(self, path: str, is_dir: bool) -> bool | None:
        """True if the last matching pattern ignores ``path``, False if it re-includes it,
        None if no pattern here matches. ``path`` lies under ``base``."""
        relative = path if self.base == "." else path[len(self.base) + 1 :]
        # The trailing slash lets directory-only patterns ("build/") match.
        return self.spec.check_file(relative + "/" if is_dir else relative).include


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
        spec, invalid = compile_patterns(list(patterns))
        if invalid:
            raise TreeError(
                TREE_IGNORE_PATTERN_INVALID,
                f"extra ignore pattern(s) at position(s) {invalid} are not valid gitignore patterns",
                positions=invalid,
            )
        return cls(extra=(IgnoreLayer(".", spec),))

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
