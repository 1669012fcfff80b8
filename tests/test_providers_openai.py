"""The OpenAI-wire provider against a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
from openai_wire_support import SECRET_PROMPT, FakeServer, make_request, provider_error, provider_for, serving

from wf_pipeline.errors import ProviderError
from wf_pipeline.providers import create_provider


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with serving() as fake:
        yield fake


def test_success_sends_the_wire_request_and_returns_content(server: FakeServer) -> None:
    server.answer('{"claims": []}')
    provider = provider_for(server.base_url, {"LLM_KEY": "sk-test"}, api_key_env="LLM_KEY", max_tokens=512)
    response = provider.complete(make_request())
    assert (response.text, response.provider_type, response.model) == (
        '{"claims": []}',
        "openai",
        "qwen2.5:7b",
    )
    assert dict(response.usage) == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    (received,) = server.received
    assert received["path"] == "/v1/chat/completions"
    assert received["headers"]["Authorization"] == "Bearer sk-test"
    assert received["body"] == {
        "model": "qwen2.5:7b",
        "messages": [
            {"role": "system", "content": "system rules"},
            {"role": "user", "content": SECRET_PROMPT},
        ],
        "temperature": 0.0,
        "max_tokens": 512,
        "response_format": {"type": "json_object"},
    }


def test_markdown_output_has_no_json_mode_and_no_key_means_no_auth_header(server: FakeServer) -> None:
    server.answer("```json\n# Title\n```")
    response = provider_for(server.base_url).complete(make_request("markdown"))
    assert response.text == "```json\n# Title\n```"  # fences are only stripped from JSON outputs
    (received,) = server.received
    assert "Authorization" not in received["headers"]
    assert "response_format" not in received["body"] and "max_tokens" not in received["body"]


def test_json_mode_can_be_switched_off(server: FakeServer) -> None:
    server.answer("{}")
    provider_for(server.base_url, json_mode=False).complete(make_request())
    assert "response_format" not in server.received[0]["body"]


@pytest.mark.parametrize("content", ['```json\n{"claims": []}\n```', '<think>plan</think>\n{"claims": []}'])
def test_content_is_returned_as_the_server_sent_it(server: FakeServer, content: str) -> None:
    # Unwrapping is the turn's, for every provider alike (tests/test_model_output.py).
    server.answer(content)
    assert provider_for(server.base_url).complete(make_request()).text == content


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (500, "PROVIDER_SERVER_ERROR", True),
        (503, "PROVIDER_SERVER_ERROR", True),
        (429, "PROVIDER_RATE_LIMITED", True),
        (401, "PROVIDER_HTTP_ERROR", False),
        (400, "PROVIDER_HTTP_ERROR", False),
    ],
)
def test_http_errors_carry_status_and_server_message(
    server: FakeServer, status: int, code: str, retryable: bool
) -> None:
    server.respond(status, json.dumps({"error": {"message": f"server says {status}", "type": "x"}}).encode())
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    assert (error.code, error.retryable, error.details["status"]) == (code, retryable, status)
    assert f"server says {status}" in error.message
    assert f"HTTP {status}" in error.message
    assert "retry_after_ms" not in error.details  # the server sent no Retry-After


def test_http_error_with_non_json_body(server: FakeServer) -> None:
    server.respond(502, b"<html>bad gateway</html>")
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    assert (error.code, error.details["status"], error.retryable) == ("PROVIDER_SERVER_ERROR", 502, True)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected_ms"),
    [
        (429, "2", 2_000),
        (503, "0", 0),
        (429, "Wed, 21 Oct 2015 07:28:00 GMT", 0),  # an HTTP date in the past: no wait
        (429, "soon", None),  # unreadable: ignored
        (500, "5", None),  # RFC 9110 gives Retry-After meaning on 503 and 429 only
    ],
)
def test_retry_after_is_read_from_429_and_503(
    server: FakeServer, status: int, retry_after: str, expected_ms: int | None
) -> None:
    server.reply = lambda: (status, b"{}", {"Retry-After": retry_after})
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    assert error.details.get("retry_after_ms") == expected_ms
    if expected_ms is not None:
        assert f"Retry-After {expected_ms} ms" in error.message


def test_retry_after_as_a_future_http_date() -> None:
    from datetime import UTC, datetime

    from wf_pipeline.providers.retry import parse_retry_after

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:03 GMT", now) == 3_000
    assert parse_retry_after("Thursday, 01-Jan-26 12:00:03 GMT", now) == 3_000  # RFC 850 form
    assert parse_retry_after("Thu Jan  1 12:00:03 2026", now) == 3_000  # asctime form
    assert parse_retry_after(" 7 ", now) == 7_000
    assert parse_retry_after("-1", now) is None
    assert parse_retry_after(None, now) is None


def test_one_pooled_connection_serves_successive_calls(server: FakeServer) -> None:
    server.answer('{"claims": []}')
    with provider_for(server.base_url) as provider:
        for _ in range(5):
            provider.complete(make_request())
    # Keep-alive: the five requests came over one TCP connection.
    assert len({received["client_port"] for received in server.received}) == 1


def test_a_closed_provider_fails_with_a_connection_error(server: FakeServer) -> None:
    server.answer('{"claims": []}')
    provider = provider_for(server.base_url)
    provider.close()
    provider.close()  # idempotent
    error = provider_error(lambda: provider.complete(make_request()))
    assert (error.code, error.retryable) == ("PROVIDER_CONNECTION_ERROR", True)
    assert server.received == []


def test_connect_and_read_timeouts_are_separate_and_bounded_by_the_request() -> None:
    from wf_pipeline.providers.openai import OpenAIProvider

    provider = provider_for("http://127.0.0.1:9/v1", connect_timeout_ms="300", read_timeout_ms="2000")
    assert isinstance(provider, OpenAIProvider)
    timeout = provider._timeout(make_request(timeout_ms=5_000))
    assert (timeout.connect, timeout.read) == (0.3, 2.0)
    bounded = provider._timeout(make_request(timeout_ms=100))
    assert (bounded.connect, bounded.read) == (0.1, 0.1)
    provider.close()


@pytest.mark.parametrize(
    "body",
    [
        b"this is not json",
        b"[1, 2]",
        json.dumps({"choices": []}).encode(),
        json.dumps({"object": "chat.completion"}).encode(),
        json.dumps({"choices": [{"message": {"role": "assistant", "content": ""}}]}).encode(),
        json.dumps({"choices": [{"message": {"role": "assistant", "content": None}}]}).encode(),
        json.dumps({"choices": ["text"]}).encode(),
    ],
)
def test_malformed_responses_are_bad_responses(server: FakeServer, body: bytes) -> None:
    server.respond(200, body)
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    assert error.code == "PROVIDER_BAD_RESPONSE"


def test_slow_server_times_out(server: FakeServer) -> None:
    def slow() -> tuple[int, bytes]:
        time.sleep(1.5)
        return 200, b"{}"

    server.reply = slow
    started = time.monotonic()
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request(timeout_ms=200)))
    assert (error.code, error.retryable, error.details["phase"]) == ("PROVIDER_TIMEOUT", True, "read")
    assert time.monotonic() - started < 1.4


def test_closed_port_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = provider_error(
        lambda: provider_for(f"http://127.0.0.1:{port}/v1").complete(make_request(timeout_ms=2_000))
    )
    assert (error.code, error.retryable) == ("PROVIDER_CONNECTION_ERROR", True)


@pytest.mark.parametrize(
    "options",
    [
        {"model": "m"},
        {"base_url": "ftp://host/v1", "model": "m"},
        {"base_url": "http://127.0.0.1:1/v1"},
        {"base_url": "http://127.0.0.1:1/v1", "model": "m", "max_tokens": "many"},
        {"base_url": "http://127.0.0.1:1/v1", "model": "m", "connect_timeout_ms": "0"},
        {"base_url": "http://127.0.0.1:1/v1", "model": "m", "read_timeout_ms": "soon"},
        {"base_url": "http://127.0.0.1:1/v1", "model": "m", "max_connections": True},
    ],
)
def test_invalid_configuration(options: dict) -> None:
    with pytest.raises(ProviderError) as caught:
        create_provider("openai", options, {})
    assert caught.value.code == "PROVIDER_CONFIG_INVALID"


def test_required_key_missing_from_environment() -> None:
    options = {"base_url": "http://127.0.0.1:1/v1", "model": "m", "require_key": True}
    with pytest.raises(ProviderError) as caught:
        create_provider("openai", options, {"OTHER": "x"})
    assert (caught.value.code, caught.value.details["api_key_env"]) == (
        "PROVIDER_MISSING_KEY",
        "OPENAI_API_KEY",
    )
    assert create_provider("openai", options, {"OPENAI_API_KEY": "sk"}).model == "m"


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("0", False), ("true", True), (None, True)])
def test_string_flags_from_environment_are_parsed(raw, expected):
    from wf_pipeline.providers.openai import OpenAIOptions

    options = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    if raw is not None:
        options["json_mode"] = raw
    assert OpenAIOptions.from_options(options, {}).json_mode is expected


def test_bad_flag_value_is_a_config_error():
    from wf_pipeline.providers.openai import OpenAIOptions

    with pytest.raises(ProviderError) as err:
        OpenAIOptions.from_options(
            {"base_url": "http://127.0.0.1:9/v1", "model": "m", "require_key": "maybe"}, {}
        )
    assert err.value.code == "PROVIDER_CONFIG_INVALID"


def _reply(finish_reason: str | None, content: str | None, usage: dict | None = None) -> bytes:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": content},
        "finish_reason": finish_reason,
    }
    return json.dumps({"choices": [choice], "usage": usage or {"completion_tokens": 64}}).encode()


@pytest.mark.parametrize("content", ['{"claims": [{"claim_id": "c001", "statem', "", None])
def test_a_reply_cut_at_the_token_limit_is_output_truncated(server: FakeServer, content: str | None) -> None:
    server.respond(200, _reply("length", content))
    error = provider_error(lambda: provider_for(server.base_url, max_tokens=64).complete(make_request()))
    assert (error.code, error.retryable) == ("PROVIDER_OUTPUT_TRUNCATED", False)
    assert (error.details["max_tokens"], error.details["completion_tokens"]) == (64, 64)
    assert "max_tokens 64, completion_tokens 64" in error.message
    assert "not a JSON" not in error.message


def test_a_complete_reply_with_finish_reason_stop_is_returned(server: FakeServer) -> None:
    server.respond(200, _reply("stop", '{"claims": []}'))
    assert provider_for(server.base_url).complete(make_request()).text == '{"claims": []}'


@pytest.mark.parametrize(
    ("body", "code", "message", "tokens"),
    [
        (
            {"error": {"message": "model is overloaded", "type": "server_error", "code": "overloaded"}},
            "PROVIDER_SERVER_ERROR",
            "model is overloaded",
            {"server_error_type": "server_error", "server_error_code": "overloaded"},
        ),
        ({"error": "llama runner process has terminated"}, "PROVIDER_SERVER_ERROR", "llama runner", {}),
        (
            {
                "object": "error",
                "message": "max context 4096 exceeded",
                "type": "BadRequestError",
                "code": 400,
            },
            "PROVIDER_HTTP_ERROR",
            "max context 4096 exceeded",
            {"server_error_type": "BadRequestError", "server_error_code": "400"},
        ),
        (
            {"error": {"message": "upstream rate limit", "code": 429}},
            "PROVIDER_RATE_LIMITED",
            "upstream rate limit",
            {"server_error_code": "429"},
        ),
        (
            {"error": {"message": "provider returned error", "code": 502}},
            "PROVIDER_SERVER_ERROR",
            "provider",
            {},
        ),
    ],
)
def test_an_error_object_in_a_200_reply_keeps_the_servers_message(
    server: FakeServer, body: dict, code: str, message: str, tokens: dict
) -> None:
    server.respond(200, json.dumps(body).encode())
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    assert error.code == code
    assert message in error.message
    assert "HTTP 200" in error.message and "error object" in error.message
    assert error.details["status"] == 200
    assert {key: error.details[key] for key in tokens} == tokens


def test_an_error_object_in_a_200_reply_that_echoes_the_prompt_is_withheld(server: FakeServer) -> None:
    from wf_pipeline.providers.server_errors import WITHHELD_NOTE

    server.respond(200, json.dumps({"object": "error", "message": f"cannot parse: {SECRET_PROMPT}"}).encode())
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    assert error.code == "PROVIDER_SERVER_ERROR"
    assert WITHHELD_NOTE in error.message


def test_a_non_2xx_vllm_error_body_keeps_its_message(server: FakeServer) -> None:
    body = {
        "object": "error",
        "message": "model qwen2.5:7b does not exist",
        "type": "NotFoundError",
        "code": 404,
    }
    server.respond(404, json.dumps(body).encode())
    error = provider_error(lambda: provider_for(server.base_url).complete(make_request()))
    assert (error.code, error.details["status"]) == ("PROVIDER_HTTP_ERROR", 404)
    assert "does not exist" in error.message
