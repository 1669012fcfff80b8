"""A tree deeper than Python's recursion limit, built without recursion (os.makedirs recurses)."""

from __future__ import annotations

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
