"""Profile loading: every load failure code, layered precedence, prompt refs, code versions."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from wf_pipeline.errors import CasError, ProfileError
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.profiles import (
    Layer,
    default_layers,
    describe,
    load_catalog,
    load_profile_file,
    validate_report,
)
from wf_pipeline.settings import Settings

FIRST_PROMPT = "Summarise {{ target_path }}:\n{{ inputs.context }}\n"
SECOND_PROMPT = "Refine for {{ target_name }}:\n{{ inputs.notes }}\n"
SYSTEM_PROMPT = "You write documentation.\n"

BASE_PROFILE: dict[str, Any] = {
    "workflow_id": "tiny_flow",
    "version": "1.2.3",
    "title": "Tiny flow",
    "description": "Two turns for tests.",
    "thread_policy": {},
    "turns": [
        {
            "turn_id": "gather",
            "seq": 1,
            "title": "Gather",
            "prompt_ref": "prompts/gather.md",
            "system_prompt_ref": "prompts/system.md",
            "input_refs": ["context"],
            "output_type": "notes",
            "gate_id": "notes_gate",
        },
        {
            "turn_id": "refine",
            "seq": 2,
            "title": "Refine",
            "prompt_ref": "prompts/refine.md",
            "input_refs": ["notes"],
            "output_type": "final_text",
            "output_format": "markdown",
        },
    ],
    "gates": [
        {"gate_id": "notes_gate", "gate_type": "schema_required_fields", "required_fields": ["claims"]}
    ],
    "artifact_policy": {},
    "failure_policy": {},
    "final_artifact_type": "final_text",
}


def profile_doc(**overrides: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE_PROFILE)
    doc.update(copy.deepcopy(overrides))
    return doc


def write_layer_root(root: Path, docs: dict[str, Any] | None = None) -> Path:
    """A layer root with the test prompts and the given profile files (file name -> dict or raw text)."""
    prompts = root / "prompts"
    prompts.mkdir(parents=True, exist_ok=True)
    (prompts / "gather.md").write_text(FIRST_PROMPT, encoding="utf-8")
    (prompts / "refine.md").write_text(SECOND_PROMPT, encoding="utf-8")
    (prompts / "system.md").write_text(SYSTEM_PROMPT, encoding="utf-8")
    profiles = root / "profiles"
    profiles.mkdir(exist_ok=True)
    for name, doc in (docs or {"tiny.yaml": profile_doc()}).items():
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
        (profiles / name).write_text(text, encoding="utf-8")
    return root


def load_one(root: Path, name: str = "tiny.yaml", **kwargs: Any):
    return load_profile_file(root / "profiles" / name, Layer("workspace", root), **kwargs)


def with_turn_change(index: int, **changes: Any) -> dict[str, Any]:
    doc = profile_doc()
    doc["turns"][index].update(changes)
    return doc


def assert_load_fails(tmp_path: Path, doc: dict[str, Any] | str, code: str) -> ProfileError:
    root = write_layer_root(tmp_path / "ws", {"tiny.yaml": doc})
    with pytest.raises(ProfileError) as caught:
        load_one(root)
    assert caught.value.code == code
    return caught.value


# --- a valid profile ---------------------------------------------------------------


def test_valid_profile_loads_with_templates_and_defaults(tmp_path: Path) -> None:
    loaded = load_one(write_layer_root(tmp_path))
    profile = loaded.profile
    assert [turn.turn_id for turn in profile.ordered_turns()] == ["gather", "refine"]
    assert profile.gate("notes_gate").gate_type == "schema_required_fields"
    assert profile.thread_policy.dedupe_key_fields == ["workflow_id", "target_node_id", "target_frame_id"]
    assert profile.thread_policy.max_turn_retries == 2
    assert profile.turn("gather").retry_limit == 1 and profile.turn("gather").timeout_ms == 120_000
    assert profile.artifact_policy.max_output_bytes == 262_144
    assert profile.failure_policy.mode == "stop_on_gate_fail"
    assert loaded.layer == "workspace"
    assert loaded.templates["gather"].text == FIRST_PROMPT
    assert loaded.templates["gather"].digest == digest_text(FIRST_PROMPT)
    assert loaded.system_prompts["gather"].text == SYSTEM_PROMPT
    assert loaded.system_prompts["refine"] is None


def test_turns_are_ordered_by_seq_not_file_order(tmp_path: Path) -> None:
    doc = profile_doc()
    doc["turns"].reverse()
    loaded = load_one(write_layer_root(tmp_path, {"tiny.yaml": doc}))
    assert [turn.seq for turn in loaded.profile.ordered_turns()] == [1, 2]


# --- one test per load failure code -------------------------------------------------


def test_bad_yaml_is_a_parse_error(tmp_path: Path) -> None:
    error = assert_load_fails(tmp_path, "workflow_id: [unclosed\n  title: x\n", "PROFILE_PARSE_ERROR")
    assert error.details["line"] is not None


def test_key_given_twice_is_a_parse_error(tmp_path: Path) -> None:
    text = yaml.safe_dump(profile_doc(), sort_keys=False).replace(
        "gate_id: notes_gate\n", "gate_id: notes_gate\n  gate_id: other\n", 1
    )
    assert text.count("gate_id: other") == 1
    error = assert_load_fails(tmp_path, text, "PROFILE_PARSE_ERROR")
    assert error.details["line"] is not None


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        (profile_doc(unexpected_key=1), "unexpected_key"),
        (profile_doc(workflow_id="Tiny-Flow"), "workflow_id"),
        (profile_doc(version=1.0), "version"),
        (with_turn_change(0, seq=0), "turns.0.seq"),
        (with_turn_change(1, output_format="html"), "turns.1.output_format"),
        (with_turn_change(0, timeout_ms=0), "turns.0.timeout_ms"),
        (with_turn_change(0, output_type="context"), "turns.0.output_type"),
        (with_turn_change(0, input_refs=["context", "context"]), "turns.0.input_refs"),
        (profile_doc(turns=[]), "turns"),
        (profile_doc(failure_policy={"mode": "ignore"}), "failure_policy.mode"),
    ],
)
def test_schema_violations_report_field_paths(tmp_path: Path, doc: dict[str, Any], field: str) -> None:
    error = assert_load_fails(tmp_path, doc, "PROFILE_SCHEMA_INVALID")
    assert field in error.details["fields"]


def test_missing_required_top_level_field_is_schema_invalid(tmp_path: Path) -> None:
    doc = profile_doc()
    del doc["gates"]
    error = assert_load_fails(tmp_path, doc, "PROFILE_SCHEMA_INVALID")
    assert error.details["fields"] == ["gates"]


def test_duplicate_workflow_id_within_one_layer_is_one_problem(tmp_path: Path) -> None:
    root = write_layer_root(tmp_path, {"a.yaml": profile_doc(), "b.yml": profile_doc(title="Again")})
    catalog = load_catalog([Layer("workspace", root)])
    assert [problem.error.code for problem in catalog.problems] == ["PROFILE_DUPLICATE_WORKFLOW_ID"]
    assert len(catalog.problems[0].error.details["paths"]) == 2
    assert catalog.problems[0].path.name == "b.yml"
    # The first file by path is kept.
    assert catalog.get("tiny_flow").profile.title == "Tiny flow"


def test_missing_prompt_file_is_unresolved(tmp_path: Path) -> None:
    assert_load_fails(
        tmp_path, with_turn_change(1, prompt_ref="prompts/absent.md"), "PROFILE_UNRESOLVED_PROMPT_REF"
    )


def test_missing_system_prompt_file_is_unresolved(tmp_path: Path) -> None:
    assert_load_fails(
        tmp_path, with_turn_change(0, system_prompt_ref="prompts/nope.md"), "PROFILE_UNRESOLVED_PROMPT_REF"
    )


@pytest.mark.parametrize("ref", ["../outside.md", "OUTSIDE_ABSOLUTE"])
def test_prompt_outside_the_layer_root_is_unresolved(tmp_path: Path, ref: str) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("{{ target_path }}\n", encoding="utf-8")
    ref = str(outside) if ref == "OUTSIDE_ABSOLUTE" else ref
    assert_load_fails(tmp_path, with_turn_change(0, prompt_ref=ref), "PROFILE_UNRESOLVED_PROMPT_REF")


def test_duplicate_seq_fails(tmp_path: Path) -> None:
    error = assert_load_fails(tmp_path, with_turn_change(1, seq=1), "PROFILE_DUPLICATE_SEQ")
    assert error.details["repeated"] == [1]


def test_duplicate_turn_id_fails(tmp_path: Path) -> None:
    assert_load_fails(tmp_path, with_turn_change(1, turn_id="gather"), "PROFILE_DUPLICATE_TURN_ID")


def test_duplicate_output_type_fails(tmp_path: Path) -> None:
    assert_load_fails(
        tmp_path,
        with_turn_change(1, output_type="notes", input_refs=["context"]),
        "PROFILE_DUPLICATE_OUTPUT_TYPE",
    )


def test_duplicate_gate_id_fails(tmp_path: Path) -> None:
    doc = profile_doc()
    doc["gates"].append({"gate_id": "notes_gate", "gate_type": "required_sections"})
    assert_load_fails(tmp_path, doc, "PROFILE_DUPLICATE_GATE_ID")


def test_unknown_gate_type_fails(tmp_path: Path) -> None:
    doc = profile_doc(gates=[{"gate_id": "notes_gate", "gate_type": "looks_fine_to_me"}])
    error = assert_load_fails(tmp_path, doc, "PROFILE_UNKNOWN_GATE_TYPE")
    assert error.details["gate_type"] == "looks_fine_to_me"


def test_turn_naming_an_undeclared_gate_fails(tmp_path: Path) -> None:
    error = assert_load_fails(tmp_path, with_turn_change(1, gate_id="final_gate"), "PROFILE_UNDECLARED_GATE")
    assert error.details["turn_id"] == "refine"


@pytest.mark.parametrize(
    "doc",
    [
        with_turn_change(1, input_refs=["never_made"]),
        # An output of the same or a later turn is not available yet.
        with_turn_change(0, input_refs=["context", "final_text"]),
        with_turn_change(1, input_refs=["final_text"]),
    ],
)
def test_input_ref_nothing_earlier_produces_fails(tmp_path: Path, doc: dict[str, Any]) -> None:
    assert_load_fails(tmp_path, doc, "PROFILE_UNRESOLVED_INPUT_REF")


def test_template_that_does_not_parse_fails(tmp_path: Path) -> None:
    root = write_layer_root(tmp_path)
    (root / "prompts" / "refine.md").write_text("{% if inputs.notes %}unterminated\n", encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_one(root)
    assert caught.value.code == "PROFILE_TEMPLATE_SYNTAX"
    assert caught.value.details["turn_id"] == "refine"


def test_template_that_is_not_utf8_fails_as_syntax(tmp_path: Path) -> None:
    root = write_layer_root(tmp_path)
    (root / "prompts" / "refine.md").write_bytes(b"caf\xe9 {{ target_path }}\n")
    with pytest.raises(ProfileError) as caught:
        load_one(root)
    assert caught.value.code == "PROFILE_TEMPLATE_SYNTAX"


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("{{ api_key }}\n", "api_key"),
        # refine reads only "notes"; the context is not one of its inputs.
        ("{{ inputs.context }}\n", "inputs.context"),
        ("{{ inputs['context'] }}\n", "inputs.context"),
    ],
)
def test_template_reading_what_the_turn_does_not_get_fails_at_load(
    tmp_path: Path, template: str, name: str
) -> None:
    root = write_layer_root(tmp_path)
    (root / "prompts" / "refine.md").write_text(template, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_one(root)
    assert caught.value.code == "PROFILE_TEMPLATE_UNDEFINED"
    assert caught.value.details["names"] == [name]


def test_template_may_iterate_over_inputs(tmp_path: Path) -> None:
    root = write_layer_root(tmp_path)
    (root / "prompts" / "refine.md").write_text(
        "{% for key, text in inputs.items() %}{{ key }}={{ text }}{% endfor %}\n", encoding="utf-8"
    )
    assert load_one(root).templates["refine"].text.startswith("{% for")


def test_final_artifact_type_must_be_an_output_type(tmp_path: Path) -> None:
    assert_load_fails(
        tmp_path, profile_doc(final_artifact_type="context"), "PROFILE_UNKNOWN_FINAL_ARTIFACT_TYPE"
    )


def test_unknown_workflow_id_is_not_found(tmp_path: Path) -> None:
    catalog = load_catalog([Layer("workspace", write_layer_root(tmp_path))])
    with pytest.raises(ProfileError) as caught:
        catalog.get("no_such_flow")
    assert caught.value.code == "PROFILE_NOT_FOUND"


def test_code_version_of_unknown_turn_fails(tmp_path: Path) -> None:
    loaded = load_one(write_layer_root(tmp_path))
    with pytest.raises(ProfileError) as caught:
        loaded.turn_code_version("no_such_turn")
    assert caught.value.code == "PROFILE_UNKNOWN_TURN"


# --- layers ------------------------------------------------------------------------


def three_layers(tmp_path: Path) -> list[Layer]:
    layers = []
    for name in ("workspace", "user", "builtin"):
        root = write_layer_root(tmp_path / name, {"tiny.yaml": profile_doc(title=f"Tiny from {name}")})
        layers.append(Layer(name, root))
    # A profile only the built-in layer defines.
    (tmp_path / "builtin" / "profiles" / "other.yaml").write_text(
        yaml.safe_dump(profile_doc(workflow_id="other_flow")), encoding="utf-8"
    )
    return layers


def test_workspace_beats_user_beats_builtin(tmp_path: Path) -> None:
    workspace, user, builtin = three_layers(tmp_path)

    catalog = load_catalog([workspace, user, builtin])
    assert catalog.get("tiny_flow").layer == "workspace"
    assert catalog.get("tiny_flow").profile.title == "Tiny from workspace"
    assert [(p.workflow_id, p.layer) for p in catalog.all()] == [
        ("other_flow", "builtin"),
        ("tiny_flow", "workspace"),
    ]
    assert sorted((s.workflow_id, s.layer) for s in catalog.shadowed) == [
        ("tiny_flow", "builtin"),
        ("tiny_flow", "user"),
    ]

    without_workspace = load_catalog([user, builtin])
    assert without_workspace.get("tiny_flow").layer == "user"
    assert without_workspace.get("tiny_flow").profile.title == "Tiny from user"

    assert load_catalog([builtin]).get("tiny_flow").layer == "builtin"


def test_a_broken_shadowed_profile_is_reported_as_a_problem(tmp_path: Path) -> None:
    workspace, user, builtin = three_layers(tmp_path)
    (tmp_path / "user" / "profiles" / "tiny.yaml").write_text(
        yaml.safe_dump(with_turn_change(1, seq=1)), encoding="utf-8"
    )
    catalog = load_catalog([workspace, user, builtin])
    assert [(p.layer, p.error.code) for p in catalog.problems] == [("user", "PROFILE_DUPLICATE_SEQ")]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("workflow_id: [unclosed\n", "PROFILE_PARSE_ERROR"),
        ("workflow_id: broken_flow\nturns: 3\n", "PROFILE_SCHEMA_INVALID"),
    ],
)
@pytest.mark.parametrize("bad_layer", ["workspace", "user", "builtin"])
def test_one_bad_file_in_any_layer_leaves_every_other_profile_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, code: str, bad_layer: str
) -> None:
    layers = {
        "workspace": write_layer_root(tmp_path / "ws", {"ws.yaml": profile_doc(workflow_id="ws_flow")}),
        "user": write_layer_root(tmp_path / "user", {"user.yaml": profile_doc(workflow_id="user_flow")}),
        "builtin": write_layer_root(tmp_path / "b", {"b.yaml": profile_doc(workflow_id="builtin_flow")}),
    }
    bad = layers[bad_layer] / "profiles" / "aaa_broken.yaml"
    bad.write_text(text, encoding="utf-8")
    with caplog.at_level("WARNING", logger="wf_pipeline.profiles.loader"):
        catalog = load_catalog([Layer(name, root) for name, root in layers.items()])  # type: ignore[arg-type]
    assert sorted(catalog.profiles) == ["builtin_flow", "user_flow", "ws_flow"]
    assert [(p.path, p.layer, p.error.code) for p in catalog.problems] == [(bad, bad_layer, code)]
    assert any(
        record.getMessage().startswith(f"{code}: ") and str(bad) in record.getMessage()
        for record in caplog.records
    )
    with pytest.raises(ProfileError) as caught:
        catalog.get("broken_flow")
    assert caught.value.code == "PROFILE_NOT_FOUND"
    assert str(bad) in caught.value.message


def test_relative_prompt_refs_resolve_against_their_own_layer_root(tmp_path: Path) -> None:
    workspace = write_layer_root(tmp_path / "ws", {"other.yaml": profile_doc(workflow_id="other_flow")})
    user = write_layer_root(tmp_path / "user")
    (user / "prompts" / "gather.md").write_text("User layer {{ target_path }}\n", encoding="utf-8")

    catalog = load_catalog([Layer("workspace", workspace), Layer("user", user)])
    assert catalog.get("tiny_flow").templates["gather"].text == "User layer {{ target_path }}\n"
    assert catalog.get("other_flow").templates["gather"].text == FIRST_PROMPT


def test_layer_without_profiles_directory_contributes_nothing(tmp_path: Path) -> None:
    catalog = load_catalog(
        [Layer("user", tmp_path / "missing"), Layer("builtin", write_layer_root(tmp_path / "b"))]
    )
    assert [p.layer for p in catalog.all()] == ["builtin"]


def test_default_layers_order_user_dir_and_dedupe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    settings = Settings.from_env({"WF_HOME": str(tmp_path / "home"), "WF_BUILTIN_ROOT": str(repo)})

    layers = default_layers(settings, tmp_path / "ws", env={"WF_CONFIG_DIR": str(tmp_path / "cfg")})
    assert [(layer.name, layer.root) for layer in layers] == [
        ("workspace", (tmp_path / "ws").resolve()),
        ("user", (tmp_path / "cfg").resolve()),
        ("builtin", repo.resolve()),
    ]

    # The repository root as workspace is loaded once, as the workspace layer.
    same_root = default_layers(settings, repo, env={"WF_CONFIG_DIR": str(tmp_path / "cfg")})
    assert [layer.name for layer in same_root] == ["workspace", "user"]

    monkeypatch.setenv("HOME", str(tmp_path / "userhome"))
    default_user = default_layers(settings, tmp_path / "ws", env={})
    assert default_user[1].root == (tmp_path / "userhome" / ".config" / "wf").resolve()


# --- artifact-id prompt refs ----------------------------------------------------------


def test_artifact_id_prompt_ref_resolves_through_the_reader(tmp_path: Path) -> None:
    stored = {digest_text(text): text.encode("utf-8") for text in (SECOND_PROMPT, SYSTEM_PROMPT)}
    requested: list[str] = []

    def reader(artifact_id: str) -> bytes:
        requested.append(artifact_id)
        try:
            return stored[artifact_id]
        except KeyError:
            raise CasError("CAS_NOT_FOUND", f"no {artifact_id}") from None

    doc = with_turn_change(
        1, prompt_ref=digest_text(SECOND_PROMPT), system_prompt_ref=digest_text(SYSTEM_PROMPT)
    )
    loaded = load_one(write_layer_root(tmp_path, {"tiny.yaml": doc}), artifact_reader=reader)
    assert loaded.templates["refine"].text == SECOND_PROMPT
    assert loaded.templates["refine"].digest == digest_text(SECOND_PROMPT)
    assert loaded.system_prompts["refine"].text == SYSTEM_PROMPT
    assert sorted(requested) == sorted(stored)

    # Same prompt bytes by file or by artifact id: same code version for that turn.
    by_file = load_one(
        write_layer_root(
            tmp_path / "files", {"tiny.yaml": with_turn_change(1, system_prompt_ref="prompts/system.md")}
        )
    )
    assert by_file.turn_code_version("refine") == loaded.turn_code_version("refine")


@pytest.mark.parametrize("situation", ["no_reader", "not_stored", "wrong_bytes", "malformed_id"])
def test_artifact_id_prompt_ref_that_does_not_resolve(tmp_path: Path, situation: str) -> None:
    ref = digest_text(SECOND_PROMPT)
    readers = {
        "no_reader": None,
        "not_stored": lambda artifact_id: (_ for _ in ()).throw(CasError("CAS_NOT_FOUND", artifact_id)),
        "wrong_bytes": lambda artifact_id: b"something else entirely\n",
        "malformed_id": lambda artifact_id: SECOND_PROMPT.encode(),
    }
    if situation == "malformed_id":
        ref = "sha256:abc"
    root = write_layer_root(tmp_path, {"tiny.yaml": with_turn_change(1, prompt_ref=ref)})
    with pytest.raises(ProfileError) as caught:
        load_one(root, artifact_reader=readers[situation])
    assert caught.value.code == "PROFILE_UNRESOLVED_PROMPT_REF"


# --- code versions -----------------------------------------------------------------


def test_code_version_changes_with_prompt_text_only(tmp_path: Path) -> None:
    root = write_layer_root(tmp_path / "a")
    before = load_one(root)
    assert before.code_version.startswith("1.2.3-")
    assert len(before.code_version) == len("1.2.3-") + 12

    # Same prompts elsewhere, different title, another layer, CRLF line endings: unchanged.
    elsewhere = write_layer_root(tmp_path / "b", {"tiny.yaml": profile_doc(title="Renamed")})
    (elsewhere / "prompts" / "gather.md").write_bytes(FIRST_PROMPT.replace("\n", "\r\n").encode())
    moved = load_profile_file(elsewhere / "profiles" / "tiny.yaml", Layer("builtin", elsewhere))
    assert moved.code_version == before.code_version
    assert moved.turn_code_version("gather") == before.turn_code_version("gather")

    (root / "prompts" / "refine.md").write_text(SECOND_PROMPT + "Be brief.\n", encoding="utf-8")
    after_prompt = load_one(root)
    assert after_prompt.code_version != before.code_version
    assert after_prompt.turn_code_version("refine") != before.turn_code_version("refine")
    assert after_prompt.turn_code_version("gather") == before.turn_code_version("gather")

    (root / "prompts" / "system.md").write_text("You write terse documentation.\n", encoding="utf-8")
    after_system = load_one(root)
    assert after_system.code_version != after_prompt.code_version
    assert after_system.turn_code_version("gather") != after_prompt.turn_code_version("gather")


def test_code_version_follows_the_profile_version(tmp_path: Path) -> None:
    first = load_one(write_layer_root(tmp_path / "a"))
    bumped = load_one(write_layer_root(tmp_path / "b", {"tiny.yaml": profile_doc(version="1.3.0")}))
    assert bumped.code_version.startswith("1.3.0-")
    assert bumped.code_version.split("-")[1] == first.code_version.split("-")[1]


# --- summaries for the CLI ------------------------------------------------------------


def test_load_profile_file_without_layer_uses_the_folder_above_profiles(tmp_path: Path) -> None:
    root = write_layer_root(tmp_path)
    loaded = load_profile_file(root / "profiles" / "tiny.yaml")
    assert loaded.layer == "workspace"
    assert loaded.templates["gather"].text == FIRST_PROMPT
    named = load_profile_file(root / "profiles" / "tiny.yaml", "user")
    assert named.layer == "user"
    assert named.code_version == loaded.code_version


def test_describe_lists_turns_gates_and_digests_without_prompt_text(tmp_path: Path) -> None:
    loaded = load_one(write_layer_root(tmp_path))
    summary = describe(loaded)
    assert summary["workflow_id"] == "tiny_flow"
    assert summary["layer"] == "workspace"
    assert summary["code_version"] == loaded.code_version
    assert [
        (t["seq"], t["turn_id"], t["input_refs"], t["output_type"], t["gate_id"]) for t in summary["turns"]
    ] == [
        (1, "gather", ["context"], "notes", "notes_gate"),
        (2, "refine", ["notes"], "final_text", None),
    ]
    assert summary["turns"][0]["prompt_digest"] == digest_text(FIRST_PROMPT)
    assert summary["gates"][0]["gate_type"] == "schema_required_fields"
    assert "Summarise" not in repr(summary)


def test_validate_report_for_good_and_bad_files(tmp_path: Path) -> None:
    good_root = write_layer_root(tmp_path / "good")
    bad_root = write_layer_root(tmp_path / "bad", {"tiny.yaml": with_turn_change(1, seq=1)})

    good = validate_report(good_root / "profiles" / "tiny.yaml")
    assert good["ok"] is True and good["workflow_id"] == "tiny_flow"

    bad = validate_report(bad_root / "profiles" / "tiny.yaml")
    assert bad["ok"] is False and bad["error"]["code"] == "PROFILE_DUPLICATE_SEQ"
