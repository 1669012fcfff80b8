"""A tree deeper than Python's recursion limit, built without recursion (os.makedirs recurses)."""

from __future__ import annotations

import os
from pathlib import Path

DEEP_LEVELS = 1000


def make_deep_tree(root: Path, levels: int = DEEP_LEVELS) -> str:
    """``levels`` nested directories ``d/d/...`` under ``root``, each holding one small module.

    Returns the POSIX path of the deepest directory, relative to ``root``.
    """
    current = root
    current.mkdir(parents=True, exist_ok=True)
    for level in range(1, levels + 1):
        current = current / "d"
        current.mkdir()
        (current / f"m{level}.py").write_text(f'"""Level {level}."""\n\nLEVEL = {level}\n', encoding="utf-8")
    return "/".join(["d"] * levels)


def remove_tree(root: Path) -> None:
    """Delete ``root`` and everything below it without recursion.

    ``shutil.rmtree`` recurses once per level on Python 3.11, so pytest's own clean-up of old
    temporary folders would fail on a deep tree left behind; each deep test removes its own.
    """
    if not root.exists():
        return
    stack: list[tuple[str, bool]] = [(str(root), False)]
    while stack:
        path, emptied = stack.pop()
        if emptied:
            os.rmdir(path)
            continue
        stack.append((path, True))
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, False))
                else:
                    os.unlink(entry.path)


def remove_children(folder: Path) -> None:
    """Empty ``folder`` (kept itself) without recursion, after a test that made deep trees in it."""
    for child in list(folder.iterdir()):
        if child.is_dir() and not child.is_symlink():
            remove_tree(child)
