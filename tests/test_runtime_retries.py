"""Turn retries and the per-turn deadline, run directly (no Dagster) with scripted providers."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.errors import ProviderError
from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.providers.retry import Backoff, Deadline, call_within, provider_retrying
from wf_pipeline.runtime import RuntimeEnv, plan_run, run_turn
from wf_pipeline.tree import scan_tree

WORKFLOW = "docs_writer_thread_v1"


class ScriptedProvider:
    """The offline provider behind a per-call script: an exception to raise or seconds to sleep first."""

    provider_type = "offline"
    model = "offline-v1"

    def __init__(self, script: list[Exception | float] | None = None) -> None:
        self._inner = create_provider("offline")
        self._script = list(script or [])
        self.calls: list[tuple[float, ProviderRequest]] = []
        self.finished = threading.Event()

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls.append((time.monotonic(), request))
        step = self._script.pop(0) if self._script else None
        if isinstance(step, Exception):
            raise step
        if step:
            time.sleep(step)
        try:
            return self._inner.complete(request)
        finally:
            self.finished.set()


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")

    def make(provider, timeout_ms: int | None = None, retry_limit: int | None = None):
        env = RuntimeEnv.open(settings, provider=provider)
        loaded = env.catalog.get(WORKFLOW)
        update = {}
        if timeout_ms is not None:
            update["timeout_ms"] = timeout_ms
        if retry_limit is not None:
            update["retry_limit"] = retry_limit
        turns = [turn.model_copy(update=update) for turn in loaded.profile.turns]
        loaded = dataclasses.replace(loaded, profile=loaded.profile.model_copy(update={"turns": turns}))
        plan = plan_run(env, loaded, scan_tree(tree))
        (thread_plan,) = plan.threads
        thread = env.records.get_thread(thread_plan.thread.thread_id)
        return env, loaded, thread, thread_plan.target

    return make


def first_turn_records(env, thread):
    return [r for r in env.records.turns_for_thread(thread.thread_id) if r.turn_id == "evidence_gather"]


def rate_limited(retry_after_ms: int | None) -> ProviderError:
    extra = {"retry_after_ms": retry_after_ms} if retry_after_ms is not None else {}
    return ProviderError("PROVIDER_RATE_LIMITED", "HTTP 429", status=429, **extra)


def test_retry_after_is_waited_before_the_next_attempt(setup):
    provider = ScriptedProvider([rate_limited(700)])
    env, loaded, thread, target = setup(provider)
    output = run_turn(env, loaded, thread, target, "evidence_gather")
    assert (output.status, output.attempt, output.provider_calls) == ("completed", 2, 2)
    (first_at, _), (second_at, _) = provider.calls
    assert second_at - first_at >= 0.7
    records = first_turn_records(env, thread)
    assert [(r.attempt, r.status, r.error_code) for r in records] == [
        (1, "failed", "PROVIDER_RATE_LIMITED"),
        (2, "completed", None),
    ]
    assert records[1].started_at_ms - records[0].ended_at_ms >= 690


def test_a_wait_that_would_cross_the_deadline_ends_the_turn_with_the_last_error(setup):
    provider = ScriptedProvider([rate_limited(10_000)])
    env, loaded, thread, target = setup(provider, timeout_ms=2_000)
    started = time.monotonic()
    output = run_turn(env, loaded, thread, target, "evidence_gather")
    assert time.monotonic() - started < 1.5  # no pointless sleep up to the deadline
    assert (output.status, output.error_code, output.provider_calls) == ("failed", "PROVIDER_RATE_LIMITED", 1)
    assert [r.error_code for r in first_turn_records(env, thread)] == ["PROVIDER_RATE_LIMITED"]


def test_a_provider_without_http_is_stopped_at_the_deadline_and_writes_nothing_late(setup):
    provider = ScriptedProvider([2.0])  # answers after 2 s, a valid output
    env, loaded, thread, target = setup(provider, timeout_ms=300)
    started = time.monotonic()
    output = run_turn(env, loaded, thread, target, "evidence_gather")
    elapsed = time.monotonic() - started
    assert not provider.finished.is_set()  # the turn ended before the answer came
    assert 0.3 <= elapsed < 1.8
    assert (output.status, output.error_code, output.provider_calls) == ("failed", "PROVIDER_TIMEOUT", 1)
    (record,) = first_turn_records(env, thread)
    assert (record.status, record.error_code) == ("failed", "PROVIDER_TIMEOUT")
    assert "300 ms" in record.error_text
    referenced = env.records.referenced_artifact_ids()
    # The late answer arrives after the turn ended: it changes no record and no thread status.
    assert provider.finished.wait(5.0)
    time.sleep(0.2)
    assert [(r.attempt, r.status) for r in first_turn_records(env, thread)] == [(1, "failed")]
    assert env.records.referenced_artifact_ids() == referenced
    assert env.records.get_thread(thread.thread_id).status == "failed"


def test_a_retry_gets_only_the_time_left_of_the_deadline(setup):
    timeout = ProviderError("PROVIDER_TIMEOUT", "no answer")
    provider = ScriptedProvider([timeout])
    env, loaded, thread, target = setup(provider, timeout_ms=60_000)
    output = run_turn(env, loaded, thread, target, "evidence_gather")
    assert output.status == "completed"
    first, second = (request.timeout_ms for _, request in provider.calls)
    assert 59_000 < first <= 60_000
    assert second < first


def test_only_codes_the_catalogue_marks_retryable_are_retried(setup):
    bad_input = ProviderError("PROVIDER_INPUT_INVALID", "context is not JSON")
    provider = ScriptedProvider([bad_input, bad_input])
    env, loaded, thread, target = setup(provider, retry_limit=2)
    output = run_turn(env, loaded, thread, target, "evidence_gather")
    assert (output.status, output.error_code, output.provider_calls) == (
        "failed",
        "PROVIDER_INPUT_INVALID",
        1,
    )


def test_retries_are_bounded_by_the_thread_policy_too(setup):
    down = ProviderError("PROVIDER_CONNECTION_ERROR", "refused")
    provider = ScriptedProvider([down] * 10)
    env, loaded, thread, target = setup(provider, retry_limit=9)  # max_turn_retries is 2
    output = run_turn(env, loaded, thread, target, "evidence_gather")
    assert (output.status, output.attempt, output.provider_calls) == ("failed", 3, 3)
    assert [r.attempt for r in first_turn_records(env, thread)] == [1, 2, 3]


def test_backoff_grows_exponentially_with_jitter():
    waits: list[float] = []
    down = ProviderError("PROVIDER_SERVER_ERROR", "HTTP 500", status=500)

    def always_down():
        raise down

    retrying = provider_retrying(5, Deadline(60_000), backoff=Backoff(0.25, 8.0, 0.25), sleep=waits.append)
    with pytest.raises(ProviderError):
        retrying(always_down)
    assert len(waits) == 4
    for n, wait in enumerate(waits):
        assert 0.25 * 2**n <= wait <= 0.25 * 2**n + 0.25
    retrying = provider_retrying(5, Deadline(60_000), backoff=Backoff(0.25, 8.0, 0.25), sleep=waits.append)
    with pytest.raises(ProviderError):
        retrying(always_down)
    assert waits[:4] != waits[4:]  # jitter: two runs do not wait alike


def test_retry_after_is_a_floor_not_a_ceiling():
    waits: list[float] = []
    errors = [rate_limited(0), rate_limited(3_000)]

    def flaky():
        if errors:
            raise errors.pop(0)
        return "ok"

    retrying = provider_retrying(3, Deadline(60_000), backoff=Backoff(0.25, 8.0, 0.0), sleep=waits.append)
    assert retrying(flaky) == "ok"
    assert waits == [0.25, 3.0]


def test_a_non_wf_error_is_never_retried():
    calls = []

    def broken():
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        provider_retrying(3, Deadline(60_000), sleep=lambda s: None)(broken)
    assert calls == [1]


def _bare_request(**fields: object) -> ProviderRequest:
    """A provider request with ids only: call_within never looks at its text."""
    base = dict(
        workflow_id="w",
        thread_id="thread:1",
        turn_id="t",
        output_type="o",
        output_format="markdown",
        system_prompt="",
        user_prompt="",
        inputs={},
    )
    return ProviderRequest(**{**base, **fields})


def test_call_within_returns_in_time_answers_and_raises_the_providers_errors():
    request = _bare_request()

    class Answering:
        provider_type = model = "x"

        def complete(self, request):
            return ProviderResponse(text="# ok\n", provider_type="x", model="x")

    class Refusing(Answering):
        def complete(self, request):
            raise ProviderError("PROVIDER_HTTP_ERROR", "HTTP 401", status=401)

    assert call_within(Answering(), request, Deadline(1_000)).text == "# ok\n"
    with pytest.raises(ProviderError) as caught:
        call_within(Refusing(), request, Deadline(1_000))
    assert caught.value.code == "PROVIDER_HTTP_ERROR"
    expired = Deadline(1, clock=iter([0.0, 5.0, 5.0, 5.0, 5.0, 5.0]).__next__)
    with pytest.raises(ProviderError) as caught:
        call_within(Answering(), request, expired)
    assert caught.value.code == "PROVIDER_TIMEOUT"


@pytest.mark.parametrize("returns_by_deadline", [True, False])
def test_a_late_answer_is_dropped_whether_the_call_runs_inline_or_in_a_thread(returns_by_deadline):
    """Providers that cannot block past the deadline run in the caller's thread; the rule is the same."""
    request = _bare_request(timeout_ms=50)
    callers: list[threading.Thread] = []

    class Late:
        provider_type = model = "x"

        def __init__(self) -> None:
            self.returns_by_deadline = returns_by_deadline

        def complete(self, request):
            callers.append(threading.current_thread())
            time.sleep(0.2)
            return ProviderResponse(text="# late\n", provider_type="x", model="x")

    with pytest.raises(ProviderError) as caught:
        call_within(Late(), request, Deadline(50))
    assert caught.value.code == "PROVIDER_TIMEOUT"
    assert (callers[0] is threading.current_thread()) is returns_by_deadline
    # The shipped providers that only compute (or sleep within the deadline) run inline.
    assert create_provider("offline").returns_by_deadline is True
    assert create_provider("simulated").returns_by_deadline is True
