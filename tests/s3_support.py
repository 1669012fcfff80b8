"""A real S3 (and KMS) wire on loopback for the object-store tests: moto's threaded server.

`moto_server` starts one `moto.server.ThreadedMotoServer` on 127.0.0.1 for the whole test
session; S3 and KMS answer on the same endpoint. Credentials are fake and passed explicitly
(`MotoServer.storage_options`, `MotoServer.client`, `MotoServer.environ`), never written to
this process's environment. `s3_bucket` gives each test a fresh bucket of its own.

The server runs in this process, so a test can also reach moto's in-memory state behind the
store's back (`MotoServer.backdate`), e.g. to make an object look old, which S3 itself never
allows (``LastModified`` is the server's time of the upload).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

# moto's default account; its backends are keyed by it.
MOTO_ACCOUNT = "123456789012"
REGION = "us-east-1"
# Fake credentials: moto accepts any; botocore needs some to sign requests.
ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"


@dataclass(frozen=True)
class MotoServer:
    """A running moto server: its endpoint URL (``http://127.0.0.1:<port>``) and how to reach it."""

    endpoint_url: str

    def storage_options(self) -> dict[str, Any]:
        """The fsspec (s3fs) options that reach this server with the fake credentials."""
        return {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": REGION},
        }

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` (``s3``, ``kms``) on this server."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def environ(self) -> dict[str, str]:
        """Variables for a subprocess that should reach this server through botocore's own lookup."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            # No instance-metadata probe (a second of timeouts per client) when run off a cloud host.
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def create_bucket(self) -> str:
        """A new, empty bucket with a unique name; returns the name."""
        name = f"wf-test-{uuid.uuid4().hex[:16]}"
        self.client("s3").create_bucket(Bucket=name)
        return name

    def backdate(self, bucket: str, key: str, modified_ms: int) -> None:
        """Make ``bucket``/``key`` report ``LastModified`` = ``modified_ms`` (epoch ms), in moto's state."""
        from moto.s3.models import s3_backends

        stored = s3_backends[MOTO_ACCOUNT]["aws"].buckets[bucket].keys[key]
        # moto keeps naive UTC datetimes.
        stored.last_modified = datetime.fromtimestamp(modified_ms / 1000, tz=UTC).replace(tzinfo=None)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server (S3 and KMS) on 127.0.0.1 and a free port, for the session."""
    # Imported here: every test session loads this module (conftest), few start the server.
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    """A fresh bucket on the session's moto server, for one test."""
    return moto_server.create_bucket()
