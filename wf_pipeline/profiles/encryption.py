"""Encryption policy of a profile: per artifact class, whether artifacts rest encrypted.

A profile may declare::

    encryption:
      preset: docs_family        # family defaults (encryption_presets.yaml beside this module)
      prompt_render: required    # a level per artifact class
      output: optional
      default: required          # classes the block does not name (and artifacts put without a class)

Levels:

- ``required``: written encrypted, always; a plaintext object, or one under a key this
  keyring does not hold, is refused on read (``CAS_NOT_ENCRYPTED``): fail closed. Without a
  usable master key nothing is read or written (``KEYS_MASTER_KEY_INVALID``).
- ``optional``: written encrypted when a keyring is configured, plaintext otherwise; both
  are read.
- ``off``: written in plaintext; both are read.

The profile's own keys override the preset's; the workspace layer overrides the built-in
one by defining the profile there. A block that names no preset, and a profile with no
``encryption`` block at all, start from the `STANDARD_PRESET` (prompts, contexts and provider
answers required, outputs optional): encryption is on unless a profile turns it off
explicitly (``preset: plaintext``), so a workspace copy made before the block existed never
drops it silently. One process stores artifacts of every workflow in one CAS, so
`merged_policy` takes, per class, the strictest level any loaded profile asks for. Like
retention, the policy is operational: it is left out of the code version and of thread
identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, NoReturn

from wf_pipeline.errors import PROFILE_ENCRYPTION_INVALID, ProfileError
from wf_pipeline.metadata.yaml_documents import load_yaml_document
from wf_pipeline.profiles.retention import known_artifact_classes

Level = Literal["required", "optional", "off"]
#: Levels from weakest to strictest; merging takes the strictest.
LEVELS: tuple[Level, ...] = ("off", "optional", "required")
PRESET_KEY = "preset"
DEFAULT_KEY = "default"
PRESETS_FILE = Path(__file__).with_name("encryption_presets.yaml")
#: The preset a block without ``preset`` (or a profile without a block) starts from.
STANDARD_PRESET = "standard"


@dataclass(frozen=True)
class EncryptionPolicy:
    """Per-class encryption levels, resolved.

    Attributes:
        levels: artifact class -> level.
        default: the level of a class not in ``levels`` and of artifacts put without a class.
        source: where the levels came from (``<workflow_id>@<layer>[+preset:<name>]``, or
            ``merged`` for `merged_policy`).
    """

    levels: Mapping[str, Level] = field(default_factory=dict)
    default: Level = "off"
    source: str = ""

    def level(self, artifact_class: str | None) -> Level:
        """The level of ``artifact_class``; ``default`` for None or an unnamed class."""
        if artifact_class is None:
            return self.default
        return self.levels.get(artifact_class, self.default)

    def encrypts(self, artifact_class: str | None, *, keyring_available: bool) -> bool:
        """Whether an artifact of ``artifact_class`` is written encrypted (``optional`` only with a keyring)."""
        level = self.level(artifact_class)
        return level == "required" or (level == "optional" and keyring_available)

    def requires(self, artifact_class: str | None) -> bool:
        """Whether a plaintext object of ``artifact_class`` must be refused on read.

        A reader that does not say the class gets the strictest level of the policy: fail closed.
        """
        if artifact_class is None:
            return self.strictest == "required"
        return self.level(artifact_class) == "required"

    @property
    def strictest(self) -> Level:
        """The strictest level of any class, the default included."""
        return max((self.default, *self.levels.values()), key=LEVELS.index)

    @property
    def needs_keyring(self) -> bool:
        """Whether some class is ``required``: the process then needs a usable master key (or KMS)."""
        return self.strictest == "required"


@cache
def _presets(path: Path) -> dict[str, dict[str, Any]]:
    data = load_yaml_document(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path} must map preset names to encryption blocks")
    return data


def encryption_presets() -> dict[str, dict[str, Any]]:
    """The shipped presets: name -> encryption block (class -> level, plus ``default``)."""
    return {name: dict(block) for name, block in _presets(PRESETS_FILE).items()}


def resolve_encryption(
    block: Mapping[str, Any] | None, *, workflow_id: str, layer: str = "builtin", path: str = ""
) -> EncryptionPolicy:
    """The `EncryptionPolicy` of a profile's ``encryption`` block: the preset's levels, then the profile's.

    Args:
        block: the profile's ``encryption`` mapping, or None (the `STANDARD_PRESET`).
        workflow_id, layer: name the policy's ``source``.
        path: the profile file, for messages.

    Raises:
        ProfileError: ``PROFILE_ENCRYPTION_INVALID`` with ``field`` (``encryption.<key>``) for
            an unknown preset, a key that is neither ``default`` nor a known artifact class,
            or a level other than ``required``, ``optional``, ``off``.
    """
    source = f"{workflow_id}@{layer}"
    block = block or {}
    presets = encryption_presets()
    preset = block.get(PRESET_KEY, STANDARD_PRESET)
    if preset not in presets:
        _invalid(path, PRESET_KEY, f"unknown preset {preset!r} (known: {', '.join(sorted(presets))})")
    merged: dict[str, Any] = dict(presets[preset])
    source += f"+preset:{preset}"
    merged.update({key: value for key, value in block.items() if key != PRESET_KEY})
    known = set(known_artifact_classes())
    levels: dict[str, Level] = {}
    default: Level = "off"
    for key, value in merged.items():
        # YAML 1.1 reads a bare `off` as False; accept it as the level it was meant to be.
        level = "off" if value is False else value
        if level not in LEVELS:
            _invalid(path, key, f"level must be one of {', '.join(LEVELS)}, not {value!r}")
        if key == DEFAULT_KEY:
            default = level
        elif key in known:
            levels[key] = level
        else:
            _invalid(
                path,
                key,
                f"{key!r} is neither 'default' nor a known artifact class ({', '.join(sorted(known))})",
            )
    return EncryptionPolicy(levels=levels, default=default, source=source)


def merged_policy(policies: Iterable[EncryptionPolicy]) -> EncryptionPolicy:
    """One policy for a process storing artifacts of several workflows: per class, the strictest level.

    Returns an all-``off`` policy for no policies. Raises nothing.
    """
    chosen = list(policies)
    classes = {name for policy in chosen for name in policy.levels}
    default = max((policy.default for policy in chosen), key=LEVELS.index, default="off")
    levels = {
        name: max((policy.level(name) for policy in chosen), key=LEVELS.index) for name in sorted(classes)
    }
    return EncryptionPolicy(levels=levels, default=default, source="merged")


def _invalid(path: str, key: str, why: str) -> NoReturn:
    field_name = f"encryption.{key}"
    raise ProfileError(
        PROFILE_ENCRYPTION_INVALID, f"{path}: {field_name}: {why}", path=path, field=field_name
    )
