"""A server's error text reaches our errors and records only when it cannot carry request content."""

from __future__ import annotations

import html
import json
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings
from test_providers_openai import SECRET_PROMPT, FakeServer, make_request, provider_error, provider_for

from wf_pipeline.providers import ProviderRequest
from wf_pipeline.providers.server_errors import (
    ECHO_WINDOW_CHARS,
    MAX_SERVER_MESSAGE_CHARS,
    WITHHELD_NOTE,
    repeats_request,
    server_message,
    server_token,
)
from wf_pipeline.runtime import RuntimeEnv, plan_run, run_turn
from wf_pipeline.tree import scan_tree

WORKFLOW = "docs_writer_thread_v1"
PROMPT = "Describe the storage module: its retention rules, its disk layout and naïve “quotes”.\nLine two."
REQUEST = ProviderRequest(
    workflow_id=WORKFLOW,
    thread_id="thread:1",
    turn_id="evidence_gather",
    output_type="evidence_map",
    output_format="json",
    system_prompt="You write documentation for code repositories.",
    user_prompt=PROMPT,
    inputs={"context": '{"files": ["retention_policy.py"]}'},
)


def fragments(text: str, size: int = ECHO_WINDOW_CHARS) -> set[str]:
    """Every run of ``size`` characters of ``text``: none may appear in an error."""
    return {text[start : start + size] for start in range(len(text) - size + 1)}


def assert_no_fragment(said: str, *texts: str) -> None:
    leaked = sorted(fragment for text in texts for fragment in fragments(text) if fragment in said)
    assert leaked == []


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    thread = threading.Thread(target=fake.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def echo_request(server: FakeServer, status: int) -> None:
    """The server answers ``status`` with a message that quotes the request body it received."""

    def reply() -> tuple[int, bytes]:
        echoed = json.dumps(server.received[-1]["body"])
        error = {"message": f"bad request: {echoed}", "type": "invalid_request_error", "code": None}
        return status, json.dumps({"error": error}).encode()

    server.reply = reply


# --- the judgement ------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "model 'x' not found",
        "This model's maximum context length is 8192 tokens; your messages resulted in 9001 tokens.",
        "Invalid API key provided",
        "no storage module",  # shares "storage module": shorter than the window, an ordinary phrase
    ],
)
def test_a_plain_server_message_is_kept(message: str) -> None:
    assert not repeats_request(message, [PROMPT, REQUEST.system_prompt])
    assert server_message(message, REQUEST) == message


@pytest.mark.parametrize(
    "echo",
    [
        PROMPT,
        f"bad request: {PROMPT[20:50]}",
        json.dumps({"content": PROMPT}),  # JSON-escaped: the newline, the quotes, ï
        json.dumps(json.dumps({"content": PROMPT})),  # escaped twice
        PROMPT.upper().replace(" ", "  "),  # other case and spacing
        "input was: You write documentation for code repositories",  # the system prompt
        'cannot read ["retention_policy.py"]',  # an input text
        f"bad input: {urllib.parse.quote(PROMPT[10:210])}",  # percent-encoded: %20 leaves digits
        f"bad input: {urllib.parse.quote_plus(json.dumps({'content': PROMPT}))}",  # JSON, then form-encoded
        f"bad input: {html.escape(PROMPT)}",  # HTML character references
    ],
)
def test_a_message_that_repeats_the_request_is_withheld(echo: str) -> None:
    assert repeats_request(echo, [REQUEST.system_prompt, PROMPT, *REQUEST.inputs.values()])
    assert server_message(echo, REQUEST) == WITHHELD_NOTE


def test_a_long_message_is_cut_and_no_message_is_none() -> None:
    assert server_message("x" * 1000, REQUEST) == "x" * MAX_SERVER_MESSAGE_CHARS
    assert server_message(None, REQUEST) is None
    assert server_message({"nested": "object"}, REQUEST) is None
    assert server_message("   ", REQUEST) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("invalid_request_error", "invalid_request_error"),
        ("model_not_found", "model_not_found"),
        (400, "400"),
        (None, None),
        (True, None),
        ("has spaces in it", None),
        ("x" * 65, None),
        ("retention_rules_its_disk_layout", None),  # a token made of request content
    ],
)
def test_server_tokens(value: object, expected: str | None) -> None:
    assert server_token(value, REQUEST) == expected


# --- the OpenAI-wire provider against a loopback server -------------------------------


@pytest.mark.parametrize(("status", "code"), [(400, "PROVIDER_HTTP_ERROR"), (500, "PROVIDER_SERVER_ERROR")])
def test_an_echoing_server_puts_no_prompt_into_the_error(server: FakeServer, status: int, code: str) -> None:
    echo_request(server, status)
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    (received,) = server.received
    assert (error.code, error.details["status"]) == (code, status)
    prompts = [message["content"] for message in received["body"]["messages"]]
    assert SECRET_PROMPT in prompts
    assert_no_fragment(str(error), *prompts)
    assert WITHHELD_NOTE in error.message
    assert "type invalid_request_error" in error.message
    assert error.details["server_error_type"] == "invalid_request_error"
    assert "server_error_code" not in error.details


def test_a_plain_server_message_reaches_the_error(server: FakeServer) -> None:
    body = {
        "error": {
            "message": "model 'x' not found",
            "type": "invalid_request_error",
            "code": "model_not_found",
        }
    }
    server.respond(404, json.dumps(body).encode())
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    assert error.message.endswith(": model 'x' not found (type invalid_request_error, code model_not_found)")
    assert (error.details["server_error_type"], error.details["server_error_code"]) == (
        "invalid_request_error",
        "model_not_found",
    )


def test_an_echo_in_the_string_error_form_is_withheld(server: FakeServer) -> None:
    server.respond(400, json.dumps({"error": f"cannot parse {SECRET_PROMPT}"}).encode())
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    assert error.message.endswith(f": {WITHHELD_NOTE}")


def test_the_failed_turn_record_carries_no_prompt(server: FakeServer, tmp_path, monkeypatch) -> None:
    """A real turn against an echoing server: the recorded error_text holds no prompt text."""
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    echo_request(server, 400)
    provider = provider_for(server.base_url)
    env = RuntimeEnv.open(settings, provider=provider)
    loaded = env.catalog.get(WORKFLOW)
    plan = plan_run(env, loaded, scan_tree(tree))
    (thread_plan,) = plan.threads
    thread = env.records.get_thread(thread_plan.thread.thread_id)
    output = run_turn(env, loaded, thread, thread_plan.target, "evidence_gather")
    assert (output.status, output.error_code, output.provider_calls) == ("failed", "PROVIDER_HTTP_ERROR", 1)
    (record,) = [r for r in env.records.turns_for_thread(thread.thread_id) if r.turn_id == "evidence_gather"]
    (received,) = server.received
    prompts = [message["content"] for message in received["body"]["messages"]]
    assert all(len(prompt) > 100 for prompt in prompts)
    assert WITHHELD_NOTE in record.error_text
    assert_no_fragment(record.error_text, *prompts)
    provider.close()
