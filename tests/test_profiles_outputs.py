"""Profile-declared outputs, targets and context scope: what loads, what fails with which code,
and that none of them changes a profile's code version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_profiles_loader import assert_load_fails, load_one, profile_doc, write_layer_root

from wf_pipeline.errors import ProfileError


def _with_outputs(*outputs: Any, **more: Any) -> dict[str, Any]:
    return profile_doc(outputs=list(outputs), **more)


@pytest.mark.parametrize(
    ("output", "code"),
    [
        ({"path": "docs/NOTES.md", "format": "html"}, "PROFILE_OUTPUT_UNKNOWN_FORMAT"),
        ({"path": "docs/NOTES.md", "format": "Markdown"}, "PROFILE_OUTPUT_UNKNOWN_FORMAT"),
        ({"path": "/etc/NOTES.md"}, "PROFILE_OUTPUT_PATH_ABSOLUTE"),
        ({"path": "C:/NOTES.md"}, "PROFILE_OUTPUT_PATH_ABSOLUTE"),
        ({"path": "../NOTES.md"}, "PROFILE_OUTPUT_PATH_ESCAPES"),
        ({"path": "docs/../../NOTES.md"}, "PROFILE_OUTPUT_PATH_ESCAPES"),
        ({"path": "docs/"}, "PROFILE_OUTPUT_PATH_ESCAPES"),
        ({"path": "docs//NOTES.md"}, "PROFILE_OUTPUT_PATH_ESCAPES"),
        ({"path": "./NOTES.md"}, "PROFILE_OUTPUT_PATH_ESCAPES"),
        ({"path": "docs\\NOTES.md"}, "PROFILE_OUTPUT_PATH_ESCAPES"),
        ({"path": "docs/a\x00b.md"}, "PROFILE_OUTPUT_PATH_INVALID"),
        ({"path": "docs/a\nb.md"}, "PROFILE_OUTPUT_PATH_INVALID"),
        ({"path": "n" * 253 + ".md"}, "PROFILE_OUTPUT_PATH_INVALID"),
        ({"path": ".git/config"}, "PROFILE_OUTPUT_PATH_INVALID"),
        ({"path": "sub/.GIT/hooks/x.md"}, "PROFILE_OUTPUT_PATH_INVALID"),
        ({"path": "NOTES.json", "format": "json"}, "PROFILE_OUTPUT_FORMAT_MISMATCH"),
        ({"path": ""}, "PROFILE_SCHEMA_INVALID"),
        ({"path": "NOTES.md", "placement": "elsewhere"}, "PROFILE_SCHEMA_INVALID"),
    ],
)
def test_invalid_outputs_fail_to_load_with_their_code(tmp_path: Path, output: dict, code: str) -> None:
    error = assert_load_fails(tmp_path, _with_outputs(output), code)
    assert error.details["path"].endswith("tiny.yaml")


def test_two_outputs_with_one_path_fail(tmp_path: Path) -> None:
    error = assert_load_fails(
        tmp_path,
        _with_outputs({"path": "A.md"}, {"path": "A.md", "format": "text"}),
        "PROFILE_OUTPUT_DUPLICATE_PATH",
    )
    assert error.details["repeated"] == ["A.md"]


def test_two_outputs_that_differ_only_in_case_are_one_file(tmp_path: Path) -> None:
    error = assert_load_fails(
        tmp_path, _with_outputs({"path": "docs/A.md"}, {"path": "docs/a.md"}), "PROFILE_OUTPUT_DUPLICATE_PATH"
    )
    assert error.details["paths"] == ["docs/A.md", "docs/a.md"]


@pytest.mark.parametrize(
    ("output", "code", "shown"),
    [
        ({"path": "../x.md"}, "PROFILE_OUTPUT_PATH_ESCAPES", "'../x.md'"),
        ({"path": "/etc/x.md"}, "PROFILE_OUTPUT_PATH_ABSOLUTE", "'/etc/x.md'"),
        ({"path": "x.md", "format": "html"}, "PROFILE_OUTPUT_UNKNOWN_FORMAT", "'html'"),
        ({"path": "a\x00b.md"}, "PROFILE_OUTPUT_PATH_INVALID", "'a\\x00b.md'"),
    ],
)
def test_output_errors_show_the_value_they_refuse(
    tmp_path: Path, output: dict, code: str, shown: str
) -> None:
    # The message carries the offending value itself, never an unfilled template.
    error = assert_load_fails(tmp_path, _with_outputs(output), code)
    assert shown in str(error) and "{" not in str(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [("targets", {"kind": "file"}), ("targets", {"scope": "root"}), ("context", {"scope": "repo"})],
)
def test_unknown_target_kind_or_context_scope_is_a_schema_error(
    tmp_path: Path, field: str, value: dict
) -> None:
    error = assert_load_fails(tmp_path, profile_doc(**{field: value}), "PROFILE_SCHEMA_INVALID")
    assert any(entry.startswith(field) for entry in error.details["fields"])


def test_outputs_targets_and_context_load_and_keep_the_code_version(tmp_path: Path) -> None:
    plain = load_one(write_layer_root(tmp_path / "a"))
    declared = load_one(
        write_layer_root(
            tmp_path / "b",
            {
                "tiny.yaml": _with_outputs(
                    {"path": "docs/NOTES.md", "format": "markdown", "placement": "in_place"},
                    {"path": "NOTES.txt", "format": "text"},
                    targets={"kind": "root"},
                    context={"scope": "tree"},
                )
            },
        )
    )
    assert declared.profile.target_kind == "root"
    assert declared.profile.context.scope == "tree"
    assert [(o.path, o.format, o.placement) for o in declared.profile.outputs or ()] == [
        ("docs/NOTES.md", "markdown", "in_place"),
        ("NOTES.txt", "text", "mirrored"),
    ]
    assert plain.profile.target_kind == "directory" and plain.profile.outputs is None
    assert declared.code_version == plain.code_version


def test_shipped_architecture_notes_profile_declares_its_output(tmp_path: Path) -> None:
    from wf_pipeline.builtin import source_root
    from wf_pipeline.profiles import Layer, load_profile_file
    from wf_pipeline.workflows import load_builtin_workflows

    load_builtin_workflows()
    root = source_root()
    loaded = load_profile_file(root / "profiles" / "architecture_notes_v1.yaml", Layer("builtin", root))
    assert loaded.profile.target_kind == "root"
    assert [o.path for o in loaded.profile.outputs or ()] == ["docs/ARCHITECTURE.md"]
    with pytest.raises(ProfileError):
        loaded.turn_code_version("no_such_turn")
