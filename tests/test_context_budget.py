"""Directories of any size: profile budgets, the load-time worst case, fitted contexts,
offline outputs within max_output_bytes, and errors that would repeat are not retried."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT, isolated_settings

from wf_pipeline.errors import ProfileError, WfError
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.payloads import ContextPayload
from wf_pipeline.profiles.loader import Layer, load_profile_file
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.providers.offline import json_text
from wf_pipeline.runtime import RuntimeEnv, plan_run, run_turn
from wf_pipeline.service import resume_thread, run_workflow
from wf_pipeline.text.tokens import count_tokens
from wf_pipeline.tree import build_context, context_extractor, context_json_text, scan_tree
from wf_pipeline.tree.context import file_priority
from wf_pipeline.workflows import load_builtin_workflows
from wf_pipeline.workflows.docs_writer.context_extract import context_extract, python_extract
from wf_pipeline.workflows.docs_writer.extract import file_findings
from wf_pipeline.workflows.docs_writer.offline import build_evidence_map, fitted_readme_struct
from wf_pipeline.workflows.docs_writer.render import render_readme
from wf_pipeline.workflows.docs_writer.verify import verify_evidence_map

load_builtin_workflows()

WORKFLOW = "docs_writer_thread_v1"
SHIPPED = REPO_ROOT / "profiles" / "docs_writer_thread_v1.yaml"

MODULE = '''"""Tools for {name}: parse and render records."""

import os
from typing import Any

__all__ = ["parse_{name}", "Renderer{name}"]


def parse_{name}(text: str, *, strict: bool = False) -> dict[str, Any]:
    """Parse one record of {name} from text."""
    values = {{}}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    if strict and not values:
        raise ValueError("empty")
    return values


class Renderer{name}:
    """Render records of {name} as lines."""

    def render(self, values: dict[str, Any]) -> str:
        return os.linesep.join(f"{{k}}={{v}}" for k, v in sorted(values.items()))

    def _private(self) -> None:
        pass


if __name__ == "__main__":
    print(parse_{name}("a=1"))
'''


def make_tree(root: Path, modules: int = 12) -> Path:
    """A package of ``modules`` modules, an __init__, a README and a data file."""
    package = root / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""The pkg package: records in and out."""\n', encoding="utf-8")
    (package / "README.md").write_text(
        "# pkg\n\nReads and writes records.\n\n## Usage\n\n- call `parse_m00`\n\n" + "filler line\n" * 200,
        encoding="utf-8",
    )
    (package / "data.csv").write_text("key,value\n" + "k,v\n" * 500, encoding="utf-8")
    for index in range(modules):
        (package / f"m{index:02d}.py").write_text(MODULE.format(name=f"m{index:02d}"), encoding="utf-8")
    return package


def payload_bytes(payload: ContextPayload) -> int:
    return len(context_json_text(payload).encode("utf-8"))


# --- the load-time worst case -------------------------------------------------------------


def write_profile(root: Path, **policy: int) -> Path:
    """The shipped docs writer profile with ``policy`` over its artifact_policy, as a workspace layer."""
    doc = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    doc["artifact_policy"].update(policy)
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    if not (root / "assets").exists():
        shutil.copytree(REPO_ROOT / "assets" / "prompts", root / "assets" / "prompts")
    path = root / "profiles" / "docs_writer_thread_v1.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_the_loader_refuses_a_prompt_budget_below_a_turns_worst_case(tmp_path):
    path = write_profile(tmp_path, max_prompt_bytes=600_000)
    with pytest.raises(ProfileError) as caught:
        load_profile_file(path, Layer("workspace", tmp_path))
    error = caught.value
    assert error.code == "PROFILE_BUDGET_TOO_SMALL"
    # verification reads context (393216) + evidence_map (262144) + its templates: over 600000.
    assert error.details["turn_id"] == "verification"
    assert error.details["limit"] == 600_000
    assert error.details["input_bytes"] == {"context": 393_216, "evidence_map": 262_144}
    assert error.details["size"] == 393_216 + 262_144 + error.details["template_bytes"]
    assert "600000" in error.message and str(error.details["size"]) in error.message


