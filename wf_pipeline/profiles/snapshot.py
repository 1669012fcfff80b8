"""A profile as a thread started with it: one canonical JSON document, and back.

A thread pins the profile it starts with (`wf_pipeline.runtime.threads.plan_thread`): the
snapshot below is stored in the CAS and the thread records its artifact id
(``profile_artifact_id``), its ``profile_version`` and its ``code_version``. A resume runs
the thread with the profile rebuilt from it (`load_profile_snapshot`), whatever the files
say now, so its turns render the same templates and retry under the same policy.

The snapshot (``schema`` ``wf.profile_snapshot.v1``) holds:

- ``workflow_id``, ``layer`` and ``source_name`` (the file's own name, never a machine
  path: the same profile snapshotted on two machines is the same artifact);
- ``profile``: the validated profile as pydantic dumps it (JSON mode, the fields the file set);
- ``templates``: turn id -> ``{"ref", "text"}`` of the user prompt template;
- ``system_prompts``: turn id -> ``{"ref", "text"}`` or null;
- ``code_version``: the profile's code version, checked when the snapshot is read back.

Rebuilding reads no file and no layer: the snapshot is the profile.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wf_pipeline.errors import PROFILE_SNAPSHOT_INVALID, ProfileError
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.profiles.loader import LoadedProfile
from wf_pipeline.profiles.render import PromptTemplate, template_from_text
from wf_pipeline.profiles.schema import Profile

SNAPSHOT_SCHEMA = "wf.profile_snapshot.v1"
#: The artifact role a snapshot is stored under: profile content, like a prompt template.
SNAPSHOT_ROLE = "prompt_template"


def _template(template: PromptTemplate | None) -> dict[str, str] | None:
    return None if template is None else {"ref": template.ref, "text": template.text}


def profile_snapshot(loaded: LoadedProfile) -> bytes:
    """The canonical JSON bytes of ``loaded``'s snapshot (see the module docstring).

    Args:
        loaded: a validated profile (from its file, or itself rebuilt from a snapshot).

    Returns:
        Canonical UTF-8 JSON; equal profiles give equal bytes, so equal artifact ids.
        Raises nothing.
    """
    document = {
        "schema": SNAPSHOT_SCHEMA,
        "workflow_id": loaded.workflow_id,
        "layer": loaded.layer,
        "source_name": loaded.source_path.name,
        # Fields as written (unset ones take their defaults again): whether retry_limit was
        # written decides how a retry block is read (`wf_pipeline.profiles.retry`).
        "profile": loaded.profile.model_dump(mode="json", exclude_unset=True),
        "templates": {turn_id: _template(t) for turn_id, t in sorted(loaded.templates.items())},
        "system_prompts": {turn_id: _template(t) for turn_id, t in sorted(loaded.system_prompts.items())},
        "code_version": loaded.code_version,
    }
    return canonical_json(document)


def load_profile_snapshot(data: bytes, artifact_id: str, *, code_version: str | None = None) -> LoadedProfile:
    """Rebuild the `LoadedProfile` a snapshot holds; no file is read.

    Args:
        data: the snapshot's bytes, as `profile_snapshot` made them.
        artifact_id: the snapshot's CAS artifact id (kept as ``snapshot_id``, and named in errors).
        code_version: the code version the thread recorded, or None to check only the
            snapshot's own.

    Returns:
        The profile as it was loaded when the snapshot was made, with ``snapshot_id`` set and
        ``source_path`` its file's name only.

    Raises:
        ProfileError: ``PROFILE_SNAPSHOT_INVALID`` (figures: artifact_id, and expected and
            found for a version mismatch) when the bytes are not a snapshot of this schema,
            its profile does not validate, or the rebuilt profile's code version is not the
            one recorded.
    """
    try:
        document = json.loads(data.decode("utf-8"))
        if not isinstance(document, dict) or document.get("schema") != SNAPSHOT_SCHEMA:
            raise ValueError(f"not a {SNAPSHOT_SCHEMA} document")
        # JSON mode: the dump's strings (enums, literals) validate as they would from YAML.
        profile = Profile.model_validate_json(canonical_json(document["profile"]))
        templates = {turn_id: _rebuilt(turn_id, t) for turn_id, t in document["templates"].items()}
        system_prompts = {
            turn_id: None if t is None else _rebuilt(turn_id, t)
            for turn_id, t in document["system_prompts"].items()
        }
        loaded = LoadedProfile(
            profile=profile,
            layer=document["layer"],
            source_path=Path(document["source_name"]),
            templates=templates,
            system_prompts=system_prompts,
            snapshot_id=artifact_id,
        )
        found = loaded.code_version
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise ProfileError(
            PROFILE_SNAPSHOT_INVALID,
            f"profile snapshot {artifact_id} cannot be read back: {type(exc).__name__}",
            artifact_id=artifact_id,
        ) from None
    for expected in (document.get("code_version"), code_version):
        if expected is not None and expected != found:
            raise ProfileError(
                PROFILE_SNAPSHOT_INVALID,
                f"profile snapshot {artifact_id} rebuilds code version {found}, not the recorded {expected}",
                artifact_id=artifact_id,
                expected=expected,
                found=found,
            )
    return loaded


def _rebuilt(turn_id: str, template: Any) -> PromptTemplate:
    if not isinstance(template, dict):
        raise ValueError(f"template of turn {turn_id} is not an object")
    return template_from_text(str(template["ref"]), str(template["text"]))
