"""Crypto-shredding as a retention mode, over real records, a real keyring and sealed CAS objects.

A home gets threads over several simulated days (a keyring with a fake clock, so each day
is its own KEK lineage per class); a sweep in ``shred`` mode must destroy exactly the
expired lineages, after moving out every artifact a safety rule keeps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import record_store_location
from e2e_support import with_profile_keys
from retention_support import ROLE_CLASSES, catalog_with, write_recorded_thread

from wf_pipeline.cas import ArtifactStore, MemoryArtifactStore, open_cas
from wf_pipeline.crypto.keyring import Keyring, check_master_key
from wf_pipeline.crypto.managers import LOCAL, LocalKeyManager, new_master_key_text, parse_master_key
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.errors import (
    CAS_ARTIFACT_EXPIRED,
    CAS_KEY_DESTROYED,
    KEYS_KEK_STATE,
    KEYS_MANAGER_ERROR,
    KEYS_MASTER_KEY_INVALID,
    PROFILE_RETENTION_INVALID,
    CasError,
    KeysError,
    ProfileError,
)
from wf_pipeline.metadata.records import (
    ThreadRecord,
    now_ms,
)
from wf_pipeline.profiles import Layer, ProfileCatalog, load_catalog
from wf_pipeline.profiles.encryption import EncryptionPolicy
from wf_pipeline.profiles.retention import resolve_retention
from wf_pipeline.records import RecordStore, open_record_store
from wf_pipeline.retention.holds import place_hold
from wf_pipeline.retention.reads import ExpiryAwareStore
from wf_pipeline.retention.shred import Lineage
from wf_pipeline.retention.sweep import apply_retention, plan_retention
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.service.maintenance import apply_retention_figures
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import DisabledTelemetryRecorder, Recorder
from wf_pipeline.workflows import load_builtin_workflows

REPO_ROOT = Path(__file__).resolve().parent.parent
WF = REPO_ROOT / ".venv" / "bin" / "wf"
WORKFLOW = "docs_writer_thread_v1"
HOUR, DAY = 3_600_000, 86_400_000
T0 = 19_676 * DAY  # a UTC midnight (2023-11-15): day n of the test is lineage day n
TURNS = ("evidence_gather", "readme_struct")
SHRED_ALL = {
    "prompt_render": "2d",
    "context_payload": "2d",
    "output": "2d",
    "mode": "shred",
}


class Clock:
    """The keyring's clock, set by the test (ms)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self) -> int:
        return self.at


@dataclass
class Home:
    records: RecordStore
    cas: ArtifactStore
    catalog: ProfileCatalog
    keyring: Keyring
    clock: Clock
    raw: ArtifactStore
    telemetry: Recorder = field(default_factory=DisabledTelemetryRecorder)


@dataclass
class Written:
    thread: ThreadRecord
    context: str
    renders: list[str]
    outputs: list[str]
    system: str = ""

    @property
    def final(self) -> str:
        return self.outputs[-1]

    @property
    def all(self) -> set[str]:
        return {self.context, *self.renders, *self.outputs}


def open_home(url: str, schema: str | None, retention: dict | None, *, at: int = T0) -> Home:
    records = open_record_store(url, schema=schema)
    clock = Clock(at)
    keyring = Keyring(records, {LOCAL: LocalKeyManager(os.urandom(32))}, default_manager=LOCAL, clock=clock)
    raw = MemoryArtifactStore()
    sealed = EncryptedArtifactStore(raw, EncryptionPolicy(default="required"), keyring)
    return Home(records, ExpiryAwareStore(sealed, records), catalog_with(retention), keyring, clock, raw)


@pytest.fixture
def home(tmp_path):
    with record_store_location("sqlite", tmp_path) as target:
        opened = open_home(target.url, target.schema, SHRED_ALL)
        yield opened
        opened.records.close()


def write_thread(
    home: Home, name: str, *, at: int, status: str = "completed", plain: bool = False, classed: bool = True
) -> Written:
    """A docs-writer thread put at ``at`` (the keyring's clock too): a context, per turn a render and an output.

    ``plain``: its objects go to the raw store, unsealed (a class whose encryption was off).
    ``classed=False``: put without a class (sealed under the ``unclassified`` lineages).
    """
    home.clock.at = at
    recorded = write_recorded_thread(
        home.records,
        home.raw if plain else home.cas,
        workflow_id=WORKFLOW,
        name=name,
        turn_ids=TURNS,
        at=at,
        target_key=name,
        status=status,
        system_cas=home.cas,
        classes=ROLE_CLASSES if classed else {"system_prompt": ROLE_CLASSES["system_prompt"]},
    )
    return Written(recorded.thread, recorded.context, recorded.renders, recorded.outputs, recorded.system)


