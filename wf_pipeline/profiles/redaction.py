"""Redaction policy of a profile: what runs of it may show, beyond the masking every preset does.

A profile may declare::

    redaction:
      preset: standard                    # strict | standard | debug (redaction_presets.yaml)
      unmasked_classes: [context_payload] # opt-out of masking, per artifact class; audited

Secret-shaped values (`wf_pipeline.security.redaction`) are masked whatever the preset: in
the context payload before it is stored or any provider sees it, in the outputs a workflow's
sink writes (the docs writer's README.md; no opt-out), and by the log-sink filter. A preset
adds (`RedactionPolicy`):

- ``hash_free_text``: a failed turn's or thread's message is kept as its digest (records, Dagster, logs);
- ``allow_unmasked``: whether the profile may opt classes out of masking (not under ``strict``);
- ``log_findings``: each masking logged with path, detector kind and placeholder, else a count.

``unmasked_classes`` may name only the classes the runtime masks before storing them
(`MASKABLE_CLASSES`). A block without ``preset``, and a profile without a block, get the
`STANDARD_PRESET`. Like retention and encryption, the policy is left out of the code
version and of thread identity; a context snapshot recorded under one policy is reused by
the thread's later turns and retries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from wf_pipeline.errors import PROFILE_REDACTION_INVALID, ProfileError
from wf_pipeline.metadata.yaml_documents import load_yaml_document

PRESET_KEY = "preset"
UNMASKED_KEY = "unmasked_classes"
PRESETS_FILE = Path(__file__).with_name("redaction_presets.yaml")
#: The preset a block without ``preset`` (or a profile without a block) gets.
STANDARD_PRESET = "standard"
#: The artifact classes the runtime masks before it stores them, so the only ones a profile may opt out.
MASKABLE_CLASSES: tuple[str, ...] = ("context_payload",)
# Every preset sets each of these.
_PRESET_FLAGS = ("hash_free_text", "allow_unmasked", "log_findings")


@dataclass(frozen=True)
class RedactionPolicy:
    """A profile's redaction settings, resolved.

    Attributes:
        preset: the preset's name.
        hash_free_text: a failed turn's or thread's message is kept as its digest only.
        allow_unmasked: the preset lets a profile opt classes out of masking.
        log_findings: each masking is logged (path, kind, placeholder), else a count per context.
        unmasked_classes: the classes this profile opted out of masking (audited when used).
        source: where it came from (``<workflow_id>@<layer>+preset:<name>``).
    """

    preset: str = STANDARD_PRESET
    hash_free_text: bool = False
    allow_unmasked: bool = True
    log_findings: bool = False
    unmasked_classes: frozenset[str] = frozenset()
    source: str = ""

    def masks(self, artifact_class: str | None) -> bool:
        """Whether payloads of ``artifact_class`` are masked before they are stored (True unless opted out)."""
        return artifact_class not in self.unmasked_classes


@cache
def _presets(path: Path) -> dict[str, dict[str, Any]]:
    data = load_yaml_document(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(
        isinstance(block, dict) and all(isinstance(block.get(flag), bool) for flag in _PRESET_FLAGS)
        for block in data.values()
    ):
        raise ValueError(f"{path} must map preset names to blocks setting {', '.join(_PRESET_FLAGS)}")
    return data


def redaction_presets() -> dict[str, dict[str, Any]]:
    """The shipped presets: name -> {``hash_free_text``, ``allow_unmasked``, ``log_findings``}."""
    return {name: dict(block) for name, block in _presets(PRESETS_FILE).items()}


def resolve_redaction(
    block: Mapping[str, Any] | None, *, workflow_id: str, layer: str = "builtin", path: str = ""
) -> RedactionPolicy:
    """The `RedactionPolicy` of a profile's ``redaction`` block.

    Args:
        block: the profile's ``redaction`` mapping, or None (the `STANDARD_PRESET`).
        workflow_id, layer: name the policy's ``source``.
        path: the profile file, for messages.

    Raises:
        ProfileError: ``PROFILE_REDACTION_INVALID`` with ``field`` (``redaction.<key>``) for an
            unknown preset, a key other than ``preset`` and ``unmasked_classes``, an
            ``unmasked_classes`` that is not a list of `MASKABLE_CLASSES`, or any opt-out
            under a preset that allows none (``strict``).
    """
    block = block or {}
    presets = redaction_presets()
    preset = block.get(PRESET_KEY, STANDARD_PRESET)
    if not isinstance(preset, str) or preset not in presets:
        _invalid(path, PRESET_KEY, f"unknown preset {preset!r} (known: {', '.join(sorted(presets))})")
    for key in block:
        if key not in (PRESET_KEY, UNMASKED_KEY):
            _invalid(path, key, f"unknown key {key!r} (known: {PRESET_KEY}, {UNMASKED_KEY})")
    unmasked = block.get(UNMASKED_KEY) or []
    if not isinstance(unmasked, list) or not all(isinstance(name, str) for name in unmasked):
        _invalid(path, UNMASKED_KEY, f"must be a list of artifact classes, not {unmasked!r}")
    for name in unmasked:
        if name not in MASKABLE_CLASSES:
            _invalid(
                path,
                UNMASKED_KEY,
                f"{name!r} cannot be opted out (only classes masked before they are stored: "
                f"{', '.join(MASKABLE_CLASSES)}; written outputs are always masked)",
            )
    flags = presets[preset]
    if unmasked and not flags["allow_unmasked"]:
        _invalid(
            path, UNMASKED_KEY, f"preset {preset!r} allows no opt-out of masking ({', '.join(unmasked)})"
        )
    return RedactionPolicy(
        preset=preset,
        hash_free_text=flags["hash_free_text"],
        allow_unmasked=flags["allow_unmasked"],
        log_findings=flags["log_findings"],
        unmasked_classes=frozenset(unmasked),
        source=f"{workflow_id}@{layer}+preset:{preset}",
    )


def _invalid(path: str, key: str, why: str) -> NoReturn:
    field_name = f"redaction.{key}"
    raise ProfileError(PROFILE_REDACTION_INVALID, f"{path}: {field_name}: {why}", path=path, field=field_name)
