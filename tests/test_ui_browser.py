"""The Dagster UI in headless Chromium: a person sees the docs writer's graph and gates, adds a
target partition and materializes it, and the run lands in the shared instance, the CAS and
the tree's output folder; a person selects partitions of the replay asset and launches a
backfill, and every replay matches its records while nothing live changes."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, home_store
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from ui_support import (
    UI_ARTIFACTS,
    VENV_BIN,
    DagsterServices,
    dismiss_community_prompt,
    isolated_environment,
    launch_chromium,
    require_chromium,
    traced_on_failure,
)

from wf_pipeline.compiler.assets import segment_op_name
from wf_pipeline.compiler.definitions import build_definitions
from wf_pipeline.compiler.replay import REPLAY_CHECK, replay_asset_key
from wf_pipeline.compiler.telemetry import TELEMETRY_JOB
from wf_pipeline.profiles import default_layers, load_catalog
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.targets import target_key_for
from wf_pipeline.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.ui]

WORKFLOW = "docs_writer_thread_v1"
PARTITIONS = f"{WORKFLOW}_targets"
# The code location is named after the module workspace.yaml loads.
LOCATION = "wf_pipeline.definitions"
GATE_OF_ASSET = {
    "evidence_map": "evidence_gate",
    "verification_report": "verification_gate",
    "readme_struct": "struct_gate",
    "readme_final": "final_gate",
}
# The directory the test changes, and the symbol it adds there.
CHANGED_DIR = "stationkit/storage"
TARGET_PATH = "storage"  # the changed directory, relative to the documented subtree "stationkit"
ADDED_SYMBOL = "clear_all"
RUN_TIMEOUT_MS = 120_000
# The telemetry asset group (wf_pipeline/compiler/telemetry.py): its daily assets and the headroom check.
TELEMETRY_GROUP = "telemetry"
TELEMETRY_ASSETS = ("metadata_growth_daily", "budget_headroom")
HEADROOM_CHECK = "p95_within_budget"


@dataclass(frozen=True)
class DocumentedTree:
    """A copy of the sample tree whose "stationkit" subtree was documented by `wf run`, then changed."""

    home: Path
    root: Path
    previous_final_artifact: str  # the changed target's README before the change
    target_key: str  # `<tree name>~<root digest>/<relative path>` of the changed directory
    out_dir: Path  # where the tree's outputs go (`wf run`'s default: $WF_OUT/<tree key>)


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def ui_env(home) -> dict[str, str]:
    require_chromium()
    return isolated_environment(home)


@pytest.fixture
def documented_tree(tmp_path, home, ui_env) -> DocumentedTree:
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    subtree = tree / "stationkit"
    completed = subprocess.run(
        [str(VENV_BIN / "wf"), "run", WORKFLOW, str(subtree), "--json"],
        cwd=REPO_ROOT,
        env=ui_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = json.loads(completed.stdout)
    target_key = target_key_for(subtree, TARGET_PATH)
    threads = {t["target"]: t for t in summary["threads"]}
    assert threads[target_key]["status"] == "completed"
    out_dir = Path(summary["out_dir"])
    assert (out_dir / TARGET_PATH / "README.md").is_file()

    # The directory changes after it was documented: it needs a new thread.
    module = tree / CHANGED_DIR / "memory.py"
    module.write_text(
        module.read_text()
        + f'\n\ndef {ADDED_SYMBOL}(store):\n    """Drop every reading."""\n    store.clear()\n'
    )
    # The target stays registered in the record store, but its partition is gone from the
    # instance (as after "Delete partition" in the UI): the UI has to add it back.
    with DagsterInstance.from_config(ui_env["DAGSTER_HOME"]) as instance:
        assert target_key in instance.get_dynamic_partitions(PARTITIONS)
        instance.delete_dynamic_partition(PARTITIONS, target_key)
    return DocumentedTree(home, tree, threads[target_key]["final_artifact_id"], target_key, out_dir)


def start_services(request: pytest.FixtureRequest, env: dict[str, str]) -> DagsterServices:
    services = DagsterServices(env=env, log_dir=UI_ARTIFACTS)
    request.addfinalizer(services.stop)
    services.start()
    services.wait_until_serving()
    return services


def chromium(profile_dir: Path) -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        context = launch_chromium(playwright, profile_dir)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def dagster_services(request, documented_tree, ui_env) -> DagsterServices:
    return start_services(request, ui_env)


@pytest.fixture
def browser(tmp_path, dagster_services) -> Iterator[BrowserContext]:
    yield from chromium(tmp_path / "chromium-profile")


@pytest.fixture
def instance(ui_env) -> Iterator[DagsterInstance]:
    with DagsterInstance.from_config(ui_env["DAGSTER_HOME"]) as opened:
        yield opened


def open_asset_group(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/locations/{LOCATION}/asset-groups/{WORKFLOW}")
    # The code location loads lazily; the graph appears once it has.
    for asset in GATE_OF_ASSET:
        expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=60_000)


def test_ui_shows_the_gated_graph_and_materializes_a_new_target(
    telemetry_today: str,
    browser: BrowserContext,
    dagster_services: DagsterServices,
    documented_tree: DocumentedTree,
    instance: DagsterInstance,
):
    with traced_on_failure(browser, "docs_writer"):
        page = browser.new_page()
        dismiss_community_prompt(page)
        show_graph_and_gates(page, dagster_services.url)
        show_telemetry_group(page, dagster_services.url)
        target_key = documented_tree.target_key
        run_id = materialize_new_partition(page, dagster_services.url, instance, target_key)
        follow_run_to_success(page, dagster_services, run_id, target_key)

    # The instance agrees: a UI-launched run of that partition that succeeded ...
    run = instance.get_run_by_id(run_id)
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    assert run.tags.get("dagster/partition") == target_key
    assert run.tags.get("dagster/from_ui") == "true"
    materialized = {
        entry.dagster_event.asset_key.path[-1]
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
        if entry.dagster_event.partition == target_key
    }
    assert materialized == set(GATE_OF_ASSET)
    checks = {
        entry.dagster_event.event_specific_data.check_name: entry.dagster_event.event_specific_data.passed
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    }
    assert checks == {gate: True for gate in GATE_OF_ASSET.values()}

    # ... whose final README is a new artifact, stored in the CAS under its digest.
    final = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey([WORKFLOW, "readme_final"]), asset_partitions=[target_key]),
        limit=1,
    ).records[0]
    assert final.run_id == run_id
    artifact_id = final.asset_materialization.metadata["artifact_id"].value
    assert artifact_id.startswith("sha256:") and artifact_id != documented_tree.previous_final_artifact
    hex_digest = artifact_id.removeprefix("sha256:")
    with home_store(documented_tree.home) as store:  # objects rest sealed: read through the keyring
        stored = store.get(artifact_id)
    assert hashlib.sha256(stored).hexdigest() == hex_digest
    readme = stored.decode("utf-8")
    assert readme.startswith("# storage\n")
    assert f"`{ADDED_SYMBOL}(store)`" in readme  # written from the changed tree

    # The UI-launched run wrote the README file where the tree's outputs go, as `wf run` does.
    written = documented_tree.out_dir / TARGET_PATH / "README.md"
    assert written.read_bytes() == stored


def show_graph_and_gates(page: Page, base_url: str) -> None:
    """The group's graph shows the four turn assets; each asset's Checks tab shows its blocking gate."""
    open_asset_group(page, base_url)
    # Each node's live status: the gate check of the `wf run` passed, and nothing is still loading.
    expect(page.get_by_text("1 / 1 Passed", exact=True)).to_have_count(len(GATE_OF_ASSET), timeout=60_000)
    expect(page.get_by_text("Loading...")).to_have_count(0, timeout=60_000)
    UI_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(UI_ARTIFACTS / "asset_graph.png"))
    for asset, gate in GATE_OF_ASSET.items():
        page.goto(f"{base_url}/assets/{WORKFLOW}/{asset}?view=checks")
        expect(page.get_by_text(gate, exact=True).first).to_be_visible()
        expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()


@pytest.fixture
def telemetry_today(documented_tree: DocumentedTree, instance: DagsterInstance) -> str:
    """Today's partition of the telemetry group, materialized on the shared instance (the `wf run` wrote its rows).

    Requested before ``browser``: Dagster's in-process run then never meets Playwright's event loop.
    """
    home = documented_tree.home
    settings = Settings.from_env(isolated_environment(home))
    day = datetime.datetime.now(datetime.UTC).date().isoformat()
    with RuntimeEnv.open(settings, workspace_dir=home) as env:
        defs = build_definitions(load_catalog(default_layers(settings, home)), env)
        result = defs.resolve_job_def(TELEMETRY_JOB).execute_in_process(partition_key=day, instance=instance)
    assert result.success
    [growth] = result.asset_materializations_for_node("metadata_growth_daily")
    assert growth.metadata["writes"].value > 0  # the frame metadata the `wf run` wrote
    return day


def show_telemetry_group(page: Page, base_url: str) -> None:
    """The code location's ``telemetry`` group shows its two daily assets, the headroom asset its check,
    and the growth asset's latest materialization its chart (a Markdown image the UI renders)."""
    page.goto(f"{base_url}/locations/{LOCATION}/asset-groups/{TELEMETRY_GROUP}")
    for asset in TELEMETRY_ASSETS:
        expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(UI_ARTIFACTS / "telemetry_group.png"))
    page.goto(f"{base_url}/assets/{TELEMETRY_ASSETS[1]}?view=checks")
    expect(page.get_by_text(HEADROOM_CHECK, exact=True).first).to_be_visible(timeout=60_000)
    page.goto(f"{base_url}/assets/{TELEMETRY_ASSETS[0]}")
    page.get_by_text("[Show Markdown]").first.click()
    chart = page.get_by_role("dialog").locator("img")
    expect(chart).to_be_visible(timeout=30_000)
    assert chart.get_attribute("src").startswith("data:image/png;base64,")
    # Decoded by the browser at the chart's size: the image really renders.
    assert chart.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [1000, 500]
    page.screenshot(path=str(UI_ARTIFACTS / "telemetry_growth_chart.png"))