def read_code(home: Home, artifact_id: str) -> str | None:
    """None when the artifact reads, else the code of the error."""
    try:
        home.cas.get(artifact_id)
    except CasError as exc:
        return exc.code
    return None


def key_state(home: Home) -> tuple:
    """Every KEK record and data key record: what a plan must leave unchanged."""
    keks = tuple(home.records.list_keks())
    keys = []
    for kek in keks:
        keys += home.records.data_keys_under([kek.kek_id], limit=100_000)
    return keks, tuple(sorted(keys, key=lambda row: row.artifact_id))


@dataclass
class World:
    """Threads over five days; at the sweep (day 4, 12:00) days 0 and 1 are past window + grace."""

    expired_a: Written  # day 0, completed
    held_b: Written  # day 0, under hold
    running_c: Written  # day 0, still running
    expired_d: Written  # day 1, completed
    fresh_e: Written  # day 4 (today)
    now: int

    def shredded(self) -> set[str]:
        """What the sweep must shred: A's and D's artifacts, except the outputs behind their heads."""
        return (self.expired_a.all - {self.expired_a.final}) | (self.expired_d.all - {self.expired_d.final})

    def readable(self) -> set[str]:
        """What must stay readable: everything held, running, behind a head, or fresh."""
        return (
            self.held_b.all
            | self.running_c.all
            | self.fresh_e.all
            | {self.expired_a.final, self.expired_d.final}
        )


def build_world(home: Home) -> World:
    a = write_thread(home, "a", at=T0 + HOUR)
    b = write_thread(home, "b", at=T0 + 2 * HOUR)
    c = write_thread(home, "c", at=T0 + 3 * HOUR, status="running")
    d = write_thread(home, "d", at=T0 + DAY + HOUR)
    e = write_thread(home, "e", at=T0 + 4 * DAY + HOUR)
    place_hold(home.records, thread_id=b.thread.thread_id, reason="case-1", at_ms=T0 + 4 * DAY)
    now = T0 + 4 * DAY + 12 * HOUR
    home.clock.at = now
    return World(a, b, c, d, e, now)


def lineages(*days: int, classes=("context_payload", "output", "prompt_render")) -> set[Lineage]:
    return {Lineage(cls, T0 + day * DAY, DAY) for cls in classes for day in days}


def shredded_ids(home: Home) -> set[str]:
    return {row.artifact_id for row in home.keyring.shredded_keys()}


def assert_all_readable(home: Home, ids) -> None:
    assert {a: read_code(home, a) for a in ids} == dict.fromkeys(ids)


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "modes"),
    [
        ({"preset": "docs_family"}, {"prompt_render": "delete", "output": "delete"}),
        ({"preset": "docs_family", "mode": "shred"}, {"prompt_render": "shred", "output": "shred"}),
        ({"mode": {"prompt_render": "shred"}}, {"prompt_render": "shred", "context_payload": "delete"}),
        (
            {"mode": {"output": "delete", "prompt_render": "shred"}},
            {"output": "delete", "prompt_render": "shred"},
        ),
    ],
)
def test_mode_is_one_word_for_every_class_or_a_mapping_per_class(block, modes) -> None:
    policy = resolve_retention(block, workflow_id="w")
    assert {cls: policy.mode(cls) for cls in modes} == modes


@pytest.mark.parametrize(
    ("block", "field_name"),
    [
        ({"mode": "burn"}, "retention.mode"),
        ({"mode": {}}, "retention.mode"),
        ({"mode": {"summaries": "shred"}}, "retention.mode.summaries"),
        ({"mode": {"output": "erase"}}, "retention.mode.output"),
        ({"prompt_render": {"mode": "shred"}}, "retention.prompt_render"),
    ],
)
def test_a_bad_mode_is_profile_retention_invalid_naming_its_field(block, field_name) -> None:
    with pytest.raises(ProfileError) as caught:
        resolve_retention(block, workflow_id="w", path="p.yaml")
    assert caught.value.code == PROFILE_RETENTION_INVALID
    assert caught.value.details["field"] == field_name


