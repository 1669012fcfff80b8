"""Profile layers: where a layer keeps its profiles, its bases and its fragments.

A layer is a named root folder (workspace, user or builtin). It keeps profiles in
``<root>/profiles/*.yaml`` (or ``*.yml``), the bases profiles extend in
``<root>/profiles/bases/<base id>.yaml`` and the turn and gate fragments profiles include in
``<root>/profiles/fragments/<fragment id>.yaml`` (docs/profiles.md, "Families, inheritance and
fragments"). Profiles, bases and fragments are searched through the same layers in the same
order, highest precedence first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from wf_pipeline.builtin import PROFILE_DIR
from wf_pipeline.errors import ProfileError

T = TypeVar("T")

LayerName = Literal["workspace", "user", "builtin"]

PROFILE_SUFFIXES = (".yaml", ".yml")
#: Sub-folders of a layer's profile folder: bases (``extends``) and fragments (``include``).
BASES_DIR = "bases"
FRAGMENTS_DIR = "fragments"


@dataclass(frozen=True)
class Layer:
    """One source of profiles: a named layer (workspace, user or builtin) and its root folder."""

    name: LayerName
    root: Path

    def profile_files(self) -> list[Path]:
        """The ``.yaml``/``.yml`` files of the layer's profile folder, sorted by path; [] when it has none."""
        directory = self.root / PROFILE_DIR
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if p.suffix in PROFILE_SUFFIXES and p.is_file())

    def base_file(self, base_id: str) -> Path | None:
        """The file of base ``base_id`` in this layer (``profiles/bases/<id>.yaml``, else ``.yml``), or None."""
        return _named_file(self.root / PROFILE_DIR / BASES_DIR, base_id)

    def fragment_file(self, fragment_id: str) -> Path | None:
        """The file of fragment ``fragment_id`` in this layer (``profiles/fragments/<id>.yaml``, else ``.yml``), or None."""
        return _named_file(self.root / PROFILE_DIR / FRAGMENTS_DIR, fragment_id)


def _named_file(directory: Path, name: str) -> Path | None:
    # `.yaml` before `.yml`, so a folder holding both resolves the same way every time.
    for suffix in PROFILE_SUFFIXES:
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class LayeredLoad(Generic[T]):
    """What `load_layered` found: the winner per id, the later definitions it shadows, the failures.

    Attributes:
        winners: id -> the value of the first layer that defines it.
        shadowed: (id, layer name, value) of each definition a higher layer already made, in layer order.
        problems: (file, layer name, error) of each file that failed, path order per layer.
    """

    winners: dict[str, T]
    shadowed: list[tuple[str, LayerName, T]]
    problems: list[tuple[Path, LayerName, ProfileError]]


def load_layered(
    layers: Iterable[Layer],
    files_of: Callable[[Layer], Iterable[Path]],
    load: Callable[[Path, Layer], T],
    key_of: Callable[[T], str],
    duplicate: Callable[[Path, Layer, T, T], ProfileError],
) -> LayeredLoad[T]:
    """Load every file of every layer; the first layer to define an id wins (profiles, agents).

    Args:
        layers: highest precedence first.
        files_of: a layer's files, in the order they are loaded.
        load: reads one file of a layer; raises `ProfileError` (any code) for a bad one.
        key_of: a loaded value's id.
        duplicate: the error for a second file of one layer defining an id already defined
            there (arguments: the path, the layer, the earlier value, the later one).

    Returns:
        The `LayeredLoad`. A file that fails (or repeats an id inside its layer) is one
        problem; every other file still loads. Raises nothing for a bad file.
    """
    found: LayeredLoad[T] = LayeredLoad({}, [], [])
    for layer in layers:
        in_layer: dict[str, T] = {}
        for path in files_of(layer):
            try:
                loaded = load(path, layer)
                earlier = in_layer.get(key_of(loaded))
                if earlier is not None:
                    raise duplicate(path, layer, earlier, loaded)
            except ProfileError as exc:
                found.problems.append((path, layer.name, exc))
                continue
            in_layer[key_of(loaded)] = loaded
        for key, loaded in in_layer.items():
            if key in found.winners:
                found.shadowed.append((key, layer.name, loaded))
            else:
                found.winners[key] = loaded
    return found
