"""An OpenAI-wire chat-completions server on loopback whose replies each test sets."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wf_pipeline.errors import ProviderError
from wf_pipeline.providers import ProviderRequest, create_provider

SECRET_PROMPT = "user prompt that must never leak into errors"


class FakeServer:
    """Chat-completions endpoint whose reply each test sets; records what it received."""

    def __init__(self) -> None:
        # A reply is (status, body) or (status, body, extra headers).
        self.reply: Callable[[], tuple] = lambda: (200, b"{}")
        self.received: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 keeps connections open, so a pooled client can reuse them.
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", "0"))
                server.received.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(self.rfile.read(length)),
                        "client_port": self.client_address[1],
                    }
                )
                status, body, *extra = server.reply()
                try:
                    self.send_response(status)
                    for name, value in (extra[0] if extra else {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, content: str | None, status: int = 200, usage: dict | None = None) -> None:
        payload = {
            "id": "chatcmpl-1",
            "model": "served-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": usage or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }
        self.reply = lambda: (status, json.dumps(payload).encode())

    def respond(self, status: int, body: bytes) -> None:
        self.reply = lambda: (status, body)


@contextlib.contextmanager
def serving() -> Iterator[FakeServer]:
    """A started `FakeServer`, shut down on exit."""
    fake = FakeServer()
    thread = threading.Thread(target=fake.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.httpd.shutdown()
        fake.httpd.server_close()


def make_request(output_format: str = "json", timeout_ms: int = 5_000) -> ProviderRequest:
    """A request whose user prompt (`SECRET_PROMPT`) must never reach an error."""
    return ProviderRequest(
        workflow_id="docs_writer_thread_v1",
        thread_id="thread:1",
        turn_id="evidence_gather",
        output_type="evidence_map" if output_format == "json" else "readme_final",
        output_format=output_format,
        system_prompt="system rules",
        user_prompt=SECRET_PROMPT,
        inputs={"context": "{}"},
        timeout_ms=timeout_ms,
    )


def provider_for(base_url: str, env: dict[str, str] | None = None, **options: object):
    """The real ``openai`` provider for ``base_url``."""
    return create_provider("openai", {"base_url": base_url, "model": "qwen2.5:7b", **options}, env or {})


def provider_error(call: Callable[[], object]) -> ProviderError:
    """The ProviderError ``call`` raises, checked not to carry the prompt."""
    with pytest.raises(ProviderError) as caught:
        call()
    assert SECRET_PROMPT not in str(caught.value)
    return caught.value