def test_a_workspace_profile_with_a_mode_mapping_loads(tmp_path: Path) -> None:
    import yaml

    load_builtin_workflows()
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    document["retention"] = {"preset": "docs_family", "mode": {"prompt_render": "shred"}}
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / f"{WORKFLOW}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    shutil.copytree(REPO_ROOT / "assets" / "prompts", tmp_path / "assets" / "prompts")
    catalog = load_catalog([Layer("workspace", tmp_path), Layer("builtin", REPO_ROOT)])
    assert catalog.problems == ()
    policy = catalog.get(WORKFLOW).retention
    assert catalog.get(WORKFLOW).layer == "workspace"
    assert (policy.mode("prompt_render"), policy.mode("context_payload")) == ("shred", "delete")


# -- the sweep ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_apply_destroys_exactly_the_expired_lineages_and_moves_what_must_stay(backend, tmp_path) -> None:
    with record_store_location(backend, tmp_path) as target:
        home = open_home(target.url, target.schema, SHRED_ALL)
        try:
            world = build_world(home)
            result = apply_retention(home, now_ms=world.now, keyring=home.keyring)

            # Days 0 and 1 are past window (2d) + period; day 4 is today's lineage.
            assert {item.lineage for item in result.shredded} == lineages(0, 1)
            assert {item.status for item in result.shredded} == {"destroyed"}
            # The acceptance: the keyring's report lists exactly those artifacts ...
            assert shredded_ids(home) == world.shredded()
            assert sum(item.artifacts for item in result.shredded) == len(world.shredded())
            # Per window: day 0's prompt-render KEK wrapped A's renders and nothing else now.
            day0 = home.records.data_keys_under(["kek-prompt_render-20231115-g1"], limit=1_000)
            assert {row.artifact_id for row in day0} == set(world.expired_a.renders)
            # ... and reading any of them is CAS_KEY_DESTROYED, while the objects stay.
            assert {a: read_code(home, a) for a in world.shredded()} == dict.fromkeys(
                world.shredded(), CAS_KEY_DESTROYED
            )
            assert all(home.raw.exists(a) for a in world.shredded())
            # Held, running, head outputs and today's artifacts were moved first and read.
            assert_all_readable(home, world.readable())
            moved = world.readable() - world.fresh_e.all
            assert sum(item.moved for item in result.shredded) == len(moved)
            today = T0 + 4 * DAY
            keys = home.records.data_keys_for(list(moved))
            assert {home.records.get_kek(row.kek_id).period_start_ms for row in keys.values()} == {today}
            # Nothing was deleted one by one; records of the threads stay.
            assert result.deleted == 0 and home.records.list_tombstones() == []
            assert home.records.get_thread(world.expired_a.thread.thread_id) is not None
            destroyed = {k.kek_id for k in home.records.list_keks() if k.state == "destroyed"}
            assert destroyed == {k for item in result.shredded for k in item.kek_ids}
            assert destroyed == {
                f"kek-{cls}-{day}-g1"
                for cls in ("context_payload", "output", "prompt_render")
                for day in ("20231115", "20231116")
            }
        finally:
            home.records.close()


def test_plan_is_pure_and_says_what_apply_does(home: Home) -> None:
    world = build_world(home)
    before = key_state(home)

    plan = plan_retention(home, now_ms=world.now)

    assert key_state(home) == before
    assert_all_readable(home, world.shredded() | world.readable())
    assert {shred.lineage for shred in plan.shreds} == lineages(0, 1)
    assert {a for shred in plan.shreds for a in shred.artifact_ids} == world.shredded()
    assert sum(shred.moves for shred in plan.shreds) == len(world.readable() - world.fresh_e.all)
    assert plan.deletions == ()
    as_dict = plan.to_dict()
    assert as_dict["shredded_artifacts"] == len(world.shredded())
    (one,) = [
        s
        for s in as_dict["shreds"]
        if s["artifact_class"] == "context_payload" and s["period_start_ms"] == T0
    ]
    assert one["kek_ids"] == ["kek-context_payload-20231115-g1"]
    assert one["period_start"] == "2023-11-15T00:00:00Z"
    # Ids and counts only: no key material anywhere in the report.
    text = repr(as_dict)
    for kek in home.records.list_keks():
        assert kek.key_ref is None or kek.key_ref.hex() not in text

    result = apply_retention(home, now_ms=world.now, keyring=home.keyring)
    assert [(r.lineage, r.artifacts) for r in result.shredded] == [
        (s.lineage, s.artifacts) for s in plan.shreds
    ]


