"""Synthetic source trees of a chosen shape, for benchmarks and large-scale tests.

Every directory gets a small, valid Python module with a docstring, a public class and
a public function, so each one is a documentable target with real evidence.
"""

from __future__ import annotations

from pathlib import Path

_MODULE = '''"""Module {name}: helpers of the {where} package."""


class {cls}:
    """Holds one {name} value."""

    def __init__(self, value: int = {index}) -> None:
        self.value = value

    def doubled(self) -> int:
        """Return twice the value."""
        return self.value * 2


def make_{name}(value: int = {index}) -> {cls}:
    """Build a {cls} from a value."""
    return {cls}(value)
'''


def generate_tree(root: Path, *, directories: int, fanout: int = 4) -> list[Path]:
    """Write a tree of exactly ``directories`` directories (root included), breadth first.

    Each directory has ``fanout`` children until the count is reached. Returns the
    directories in creation order. Deterministic: same arguments, same bytes.

    Raises:
        ValueError: ``directories`` or ``fanout`` below 1.
    """
    if directories < 1 or fanout < 1:
        raise ValueError("directories and fanout must be at least 1")
    root.mkdir(parents=True, exist_ok=True)
    created = [root]
    frontier = [root]
    while len(created) < directories:
        next_frontier = []
        for parent in frontier:
            for _ in range(fanout):
                if len(created) >= directories:
                    break
                child = parent / f"pkg{len(created):04d}"
                child.mkdir()
                created.append(child)
                next_frontier.append(child)
        frontier = next_frontier
    for index, directory in enumerate(created):
        name = f"part{index:04d}"
        where = directory.relative_to(root).as_posix() if directory != root else root.name
        source = _MODULE.format(name=name, cls=f"Part{index:04d}", index=index, where=where)
        (directory / f"{name}.py").write_text(source)
    return created
