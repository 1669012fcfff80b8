"""A rate-limiting OpenAI-wire server on loopback: every thread still completes, after the waits.

The server answers the first two calls of every turn with ``429 Retry-After: 1`` and
the third with the turn's real output. The run goes through the real runtime, Dagster
and the OpenAI-wire provider's pooled httpx client. The server computes the real
output with the offline provider; since the wire carries only the rendered prompts,
the provider in the test first files each request's structured inputs under the
digest of its prompts, where the server finds them (a test harness, not a mock: every
byte of every call still crosses HTTP).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise

import pytest
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.service import run_workflow

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"
TURNS = ["evidence_gather", "verification", "readme_struct", "style_refine"]
REFUSALS_PER_TURN = 2
RETRY_AFTER_S = 1


def prompt_digest(system_prompt: str, user_prompt: str) -> str:
    return hashlib.sha256(json.dumps([system_prompt, user_prompt]).encode()).hexdigest()


class RateLimitingServer:
    """Chat completions on loopback: 429 with Retry-After for the first calls of each turn, then the answer.

    ``refusals`` gives the Retry-After value of each refusal (called at the time of the
    refusal); ``refused_turns`` limits the refusals to those turns (None: every turn).
    """

    def __init__(
        self,
        refusals: tuple[Callable[[], str], ...] = (lambda: str(RETRY_AFTER_S),) * REFUSALS_PER_TURN,
        refused_turns: frozenset[str] | None = None,
    ) -> None:
        self.refusals = refusals
        self.refused_turns = refused_turns
        self.requests: dict[str, ProviderRequest] = {}
        self.calls: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._offline = create_provider("offline")
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the pooled client expects

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload, headers = server.answer(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, body: dict) -> tuple[int, dict, dict[str, str]]:
        system, user = (message["content"] for message in body["messages"])
        request = self.requests[prompt_digest(system, user)]
        key = (request.thread_id, request.turn_id)
        refused = self.refused_turns is None or request.turn_id in self.refused_turns
        with self._lock:
            seen = len(self.calls[key])
            status = 429 if refused and seen < len(self.refusals) else 200
            self.calls[key].append((time.monotonic(), status))
        if status == 429:
            error = {"error": {"message": "slow down", "type": "rate_limit"}}
            return 429, error, {"Retry-After": self.refusals[seen]()}
        text = self._offline.complete(request).text
        choice = {"index": 0, "message": {"role": "assistant", "content": text}}
        return 200, {"choices": [choice], "usage": {"total_tokens": 1}}, {}


class FilingProvider:
    """The real OpenAI-wire provider; files each request's inputs where the server can find them."""

    def __init__(self, server: RateLimitingServer) -> None:
        self._server = server
        self._inner = create_provider("openai", {"base_url": server.base_url, "model": "served-model"}, {})
        self.provider_type = self._inner.provider_type
        self.model = self._inner.model

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self._server.requests[prompt_digest(request.system_prompt, request.user_prompt)] = request
        return self._inner.complete(request)

    def close(self) -> None:
        self._inner.close()