def test_apply_is_idempotent(home: Home) -> None:
    world = build_world(home)
    apply_retention(home, now_ms=world.now, keyring=home.keyring)
    after_first = key_state(home)

    again = apply_retention(home, now_ms=world.now, keyring=home.keyring)

    assert again.shredded == () and again.deleted == 0
    assert key_state(home) == after_first
    assert plan_retention(home, now_ms=world.now).shreds == ()
    assert shredded_ids(home) == world.shredded()


def test_a_kill_between_moving_and_destroying_leaves_everything_readable(home: Home, monkeypatch) -> None:
    world = build_world(home)

    def killed(kek_id: str):
        raise KeysError(KEYS_MANAGER_ERROR, "killed before the destroy", kek_id=kek_id)

    with monkeypatch.context() as patch:
        patch.setattr(home.keyring, "destroy", killed)
        with pytest.raises(KeysError):
            apply_retention(home, now_ms=world.now, keyring=home.keyring)
    # The first lineage's protected keys moved, nothing destroyed: everything reads.
    assert all(k.state != "destroyed" for k in home.records.list_keks())
    assert_all_readable(home, world.shredded() | world.readable())

    result = apply_retention(home, now_ms=world.now, keyring=home.keyring)

    assert {item.lineage for item in result.shredded} == lineages(0, 1)
    assert shredded_ids(home) == world.shredded()
    assert_all_readable(home, world.readable())


def test_a_kill_between_two_destroys_is_finished_by_the_next_sweep(home: Home, monkeypatch) -> None:
    world = build_world(home)
    real = home.keyring.destroy
    calls = []

    def destroy_twice(kek_id: str):
        if len(calls) == 2:
            raise KeysError(KEYS_MANAGER_ERROR, "killed", kek_id=kek_id)
        calls.append(kek_id)
        return real(kek_id)

    with monkeypatch.context() as patch:
        patch.setattr(home.keyring, "destroy", destroy_twice)
        with pytest.raises(KeysError):
            apply_retention(home, now_ms=world.now, keyring=home.keyring)
    assert_all_readable(home, world.readable())

    result = apply_retention(home, now_ms=world.now, keyring=home.keyring)

    assert {item.lineage for item in result.shredded} == lineages(0, 1) - {
        Lineage(home.records.get_kek(k).artifact_class, home.records.get_kek(k).period_start_ms, DAY)
        for k in calls
    }
    assert shredded_ids(home) == world.shredded()
    assert_all_readable(home, world.readable())


def test_expired_artifacts_wait_for_their_lineage_to_end(home: Home) -> None:
    a = write_thread(home, "a", at=T0 + 20 * HOUR)
    # Renders of A expire at day 2, 20:00; its lineage (day 0) ends at day 1, so it is due at day 3.
    home.clock.at = now = T0 + 2 * DAY + 22 * HOUR
    plan = plan_retention(home, now_ms=now)
    assert plan.shreds == () and plan.deletions == ()
    # Everything but the head output, and the system prompt (put last on day 0 too).
    assert plan.kept["lineage"] == len(a.all) - 1 + 1

    home.clock.at = now = T0 + 3 * DAY + HOUR
    result = apply_retention(home, now_ms=now, keyring=home.keyring)
    assert {item.lineage for item in result.shredded} == lineages(0)
    assert shredded_ids(home) == (a.all - {a.final}) | {a.system}


def test_a_lineage_of_today_is_never_destroyed(home: Home) -> None:
    # A sweep whose clock runs ahead of the keyring's: the lineage new keys go to is deferred.
    write_thread(home, "a", at=T0 + HOUR)
    home.clock.at = T0 + 2 * HOUR
    result = apply_retention(home, now_ms=T0 + 10 * DAY, keyring=home.keyring)
    assert {item.status for item in result.shredded} == {"deferred"}
    assert shredded_ids(home) == set()