def materialize_new_partition(page: Page, base_url: str, instance: DagsterInstance, target_key: str) -> str:
    """Add the changed directory's partition in the Materialize dialog and launch all four assets for it."""
    open_asset_group(page, base_url)
    page.get_by_role("button", name="Materialize all").click()
    launch = page.get_by_role("dialog").filter(
        has_text=f"Launch runs to materialize {len(GATE_OF_ASSET)} assets"
    )
    expect(launch).to_be_visible()
    launch.get_by_role("button", name="Add a partition").click()
    add = page.get_by_role("dialog").filter(has_text=f"Add a partition for {PARTITIONS}")
    add.get_by_role("textbox").fill(target_key)
    add.get_by_role("button", name="Save").click()
    expect(add).to_be_hidden()
    assert target_key in instance.get_dynamic_partitions(PARTITIONS)

    # The new partition is the selection.
    expect(launch.get_by_text("1 partition", exact=True)).to_be_visible()
    launch.get_by_role("button", name="Launch 1 run").click()
    launched = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    expect(launched).to_be_visible()
    short_run_id = launched.inner_text().split()[-1]
    return next(r.run_id for r in instance.get_runs(limit=5) if r.run_id.startswith(short_run_id))


def follow_run_to_success(page: Page, services: DagsterServices, run_id: str, target_key: str) -> None:
    page.goto(f"{services.url}/runs/{run_id}")
    expect(page.get_by_text(f"partition: {target_key}")).to_be_visible()
    outcome = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
    expect(outcome).to_be_visible(timeout=RUN_TIMEOUT_MS)
    page.screenshot(path=str(UI_ARTIFACTS / "run_page.png"))
    assert outcome.inner_text() == "Success", services.log_tail("dagster-daemon")


