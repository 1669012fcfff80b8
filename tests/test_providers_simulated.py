"""The simulated provider: offline output plus reproducible latency and failures."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from wf_pipeline.errors import PROVIDER_SIMULATED_FAILURE, PROVIDER_SIMULATED_TARGET_FAILURE, ProviderError
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.payloads import ContextChild, ContextFile, ContextPayload, ContextTarget
from wf_pipeline.providers import ProviderRequest, create_provider, provider_names
from wf_pipeline.providers.simulated import SimulatedProvider
from wf_pipeline.settings import provider_options

LOADER_SOURCE = '''"""Load pipeline settings from TOML files."""

__all__ = ["Settings", "load_settings"]


class Settings:
    """Validated settings for one run."""


def load_settings(path: str) -> Settings:
    """Read settings from ``path``."""
    return Settings()
'''

CHILD_README = "# plugins\n\n## Purpose\n\nPlugin discovery for `load_settings`.\n"

# (turn_id, output_type, output_format, input refs) of docs_writer_thread_v1, in order.
DOCS_TURNS = (
    ("evidence_gather", "evidence_map", "json", ("context",)),
    ("verification", "verification_report", "json", ("context", "evidence_map")),
    ("readme_struct", "readme_struct", "json", ("context", "evidence_map", "verification_report")),
    ("style_refine", "readme_final", "markdown", ("readme_struct",)),
)


def context_json(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    payload = ContextPayload(
        target=ContextTarget(path=path, name=name, node_id="node:" + "a" * 64),
        files=(
            ContextFile(
                path=f"{path}/loader.py",
                name="loader.py",
                size=len(LOADER_SOURCE),
                language="python",
                text=LOADER_SOURCE,
            ),
            ContextFile(path=f"{path}/logo.png", name="logo.png", size=4096, omitted="binary"),
        ),
        children=(
            ContextChild(
                path=f"{path}/plugins", name="plugins", node_id="node:" + "b" * 64, head_frame=CHILD_README
            ),
        ),
    )
    return canonical_json(payload.to_json()).decode()


def request_for(
    thread_id: str, turn_index: int, inputs: dict[str, str], turn_id: str | None = None
) -> ProviderRequest:
    default_turn_id, output_type, output_format, refs = DOCS_TURNS[turn_index]
    return ProviderRequest(
        workflow_id="docs_writer_thread_v1",
        thread_id=thread_id,
        turn_id=turn_id or default_turn_id,
        output_type=output_type,
        output_format=output_format,
        system_prompt="system",
        user_prompt="user",
        inputs={ref: inputs[ref] for ref in refs},
    )


def run_thread(provider, thread_id: str, target_path: str) -> dict[str, str]:
    """Every turn of one docs-writer thread; returns the inputs/outputs by ref name."""
    texts = {"context": context_json(target_path)}
    for index, (_, output_type, _, _) in enumerate(DOCS_TURNS):
        texts[output_type] = provider.complete(request_for(thread_id, index, texts)).text
    return texts


def simulated(**options) -> SimulatedProvider:
    provider = create_provider("simulated", {key: str(value) for key, value in options.items()})
    assert isinstance(provider, SimulatedProvider)
    return provider


def failure_pattern(provider, threads: int = 100, calls_per_thread: int = 2) -> list[bool]:
    """Whether each call failed, over ``threads`` x ``calls_per_thread`` evidence_gather calls."""
    inputs = {"context": context_json("pkg/settings")}
    pattern = []
    for thread in range(threads):
        for _ in range(calls_per_thread):
            try:
                provider.complete(request_for(f"thread:{thread}", 0, inputs))
                pattern.append(False)
            except ProviderError as exc:
                assert exc.code == PROVIDER_SIMULATED_FAILURE
                assert exc.retryable is True
                pattern.append(True)
    return pattern


def test_registered_with_its_identity() -> None:
    assert "simulated" in provider_names()
    provider = create_provider("simulated")
    assert (provider.provider_type, provider.model) == ("simulated", "simulated-v1")


def test_output_equals_offline_output_for_every_turn() -> None:
    offline_texts = run_thread(create_provider("offline"), "thread:1", "pkg/settings")
    provider = simulated(latency_ms=1, failure_rate=0)
    texts = {"context": offline_texts["context"]}
    for index, (_, output_type, _, _) in enumerate(DOCS_TURNS):
        response = provider.complete(request_for("thread:1", index, texts))
        assert (response.provider_type, response.model) == ("simulated", "simulated-v1")
        assert response.text == offline_texts[output_type]
        texts[output_type] = response.text
    assert texts["readme_final"].startswith("# settings\n")


def test_invalid_input_keeps_the_offline_error_code() -> None:
    request = request_for("thread:1", 0, {"context": "not json"})
    with pytest.raises(ProviderError) as raised:
        simulated().complete(request)
    assert raised.value.code == "PROVIDER_INPUT_INVALID"


def test_latency_is_applied_per_call() -> None:
    provider = simulated(latency_ms=150)
    request = request_for("thread:1", 0, {"context": context_json("pkg/settings")})
    started = time.perf_counter()
    provider.complete(request)
    assert time.perf_counter() - started >= 0.150


def test_latency_over_the_request_timeout_is_a_timeout_after_that_timeout() -> None:
    provider = simulated(latency_ms=5_000)
    context = context_json("pkg/settings")
    request = dataclasses.replace(request_for("thread:1", 0, {"context": context}), timeout_ms=200)
    started = time.perf_counter()
    with pytest.raises(ProviderError) as raised:
        provider.complete(request)
    elapsed = time.perf_counter() - started
    assert raised.value.code == "PROVIDER_TIMEOUT"
    assert (raised.value.details["latency_ms"], raised.value.details["timeout_ms"]) == (5_000, 200)
    assert 0.2 <= elapsed < 2.0


def test_concurrent_calls_overlap_their_latency() -> None:
    latency_s = 0.3
    provider = simulated(latency_ms=latency_s * 1000)
    context = context_json("pkg/settings")
    requests = [request_for(f"thread:{n}", 0, {"context": context}) for n in range(8)]

    def timed(request: ProviderRequest) -> float:
        started = time.perf_counter()
        provider.complete(request)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        durations = list(pool.map(timed, requests))
    elapsed = time.perf_counter() - started
    assert min(durations) >= latency_s
    # Serial calls would take 8 x latency; overlapping ones take about one.
    assert elapsed < 3 * latency_s


def test_failure_rate_zero_never_fails() -> None:
    assert not any(failure_pattern(simulated(failure_rate="0", seed=3)))


def test_failure_rate_one_always_fails_retryably() -> None:
    provider = simulated(failure_rate=1)
    texts = run_thread(create_provider("offline"), "thread:1", "pkg/settings")
    for index in range(len(DOCS_TURNS)):
        with pytest.raises(ProviderError) as raised:
            provider.complete(request_for("thread:1", index, texts))
        assert raised.value.code == PROVIDER_SIMULATED_FAILURE
        assert raised.value.retryable is True
    assert all(failure_pattern(provider, threads=50))


def test_same_seed_same_pattern_other_seed_other_pattern() -> None:
    first = failure_pattern(simulated(failure_rate=0.5, seed=7))
    again = failure_pattern(simulated(failure_rate=0.5, seed=7))
    other = failure_pattern(simulated(failure_rate=0.5, seed=8))
    assert len(first) == 200
    assert first == again
    assert first != other
    assert 60 <= sum(first) <= 140  # the rate is honoured, not just "some failures"


def test_a_retry_of_a_failed_turn_can_succeed() -> None:
    pattern = failure_pattern(simulated(failure_rate=0.5, seed=7), threads=100, calls_per_thread=2)
    first_calls, retries = pattern[0::2], pattern[1::2]
    assert any(failed and not retried for failed, retried in zip(first_calls, retries, strict=True))


def test_pattern_does_not_depend_on_call_interleaving() -> None:
    """Draws are counted per (thread, turn), so a thread pool reproduces a serial run."""
    context = context_json("pkg/settings")

    def outcomes(provider: SimulatedProvider, workers: int) -> dict[tuple[int, int], bool]:
        def call(thread: int) -> list[bool]:
            failed = []
            for _ in range(3):
                try:
                    provider.complete(request_for(f"thread:{thread}", 0, {"context": context}))
                    failed.append(False)
                except ProviderError:
                    failed.append(True)
            return failed

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(call, range(40)))
        return {(thread, n): failed for thread, calls in enumerate(results) for n, failed in enumerate(calls)}

    serial = outcomes(simulated(failure_rate=0.5, seed=11), workers=1)
    pooled = outcomes(simulated(failure_rate=0.5, seed=11), workers=8)
    assert serial == pooled
    assert any(serial.values()) and not all(serial.values())


def test_fail_targets_fails_only_that_target_at_every_turn() -> None:
    provider = simulated(fail_targets="pkg/beta, other/gamma")
    healthy = run_thread(provider, "thread:alpha", "pkg/alpha")
    assert healthy["readme_final"].startswith("# alpha\n")
    # A suffix matches whole path components: "alphabeta" is not "beta".
    assert run_thread(provider, "thread:alphabeta", "pkg/alphabeta")["readme_final"]

    # Feed the failing thread offline outputs so each turn has valid inputs.
    texts = run_thread(create_provider("offline"), "thread:beta", "pkg/beta")
    for index, (turn_id, _, _, _) in enumerate(DOCS_TURNS):
        for _attempt in range(3):
            with pytest.raises(ProviderError) as raised:
                provider.complete(request_for("thread:beta", index, texts))
            assert raised.value.code == PROVIDER_SIMULATED_TARGET_FAILURE
            assert raised.value.retryable is False
            assert raised.value.details["target_path"] == "pkg/beta"
            assert raised.value.details["turn_id"] == turn_id


def test_fail_targets_matches_a_nested_suffix_and_the_root() -> None:
    provider = simulated(fail_targets="beta,.")
    for thread_id, path in (("thread:nested", "src/pkg/beta"), ("thread:root", ".")):
        with pytest.raises(ProviderError) as raised:
            provider.complete(request_for(thread_id, 0, {"context": context_json(path)}))
        assert (raised.value.code, raised.value.retryable) == (PROVIDER_SIMULATED_TARGET_FAILURE, False)


def test_style_refine_target_is_unknown_to_a_provider_that_saw_no_context() -> None:
    """The documented limitation: only earlier calls on the same instance reveal the target."""
    texts = run_thread(create_provider("offline"), "thread:beta", "pkg/beta")
    fresh = simulated(fail_targets="beta")
    response = fresh.complete(request_for("thread:beta", 3, texts))
    assert response.text == texts["readme_final"]


def test_fail_turns_restricts_where_failures_apply() -> None:
    provider = simulated(failure_rate=1, fail_targets="beta", fail_turns="verification,style_refine")
    texts = run_thread(create_provider("offline"), "thread:alpha", "pkg/alpha")
    expected = {"evidence_gather": None, "verification": True, "readme_struct": None, "style_refine": True}
    for index, (turn_id, _, _, _) in enumerate(DOCS_TURNS):
        request = request_for("thread:alpha", index, texts)
        if expected[turn_id] is None:
            provider.complete(request)
            continue
        with pytest.raises(ProviderError) as raised:
            provider.complete(request)
        assert (raised.value.code, raised.value.retryable) == (PROVIDER_SIMULATED_FAILURE, True)

    beta_texts = run_thread(create_provider("offline"), "thread:beta", "pkg/beta")
    assert provider.complete(request_for("thread:beta", 0, beta_texts)).text == beta_texts["evidence_map"]
    with pytest.raises(ProviderError) as raised:
        provider.complete(request_for("thread:beta", 1, beta_texts))
    assert (raised.value.code, raised.value.retryable) == (PROVIDER_SIMULATED_TARGET_FAILURE, False)


def test_options_from_environment_strings() -> None:
    env = {
        "WF_SIMULATED_LATENCY_MS": "2.5",
        "WF_SIMULATED_FAILURE_RATE": "0.25",
        "WF_SIMULATED_SEED": "42",
        "WF_SIMULATED_FAIL_TARGETS": " pkg/beta , ,docs/",
        "WF_SIMULATED_FAIL_TURNS": "verification",
        "WF_OPENAI_MODEL": "not ours",
    }
    provider = create_provider("simulated", provider_options("simulated", env), env)
    assert isinstance(provider, SimulatedProvider)
    options = provider.options
    assert (options.latency_ms, options.failure_rate, options.seed) == (2.5, 0.25, 42)
    assert options.fail_targets == ("pkg/beta", "docs")
    assert options.fail_turns == ("verification",)


def test_empty_strings_mean_defaults() -> None:
    options = simulated(latency_ms="", failure_rate="", seed="", fail_targets="", fail_turns="").options
    assert (options.latency_ms, options.failure_rate, options.seed) == (0.0, 0.0, 0)
    assert (options.fail_targets, options.fail_turns) == ((), ())


@pytest.mark.parametrize(
    "options",
    [
        {"latency_ms": "-1"},
        {"latency_ms": "slow"},
        {"latency_ms": "inf"},
        {"failure_rate": "1.5"},
        {"failure_rate": "-0.1"},
        {"failure_rate": "nan"},
        {"failure_rate": "often"},
        {"failure_rate": True},
        {"seed": "1.5"},
        {"seed": "abc"},
        {"fail_targets": "/"},
        {"fail_targets": 3},
        {"fail_turns": ["verification", 2]},
        {"failure_rat": "0.5"},
    ],
)
def test_bad_options_are_config_errors(options: dict) -> None:
    with pytest.raises(ProviderError) as raised:
        create_provider("simulated", options)
    assert raised.value.code == "PROVIDER_CONFIG_INVALID"