def test_only_shred_mode_classes_are_shredded_the_others_are_deleted(tmp_path) -> None:
    retention = {**SHRED_ALL, "mode": {"prompt_render": "shred"}}
    with record_store_location("sqlite", tmp_path) as target:
        home = open_home(target.url, target.schema, retention)
        try:
            world = build_world(home)
            result = apply_retention(home, now_ms=world.now, keyring=home.keyring)

            assert {item.lineage for item in result.shredded} == lineages(0, 1, classes=("prompt_render",))
            renders = {*world.expired_a.renders, *world.expired_d.renders}
            assert shredded_ids(home) == renders
            deleted = {t.artifact_id for t in home.records.list_tombstones()}
            expected_deleted = {world.expired_a.context, world.expired_d.context}
            expected_deleted |= {*world.expired_a.outputs[:-1], *world.expired_d.outputs[:-1]}
            assert deleted == expected_deleted
            assert {read_code(home, a) for a in renders} == {CAS_KEY_DESTROYED}
            assert {read_code(home, a) for a in deleted} == {CAS_ARTIFACT_EXPIRED}
            assert {g.artifact_class for g in result.groups} == {"context_payload", "output"}
            # Deleted artifacts lose their data keys: no KEK depends on them, no report lists them.
            assert home.records.data_keys_for(deleted) == {}
            assert set(home.records.data_keys_for(renders)) == renders
        finally:
            home.records.close()


def test_plaintext_artifacts_of_a_shred_mode_class_are_deleted_and_counted(home: Home) -> None:
    plain = write_thread(home, "p", at=T0 + HOUR, plain=True)
    home.clock.at = now = T0 + 4 * DAY
    plan = plan_retention(home, now_ms=now)
    going = plain.all - {plain.final}
    assert {d.artifact_id for d in plan.deletions} == going
    assert plan.plaintext_in_shred_mode == {"context_payload": 1, "output": 1, "prompt_render": 2}

    result = apply_retention(home, now_ms=now, keyring=home.keyring)

    assert result.deleted == len(going) and result.to_dict()["plaintext_in_shred_mode"]["prompt_render"] == 2
    assert {read_code(home, a) for a in going} == {CAS_ARTIFACT_EXPIRED}


def test_artifacts_sealed_under_a_class_no_policy_shreds_are_deleted(home: Home) -> None:
    # Put without a class: their keys are in "unclassified" lineages, which never come due.
    odd = write_thread(home, "odd", at=T0 + HOUR, classed=False)
    home.clock.at = now = T0 + 4 * DAY
    result = apply_retention(home, now_ms=now, keyring=home.keyring)
    going = odd.all - {odd.final}
    assert result.plaintext_in_shred_mode == {}
    assert {t.artifact_id for t in home.records.list_tombstones()} == going
    # The shared system prompt was put as prompt_render: its lineage is shredded, with it alone.
    assert [(r.lineage, r.artifacts) for r in result.shredded] == [(Lineage("prompt_render", T0, DAY), 1)]
    assert shredded_ids(home) == {odd.system}
    assert {read_code(home, a) for a in going} == {CAS_ARTIFACT_EXPIRED}


def test_apply_without_a_keyring_refuses_before_deleting_anything(home: Home) -> None:
    world = build_world(home)
    with pytest.raises(KeysError) as caught:
        apply_retention(home, now_ms=world.now, keyring=None)
    assert caught.value.code == KEYS_MASTER_KEY_INVALID
    assert home.records.list_tombstones() == []
    assert_all_readable(home, world.shredded())


def test_putting_a_shredded_artifact_again_makes_it_readable_under_today_s_key(home: Home) -> None:
    world = build_world(home)
    apply_retention(home, now_ms=world.now, keyring=home.keyring)
    context = world.expired_a.context
    assert read_code(home, context) == CAS_KEY_DESTROYED

    home.cas.put_text("context of a", artifact_class="context_payload")

    assert read_code(home, context) is None
    assert context not in shredded_ids(home)


# -- Keyring.move_keys ---------------------------------------------------------------


def test_move_keys_moves_across_lineages_and_refuses_a_destroyed_kek(home: Home) -> None:
    home.clock.at = T0 + HOUR
    old = home.cas.put_text("old", artifact_class="prompt_render").artifact_id
    other = home.cas.put_text("other", artifact_class="prompt_render").artifact_id
    home.clock.at = T0 + 3 * DAY
    rows = home.records.data_keys_for([old])

    assert home.keyring.move_keys(list(rows.values())) == 1
    assert home.keyring.move_keys(list(home.records.data_keys_for([old]).values())) == 0  # already there

    moved = home.records.data_keys_for([old])[old]
    assert moved.kek_id == "kek-prompt_render-20231118-g1" and moved.rewrapped_at_ms == T0 + 3 * DAY
    home.keyring.destroy("kek-prompt_render-20231115-g1")
    assert read_code(home, old) is None and read_code(home, other) == CAS_KEY_DESTROYED
    with pytest.raises(KeysError) as caught:
        home.keyring.move_keys(list(home.records.data_keys_for([other]).values()))
    assert caught.value.code == KEYS_KEK_STATE


