"""KMS on loopback for the key-manager tests: moto's server, and a KMS that answers one error.

`moto_server` runs a real moto server (``ThreadedMotoServer``) on 127.0.0.1 with a free port,
spoken to over HTTP by boto3; `ErrorKms` is a small KMS-wire endpoint that answers every
call with one AWS error, for the errors moto never returns (a disabled or pending-deletion
key on ``Decrypt``, ``IncorrectKeyException``, throttling).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from wf_pipeline.crypto.aws_kms import AwsKmsKeyManager

REGION = "us-east-1"
# moto accepts any credentials; explicit ones keep boto3 from searching the machine for some.
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class MotoKms:
    """A running moto server: its endpoint, and clients and managers bound to it."""

    endpoint_url: str

    def client(self, **config: Any) -> Any:
        """A boto3 KMS client for this server (standard retries, short timeouts)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "kms",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=10
            ),
            **CREDENTIALS,
        )

    def manager(self, alias_prefix: str | None = None) -> AwsKmsKeyManager:
        """A manager on its own client; a fresh alias prefix per call unless given."""
        return AwsKmsKeyManager(
            client=self.client(), alias_prefix=alias_prefix or f"wf-test-{uuid.uuid4().hex[:8]}"
        )


@contextlib.contextmanager
def moto_server() -> Iterator[MotoKms]:
    """A moto server on 127.0.0.1 and a port the OS picks, stopped on exit.

    Test modules wrap it in a fixture: ``moto_kms = pytest.fixture(scope="module")(...)``.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoKms(f"http://{host}:{port}")
    finally:
        server.stop()


def set_aws_test_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials for boto3's default chain; no shared files and no instance metadata lookups."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 whose port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class ErrorKms:
    """A KMS endpoint (AWS JSON 1.1 wire) answering every call with ``aws_code``; records each call.

    ``received`` holds ``(action, request body)`` pairs, the action from ``X-Amz-Target``.
    """

    def __init__(self, aws_code: str, status: int = 400) -> None:
        self.aws_code = aws_code
        self.status = status
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.request_id = f"req-{uuid.uuid4()}"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", "0"))
                action = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                fake.received.append((action, json.loads(self.rfile.read(length) or b"{}")))
                body = json.dumps(
                    {"__type": fake.aws_code, "message": "refused by the test endpoint"}
                ).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-RequestId", fake.request_id)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def manager(self, max_attempts: int = 2) -> AwsKmsKeyManager:
        """A manager that builds its own client for this endpoint (needs `set_aws_test_env`'s credentials)."""
        return AwsKmsKeyManager(endpoint_url=self.endpoint_url, region_name=REGION, max_attempts=max_attempts)


@contextlib.contextmanager
def error_kms(aws_code: str, status: int = 400) -> Iterator[ErrorKms]:
    """A started `ErrorKms`, shut down on exit."""
    fake = ErrorKms(aws_code, status)
    thread = threading.Thread(target=fake.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.httpd.shutdown()
        fake.httpd.server_close()
