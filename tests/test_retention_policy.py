"""Retention windows in profiles: presets, workspace overrides, validation, and no effect on identity."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from wf_pipeline.errors import ProfileError
from wf_pipeline.metadata.records import thread_id_for
from wf_pipeline.profiles import Layer, LoadedProfile, load_catalog, load_profile_file
from wf_pipeline.profiles.retention import (
    class_of_link,
    known_artifact_classes,
    output_class,
    register_artifact_class,
    resolve_retention,
    retention_presets,
)
from wf_pipeline.workflows import load_builtin_workflows

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = "docs_writer_thread_v1"
DAY, HOUR = 86_400_000, 3_600_000


def builtin() -> LoadedProfile:
    load_builtin_workflows()
    return load_catalog([Layer("builtin", REPO_ROOT)]).get(WORKFLOW)


def workspace_file(tmp_path: Path, retention: object) -> Path:
    """The shipped profile copied into a workspace layer with its ``retention`` block replaced."""
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text())
    document["retention"] = retention
    (workspace / "profiles").mkdir()
    path = workspace / "profiles" / f"{WORKFLOW}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def workspace_copy(tmp_path: Path, retention: object) -> LoadedProfile:
    """The workflow as the catalog resolves it with that workspace copy above the built-in layer."""
    workspace = workspace_file(tmp_path, retention).parent.parent
    load_builtin_workflows()
    catalog = load_catalog([Layer("workspace", workspace), Layer("builtin", REPO_ROOT)])
    assert catalog.problems == ()
    return catalog.get(WORKFLOW)


def load_workspace_file(tmp_path: Path, retention: object) -> LoadedProfile:
    load_builtin_workflows()
    path = workspace_file(tmp_path, retention)
    return load_profile_file(path, Layer("workspace", path.parent.parent))


def test_the_docs_writer_uses_the_docs_family_preset() -> None:
    policy = builtin().retention
    preset = retention_presets()["docs_family"]

    assert policy.source == f"{WORKFLOW}@builtin+preset:docs_family"
    assert policy.window_ms("prompt_render") == 7 * DAY and preset["prompt_render"] == "7d"
    assert policy.window_ms("context_payload") == 30 * DAY
    assert policy.window_ms("output") is None
    # The preset carries no grace: a window means what it says unless a profile adds one.
    assert policy.grace_ms == 0 and "grace" not in preset
    assert (policy.run_history_ms, policy.archive_after_ms) == (90 * DAY, 180 * DAY)
    assert policy.output_of_heads == "keep"
    assert policy.expires_at_ms("prompt_render", 1_000) == 1_000 + 7 * DAY
    assert policy.expires_at_ms("output", 1_000) is None


def test_a_workspace_copy_overrides_the_windows_and_prompt_and_context_differ(tmp_path: Path) -> None:
    loaded = workspace_copy(tmp_path, {"prompt_render": "1s", "context_payload": "1h"})
    policy = loaded.retention

    assert loaded.layer == "workspace"
    assert policy.window_ms("prompt_render") == 1_000
    assert policy.window_ms("context_payload") == HOUR
    assert policy.grace_ms == 0 and policy.window_ms("output") is None


def test_profile_fields_override_the_preset_field_by_field(tmp_path: Path) -> None:
    policy = workspace_copy(
        tmp_path,
        {"preset": "docs_family", "prompt_render": "12h", "grace": "5m", "output_of_heads": "expire"},
    ).retention

    assert policy.window_ms("prompt_render") == 12 * HOUR
    assert policy.window_ms("context_payload") == 30 * DAY  # from the preset
    assert policy.grace_ms == 300_000
    assert policy.output_of_heads == "expire"


def test_a_copy_that_keeps_the_preset_and_adds_two_windows_has_no_grace(tmp_path: Path) -> None:
    # The acceptance recipe: the shipped block (preset: docs_family) plus two lines.
    policy = workspace_copy(
        tmp_path, {"preset": "docs_family", "prompt_render": "1s", "context_payload": "1h"}
    ).retention

    assert policy.source == f"{WORKFLOW}@workspace+preset:docs_family"
    assert policy.expires_at_ms("prompt_render", 0) == 1_000
    assert policy.expires_at_ms("context_payload", 0) == HOUR


@pytest.mark.parametrize(("text", "expected"), [("0s", 0), ("0ms", 0), ("90s", 90_000)])
def test_a_grace_may_be_zero(tmp_path: Path, text: str, expected: int) -> None:
    policy = workspace_copy(tmp_path, {"preset": "docs_family", "grace": text}).retention
    assert policy.grace_ms == expected


def test_retention_changes_neither_code_versions_nor_thread_ids(tmp_path: Path) -> None:
    shipped = builtin()
    changed = workspace_copy(tmp_path, {"prompt_render": "1s", "context_payload": "1h"})

    assert changed.retention != shipped.retention
    assert changed.code_version == shipped.code_version
    for turn in shipped.profile.ordered_turns():
        assert changed.turn_code_version(turn.turn_id) == shipped.turn_code_version(turn.turn_id)
    # Thread ids are derived from the workflow id and the target only.
    assert thread_id_for(changed.workflow_id, "node:x") == thread_id_for(shipped.workflow_id, "node:x")


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"prompt_render": "7 days"}, "retention.prompt_render"),
        ({"context_payload": "0s"}, "retention.context_payload"),
        ({"grace": "forever"}, "retention.grace"),
        ({"preset": "no_such_family"}, "retention.preset"),
        ({"summaries": "7d"}, "retention.summaries"),
        ({"output_of_heads": "maybe"}, "retention.output_of_heads"),
    ],
)
def test_a_bad_retention_block_fails_to_load_naming_its_field(tmp_path: Path, block, field) -> None:
    with pytest.raises(ProfileError) as caught:
        load_workspace_file(tmp_path, block)

    assert caught.value.code == "PROFILE_RETENTION_INVALID"
    assert caught.value.details["field"] == field
    assert field in caught.value.message


def test_a_non_text_window_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as caught:
        load_workspace_file(tmp_path, {"prompt_render": 7})
    assert caught.value.code == "PROFILE_SCHEMA_INVALID"


def test_a_class_a_workflow_registers_may_be_named() -> None:
    with pytest.raises(ProfileError):
        resolve_retention({"evidence_maps": "3d"}, workflow_id="w")

    # An output type no shipped profile has: the registry is per process, other tests share it.
    register_artifact_class("evidence_maps", ("registered_test_output",))

    policy = resolve_retention({"evidence_maps": "3d"}, workflow_id="w")
    assert policy.window_ms("evidence_maps") == 3 * DAY
    assert "evidence_maps" in known_artifact_classes()
    assert output_class("registered_test_output") == "evidence_maps"
    assert output_class("readme_final") == "output"
    with pytest.raises(ValueError):
        register_artifact_class("output")


def test_no_retention_block_keeps_everything() -> None:
    policy = resolve_retention(None, workflow_id="w", layer="user")
    assert policy.source == "w@user"
    assert all(policy.window_ms(name) is None for name in known_artifact_classes())


def test_retention_and_telemetry_class_a_link_by_one_rule(monkeypatch, tmp_path) -> None:
    """A turn output whose type a workflow registered is of that class for retention and telemetry alike."""
    from e2e_support import isolated_settings

    from wf_pipeline.metadata.records import ArtifactLinkRecord
    from wf_pipeline.runtime import RuntimeEnv
    from wf_pipeline.runtime.measure import WriteSite, record_artifact_links
    from wf_pipeline.telemetry import run_query

    register_artifact_class("evidence_maps", ("registered_test_output",))
    assert class_of_link("output", "registered_test_output") == "evidence_maps"
    assert class_of_link("output", "readme_final") == "output"
    assert class_of_link("output", None) == "output"
    assert class_of_link("rendered_prompt", "registered_test_output") == "prompt_render"
    assert class_of_link("input", "registered_test_output") is None

    settings = isolated_settings(monkeypatch, tmp_path / "home")
    links = [
        ArtifactLinkRecord(
            artifact_link_id=f"link:{role}",
            artifact_id="sha256:" + digit * 64,
            thread_id="thread:1",
            turn_id="turn",
            attempt=1,
            role=role,
            size=size,
            created_at_ms=1,
        )
        for role, digit, size in (("output", "a", 10), ("context", "b", 20), ("input", "c", 30))
    ]
    site = WriteSite("w", "1", "thread:1", "turn", None, None)
    with RuntimeEnv.open(settings) as env:
        record_artifact_links(env, site, links, "registered_test_output")
    _, rows = run_query(settings, "select key, bytes from artifact_writes order by bytes")
    assert rows == [("evidence_maps", 10), ("context_payload", 20)]