# -- as users see it: `wf retention`, and the figures of the Dagster job ---------------


def seeded_home(tmp_path: Path) -> tuple[Settings, Path, Written]:
    """A home whose keyring saw one docs-writer thread 10 days ago, and a workspace shredding every class.

    The docs_family windows: prompt renders (7d) are due, contexts (30d) and outputs (forever) are not.
    """
    settings = Settings.from_env({"WF_HOME": str(tmp_path / "home"), "WF_CONFIG_DIR": str(tmp_path / "cfg")})
    settings.ensure_dirs()
    key_text = new_master_key_text()
    key_file = settings.default_master_key_file
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key_text + "\n", encoding="ascii")
    key_file.chmod(0o600)
    records = open_record_store(settings.records_url, schema=settings.records_schema)
    key = parse_master_key(key_text, source="test")
    check_master_key(records, key, source="test")
    clock = Clock(now_ms() - 10 * DAY)
    keyring = Keyring(records, {LOCAL: LocalKeyManager(key)}, default_manager=LOCAL, clock=clock)
    raw = open_cas(settings.cas_url)
    sealed = EncryptedArtifactStore(raw, EncryptionPolicy(default="required"), keyring)
    seeded = Home(records, sealed, catalog_with(None), keyring, clock, raw)
    try:
        written = write_thread(seeded, "old", at=clock.at)
    finally:
        records.close()
        raw.close()
    workspace = tmp_path / "ws"
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    text = (REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8")
    # The family base gives the preset and the sealed classes; the copy adds the mode.
    assert "extends: [docs_family]" in text
    text = with_profile_keys(text, "retention", "  mode: shred\n")
    (workspace / "profiles").mkdir()
    (workspace / "profiles" / f"{WORKFLOW}.yaml").write_text(text, encoding="utf-8")
    return settings, workspace, written


def wf(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update(WF_HOME=str(settings.home), WF_CONFIG_DIR=str(settings.config_dir))
    return subprocess.run([str(WF), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_wf_retention_plan_and_apply_report_the_shredded_lineages(tmp_path: Path) -> None:
    settings, workspace, old = seeded_home(tmp_path)
    due = {*old.renders, old.system}

    planned = wf(settings, workspace, "retention", "plan", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    (shred,) = plan["shreds"]
    assert (shred["artifact_class"], shred["artifacts"], shred["moves"]) == ("prompt_render", len(due), 0)
    assert shred["kek_ids"] == [f"kek-prompt_render-{shred['period_start'][:10].replace('-', '')}-g1"]
    assert plan["count"] == 0 and plan["shredded_artifacts"] == len(due)
    modes = {c["artifact_class"]: c["mode"] for p in plan["policies"] for c in p["classes"]}
    assert modes["prompt_render"] == modes["output"] == "shred"

    applied = wf(settings, workspace, "retention", "apply")
    assert applied.returncode == 0, applied.stderr
    assert shred["kek_ids"][0] in applied.stdout
    assert f"shredded {len(due)} artifacts (1 KEK lineage destroyed" in applied.stdout

    again = wf(settings, workspace, "retention", "apply", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["shredded"] == []
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        assert env.keyring is not None
        assert {row.artifact_id for row in env.keyring.shredded_keys()} == due
        for artifact_id in sorted(due):
            with pytest.raises(CasError) as caught:
                env.cas.get(artifact_id)
            assert caught.value.code == CAS_KEY_DESTROYED
        assert env.cas.get_text(old.context).startswith("context of old")


def test_the_dagster_job_figures_name_the_destroyed_keks_and_counts(tmp_path: Path, monkeypatch) -> None:
    settings, workspace, old = seeded_home(tmp_path)
    monkeypatch.chdir(workspace)  # the workspace profile layer, as the code location reads it

    figures = apply_retention_figures(settings, now_ms())

    assert figures["shredded_lineages"] == 1 and figures["deferred_lineages"] == 0
    assert figures["shredded_artifacts"] == figures["shredded_prompt_render"] == len(old.renders) + 1
    assert str(figures["shredded_kek_ids"]).startswith("kek-prompt_render-")
    assert figures["deleted"] == 0 and figures["moved_keys"] == 0
    assert all(isinstance(value, int | str) for value in figures.values())
