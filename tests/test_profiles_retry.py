"""A turn's ``retry`` block: loaded and checked with its own codes, part of the turn's code
version, and obeyed by the runtime (attempts, backoff, which codes retry)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.errors import ProfileError, ProviderError
from wf_pipeline.profiles import describe, load_profile_file
from wf_pipeline.profiles.retry import DEFAULT_BACKOFF_MS
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.providers.retry import DEFAULT_BACKOFF, Backoff
from wf_pipeline.runtime import RuntimeEnv, plan_run, run_turn
from wf_pipeline.runtime.pinning import read_pinned_profile
from wf_pipeline.runtime.replay import replay_thread
from wf_pipeline.tree import scan_tree

WORKFLOW = "docs_writer_thread_v1"
FIRST = "evidence_gather"


def write_workspace(
    root: Path, retry: object = None, *, drop_retry_limit: bool = True, **turn_fields
) -> Path:
    """A workspace layer holding the shipped profile with ``retry`` (and ``turn_fields``) on its first turn."""
    if not (root / "assets" / "prompts").exists():
        shutil.copytree(REPO_ROOT / "assets" / "prompts", root / "assets" / "prompts")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    first = document["turns"][0]
    assert first["turn_id"] == FIRST
    if drop_retry_limit:
        first.pop("retry_limit", None)
    if retry is not None:
        first["retry"] = retry
    first.update(turn_fields)
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    path = root / "profiles" / f"{WORKFLOW}.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def load(tmp_path: Path, retry: object = None, **options):
    return load_profile_file(write_workspace(tmp_path / "ws", retry, **options), "workspace")


# --- loading ------------------------------------------------------------------------------


def test_without_a_block_the_policy_is_what_retry_limit_gave_and_the_code_version_is_unchanged(tmp_path):
    shipped = load_profile_file(REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml", "builtin")
    policy = shipped.retry_policy(FIRST)
    assert policy.attempts == 1 + min(1, 2)
    assert (policy.initial_ms, policy.max_ms, policy.jitter_ms) == (250, 8_000, 250)
    assert policy.retryable_codes is None and not policy.declared
    # The default figures are the runtime's default backoff, in ms.
    assert Backoff.of_ms(**DEFAULT_BACKOFF_MS) == DEFAULT_BACKOFF
    copy = load(tmp_path, drop_retry_limit=False)
    assert copy.code_version == shipped.code_version


def test_a_declared_policy_is_resolved_and_changes_only_its_turns_code_version(tmp_path):
    plain = load(tmp_path)
    declared = load(
        tmp_path,
        {"attempts": 3, "backoff": {"initial_ms": 10, "max_ms": 40}, "retryable_codes": ["PROVIDER_TIMEOUT"]},
    )
    policy = declared.retry_policy(FIRST)
    assert (policy.attempts, policy.initial_ms, policy.max_ms, policy.jitter_ms) == (3, 10, 40, 250)
    assert policy.retryable_codes == ("PROVIDER_TIMEOUT",) and policy.declared
    assert policy.retries("PROVIDER_TIMEOUT") and not policy.retries("PROVIDER_RATE_LIMITED")
    assert declared.turn_code_version(FIRST) != plain.turn_code_version(FIRST)
    assert declared.code_version != plain.code_version
    for turn in ("verification", "readme_struct", "style_refine"):
        assert declared.turn_code_version(turn) == plain.turn_code_version(turn)
    # Another policy, another version; the same policy written again, the same one.
    other = load(tmp_path, {"attempts": 3})
    assert other.turn_code_version(FIRST) not in (
        declared.turn_code_version(FIRST),
        plain.turn_code_version(FIRST),
    )
    again = load(
        tmp_path,
        {"retryable_codes": ["PROVIDER_TIMEOUT"], "backoff": {"max_ms": 40, "initial_ms": 10}, "attempts": 3},
    )
    assert again.turn_code_version(FIRST) == declared.turn_code_version(FIRST)


def test_retry_limit_and_attempts_may_both_be_written_when_they_agree(tmp_path):
    loaded = load(tmp_path, {"attempts": 3}, retry_limit=2)
    assert loaded.retry_policy(FIRST).attempts == 3


@pytest.mark.parametrize(
    ("retry", "fields", "code", "figure"),
    [
        (
            {"retryable_codes": ["PROVIDER_TIMEOUT", "NO_SUCH_CODE"]},
            {},
            "PROFILE_RETRY_UNKNOWN_CODE",
            "NO_SUCH_CODE",
        ),
        # Catalogued, but marked not retryable: it would fail the same way again.
        ({"retryable_codes": ["PROFILE_NOT_FOUND"]}, {}, "PROFILE_RETRY_UNKNOWN_CODE", "PROFILE_NOT_FOUND"),
        ({"attempts": 0}, {}, "PROFILE_RETRY_INVALID", "retry.attempts"),
        ({"attempts": "3"}, {}, "PROFILE_RETRY_INVALID", "retry.attempts"),
        ({"attempts": 2.5}, {}, "PROFILE_RETRY_INVALID", "retry.attempts"),
        ({"attempts": True}, {}, "PROFILE_RETRY_INVALID", "retry.attempts"),
        ({"backoff": {"initial_ms": -1}}, {}, "PROFILE_RETRY_INVALID", "retry.backoff.initial_ms"),
        (
            {"backoff": {"initial_ms": 500, "max_ms": 100}},
            {},
            "PROFILE_RETRY_INVALID",
            "retry.backoff.max_ms",
        ),
        ({"backoff": {"factor": 2}}, {}, "PROFILE_RETRY_INVALID", "retry.backoff.factor"),
        ({"tries": 2}, {}, "PROFILE_RETRY_INVALID", "retry.tries"),
        ({"retryable_codes": "PROVIDER_TIMEOUT"}, {}, "PROFILE_RETRY_INVALID", "retry.retryable_codes"),
        ([3], {}, "PROFILE_RETRY_INVALID", "retry"),
        ({"attempts": 3}, {"retry_limit": 1}, "PROFILE_RETRY_CONFLICT", 1),
        ({"attempts": 4}, {}, "PROFILE_RETRY_CONFLICT", 2),  # over max_turn_retries 2
        # A first wait as long as the turn's deadline: no retry could ever start.
        (
            {"attempts": 3, "backoff": {"initial_ms": 5000, "max_ms": 9000}},
            {"timeout_ms": 5000},
            "PROFILE_RETRY_CONFLICT",
            5000,
        ),
    ],
)
def test_a_bad_block_fails_to_load_with_its_code_naming_the_turn_and_the_file(
    tmp_path, retry, fields, code, figure
):
    with pytest.raises(ProfileError) as raised:
        load(tmp_path, retry, **fields)
    error = raised.value
    assert error.code == code
    assert error.details["turn_id"] == FIRST
    path = str(tmp_path / "ws" / "profiles" / f"{WORKFLOW}.yaml")
    assert error.details["path"] == path and path in error.message and FIRST in error.message
    details = error.details
    found = (
        details.get("error_code"),
        details.get("field"),
        details.get("retry_limit"),
        details.get("max_turn_retries"),
        details.get("timeout_ms"),
    )
    assert figure in found


# --- the runtime obeys it --------------------------------------------------------------------


class Scripted:
    """The offline provider behind a script of errors to raise, one per call."""

    provider_type = "offline"
    model = "offline-v1"

    def __init__(self, script: list[Exception]) -> None:
        self._inner = create_provider("offline")
        self._script = list(script)
        self.calls: list[float] = []

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls.append(time.monotonic())
        if self._script:
            raise self._script.pop(0)
        return self._inner.complete(request)


def timeout() -> ProviderError:
    return ProviderError("PROVIDER_TIMEOUT", "no answer")


def rate_limited() -> ProviderError:
    return ProviderError("PROVIDER_RATE_LIMITED", "HTTP 429", status=429)


@pytest.fixture
def run_first_turn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")

    def run(retry: dict, provider: Scripted):
        workspace = tmp_path / "ws"
        write_workspace(workspace, retry)
        with RuntimeEnv.open(settings, workspace_dir=workspace, provider=provider) as env:
            loaded = env.catalog.get(WORKFLOW)
            assert loaded.retry_policy(FIRST).declared
            (plan,) = plan_run(env, loaded, scan_tree(tree)).threads
            thread = env.records.get_thread(plan.thread.thread_id)
            output = run_turn(env, loaded, thread, plan.target, FIRST)
            records = [r for r in env.records.turns_for_thread(thread.thread_id) if r.turn_id == FIRST]
        return output, [(r.attempt, r.status, r.error_code) for r in records]

    return run


def test_attempts_of_the_block_are_used_and_recorded(run_first_turn):
    provider = Scripted([timeout(), timeout()])
    output, attempts = run_first_turn({"attempts": 3, "backoff": {"initial_ms": 0, "jitter_ms": 0}}, provider)
    assert (output.status, output.attempt, output.provider_calls) == ("completed", 3, 3)
    assert attempts == [
        (1, "failed", "PROVIDER_TIMEOUT"),
        (2, "failed", "PROVIDER_TIMEOUT"),
        (3, "completed", None),
    ]


def test_one_attempt_means_no_retry(run_first_turn):
    provider = Scripted([timeout()])
    output, attempts = run_first_turn({"attempts": 1}, provider)
    assert (output.status, output.error_code, output.provider_calls) == ("failed", "PROVIDER_TIMEOUT", 1)
    assert attempts == [(1, "failed", "PROVIDER_TIMEOUT")]


def test_a_retryable_code_the_list_leaves_out_is_not_retried(run_first_turn):
    provider = Scripted([rate_limited()])
    retry = {
        "attempts": 3,
        "backoff": {"initial_ms": 0, "jitter_ms": 0},
        "retryable_codes": ["PROVIDER_TIMEOUT"],
    }
    output, attempts = run_first_turn(retry, provider)
    assert (output.status, output.error_code) == ("failed", "PROVIDER_RATE_LIMITED")
    assert attempts == [(1, "failed", "PROVIDER_RATE_LIMITED")]


def test_the_backoff_figures_set_the_wait(run_first_turn):
    provider = Scripted([timeout()])
    retry = {"attempts": 2, "backoff": {"initial_ms": 600, "max_ms": 600, "jitter_ms": 0}}
    output, _ = run_first_turn(retry, provider)
    assert output.status == "completed"
    first, second = provider.calls
    assert 0.59 <= second - first < 3.0


# --- replays repeat the recorded attempts -------------------------------------------------------


def test_a_replay_with_the_pinned_policy_repeats_the_recorded_attempts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    workspace = tmp_path / "ws"
    write_workspace(workspace, {"attempts": 3, "backoff": {"initial_ms": 0, "jitter_ms": 0}})
    provider = Scripted([timeout(), timeout()])
    with RuntimeEnv.open(settings, workspace_dir=workspace, provider=provider) as env:
        loaded = env.catalog.get(WORKFLOW)
        scan = scan_tree(tree)
        (plan,) = plan_run(env, loaded, scan).threads
        for turn in loaded.profile.ordered_turns():
            thread = env.records.get_thread(plan.thread.thread_id)
            assert run_turn(env, loaded, thread, plan.target, turn.turn_id).status == "completed"
        thread = env.records.get_thread(plan.thread.thread_id)
        recorded = [
            (r.attempt, r.status, r.error_code) for r in env.records.turns_for_thread(thread.thread_id)
        ]
    assert recorded[:3] == [
        (1, "failed", "PROVIDER_TIMEOUT"),
        (2, "failed", "PROVIDER_TIMEOUT"),
        (3, "completed", None),
    ]

    # The profile's policy changes since: one attempt only.
    write_workspace(workspace, {"attempts": 1})
    with RuntimeEnv.open(settings, workspace_dir=workspace) as env:
        current = env.catalog.get(WORKFLOW)
        assert current.code_version != thread.code_version
        pinned = read_pinned_profile(env, thread)
        assert pinned.retry_policy(FIRST).attempts == 3
        replayed = replay_thread(env, pinned, thread, plan.target, scan_tree(tree))
        with_current = replay_thread(env, current, thread, plan.target, scan_tree(tree))
    assert replayed.matched and replayed.status == "completed"
    assert [(r.attempt, r.status, r.error_code) for r in replayed.turns[FIRST]] == recorded[:3]
    # Under the changed policy the first timeout would have been the end: the replay says so.
    assert not with_current.matched
    assert [(r.attempt, r.status) for r in with_current.turns[FIRST]] == [(1, "failed")]


def test_profiles_show_gives_the_resolved_policy(tmp_path):
    shown = {t["turn_id"]: t["retry"] for t in describe(load(tmp_path, {"attempts": 2}))["turns"]}
    assert shown[FIRST] == {
        "attempts": 2,
        "backoff": {"initial_ms": 250, "max_ms": 8_000, "jitter_ms": 250},
        "retryable_codes": None,
    }
    assert shown["verification"]["attempts"] == 2  # retry_limit 1, max_turn_retries 2


def test_a_block_that_only_spells_out_the_defaults_keeps_the_code_version(tmp_path):
    plain = load(tmp_path)
    for block in ({}, {"attempts": 2}, {"backoff": {"initial_ms": 250, "max_ms": 8000, "jitter_ms": 250}}):
        spelled = load(tmp_path, block)
        assert spelled.retry_policy(FIRST).declared
        assert spelled.code_version == plain.code_version, block
