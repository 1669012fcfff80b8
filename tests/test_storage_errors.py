"""Full disks, I/O errors, file modes and passwords in messages, on real storage.

The full disk is a real tmpfs of a few KiB (see ``tests/fullfs_support.py``), so the
operating system itself answers ENOSPC.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.fullfs_support import run_on_full_fs
from wf_pipeline.cas import open_cas
from wf_pipeline.errors import CasError, masked_url, os_reason

ENOSPC_TEXT = "No space left on device (ENOSPC)"


def test_cas_objects_are_written_owner_only(tmp_path) -> None:
    store = open_cas((tmp_path / "cas").as_uri())
    ref = store.put(b"a prompt with source code")
    hex_digest = ref.artifact_id.split(":", 1)[1]
    path = tmp_path / "cas" / "objects" / hex_digest[:2] / hex_digest[2:]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_full_disk_names_the_reason_in_cas_errors(tmp_path) -> None:
    mount = tmp_path / "full"
    script = f"""
import json
from wf_pipeline.cas import open_cas
from wf_pipeline.errors import CasError
store = open_cas({str(mount / "cas")!r})
store.put(b"small")
try:
    store.put(b"x" * 400_000)
except CasError as exc:
    print(json.dumps({{"code": exc.code, "message": exc.message, "details": exc.details}}))
else:
    print(json.dumps({{"code": None}}))
"""
    result = run_on_full_fs(mount, 64, script)
    assert result["code"] == "CAS_BACKEND_ERROR"
    assert ENOSPC_TEXT in result["message"]
    assert result["details"]["reason"] == ENOSPC_TEXT
    assert len(result["message"].splitlines()) == 1


def test_os_reason_follows_wrapped_causes() -> None:
    try:
        try:
            raise OSError(5, "Input/output error", "/some/file")
        except OSError as inner:
            raise RuntimeError("client failed") from inner
    except RuntimeError as outer:
        assert os_reason(outer) == "Input/output error (EIO)"
    assert os_reason(ValueError("bad\nvalue")) == "ValueError: bad value"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://wf:s3cret@db:5432/records", "postgresql://wf:***@db:5432/records"),
        ("s3://AKIA:s3cret@bucket/cas", "s3://AKIA:***@bucket/cas"),
        ("postgresql://wf@db/records?password=s3cret&sslmode=require", None),
        ("file:///home/wf/cas", "file:///home/wf/cas"),
        ("/plain/path", "/plain/path"),
    ],
)
def test_masked_url_hides_passwords(url, expected) -> None:
    masked = masked_url(url)
    assert "s3cret" not in masked
    if expected is not None:
        assert masked == expected
    else:
        assert "sslmode=require" in masked and "password=***" in masked


def test_cas_messages_never_show_the_password(tmp_path) -> None:
    url = "memory://user:s3cret@host/cas-" + os.urandom(4).hex()
    with pytest.raises(CasError) as caught:
        open_cas("nosuchproto://user:s3cret@host/x")
    assert "s3cret" not in str(caught.value) and "s3cret" not in json.dumps(caught.value.to_dict())
    from wf_pipeline.cas import CasStore

    store = CasStore(url)
    with pytest.raises(CasError) as caught:
        store.get("sha256:" + "0" * 64)
    assert caught.value.code == "CAS_NOT_FOUND" and "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(store)


def test_a_full_disk_under_the_sqlite_record_store_gives_a_record_code_with_the_reason(tmp_path) -> None:
    mount = tmp_path / "full"
    script = f"""
import json
from wf_pipeline.errors import RecordError
from wf_pipeline.metadata.records import ThreadRecord
from wf_pipeline.records import open_record_store
store = open_record_store("sqlite:///{mount / "records.db"}")
try:
    for number in range(200_000):
        store.save_thread(ThreadRecord(thread_id=f"thread:{{number:024x}}", workflow_id="wf" * 200,
                                       target_node_id="node:" + "n" * 400, status="running",
                                       created_at_ms=1, updated_at_ms=1))
except RecordError as exc:
    print(json.dumps({{"code": exc.code, "message": exc.message, "details": exc.details}}))
else:
    print(json.dumps({{"code": None}}))
"""
    result = run_on_full_fs(mount, 256, script)
    assert result["code"] == "RECORD_STORAGE_ERROR", result
    assert "database or disk is full" in result["message"]
    assert result["details"]["reason"]
