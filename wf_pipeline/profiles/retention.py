"""Retention windows of a profile: how long each artifact class is kept, resolved to milliseconds.

A profile may declare::

    retention:
      preset: docs_family        # family defaults (retention_presets.yaml beside this module)
      prompt_render: 7d          # one window per artifact class, a duration or ``forever``
      context_payload: 30d
      output: forever
      grace: 1h                  # added to every window before anything goes (absent: none; 0s allowed)
      run_history: 90d           # Dagster runs and event-log entries of wf runs
      archive_after: 180d        # record rows of older threads move to the archive
      output_of_heads: keep      # ``expire`` lets the output behind a current head frame go
      mode: delete               # how expired artifacts go: ``delete`` (default) or ``shred``

``mode`` is either one word for every class of the profile, or a mapping from artifact
class to mode, the classes it does not name being ``delete``::

      mode: shred                                  # every class of this profile
      mode: {prompt_render: shred, context_payload: shred}

- ``delete``: each expired artifact gets a tombstone, then its object is deleted
  (`wf_pipeline.retention.sweep`).
- ``shred``: crypto-shredding. Expired artifacts are not deleted one by one: the KEK
  lineage of their class and period (`wf_pipeline.crypto.keyring`) is destroyed once the
  period ended more than the class's window plus grace ago, after every artifact of the
  lineage that must stay (a safety rule, or a longer window through another reference)
  was moved to the current period's KEK. Reading a shredded artifact raises
  ``CAS_KEY_DESTROYED``; its object may stay in the store and its thread's records stay.
  An artifact of a shred-mode class that was stored in plaintext (encryption off for it)
  cannot be shredded and is deleted the ``delete`` way. Shredding keeps an artifact up to
  one KEK period (``WF_KEK_PERIOD``) past its window: a lineage goes as a whole.

A profile's ``mode`` replaces the preset's as a whole (it is one field).

The profile's own fields override the preset's; the workspace layer overrides the
built-in one by defining the profile there (`wf_pipeline.profiles.loader`). Durations are
parsed only by `wf_pipeline.metadata.durations.parse_duration_ms`. A class nobody names is
kept forever, and a profile without a ``retention`` block keeps everything.

Retention is an operational setting, not content: it is left out of the code version
(`wf_pipeline.profiles.loader.LoadedProfile.code_version`) and of thread identity, so a
run after changing only retention reuses every thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, NoReturn

from wf_pipeline.errors import PROFILE_RETENTION_INVALID, MetadataError, ProfileError
from wf_pipeline.metadata.artifact_classes import ARTIFACT_CLASSES, artifact_class_of_role
from wf_pipeline.metadata.durations import parse_duration_ms
from wf_pipeline.metadata.yaml_documents import load_yaml_document
from wf_pipeline.registry import Registry

# The artifact classes of DESIGN §7 every profile may name (`wf_pipeline.metadata.artifact_classes`).
BUILTIN_CLASSES: tuple[str, ...] = ARTIFACT_CLASSES
OUTPUT = "output"

# The keys of a retention block that are not artifact classes.
PRESET_KEY = "preset"
GRACE_KEY = "grace"
RUN_HISTORY_KEY = "run_history"
ARCHIVE_AFTER_KEY = "archive_after"
OUTPUT_OF_HEADS_KEY = "output_of_heads"
DURATION_SETTINGS = (GRACE_KEY, RUN_HISTORY_KEY, ARCHIVE_AFTER_KEY)
OutputOfHeads = Literal["keep", "expire"]
OUTPUT_OF_HEADS_VALUES: tuple[OutputOfHeads, ...] = ("keep", "expire")
MODE_KEY = "mode"
RetentionMode = Literal["delete", "shred"]
DELETE: RetentionMode = "delete"
SHRED: RetentionMode = "shred"
MODES: tuple[RetentionMode, ...] = (DELETE, SHRED)

PRESETS_FILE = Path(__file__).with_name("retention_presets.yaml")

# Classes a workflow registers beyond the built-in ones: class -> the output types whose
# outputs belong to it (instead of ``output``). Registering the same class again replaces it.
_ARTIFACT_CLASSES: Registry[str, tuple[str, ...]] = Registry(
    "artifact class", key="artifact class", reregister="replace"
)


def register_artifact_class(name: str, output_types: tuple[str, ...] = ()) -> None:
    """Let profiles name ``name`` in their ``retention`` block.

    Args:
        name: the class name, e.g. ``evidence_map``; must not be a built-in class.
        output_types: output types whose turn outputs are of this class rather than ``output``.

    Raises:
        ValueError: ``name`` is a built-in class (a programming error of the workflow).
    """
    if name in BUILTIN_CLASSES:
        raise ValueError(f"{name!r} is a built-in artifact class")
    _ARTIFACT_CLASSES.register(name, tuple(output_types))


def known_artifact_classes() -> tuple[str, ...]:
    """The built-in classes, then every registered class in name order."""
    return BUILTIN_CLASSES + tuple(sorted(_ARTIFACT_CLASSES.keys()))


def output_class(output_type: str) -> str:
    """The class of a turn output of ``output_type``: a registered class naming it, else ``output``."""
    for name in sorted(_ARTIFACT_CLASSES.keys()):
        if output_type in _ARTIFACT_CLASSES.get(name):
            return name
    return OUTPUT


def class_of_link(role: str, output_type: str | None) -> str | None:
    """The artifact class of an artifact a turn linked under ``role``: the one rule retention and telemetry share.

    Args:
        role: the link's role (`wf_pipeline.metadata.records.ArtifactLinkRecord.role`).
        output_type: the linking turn's output type; None when no loaded profile knows the turn.

    Returns:
        The role's class (`artifact_class_of_role`), except that a turn output whose type a
        workflow registered a class for is of that class; None for a role that puts nothing
        (``input``).
    """
    artifact_class = artifact_class_of_role(role)
    if artifact_class == OUTPUT and output_type is not None:
        return output_class(output_type)
    return artifact_class


@dataclass(frozen=True)
class RetentionPolicy:
    """The resolved retention of one workflow, every duration in ms (None: forever).

    Attributes:
        workflow_id: the profile's workflow id.
        source: where the windows came from, as tombstones record it
            (``<workflow_id>@<layer>`` plus ``+preset:<name>`` when a preset applies).
        windows_ms: artifact class -> window in ms, or None (forever). A class missing
            here is kept forever.
        grace_ms: added to every window (ms, >= 0; 0 when neither the preset nor the
            profile sets ``grace``: the shipped presets set none, so a profile's windows mean
            what they say).
        run_history_ms: how long Dagster keeps runs of this workflow, or None.
        archive_after_ms: when thread rows move to the archive, or None.
        output_of_heads: ``keep`` (default) never deletes the output behind a current head
            frame; ``expire`` lets its class window apply to it.
        modes: artifact class -> ``delete`` or ``shred``, for the classes the block's
            ``mode`` mapping names.
        default_mode: the mode of every class ``modes`` does not name (``mode: shred``
            sets it; default ``delete``).
    """

    workflow_id: str
    source: str
    windows_ms: Mapping[str, int | None] = field(default_factory=dict)
    grace_ms: int = 0
    run_history_ms: int | None = None
    archive_after_ms: int | None = None
    output_of_heads: OutputOfHeads = "keep"
    modes: Mapping[str, RetentionMode] = field(default_factory=dict)
    default_mode: RetentionMode = DELETE

    def mode(self, artifact_class: str) -> RetentionMode:
        """How expired artifacts of ``artifact_class`` go: ``delete`` or ``shred`` (see the module docstring)."""
        return self.modes.get(artifact_class, self.default_mode)

    def shreds(self, artifact_class: str) -> bool:
        """Whether ``artifact_class`` is in ``shred`` mode."""
        return self.mode(artifact_class) == SHRED

    def window_ms(self, artifact_class: str) -> int | None:
        """The window of ``artifact_class`` in ms, None when it is kept forever."""
        return self.windows_ms.get(artifact_class)

    def expires_at_ms(self, artifact_class: str, created_at_ms: int) -> int | None:
        """When an artifact of ``artifact_class`` created at ``created_at_ms`` may go (window + grace), or None."""
        window = self.window_ms(artifact_class)
        return None if window is None else created_at_ms + window + self.grace_ms


@cache
def _presets(path: Path) -> dict[str, dict[str, Any]]:
    data = load_yaml_document(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path} must map preset names to retention blocks")
    return data


def retention_presets() -> dict[str, dict[str, Any]]:
    """The shipped presets: name -> retention block (the same keys a profile writes, no ``preset``)."""
    return {name: dict(block) for name, block in _presets(PRESETS_FILE).items()}


def resolve_retention(
    block: Mapping[str, Any] | None, *, workflow_id: str, layer: str = "builtin", path: str = ""
) -> RetentionPolicy:
    """The `RetentionPolicy` of a profile's ``retention`` block: the preset's fields, then the profile's.

    Args:
        block: the profile's ``retention`` mapping, or None (everything kept forever).
        workflow_id, layer: name the policy's ``source``.
        path: the profile file, for messages.

    Returns:
        The policy, every duration in ms.

    Raises:
        ProfileError: ``PROFILE_RETENTION_INVALID`` with ``field`` (``retention.<key>``) for
            an unknown preset, a key that is neither a setting nor a known artifact class
            (built-in or registered with `register_artifact_class`), a bad duration (the
            parser's message), a bad ``output_of_heads``, or a bad ``mode`` (``field``
            ``retention.mode`` or ``retention.mode.<class>``).
    """
    if not block:
        return RetentionPolicy(workflow_id=workflow_id, source=f"{workflow_id}@{layer}")
    merged: dict[str, Any] = {}
    source = f"{workflow_id}@{layer}"
    preset = block.get(PRESET_KEY)
    if preset is not None:
        presets = retention_presets()
        if preset not in presets:
            _invalid(path, PRESET_KEY, f"unknown preset {preset!r} (known: {', '.join(sorted(presets))})")
        merged.update(presets[preset])
        source += f"+preset:{preset}"
    merged.update({key: value for key, value in block.items() if key != PRESET_KEY})
    known = set(known_artifact_classes())
    windows: dict[str, int | None] = {}
    settings: dict[str, int | None] = {GRACE_KEY: 0, RUN_HISTORY_KEY: None, ARCHIVE_AFTER_KEY: None}
    output_of_heads: OutputOfHeads = "keep"
    modes: dict[str, RetentionMode] = {}
    default_mode: RetentionMode = DELETE
    for key, value in merged.items():
        if key == MODE_KEY:
            default_mode, modes = _modes(value, known, path)
            continue
        if key == OUTPUT_OF_HEADS_KEY:
            if value not in OUTPUT_OF_HEADS_VALUES:
                _invalid(path, key, f"must be one of {', '.join(OUTPUT_OF_HEADS_VALUES)}, not {value!r}")
            output_of_heads = value
            continue
        if key not in DURATION_SETTINGS and key not in known:
            _invalid(
                path,
                key,
                f"{key!r} is neither a retention setting nor a known artifact class "
                f"(classes: {', '.join(sorted(known))})",
            )
        if not isinstance(value, str):
            _invalid(path, key, f"must be a duration or forever, not a {type(value).__name__}")
        try:
            # Only a grace may be zero: a zero window would delete an artifact as it is written.
            duration = parse_duration_ms(value, allow_zero=key == GRACE_KEY)
        except MetadataError as exc:
            _invalid(path, key, exc.message)
        if key in DURATION_SETTINGS:
            if key == GRACE_KEY and duration is None:
                _invalid(path, key, "grace must be a finite duration")
            settings[key] = duration
        else:
            windows[key] = duration
    return RetentionPolicy(
        workflow_id=workflow_id,
        source=source,
        windows_ms=windows,
        grace_ms=settings[GRACE_KEY] or 0,
        run_history_ms=settings[RUN_HISTORY_KEY],
        archive_after_ms=settings[ARCHIVE_AFTER_KEY],
        output_of_heads=output_of_heads,
        modes=modes,
        default_mode=default_mode,
    )


def _modes(value: Any, known: set[str], path: str) -> tuple[RetentionMode, dict[str, RetentionMode]]:
    # ``mode: shred`` (every class) or ``mode: {class: mode}`` (the others: delete).
    if isinstance(value, str):
        if value not in MODES:
            _invalid(
                path, MODE_KEY, f"must be one of {', '.join(MODES)} or a mapping class -> mode, not {value!r}"
            )
        return value, {}  # type: ignore[return-value]  # checked against MODES above
    if not isinstance(value, Mapping) or not value:
        _invalid(path, MODE_KEY, "must be delete, shred, or a non-empty mapping artifact class -> mode")
    modes: dict[str, RetentionMode] = {}
    for artifact_class, mode in value.items():
        where = f"{MODE_KEY}.{artifact_class}"
        if artifact_class not in known:
            _invalid(
                path,
                where,
                f"{artifact_class!r} is not a known artifact class (classes: {', '.join(sorted(known))})",
            )
        if mode not in MODES:
            _invalid(path, where, f"must be one of {', '.join(MODES)}, not {mode!r}")
        modes[artifact_class] = mode
    return DELETE, modes


def _invalid(path: str, key: str, why: str) -> NoReturn:
    field_name = f"retention.{key}"
    raise ProfileError(PROFILE_RETENTION_INVALID, f"{path}: {field_name}: {why}", path=path, field=field_name)
