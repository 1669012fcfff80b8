"""Model output as servers really send it: reasoning blocks and wrapping fences are removed
before the turn judges the output, for JSON and Markdown alike, over a real loopback server."""

from __future__ import annotations

import json

import pytest
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings
from openai_wire_support import FakeServer, provider_for, serving

from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.runtime import RuntimeEnv, plan_run, run_turn
from wf_pipeline.text.model_output import strip_reasoning, strip_wrapping_fence, unwrap_model_output
from wf_pipeline.tree import scan_tree

WORKFLOW = "docs_writer_thread_v1"
TURNS = ["evidence_gather", "verification", "readme_struct", "style_refine"]
README = "# storage\n\n## Purpose\n\n- `db.py` — keeps readings\n"


@pytest.mark.parametrize(
    ("sent", "answer"),
    [
        ('```json\n{"a": 1}\n```', '{"a": 1}\n'),
        ('  ```\n{"a": 1}\n```\n\n', '{"a": 1}\n'),
        ('```JSON\n{"a": 1}```', '{"a": 1}\n'),  # closed at the end of the last line
        ('~~~json\n{"a": 1}\n~~~', '{"a": 1}\n'),
        ('````\n{"a": "```"}\n````', '{"a": "```"}\n'),
        ('```json\n{"a": 1}', '{"a": 1}'),  # never closed: runs to the end
        (f"```markdown\n{README}```", README),
        (f"```md\n{README}```\n", README),
        ('<think>\nThe user wants JSON.\n</think>\n\n{"a": 1}', '{"a": 1}'),
        ('<THINKING>plan</THINKING>{"a": 1}', '{"a": 1}'),
        ('<think>a</think><think>b</think>\n{"a": 1}', '{"a": 1}'),
        ('The template opened the block.\n</think>\n\n{"a": 1}', '{"a": 1}'),
        (f"<think>\nplan\n</think>\n\n```markdown\n{README}```", README),
    ],
)
def test_wrappers_are_removed(sent: str, answer: str) -> None:
    assert unwrap_model_output(sent) == answer


@pytest.mark.parametrize(
    "kept",
    [
        '{"a": 1}',
        README,
        # A README that starts and ends with code blocks is not wrapped in one.
        "```sh\nmake run\n```\n\nThen:\n\n```sh\nmake test\n```\n",
        # A whole answer in a fence of another language is that language's code, not a wrapper.
        "```python\nprint(1)\n```",
        # A reasoning block that is not first is part of the answer.
        "# Notes\n\nModels write <think>...</think> blocks.\n",
        "",
    ],
)
def test_unwrapped_text_comes_back_byte_for_byte(kept: str) -> None:
    assert unwrap_model_output(kept) == kept
    assert strip_reasoning(kept) == kept and strip_wrapping_fence(kept) == kept


class WrappingProvider:
    """The real OpenAI-wire provider; the loopback server answers each call with the offline
    provider's output for that request inside ``wrap`` (a test harness: every byte crosses HTTP)."""

    def __init__(self, server: FakeServer, wrap: dict[str, str]) -> None:
        self._server = server
        self._wrap = wrap
        self._offline = create_provider("offline")
        self._inner = provider_for(server.base_url)
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model
        self.answers: dict[str, str] = {}

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        text = self._offline.complete(request).text
        self.answers[request.turn_id] = text
        self._server.answer(self._wrap[request.output_format].format(text=text))
        return self._inner.complete(request)

    def close(self) -> None:
        self._inner.close()


@pytest.mark.parametrize(
    "wrap",
    [
        {"json": "```json\n{text}\n```", "markdown": "```markdown\n{text}```"},
        {"json": "<think>\nList the claims.\n</think>\n\n{text}", "markdown": "<think>ok</think>\n{text}"},
        {
            "json": "<think>plan</think>\n~~~\n{text}\n~~~\n",
            "markdown": "<thinking>x</thinking>\n```\n{text}```\n",
        },
    ],
    ids=["fenced", "reasoning", "both"],
)
def test_a_thread_completes_when_the_server_wraps_every_answer(tmp_path, monkeypatch, wrap) -> None:
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    with serving() as server:
        provider = WrappingProvider(server, wrap)
        env = RuntimeEnv.open(settings, provider=provider)
        loaded = env.catalog.get(WORKFLOW)
        (plan,) = plan_run(env, loaded, scan_tree(tree)).threads
        outputs = []
        for turn_id in TURNS:
            thread = env.records.get_thread(plan.thread.thread_id)
            outputs.append(run_turn(env, loaded, thread, plan.target, turn_id))
        provider.close()
    assert [(o.status, o.gate_outcome, o.error_code) for o in outputs] == [("completed", "pass", None)] * 4
    # The stored output is the answer itself: the JSON parsed as the offline turn wrote it,
    # the README byte for byte.
    stored = {o.turn_id: env.cas.get(o.artifact_id).decode() for o in outputs}
    for turn_id in TURNS[:3]:
        assert json.loads(stored[turn_id]) == json.loads(provider.answers[turn_id])
    assert stored["style_refine"] == provider.answers["style_refine"]
    assert stored["style_refine"].startswith("# storage\n")


@pytest.mark.parametrize(
    ("body", "code", "attempts", "said"),
    [
        # Cut at the token limit: not retried, the same request would stop at the same limit.
        (
            {
                "choices": [
                    {"message": {"role": "assistant", "content": '{"claims": ['}, "finish_reason": "length"}
                ],
                "usage": {"completion_tokens": 32},
            },
            "PROVIDER_OUTPUT_TRUNCATED",
            1,
            "finish_reason length; max_tokens 32, completion_tokens 32",
        ),
        # An error object in a 200 reply: a server error (retried), the server's words kept.
        (
            {"object": "error", "message": "CUDA out of memory on device 0", "type": "InternalServerError"},
            "PROVIDER_SERVER_ERROR",
            2,
            "CUDA out of memory on device 0",
        ),
    ],
    ids=["truncated", "error-object"],
)
def test_a_failing_200_reply_fails_the_turn_with_its_code_and_the_servers_words(
    tmp_path, monkeypatch, body, code, attempts, said
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    with serving() as server:
        server.respond(200, json.dumps(body).encode())
        provider = provider_for(server.base_url, max_tokens=32)
        env = RuntimeEnv.open(settings, provider=provider)
        loaded = env.catalog.get(WORKFLOW)
        (plan,) = plan_run(env, loaded, scan_tree(tree)).threads
        thread = env.records.get_thread(plan.thread.thread_id)
        output = run_turn(env, loaded, thread, plan.target, "evidence_gather")
        provider.close()
    assert (output.status, output.error_code) == ("failed", code)
    records = env.records.turns_for_thread(plan.thread.thread_id)
    assert [(r.attempt, r.error_code) for r in records] == [(n, code) for n in range(1, attempts + 1)]
    assert all(said in r.error_text for r in records)
    assert "not a JSON document" not in records[0].error_text
    assert len(server.received) == attempts