def test_a_template_that_repeats_an_input_counts_it_each_time(tmp_path):
    path = write_profile(tmp_path)
    prompt = tmp_path / "assets" / "prompts" / "docs_writer" / "evidence_gather.md"
    text = prompt.read_text(encoding="utf-8")
    prompt.write_text(text + "\n{{ inputs.context }}\n{{ inputs.context | upper }}\n", encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile_file(path, Layer("workspace", tmp_path))
    assert caught.value.code == "PROFILE_BUDGET_TOO_SMALL"
    assert caught.value.details["turn_id"] == "evidence_gather"
    # Inserted twice as it is, once transformed: three times the context budget.
    assert caught.value.details["input_bytes"] == {"context": 3 * 393_216}


def test_the_defaults_fit_and_a_smaller_context_budget_makes_room(tmp_path):
    defaults = load_profile_file(write_profile(tmp_path), Layer("workspace", tmp_path))
    assert defaults.profile.artifact_policy.max_context_bytes == 393_216
    # The same 600000 prompt budget loads once the context and outputs are smaller.
    smaller = load_profile_file(
        write_profile(
            tmp_path, max_prompt_bytes=600_000, max_context_bytes=200_000, max_output_bytes=100_000
        ),
        Layer("workspace", tmp_path),
    )
    assert smaller.profile.artifact_policy.max_prompt_bytes == 600_000


def test_max_context_tokens_must_hold_the_prompt_and_the_output(tmp_path):
    path = write_profile(tmp_path, max_context_tokens=131_072)
    with pytest.raises(ProfileError) as caught:
        load_profile_file(path, Layer("workspace", tmp_path))
    assert caught.value.code == "PROFILE_BUDGET_TOO_SMALL"
    assert caught.value.details["size"] == 1_048_576 + 262_144
    assert caught.value.details["limit"] == 131_072
    small = write_profile(
        tmp_path,
        max_context_tokens=131_072,
        max_prompt_bytes=98_304,
        max_context_bytes=40_000,
        max_output_bytes=16_384,
    )
    load_profile_file(small, Layer("workspace", tmp_path))


def test_a_named_tokenizer_counts_prompts_offline_instead_of_bounding_them_by_bytes(tmp_path):
    # The window of a 128k-token model: by bytes alone the default budgets cannot fit it
    # (above); counted with a real encoding, only the output's bound must leave room.
    load_profile_file(
        write_profile(tmp_path, max_context_tokens=131_072, tokenizer="o200k_base", max_output_bytes=16_384),
        Layer("workspace", tmp_path),
    )
    with pytest.raises(ProfileError) as caught:
        load_profile_file(
            write_profile(
                tmp_path, max_context_tokens=200_000, tokenizer="o200k_base", max_output_bytes=200_000
            ),
            Layer("workspace", tmp_path),
        )
    assert caught.value.code == "PROFILE_BUDGET_TOO_SMALL"
    assert count_tokens("hello world", "o200k_base") == 2
    assert count_tokens("hello world", "cl100k_base") == 2
    source = (REPO_ROOT / "wf_pipeline" / "runtime" / "turn.py").read_text(encoding="utf-8")
    assert count_tokens(source, "o200k_base") < len(source.encode("utf-8")) / 3


def test_a_prompt_over_the_token_window_is_refused_before_any_call(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    package = make_tree(tmp_path / "src", modules=3)
    provider = NondeterministicOffline()
    with RuntimeEnv.open(settings, provider=provider) as env:
        loaded = env.catalog.get(WORKFLOW)
        policy = loaded.profile.artifact_policy.model_copy(
            update={"max_context_tokens": 3_000, "tokenizer": "o200k_base", "max_output_bytes": 1_000}
        )
        loaded = dataclasses.replace(
            loaded, profile=loaded.profile.model_copy(update={"artifact_policy": policy})
        )
        (thread_plan,) = plan_run(env, loaded, scan_tree(package)).threads
        thread = env.records.get_thread(thread_plan.thread.thread_id)
        with pytest.raises(WfError) as caught:
            run_turn(env, loaded, thread, thread_plan.target, "evidence_gather")
    error = caught.value
    assert error.code == "METADATA_BUDGET_EXCEEDED"
    assert error.details["budget"] == "max_context_tokens" and error.details["limit"] == 3_000
    assert error.details["size"] == error.details["prompt_tokens"] + 1_000 > 3_000
    assert f"{error.details['prompt_tokens']} tokens (o200k_base)" in error.message
    assert provider.calls == 0


def test_budgets_are_not_part_of_the_code_version(tmp_path):
    base = load_profile_file(write_profile(tmp_path), Layer("workspace", tmp_path))
    raised = load_profile_file(
        write_profile(tmp_path, max_output_bytes=300_000, max_prompt_bytes=2_000_000),
        Layer("workspace", tmp_path),
    )
    assert base.code_version == raised.code_version


# --- fitting the context --------------------------------------------------------------------


def test_a_context_that_fits_carries_whole_files(tmp_path):
    package = make_tree(tmp_path, modules=2)
    scan = scan_tree(package)
    whole = build_context(scan, ".", {})
    fitted = build_context(scan, ".", {}, max_bytes=payload_bytes(whole), extractor=context_extract)
    assert fitted == whole
    assert not any(f.extracted or f.omitted for f in fitted.files)


def test_over_budget_the_largest_files_become_extracts_of_their_own_lines(tmp_path):
    package = make_tree(tmp_path)
    scan = scan_tree(package)
    whole = build_context(scan, ".", {})
    budget = payload_bytes(whole) * 2 // 3
    fitted = build_context(scan, ".", {}, max_bytes=budget, extractor=context_extract)
    assert payload_bytes(fitted) <= budget
    extracted = [f for f in fitted.files if f.extracted]
    assert extracted and not any(f.omitted for f in fitted.files)
    for file in extracted:
        original = whole.file(file.path).text
        # Whole lines of the file, in order ("..." stands for a left-out body).
        lines = [line for line in file.text.splitlines() if line.strip() != "..."]
        assert all(line in original.splitlines() for line in lines)
        assert len(file.text) < len(original)
    # The largest files went first: the data file and the README are among the extracts.
    assert {"data.csv", "README.md"} <= {f.name for f in extracted}


def test_python_extracts_give_the_same_findings_as_the_whole_module():
    text = MODULE.format(name="m01")
    extract = python_extract(text)
    assert extract is not None and len(extract) < len(text)
    compile(extract, "extract", "exec")  # still Python
    assert "    return values" not in extract
    assert "def parse_m01(text: str, *, strict: bool = False) -> dict[str, Any]:" in extract

    def findings(source: str) -> list[tuple[str | None, str | None, str]]:
        from wf_pipeline.metadata.payloads import ContextFile

        file = ContextFile(path="m01.py", name="m01.py", size=len(source), text=source)
        return [(f.symbol, f.quote, f.statement) for f in file_findings(file)]

    assert findings(extract) == findings(text)
    # A module with nothing public (a data table) is described by its first line, whole or extracted.
    table = "TABLE = {\n" + "".join(f"    {i}: {i * i},\n" for i in range(200)) + "}\n"
    assert python_extract(table) == "TABLE = {\n"
    assert findings(python_extract(table)) == findings(table) != []


def test_over_even_the_extracts_a_deterministic_selection_keeps_entry_points_first(tmp_path):
    package = make_tree(tmp_path)
    scan = scan_tree(package)
    all_extracted = build_context(scan, ".", {}, max_bytes=10_000, extractor=context_extract)
    budget = 3_000
    first = build_context(scan, ".", {}, max_bytes=budget, extractor=context_extract)
    again = build_context(scan_tree(package), ".", {}, max_bytes=budget, extractor=context_extract)
    assert context_json_text(first) == context_json_text(again)
    assert payload_bytes(first) <= budget
    omitted = [f.name for f in first.files if f.omitted == "budget"]
    kept = [f.name for f in first.files if f.text is not None]
    assert omitted and kept
    # Entry points and documentation first: __init__.py and README.md are kept.
    assert {"__init__.py", "README.md"} <= set(kept)
    assert all(file_priority(name) == 1 for name in omitted)
    assert len(all_extracted.files) == len(first.files)  # every file is still listed by name


def test_a_directory_whose_names_alone_are_over_budget_fails_with_the_figures(tmp_path):
    package = make_tree(tmp_path)
    with pytest.raises(WfError) as caught:
        build_context(scan_tree(package), ".", {}, max_bytes=200, extractor=context_extract)
    assert caught.value.code == "METADATA_BUDGET_EXCEEDED"
    assert caught.value.details["limit"] == 200
    assert caught.value.details["size"] > 200


def test_child_readmes_become_extracts_and_are_cited_from_them(tmp_path):
    root = tmp_path / "tree"
    for index in range(4):
        (root / f"child{index}").mkdir(parents=True)
        (root / f"child{index}" / "a.py").write_text('"""A."""\n', encoding="utf-8")
    frame = "# child\n\nDoes child things.\n\n## Scope\n\n" + "".join(f"- `f{i}.py`\n" for i in range(300))
    frames = {f"child{i}": frame for i in range(4)}
    scan = scan_tree(root)
    whole = build_context(scan, ".", frames)
    fitted = build_context(scan, ".", frames, max_bytes=payload_bytes(whole) // 6, extractor=context_extract)
    assert all(c.extracted and c.head_frame for c in fitted.children)
    evidence_map = build_evidence_map(fitted)
    report = verify_evidence_map(evidence_map, fitted)
    assert len(report.verified_claims) == 4 and not report.rejected_claims


# --- offline outputs within max_output_bytes --------------------------------------------------


def test_offline_outputs_group_then_shorten_and_name_what_they_left_out(tmp_path):
    package = make_tree(tmp_path, modules=40)
    context = build_context(scan_tree(package), ".", {})
    full = build_evidence_map(context)
    full_size = len(canonical_json(full.model_dump(mode="json", exclude_none=True)))
    for limit in (full_size * 2 // 3, 4_000):
        evidence_map = build_evidence_map(context, limit)
        size = len(canonical_json(evidence_map.model_dump(mode="json", exclude_none=True)))
        assert size <= limit
        report = verify_evidence_map(evidence_map, context)
        assert report.verified_claims and not report.rejected_claims
        struct = fitted_readme_struct(evidence_map, report, context, limit)
        assert struct is not None
        readme = render_readme(struct)
        assert len(readme.encode("utf-8")) <= limit
    # Grouped: one API claim per module instead of two.
    grouped = build_evidence_map(context, full_size * 2 // 3)
    assert grouped.undescribed_paths is None
    assert len(grouped.claims) < len(full.claims)
    # One claim per path: every file still described, by its first claim.
    one_each = build_evidence_map(context, len(json_text(grouped).encode("utf-8")) - 1)
    assert one_each.undescribed_paths is None
    assert len(one_each.claims) == len({c.evidence_path for c in full.claims})
    # Shortened: whole modules left out and named, entry points kept.
    short = build_evidence_map(context, 4_000)
    assert short.undescribed_paths
    cited = {c.evidence_path for c in short.claims}
    assert "__init__.py" in cited and "README.md" in cited
    assert not cited & set(short.undescribed_paths)
    readme = render_readme(fitted_readme_struct(short, verify_evidence_map(short, context), context, 4_000))
    assert "not described (output limit)" in readme


# --- errors that would repeat are not retried --------------------------------------------------


class NondeterministicOffline:
    """The offline turns behind a provider that does not declare itself deterministic."""

    provider_type = "offline"
    model = "offline-v1"

    def __init__(self) -> None:
        self._inner = create_provider("offline")
        self.calls = 0

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        return self._inner.complete(request)


@pytest.mark.parametrize(("provider_factory", "attempts"), [(lambda: None, 1), (NondeterministicOffline, 2)])
def test_an_output_too_large_is_retried_only_for_a_provider_that_may_answer_differently(
    tmp_path, monkeypatch, provider_factory, attempts
):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    package = make_tree(tmp_path / "src", modules=3)
    provider = provider_factory()
    env = RuntimeEnv.open(settings, provider=provider) if provider else RuntimeEnv.open(settings)
    with env:
        loaded = env.catalog.get(WORKFLOW)
        policy = loaded.profile.artifact_policy.model_copy(update={"max_output_bytes": 20})
        loaded = dataclasses.replace(
            loaded, profile=loaded.profile.model_copy(update={"artifact_policy": policy})
        )
        plan = plan_run(env, loaded, scan_tree(package))
        (thread_plan,) = plan.threads
        thread = env.records.get_thread(thread_plan.thread.thread_id)
        output = run_turn(env, loaded, thread, thread_plan.target, "evidence_gather")
        assert (output.status, output.error_code) == ("failed", "RUN_OUTPUT_TOO_LARGE")
        records = [
            r for r in env.records.turns_for_thread(thread.thread_id) if r.turn_id == "evidence_gather"
        ]
        assert [r.error_code for r in records] == ["RUN_OUTPUT_TOO_LARGE"] * attempts
        assert output.provider_calls == attempts


# --- end to end: tiny budgets, then a raised budget and resume -------------------------------


def test_tiny_budgets_document_a_directory_with_extracts_selection_and_the_omitted_list(
    tmp_path, monkeypatch
):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    monkeypatch.chdir(workspace)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    write_profile(workspace, max_context_bytes=3_000, max_output_bytes=6_000, max_prompt_bytes=40_000)
    package = make_tree(tmp_path / "src")
    summary = run_workflow(settings, WORKFLOW, package, workspace_dir=workspace)
    assert summary.ok, [(t.target, t.status) for t in summary.threads]
    (thread,) = summary.threads
    readme = Path(thread.output_path).read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 6_000
    assert "## Caveats" in readme
    assert "not included (budget)" in readme
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        (link, *_) = env.records.prompt_links_for_thread(thread.thread_id)
        context = json.loads(env.cas.get_text(link.context_artifact_id))
    assert context["schema"] == "wf.context.v3"
    assert len(canonical_json(context)) <= 3_000
    omitted = {f["name"] for f in context["files"] if f.get("omitted") == "budget"}
    assert omitted and "__init__.py" not in omitted
    for name in omitted:
        assert f"`{name}` — not included (budget)" in readme


@pytest.mark.parametrize("again", ["resume", "run"])
def test_a_thread_failed_on_a_budget_completes_once_the_budget_is_raised(tmp_path, monkeypatch, again):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    monkeypatch.chdir(workspace)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    write_profile(workspace, max_output_bytes=40)
    package = make_tree(tmp_path / "src", modules=2)
    failed = run_workflow(settings, WORKFLOW, package, workspace_dir=workspace)
    (thread,) = failed.threads
    assert thread.status == "failed"
    write_profile(workspace, max_output_bytes=262_144)
    if again == "resume":
        resumed = resume_thread(settings, thread.thread_id, workspace_dir=workspace)
    else:
        resumed = run_workflow(settings, WORKFLOW, package, workspace_dir=workspace)
    assert [t.status for t in resumed.threads] == ["completed"]
    assert [t.thread_id for t in resumed.threads] == [thread.thread_id]
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        records = env.records.turns_for_thread(thread.thread_id)
    first = [(r.attempt, r.error_code) for r in records if r.turn_id == "evidence_gather"]
    # One failed attempt (not retried: the offline provider would repeat it), then the same
    # thread (budgets are not part of its identity) completes on the raised budget.
    assert first == [(1, "RUN_OUTPUT_TOO_LARGE"), (2, None)]


def test_a_recorded_snapshot_over_a_lowered_context_budget_is_refused_not_used(tmp_path, monkeypatch):
    """Budgets are outside the code version, so a thread keeps its snapshot only while it fits."""
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    package = make_tree(tmp_path / "src", modules=3)
    with RuntimeEnv.open(settings) as env:
        loaded = env.catalog.get(WORKFLOW)
        (thread_plan,) = plan_run(env, loaded, scan_tree(package)).threads
        thread = env.records.get_thread(thread_plan.thread.thread_id)
        first = run_turn(env, loaded, thread, thread_plan.target, "evidence_gather")
        assert first.status == "completed"
        (link, *_) = env.records.prompt_links_for_thread(thread.thread_id)
        snapshot_size = env.cas.size(link.context_artifact_id)
        policy = loaded.profile.artifact_policy.model_copy(update={"max_context_bytes": snapshot_size - 1})
        lowered = dataclasses.replace(
            loaded, profile=loaded.profile.model_copy(update={"artifact_policy": policy})
        )
        thread = env.records.get_thread(thread.thread_id)
        with pytest.raises(WfError) as caught:
            run_turn(env, lowered, thread, thread_plan.target, "verification")
    assert caught.value.code == "METADATA_BUDGET_EXCEEDED"
    assert (caught.value.details["size"], caught.value.details["limit"]) == (snapshot_size, snapshot_size - 1)


def test_the_docs_writer_registers_its_extractor_and_a_second_one_is_refused():
    from wf_pipeline.tree import register_context_extractor

    assert context_extractor("readme") is context_extract
    register_context_extractor("readme", context_extract)  # the same one again: a no-op
    with pytest.raises(WfError) as caught:
        register_context_extractor("readme", lambda name, text: None)
    assert caught.value.code == "TREE_EXTRACTOR_DUPLICATE"
    assert context_extractor("no_such_frame_type") is None


def test_a_readme_structure_parses_each_heading_claim_once_however_many_files(tmp_path, monkeypatch):
    """Scope entries once parsed every claim's quote per file: 1,000 modules took minutes."""
    from wf_pipeline.workflows.docs_writer import render

    package = make_tree(tmp_path, modules=60)
    context = build_context(scan_tree(package), ".", {})
    evidence_map = build_evidence_map(context)
    report = verify_evidence_map(evidence_map, context)
    parsed: list[str] = []
    real = render.heading_level
    monkeypatch.setattr(render, "heading_level", lambda line: parsed.append(line) or real(line))
    struct = render.build_readme_struct(evidence_map, report, context)
    assert struct is not None and "README.md` — pkg" in struct.scope
    headings = [c for c in evidence_map.claims if c.kind == "heading"]
    assert headings and len(parsed) == len(headings)
