"""The docs writer end to end with its CAS on S3 (moto's server on loopback), through the `wf` command.

The same tree documented with a local CAS and with ``WF_CAS_URL=s3://<bucket>/cas`` gives
byte-identical READMEs. The S3 run puts one process per step (the multiprocess executor):
each step opens the CAS from the run's config and reads the storage options, which carry
the credentials, from its own environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import SAMPLE_REPO, copy_tree
from s3_support import MotoServer

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"
WF = Path(sys.executable).parent / "wf"
RUN_TIMEOUT_S = 600


def _wf(home: Path, cwd: Path, *args: str, **variables: str) -> dict:
    # A clean environment: none of the developer's WF_* or AWS_* settings reach the command.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WF_", "AWS_")) and key != "DAGSTER_HOME"
    }
    env.update(WF_HOME=str(home), WF_CONFIG_DIR=str(home / "user-config"), **variables)
    result = subprocess.run(
        [str(WF), *args, "--json"], cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert result.returncode == 0, (result.returncode, result.stdout[-2000:], result.stderr[-4000:])
    return json.loads(result.stdout)


def _readmes(out: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("README.md"))}


def test_a_run_on_an_s3_cas_writes_the_readmes_a_local_run_writes(tmp_path, moto_server: MotoServer):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    local_home, s3_home = tmp_path / "local-home", tmp_path / "s3-home"
    local = _wf(local_home, cwd, "run", WORKFLOW, str(copy_tree(SAMPLE_REPO, tmp_path / "a" / "sample_repo")))
    assert local["counts"]["failed"] == 0 and local["counts"]["documented"] > 0

    bucket = moto_server.create_bucket()
    server = moto_server.storage_options()
    s3_settings = {
        "WF_CAS_URL": f"s3://{bucket}/cas",
        "WF_CAS_ENDPOINT_URL": moto_server.endpoint_url,
        "WF_CAS_REGION": "us-east-1",
        # The credentials: never in run config, read by every step from its own environment.
        "WF_CAS_STORAGE_OPTIONS": json.dumps({"key": server["key"], "secret": server["secret"]}),
        "WF_EXECUTOR": "multiprocess",
        "WF_MAX_PROCESSES": "2",
    }
    started = time.monotonic()
    remote = _wf(
        s3_home,
        cwd,
        "run",
        WORKFLOW,
        str(copy_tree(SAMPLE_REPO, tmp_path / "b" / "sample_repo")),
        **s3_settings,
    )
    elapsed = time.monotonic() - started
    assert remote["counts"] == local["counts"], remote["counts"]
    assert remote["provider_calls"] == local["provider_calls"]
    finals = [t["final_artifact_id"] for t in remote["threads"]]
    assert finals == [t["final_artifact_id"] for t in local["threads"]]

    # The same READMEs, byte for byte, under the same relative paths.
    local_readmes = _readmes(Path(local["out_dir"]))
    assert len(local_readmes) == len(local["threads"])
    assert _readmes(Path(remote["out_dir"])) == local_readmes

    # Every artifact went to the bucket, none to the home's default local CAS.
    assert not (s3_home / "cas").exists()
    listed = moto_server.client("s3").list_objects_v2(Bucket=bucket, Prefix="cas/objects/")
    keys = {item["Key"] for item in listed.get("Contents", [])}
    for artifact_id in finals:
        hex_digest = artifact_id.removeprefix("sha256:")
        assert f"cas/objects/{hex_digest[:2]}/{hex_digest[2:]}" in keys
    # No credential reached Dagster's run storage (the run config holds ``env:`` names only).
    dagster_files = [path for path in (s3_home / "dagster").rglob("*") if path.is_file()]
    assert dagster_files and not any(server["secret"].encode() in path.read_bytes() for path in dagster_files)

    # The whole store verifies over the S3 wire.
    verified = _wf(s3_home, cwd, "cas", "verify", **s3_settings)
    assert verified["ok"] and verified["checked"] == len(keys) and verified["corrupt"] == []
    print(f"s3 run: {elapsed:.1f} s, {len(keys)} objects")
