"""Tree identity, provider identity, fresh parents, names, and outputs from every launch path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest
from dagster._core.definitions.partitions.utils.base import raise_error_on_invalid_partition_key_substring
from dagster._core.definitions.partitions.utils.multi import INVALID_STATIC_PARTITIONS_KEY_CHARACTERS
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.cli.main import main as cli_main
from wf_pipeline.compiler import build_definitions, open_instance, resolve_job
from wf_pipeline.errors import (
    RUN_BAD_ARGUMENTS,
    RUN_NAME_UNREPRESENTABLE,
    RUN_UNKNOWN_TREE,
    ProviderError,
    RunError,
)
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.runtime import RuntimeEnv, ThreadIdentity
from wf_pipeline.runtime.targets import encode_name, target_key_for
from wf_pipeline.service import backfill, export_outputs, resume_thread, run_workflow, sync_targets
from wf_pipeline.text.names import code_span, display_name, escape_inline, unescape_inline
from wf_pipeline.tree.scan import TreeNode, TreeScan

WORKFLOW = "docs_writer_thread_v1"
NOTES = "architecture_notes_v1"


class Provider:
    """The offline provider under a chosen model name; fails every turn of the chosen target paths."""

    provider_type = "offline"

    def __init__(self, model: str = "offline-v1", fail_paths: frozenset[str] = frozenset()) -> None:
        self.model = model
        self._inner = create_provider("offline")
        self._fail_paths = fail_paths
        self.calls = 0

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        context = json.loads(request.inputs.get("context") or "{}")
        if context.get("target", {}).get("path") in self._fail_paths:
            raise ProviderError("PROVIDER_HTTP_ERROR", "refused for this target", retryable=False)
        response = self._inner.complete(request)
        return ProviderResponse(text=response.text, provider_type=self.provider_type, model=self.model)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


def _by_path(summary) -> dict:
    return {t.path: t for t in summary.threads}


# --- 1. identity ---------------------------------------------------------------------------


def test_trees_sharing_a_base_name_share_no_partition_thread_or_output_folder(settings, tmp_path):
    first = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "a" / "click")
    second = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "b" / "click")
    one = run_workflow(settings, WORKFLOW, first, provider=Provider())
    two = run_workflow(settings, WORKFLOW, second, provider=Provider())
    assert one.ok and two.ok
    assert {t.target for t in one.threads}.isdisjoint(t.target for t in two.threads)
    assert {t.thread_id for t in one.threads}.isdisjoint(t.thread_id for t in two.threads)
    assert one.out_dir != two.out_dir
    assert Path(one.out_dir).name.startswith("click~") and Path(two.out_dir).name.startswith("click~")
    # The second tree ran its own threads. Its requests are the first tree's, byte for byte
    # (same files, same relative paths), so their recorded answers serve them.
    assert two.threads_reused == 0 and two.provider_calls == 0
    assert two.recorded_answers == 4 * len(two.threads)
    for summary in (one, two):
        assert all(Path(t.output_path).is_file() for t in summary.threads)
    # Both trees' partitions are on the instance.
    partitions = open_instance(settings).get_dynamic_partitions(f"{WORKFLOW}_targets")
    assert {t.target for t in (*one.threads, *two.threads)} <= set(partitions)


def test_a_copy_of_a_tree_under_another_name_is_titled_by_its_own_name(settings, tmp_path):
    alpha = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "alpha")
    beta = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "beta")
    first = run_workflow(settings, WORKFLOW, alpha, provider=Provider())
    second = run_workflow(settings, WORKFLOW, beta, provider=Provider())
    assert Path(first.threads[0].output_path).read_text().startswith("# alpha\n")
    assert Path(second.threads[0].output_path).read_text().startswith("# beta\n")


def test_switching_the_model_runs_anew_and_switching_back_reuses(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    offline = run_workflow(settings, WORKFLOW, tree, provider=Provider())
    other = run_workflow(settings, WORKFLOW, tree, provider=Provider(model="other-model"))
    back = run_workflow(settings, WORKFLOW, tree, provider=Provider())
    assert offline.ok and other.ok and back.ok
    assert other.threads_reused == 0 and other.provider_calls == 4 * len(other.threads)
    assert {t.thread_id for t in other.threads}.isdisjoint(t.thread_id for t in offline.threads)
    # Back to the first model: every thread, parents included, is the one it made.
    assert back.provider_calls == 0 and back.threads_reused == len(back.threads)
    assert [t.thread_id for t in back.threads] == [t.thread_id for t in offline.threads]


# --- 2. fresh parents -------------------------------------------------------------------------


def test_a_parent_runs_anew_when_a_failed_child_later_succeeds(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    first = run_workflow(settings, WORKFLOW, tree, provider=Provider(fail_paths=frozenset({"sensors"})))
    before = _by_path(first)
    assert before["sensors"].status == "failed" and before["."].status == "completed"
    assert "`sensors/` — no README available" in Path(before["."].output_path).read_text()

    resumed = resume_thread(settings, before["sensors"].thread_id, provider=Provider())
    assert resumed.ok and resumed.threads[0].thread_id == before["sensors"].thread_id

    second = run_workflow(settings, WORKFLOW, tree, provider=Provider())
    after = _by_path(second)
    assert second.ok
    # The child's output changed, so the parent is another thread, run with a fresh context.
    assert after["."].thread_id != before["."].thread_id
    assert not after["."].reused and after["storage"].reused and after["sensors"].reused
    assert second.provider_calls == 4
    root_readme = Path(after["."].output_path).read_text()
    assert "no README available" not in root_readme
    with RuntimeEnv.open(settings, provider=Provider()) as env:
        assert env.records.get_thread(after["."].thread_id).status == "completed"


def test_a_regenerated_child_gives_its_parent_a_new_thread(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    first = run_workflow(settings, WORKFLOW, tree, provider=Provider())
    (tree / "sensors" / "extra.py").write_text('"""One more sensor."""\n\n\ndef probe():\n    """Probe."""\n')
    second = run_workflow(settings, WORKFLOW, tree, provider=Provider())
    before, after = _by_path(first), _by_path(second)
    assert after["storage"].thread_id == before["storage"].thread_id and after["storage"].reused
    assert after["sensors"].thread_id != before["sensors"].thread_id
    assert after["."].thread_id != before["."].thread_id and not after["."].reused


# --- 3. names -----------------------------------------------------------------------------------

NAMES = [
    "with space",
    "ünïcødé 名前",
    "x...y",
    "[br],c|d",
    "tab\there",
    "bell\x07",
    "new\nline",
    "100%",
    "*star*_under_",
    "back`tick",
    "a\u2028b",
]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_encodes_to_a_valid_reversible_partition_key(name):
    encoded = encode_name(name)
    assert unquote(encoded) == name
    key = target_key_for(Path("/tmp/tree"), f"{name}/{name}")
    raise_error_on_invalid_partition_key_substring([key])  # Dagster's own check
    assert not INVALID_STATIC_PARTITIONS_KEY_CHARACTERS & set(key)
    assert "..." not in key


def test_a_name_that_is_not_utf8_is_refused_with_its_code():
    with pytest.raises(RunError) as caught:
        encode_name("bad\udcff")
    assert caught.value.code == RUN_NAME_UNREPRESENTABLE
    assert "bad\\udcff" in caught.value.message


@pytest.mark.parametrize("name", NAMES)
def test_names_in_titles_and_code_spans_stay_on_one_line_and_read_back(name):
    shown = display_name(name)
    assert "\n" not in shown and "\x07" not in shown and "\u2028" not in shown
    assert unescape_inline(escape_inline(shown)) == shown
    span = code_span(name)
    fence = span[: len(span) - len(span.lstrip("`"))]
    inner = span[len(fence) : -len(fence)]
    assert fence not in inner
    assert (inner[1:-1] if inner.startswith(" ") and inner.endswith(" ") else inner) == shown


def test_a_tree_of_awkward_names_gets_a_readme_for_every_directory(settings, tmp_path):
    root = tmp_path / "odd [tree], v1...2"
    root.mkdir()
    for name in NAMES:
        directory = root / name
        directory.mkdir()
        (directory / "mod.py").write_text(f'"""Module of {name!r}."""\n\n\ndef run():\n    """Run it."""\n')
    summary = run_workflow(settings, WORKFLOW, root, provider=Provider())
    by_path = _by_path(summary)
    assert summary.ok, [(t.path, t.status) for t in summary.threads]
    assert set(by_path) == {".", *NAMES}
    out = Path(summary.out_dir)
    for name in NAMES:
        readme = out / name / "README.md"
        assert by_path[name].output_path == str(readme) and readme.is_file()
        first_line = readme.read_text().splitlines()[0]
        assert unescape_inline(first_line) == f"# {display_name(name)}"
    partitions = open_instance(settings).get_dynamic_partitions(f"{WORKFLOW}_targets")
    assert {t.target for t in summary.threads} <= set(partitions)


# --- 4. outputs from every launch path ---------------------------------------------------------


def test_a_ui_launched_run_writes_the_readmes_where_sync_recorded(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    out = tmp_path / "docs-out"
    synced = sync_targets(settings, WORKFLOW, tree, out_dir=out)
    assert synced["out_dir"] == str(out.resolve()) and synced["in_place"] is False
    (key,) = synced["targets"]
    with RuntimeEnv.open(settings, provider=Provider()) as env:
        job = resolve_job(build_definitions(env.catalog, env), WORKFLOW)
        result = job.execute_in_process(
            instance=open_instance(settings),
            tags={ASSET_PARTITION_RANGE_START_TAG: key, ASSET_PARTITION_RANGE_END_TAG: key},
            raise_on_error=False,
        )
    assert result.success
    readme = out / "README.md"
    assert readme.is_file() and readme.read_text().startswith("# storage\n")


def test_backfill_writes_outputs_and_reports_its_folder(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    summary = backfill(settings, WORKFLOW, tree, provider=Provider())
    assert summary.ok and summary.out_dir is not None
    for thread in summary.threads:
        expected = Path(summary.out_dir) / ("" if thread.path == "." else thread.path) / "README.md"
        assert thread.output_path == str(expected) and expected.is_file()


def test_in_place_sync_makes_every_run_write_into_the_tree(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    sync_targets(settings, WORKFLOW, tree, in_place=True)
    summary = backfill(settings, WORKFLOW, tree, provider=Provider())
    assert summary.in_place and summary.out_dir == str(tree.resolve())
    assert (tree / "README.md").is_file() and (tree / "sensors" / "README.md").is_file()


def test_export_writes_the_latest_outputs_from_the_cas(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    summary = run_workflow(settings, WORKFLOW, tree, provider=Provider())
    target = tmp_path / "exported"
    exported = export_outputs(settings, str(tree), out_dir=target)
    assert exported["missing"] == []
    assert sorted(exported["written"]) == sorted(
        str(target / ("" if t.path == "." else t.path) / "README.md") for t in summary.threads
    )
    for thread in summary.threads:
        written = target / ("" if thread.path == "." else thread.path) / "README.md"
        assert written.read_bytes() == Path(thread.output_path).read_bytes()
    # By key too; an unknown name says so with its code.
    assert export_outputs(settings, summary.threads[-1].target, out_dir=target)["missing"] == []
    with pytest.raises(RunError) as caught:
        export_outputs(settings, "no-such-tree")
    assert caught.value.code == RUN_UNKNOWN_TREE


def test_export_of_a_root_only_workflow_covers_the_root_alone(settings, tmp_path):
    # Two workflows on one tree share its recorded targets; the architecture notes run on the
    # root only, so the directories below it are no missing output of theirs.
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    assert run_workflow(settings, WORKFLOW, tree).ok
    assert run_workflow(settings, NOTES, tree).ok
    target = tmp_path / "exported"
    notes = export_outputs(settings, str(tree), out_dir=target, workflow_id=NOTES)
    assert notes["missing"] == [] and notes["written"] == [str(target / "docs" / "ARCHITECTURE.md")]
    docs = export_outputs(settings, str(tree), out_dir=target)
    assert docs["workflow_id"] == WORKFLOW and docs["missing"] == [] and len(docs["written"]) == 3
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.md")) == [
        "README.md",
        "docs/ARCHITECTURE.md",
        "sensors/README.md",
        "storage/README.md",
    ]


def test_sync_refuses_contradicting_output_options(settings, tmp_path):
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    for options in ({"out_dir": tmp_path / "o", "in_place": True}, {"overwrite": True}):
        with pytest.raises(RunError) as caught:
            sync_targets(settings, WORKFLOW, tree, **options)
        assert caught.value.code == RUN_BAD_ARGUMENTS


def test_thread_identity_walks_a_deep_tree_without_recursion(settings, tmp_path):
    # A scan 1,000 directories deep, built directly: three stack frames a level would pass
    # Python's default recursion limit of 1,000 many times over.
    depth = 1_000
    paths = ["."] + ["/".join(["d"] * level) for level in range(1, depth + 1)]
    nodes = [
        TreeNode(
            node_id=f"node:{level}",
            path=path,
            name="d" if level else "deep",
            kind="dir",
            parent_path=None if level == 0 else paths[level - 1],
            depth=level,
            children=(paths[level + 1],) if level < depth else (f"{path}/m.py",),
        )
        for level, path in enumerate(paths)
    ]
    module = TreeNode(
        node_id="node:m",
        path=f"{paths[-1]}/m.py",
        name="m.py",
        kind="file",
        parent_path=paths[-1],
        depth=depth + 1,
    )
    scan = TreeScan(root=tmp_path, root_id="node:0", nodes=(*nodes, module))
    with RuntimeEnv.open(settings, provider=Provider()) as env:
        loaded = env.catalog.get(WORKFLOW)
        identity = ThreadIdentity(env, loaded, scan)
        root_id = identity.thread_id(".")
        assert root_id.startswith("thread:") and len({identity.thread_id(p) for p in paths}) == depth + 1


def test_cli_sync_records_the_output_folder_and_export_writes_there(settings, tmp_path, capsys):
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    out = tmp_path / "synced-out"
    assert cli_main(["targets", "sync", str(tree), "--out", str(out), "--json"]) == 0
    synced = json.loads(capsys.readouterr().out)
    assert synced["out_dir"] == str(out.resolve()) and synced["tree"].startswith("storage~")

    assert cli_main(["run", WORKFLOW, str(tree), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out_dir"] == str(out.resolve())
    assert (out / "README.md").read_text().startswith("# storage\n")

    exported = tmp_path / "exported"
    assert cli_main(["export", synced["tree"], "--out", str(exported), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == [str(exported / "README.md")]
    assert (exported / "README.md").read_bytes() == (out / "README.md").read_bytes()

    assert cli_main(["export", "nothing-like-it"]) == 1
    assert capsys.readouterr().err.startswith("RUN_UNKNOWN_TREE:")


def test_export_writes_the_latest_outputs_of_an_edited_moved_or_deleted_tree(settings, tmp_path, capsys):
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    assert cli_main(["run", WORKFLOW, str(tree), "--out", str(tmp_path / "out"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    produced = (tmp_path / "out" / "README.md").read_bytes()
    tree_key = summary["threads"][0]["target"].split("/")[0]

    # Edited after its run: the last run's outputs are still the latest ones.
    source = next(tree.rglob("*.py"))
    source.write_text(source.read_text() + "\n# edited\n")
    assert cli_main(["export", str(tree), "--out", str(tmp_path / "edited"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["missing"] == [] and report["written"] == [str(tmp_path / "edited" / "README.md")]

    # Moved, then deleted: named by its key, its outputs come from the CAS.
    moved = tmp_path / "moved"
    tree.rename(moved)
    assert cli_main(["export", tree_key, "--out", str(tmp_path / "moved-out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing"] == []
    shutil.rmtree(moved)
    assert cli_main(["export", tree_key, "--json"]) == 0  # into the place the run recorded
    assert json.loads(capsys.readouterr().out)["written"] == [str((tmp_path / "out" / "README.md").resolve())]
    for folder in ("edited", "moved-out", "out"):
        assert (tmp_path / folder / "README.md").read_bytes() == produced