@pytest.fixture
def server():
    fake = RateLimitingServer()
    thread = threading.Thread(target=fake.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def test_every_thread_completes_after_the_servers_retry_after_waits(tmp_path, monkeypatch, server):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit")
    # The shipped profile allows one retry per turn; two refusals need two.
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO_ROOT / "profiles", workspace / "profiles")
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    profile = workspace / "profiles" / "docs_writer_thread_v1.yaml"
    text = profile.read_text()
    assert text.count("retry_limit: 1") == 4 and "max_turn_retries: 2" in text
    profile.write_text(text.replace("retry_limit: 1", "retry_limit: 2"))

    provider = FilingProvider(server)
    started = time.monotonic()
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, provider=provider)
    elapsed = time.monotonic() - started
    provider.close()

    paths = {thread.path for thread in summary.threads}
    assert paths == {".", "sensors", "storage"}
    assert summary.ok, [(t.target, t.status) for t in summary.threads]
    assert summary.provider_calls == (REFUSALS_PER_TURN + 1) * len(TURNS) * len(paths)

    # Certain lower bound whatever the concurrency: the root's turns wait for its children's
    # (two levels), a thread's turns run one after another, and every turn waits Retry-After
    # twice. Concurrent threads of one level may share their waits, so no more is certain.
    levels = 2
    assert elapsed >= levels * len(TURNS) * REFUSALS_PER_TURN * RETRY_AFTER_S

    # The server saw each turn three times, the retries at least Retry-After apart.
    assert len(server.calls) == len(TURNS) * len(paths)
    for key, calls in server.calls.items():
        assert [status for _, status in calls] == [429, 429, 200], key
        gaps = [later - earlier for (earlier, _), (later, _) in pairwise(calls)]
        assert min(gaps) >= RETRY_AFTER_S, (key, gaps)

    # One turn record per attempt: two rate-limited failures, then the completed attempt.
    env = RuntimeEnv.open(settings)
    for thread in summary.threads:
        records = env.records.turns_for_thread(thread.thread_id)
        for turn_id in TURNS:
            attempts = [r for r in records if r.turn_id == turn_id]
            assert [(r.attempt, r.status, r.error_code) for r in attempts] == [
                (1, "failed", "PROVIDER_RATE_LIMITED"),
                (2, "failed", "PROVIDER_RATE_LIMITED"),
                (3, "completed", None),
            ], (thread.path, turn_id)
            assert "Retry-After 1000 ms" in attempts[0].error_text
            for earlier, later in pairwise(attempts):
                assert later.started_at_ms - earlier.ended_at_ms >= 1000 * RETRY_AFTER_S - 10
        assert env.records.get_thread(thread.thread_id).status == "completed"


def test_retry_after_in_seconds_and_as_an_http_date_is_waited_end_to_end(tmp_path, monkeypatch):
    """429 ``Retry-After: 2``, then 429 with an HTTP date 3 s ahead, then 200: the run waits both."""
    # An HTTP date has whole seconds: 3 s ahead of the refusal is at least 2 s after it.
    fake = RateLimitingServer(
        refusals=(lambda: "2", lambda: formatdate(time.time() + 3, usegmt=True)),
        refused_turns=frozenset({"evidence_gather"}),
    )
    thread = threading.Thread(target=fake.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO_ROOT / "profiles", workspace / "profiles")
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    profile = workspace / "profiles" / "docs_writer_thread_v1.yaml"
    profile.write_text(profile.read_text().replace("retry_limit: 1", "retry_limit: 2"))

    provider = FilingProvider(fake)
    try:
        summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, provider=provider)
    finally:
        provider.close()
        fake.httpd.shutdown()
        fake.httpd.server_close()

    assert summary.ok, [(t.target, t.status) for t in summary.threads]
    (done,) = summary.threads
    calls = fake.calls[(done.thread_id, "evidence_gather")]
    assert [status for _, status in calls] == [429, 429, 200]
    gaps = [later - earlier for (earlier, _), (later, _) in pairwise(calls)]
    assert gaps[0] >= 2 and gaps[1] >= 2, gaps

    records = RuntimeEnv.open(settings).records.turns_for_thread(done.thread_id)
    attempts = [r for r in records if r.turn_id == "evidence_gather"]
    assert [(r.attempt, r.status, r.error_code) for r in attempts] == [
        (1, "failed", "PROVIDER_RATE_LIMITED"),
        (2, "failed", "PROVIDER_RATE_LIMITED"),
        (3, "completed", None),
    ]
    assert "Retry-After 2000 ms" in attempts[0].error_text
    assert "Retry-After" in attempts[1].error_text
    for earlier, later in pairwise(attempts):
        assert later.started_at_ms - earlier.ended_at_ms >= 2000 - 10
    assert all(r.status == "completed" for r in records if r.turn_id != "evidence_gather")
