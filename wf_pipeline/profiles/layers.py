"""Profile layers: where a layer keeps its profiles, its bases and its fragments.

A layer is a named root folder (workspace, user or builtin). It keeps profiles in
``<root>/profiles/*.yaml`` (or ``*.yml``), the bases profiles extend in
``<root>/profiles/bases/<base id>.yaml`` and the turn and gate fragments profiles include in
``<root>/profiles/fragments/<fragment id>.yaml`` (docs/profiles.md, "Families, inheritance and
fragments"). Profiles, bases and fragments are searched through the same layers in the same
order, highest precedence first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wf_pipeline.builtin import PROFILE_DIR

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