# --- replay backfills from the UI ------------------------------------------------------

REPLAY_KEY = replay_asset_key(WORKFLOW)
# Three documented directories whose partitions are adjacent (leaves first, as `wf run` adds
# them), so a single-run backfill policy takes them as one range: one run.
REPLAYED_PATHS = ("stationkit/sensors", "stationkit/storage", "docs")
# A directory that changes after it was documented and is not replayed: work the bottom-up
# sensor would find if it took a replay for a documenting run.
CHANGED_LATER = "scripts/check.sh"
BOTTOM_UP_SENSOR = f"{WORKFLOW}_bottom_up"
SENSOR_TIMEOUT_S = 120


@dataclass(frozen=True)
class ReplayTree:
    """A copy of the whole sample tree documented by `wf run`; one unreplayed directory changed since."""

    home: Path
    root: Path
    replayed: tuple[str, ...]  # the target keys to replay, in partition (bottom-up) order


@pytest.fixture
def replay_tree(tmp_path, home, ui_env) -> ReplayTree:
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    completed = subprocess.run(
        [str(VENV_BIN / "wf"), "run", WORKFLOW, str(tree), "--json"],
        cwd=REPO_ROOT,
        env=ui_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    statuses = {t["target"]: t["status"] for t in json.loads(completed.stdout)["threads"]}
    replayed = tuple(target_key_for(tree, path) for path in REPLAYED_PATHS)
    assert all(statuses[key] == "completed" for key in replayed), statuses
    with DagsterInstance.from_config(ui_env["DAGSTER_HOME"]) as instance:
        partitions = instance.get_dynamic_partitions(PARTITIONS)
    start = partitions.index(replayed[0])
    assert tuple(partitions[start : start + len(replayed)]) == replayed, partitions
    changed = tree / CHANGED_LATER
    changed.write_text(changed.read_text() + "\necho changed after it was documented\n")
    return ReplayTree(home, tree, replayed)


@pytest.fixture
def replay_services(request, replay_tree, ui_env) -> DagsterServices:
    return start_services(request, ui_env)


@pytest.fixture
def replay_browser(tmp_path, replay_services) -> Iterator[BrowserContext]:
    yield from chromium(tmp_path / "chromium-profile")


def live_state(home: Path) -> tuple:
    """Threads, turns, heads, CAS objects and audit rows of the live stores: what a replay must not touch."""
    settings = Settings.from_env(isolated_environment(home))
    with RuntimeEnv.open(settings, workspace_dir=home) as env:
        threads = sorted((t.thread_id, t.status) for t in env.records.list_threads(WORKFLOW))
        turns = sorted(
            turn.turn_record_id
            for thread_id, _ in threads
            for turn in env.records.turns_for_thread(thread_id)
        )
        heads = sorted((f.node_id, f.frame_id) for f in env.records.head_frames())
        objects = sorted(env.cas.iter_artifact_ids())
        audit = len(env.records.audit_records())
    return threads, turns, heads, objects, audit


def test_ui_backfill_of_the_replay_asset_checks_each_partition_and_writes_nothing_live(
    replay_browser: BrowserContext,
    replay_services: DagsterServices,
    replay_tree: ReplayTree,
    instance: DagsterInstance,
):
    keys = replay_tree.replayed
    before = live_state(replay_tree.home)
    assert len(before[1]) == 4 * len(before[0])  # every thread of the tree recorded its four turns
    runs_before = {run.run_id for run in instance.get_runs()}

    with traced_on_failure(replay_browser, "replay_backfill"):
        page = replay_browser.new_page()
        dismiss_community_prompt(page)
        backfill_id = launch_replay_backfill(page, replay_services.url, keys)
        follow_backfill_to_the_end(page, replay_services, backfill_id)
        show_replay_checks_passed(page, replay_services.url, keys)

    # The instance agrees: one backfill of the replay asset, done in one run over the three
    # partitions (`BackfillPolicy.single_run`), launched from the UI ...
    backfill = instance.get_backfill(backfill_id)
    assert backfill is not None and backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    assert backfill.asset_selection == [REPLAY_KEY]
    [run] = instance.get_runs(filters=RunsFilter.for_backfill(backfill_id))
    assert run.status == DagsterRunStatus.SUCCESS
    assert run.tags.get("dagster/from_ui") == "true"
    assert (run.tags[ASSET_PARTITION_RANGE_START_TAG], run.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
        keys[0],
        keys[-1],
    )
    # ... whose `replay_matches` passed for each partition, deepest first, with no provider call.
    evaluations = [
        entry.dagster_event.event_specific_data
        for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    assert [(e.asset_key, e.check_name, e.partition, e.passed) for e in evaluations] == [
        (REPLAY_KEY, REPLAY_CHECK, key, True) for key in keys
    ]
    for evaluation in evaluations:
        assert evaluation.metadata["provider_calls"].value == 0
        assert evaluation.metadata["divergences"].value == 0
    assert instance.get_materialized_partitions(REPLAY_KEY) == set(keys)

    # The bottom-up sensor saw the replay run succeed and started nothing: a replay is no
    # documenting run, though a changed directory is waiting to be documented.
    tick = first_sensor_tick_after(instance, BOTTOM_UP_SENSOR, run.run_id)
    assert tick.status == TickStatus.SKIPPED and not tick.run_ids, replay_services.log_tail("dagster-daemon")
    assert {r.run_id for r in instance.get_runs()} == runs_before | {run.run_id}
    # Nothing live changed: no thread, turn, head, object or audit row was added.
    assert live_state(replay_tree.home) == before


def launch_replay_backfill(page: Page, base_url: str, keys: tuple[str, ...]) -> str:
    """Select ``keys`` in the replay asset's Materialize dialog and launch a backfill; its id."""
    page.goto(f"{base_url}/assets/{'/'.join(REPLAY_KEY.path)}?view=partitions")
    # The code location loads lazily; the partitions list appears once it has.
    expect(page.get_by_text(keys[0], exact=True).first).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Materialize…").click()
    launch = page.get_by_role("dialog").filter(
        has_text=f"Launch runs to materialize {' / '.join(REPLAY_KEY.path)}"
    )
    expect(launch).to_be_visible()
    launch.get_by_text("Select a partition or create one").click()
    menu = page.get_by_role("menu")
    for key in keys:
        menu.get_by_role("menuitem").filter(has=page.get_by_text(key, exact=True)).first.click()
    page.keyboard.press("Escape")  # closes the partition menu, not the dialog
    expect(launch.get_by_text(f"{len(keys)} partitions", exact=True)).to_be_visible()
    # The UI tells the asset's backfill policy.
    expect(launch.get_by_text("Backfills all partitions in a single run.")).to_be_visible()
    page.screenshot(path=str(UI_ARTIFACTS / "replay_backfill_dialog.png"))
    launch.get_by_role("button", name="Launch backfill").click()
    created = page.get_by_text(re.compile(r"^Created backfill [a-z]+$"))
    expect(created).to_be_visible()
    return created.inner_text().split()[-1]


def follow_backfill_to_the_end(page: Page, services: DagsterServices, backfill_id: str) -> None:
    """The backfill's page, until the daemon has run every partition."""
    page.goto(f"{services.url}/runs/b/{backfill_id}")
    expect(page.get_by_text("100% completed")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    page.screenshot(path=str(UI_ARTIFACTS / "replay_backfill.png"))


def show_replay_checks_passed(page: Page, base_url: str, keys: tuple[str, ...]) -> None:
    """The check's execution history has a passed evaluation per partition; the partitions are materialized."""
    asset_path = "/".join(REPLAY_KEY.path)
    page.goto(f"{base_url}/assets/{asset_path}?view=checks")
    expect(page.get_by_text(REPLAY_CHECK, exact=True).first).to_be_visible(timeout=60_000)
    page.get_by_role("tab", name="Execution history").click()
    rows = page.get_by_role("row")
    for key in keys:
        expect(rows.filter(has=page.get_by_text(key, exact=True))).to_contain_text("Passed")
    expect(rows.filter(has_text="Passed")).to_have_count(len(keys))
    page.screenshot(path=str(UI_ARTIFACTS / "replay_checks.png"))
    page.goto(f"{base_url}/assets/{asset_path}?view=partitions")
    expect(page.get_by_text(f"Materialized ({len(keys)})", exact=True)).to_be_visible(timeout=30_000)


def first_sensor_tick_after(instance: DagsterInstance, sensor_name: str, run_id: str):
    """The first finished tick of ``sensor_name`` that started after run ``run_id`` ended (waits for it)."""
    ended = instance.get_run_record_by_id(run_id).end_time
    assert ended is not None
    deadline = time.monotonic() + SENSOR_TIMEOUT_S
    while time.monotonic() < deadline:
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.instigator_name != sensor_name:
                continue
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=20)
            finished = [t for t in ticks if t.timestamp > ended and t.status != TickStatus.STARTED]
            if finished:
                return min(finished, key=lambda t: t.timestamp)
        time.sleep(1)
    raise AssertionError(f"no tick of {sensor_name} within {SENSOR_TIMEOUT_S}s after run {run_id} ended")


# --- the architecture notes' graph: fork, join and branch --------------------------------

NOTES = "architecture_notes_v1"
# The parallel fork (two sibling assets of one segment op), the join, and the low-confidence branch.
NOTES_FORK = ("module_graph", "entry_points")
NOTES_JOIN = "architecture_synthesis"
NOTES_BRANCH = "architecture_reverification"
NOTES_NODES = (*NOTES_FORK, NOTES_JOIN, "architecture_verification", NOTES_BRANCH, "architecture_notes")


@pytest.fixture
def notes_services(request, tmp_path, home, ui_env) -> DagsterServices:
    """The webserver and daemon over a home where `wf run architecture_notes_v1` documented a copy of
    the sample tree: the graph shows materialized turns, and the branch not taken."""
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    completed = subprocess.run(
        [str(VENV_BIN / "wf"), "run", NOTES, str(tree), "--json"],
        cwd=REPO_ROOT,
        env=ui_env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (thread,) = json.loads(completed.stdout)["threads"]
    assert thread["path"] == "." and thread["status"] == "completed"
    return start_services(request, ui_env)


@pytest.fixture
def notes_browser(tmp_path, notes_services) -> Iterator[BrowserContext]:
    yield from chromium(tmp_path / "chromium-profile")


def test_ui_shows_the_architecture_notes_fork_join_and_branch(
    tmp_path: Path, notes_services: DagsterServices, notes_browser: BrowserContext, instance: DagsterInstance
):
    # The fork is one step: both sibling assets are computed by the same segment op.
    settings = Settings.from_env(isolated_environment(tmp_path / "home"))
    with RuntimeEnv.open(settings, workspace_dir=REPO_ROOT) as env:
        defs = build_definitions(load_catalog(default_layers(settings, REPO_ROOT)), env)
        ops = {defs.resolve_assets_def(AssetKey([NOTES, name])).op.name for name in NOTES_FORK}
    assert ops == {segment_op_name(NOTES, 0)}

    screenshot = tmp_path / "architecture_notes_graph.png"
    with traced_on_failure(notes_browser, NOTES):
        page = notes_browser.new_page()
        dismiss_community_prompt(page)
        page.goto(f"{notes_services.url}/locations/{LOCATION}/asset-groups/{NOTES}")
        # The code location loads lazily; every node shows once it has.
        for asset in NOTES_NODES:
            expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Loading...")).to_have_count(0, timeout=60_000)
        page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 0
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    UI_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, UI_ARTIFACTS / screenshot.name)

    # The instance agrees: the root's partition of every node is done, the branch as not taken
    # (docs/specs/conditional-branches.md), every other node with its output.
    (key,) = instance.get_dynamic_partitions(f"{NOTES}_targets")
    branches = {}
    for name in NOTES_NODES:
        (record,) = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey([NOTES, name]), asset_partitions=[key]), limit=1
        ).records
        metadata = record.asset_materialization.metadata
        branches[name] = metadata["wf/branch"].value if "wf/branch" in metadata else "taken"
    assert branches == {name: "not_taken" if name == NOTES_BRANCH else "taken" for name in NOTES_NODES}
