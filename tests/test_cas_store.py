from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import uuid
from pathlib import Path

import fsspec
import pytest

from wf_pipeline.cas import ArtifactRef, CasStore, open_cas
from wf_pipeline.errors import CasError
from wf_pipeline.metadata.canonical import digest

BACKENDS = ["file", "memory"]


@pytest.fixture
def memory_url():
    url = f"memory://cas-test-{uuid.uuid4().hex}"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path) -> CasStore:
    if request.param == "file":
        return open_cas((tmp_path / "cas").as_uri())
    # fsspec's memory filesystem stands in for an object store (whole-object uploads).
    return CasStore(request.getfixturevalue("memory_url"))


@pytest.fixture
def local_root(tmp_path) -> Path:
    return tmp_path / "cas"


@pytest.fixture
def local_store(local_root) -> CasStore:
    return open_cas(local_root.as_uri())


def object_path(root: Path, artifact_id: str) -> Path:
    hex_digest = artifact_id.removeprefix("sha256:")
    return root / "objects" / hex_digest[:2] / hex_digest[2:]


def overwrite_stored(store: CasStore, artifact_id: str, data: bytes) -> None:
    """Damage an object behind the store's back, through the same filesystem."""
    store._fs.pipe_file(store._object_path(artifact_id), data)


def tmp_leftovers(root: Path) -> list[Path]:
    tmp_dir = root / "tmp"
    return sorted(tmp_dir.iterdir()) if tmp_dir.exists() else []


# -- round trips and ids -----------------------------------------------------


def test_bytes_text_json_round_trip(store):
    raw = bytes(range(256)) * 3
    raw_ref = store.put(raw)
    assert raw_ref == ArtifactRef(digest(raw), len(raw))
    assert store.get(raw_ref.artifact_id) == raw

    text_ref = store.put_text("héllo\nwörld\n")
    assert store.get_text(text_ref.artifact_id) == "héllo\nwörld\n"
    assert text_ref.size == len("héllo\nwörld\n".encode())

    value = {"b": [1, 2.5, None, True], "a": {"z": "ü", "y": []}}
    json_ref = store.put_json(value)
    assert store.get_json(json_ref.artifact_id) == value
    assert store.exists(json_ref.artifact_id)
    assert store.size(json_ref.artifact_id) == json_ref.size


def test_empty_bytes_round_trip(store):
    ref = store.put(b"")
    assert ref.size == 0
    assert store.get(ref.artifact_id, size=0) == b""


def test_ids_are_digests_of_canonical_bytes(store):
    crlf = store.put_text("line one\r\nline two\r\n")
    lf = store.put_text("line one\nline two\n")
    assert crlf == lf
    assert lf.artifact_id == digest(b"line one\nline two\n")
    assert store.get_text(crlf.artifact_id) == "line one\nline two\n"

    one_order = store.put_json({"b": 1, "a": {"d": 2, "c": 3}})
    other_order = store.put_json({"a": {"c": 3, "d": 2}, "b": 1})
    assert one_order == other_order
    assert one_order.artifact_id == digest(b'{"a":{"c":3,"d":2},"b":1}')


def test_objects_live_under_fan_out_path(local_root, local_store):
    ref = local_store.put(b"fan out")
    stored = object_path(local_root, ref.artifact_id)
    assert stored.read_bytes() == b"fan out"
    assert len(stored.parent.name) == 2


def test_store_root_is_created_lazily_and_shared_between_instances(local_root):
    writer = open_cas(local_root.as_uri())
    ref = writer.put(b"shared")
    reader = CasStore(str(local_root))  # a bare path is a local fsspec URL too
    assert reader.get(ref.artifact_id) == b"shared"


# -- idempotence and repair --------------------------------------------------


def test_second_put_does_not_rewrite(local_root, local_store):
    ref = local_store.put(b"written once")
    stored = object_path(local_root, ref.artifact_id)
    os.utime(stored, ns=(1_000_000_000, 1_000_000_000))
    inode = stored.stat().st_ino

    assert local_store.put(b"written once") == ref

    # Same file (not rewritten), but its age starts again: the orphan sweep's grace period
    # counts from the last put, so an object a run has just put again never looks old.
    assert stored.stat().st_ino == inode
    assert stored.stat().st_mtime_ns > 1_000_000_000


def test_second_put_does_not_call_the_backend_write(store, monkeypatch):
    store.put(b"only once")
    writes: list[str] = []
    monkeypatch.setattr(
        store._write_strategy, "write", lambda fs, path, data, *, tmp_dir: writes.append(path)
    )
    store.put(b"only once")
    assert writes == []


# -- verification on read ----------------------------------------------------


def test_corrupted_object_raises_digest_mismatch(local_root, local_store):
    payload = b"secret prompt text that must never appear in errors"
    ref = local_store.put(payload)
    stored = object_path(local_root, ref.artifact_id)
    damaged = bytearray(stored.read_bytes())
    damaged[5] ^= 0xFF
    stored.write_bytes(bytes(damaged))

    with pytest.raises(CasError) as caught:
        local_store.get(ref.artifact_id)

    error = caught.value
    assert error.code == "CAS_DIGEST_MISMATCH"
    assert error.details["artifact_id"] == ref.artifact_id
    assert error.details["actual_size"] == len(payload)
    assert error.details["actual_digest"] == digest(bytes(damaged))
    assert not any(isinstance(value, (bytes, bytearray)) for value in error.details.values())
    assert b"secret" not in str(error).encode() and "secret" not in repr(error.details)


def test_truncated_object_raises_digest_mismatch(store):
    ref = store.put(b"0123456789" * 10)
    overwrite_stored(store, ref.artifact_id, b"0123456789" * 3)
    with pytest.raises(CasError) as caught:
        store.get_text(ref.artifact_id)
    assert caught.value.code == "CAS_DIGEST_MISMATCH"
    assert caught.value.details["actual_size"] == 30


@pytest.mark.parametrize("delta", [-1, 1])
def test_expected_size_mismatch(store, delta):
    ref = store.put(b"sized content")
    assert store.get(ref.artifact_id, size=ref.size) == b"sized content"
    with pytest.raises(CasError) as caught:
        store.get(ref.artifact_id, size=ref.size + delta)
    assert caught.value.code == "CAS_DIGEST_MISMATCH"
    assert caught.value.details["expected_size"] == ref.size + delta
    assert caught.value.details["actual_size"] == ref.size


# -- missing, invalid, undecodable -------------------------------------------


def test_absent_artifact_is_not_found(store):
    absent = digest(b"never stored")
    assert not store.exists(absent)
    for read in (store.get, store.get_text, store.get_json, store.size):
        with pytest.raises(CasError) as caught:
            read(absent)
        assert caught.value.code == "CAS_NOT_FOUND"
        assert caught.value.details["artifact_id"] == absent


@pytest.mark.parametrize(
    "bad_id",
    [
        "",
        "abc",
        "sha256:" + "0" * 63,
        "sha256:" + "0" * 65,
        "sha256:" + "A" * 64,
        "md5:" + "0" * 32,
        "sha256:../../" + "0" * 58,
        "0" * 64,
    ],
)
def test_invalid_ids_are_rejected_before_touching_storage(store, bad_id):
    for call in (store.get, store.exists, store.size, store.delete, store.get_json):
        with pytest.raises(CasError) as caught:
            call(bad_id)
        assert caught.value.code == "CAS_INVALID_ID"


@pytest.mark.parametrize("value", [float("nan"), {"key": object()}, {1: "mixed", "key": "types"}])
def test_put_json_rejects_values_without_canonical_form(store, value):
    with pytest.raises(CasError) as caught:
        store.put_json(value)
    assert caught.value.code == "CAS_INVALID_JSON"
    assert list(store.iter_artifact_ids()) == []


def test_undecodable_content_raises_decode_error(store):
    binary = store.put(b"\xff\xfe\x00binary")
    with pytest.raises(CasError) as caught:
        store.get_text(binary.artifact_id)
    assert caught.value.code == "CAS_DECODE_ERROR"

    not_json = store.put_text("plain words, not json")
    with pytest.raises(CasError) as caught:
        store.get_json(not_json.artifact_id)
    assert caught.value.code == "CAS_DECODE_ERROR"


def test_unknown_protocol_is_an_invalid_url():
    with pytest.raises(CasError) as caught:
        open_cas("nosuchprotocol://bucket/cas")
    assert caught.value.code == "CAS_INVALID_URL"


def test_filesystem_failures_become_backend_errors(tmp_path):
    root_that_is_a_file = tmp_path / "not-a-directory"
    root_that_is_a_file.write_bytes(b"occupied")
    store = open_cas(root_that_is_a_file.as_uri())

    for call, argument in ((store.put, b"x"), (store.get, digest(b"x")), (store.exists, digest(b"x"))):
        with pytest.raises(CasError) as caught:
            call(argument)
        assert caught.value.code == "CAS_BACKEND_ERROR"
        assert caught.value.details["error_type"] == "NotADirectoryError"
    assert root_that_is_a_file.read_bytes() == b"occupied"


# -- listing and deletion ----------------------------------------------------


def test_iter_artifact_ids_lists_stored_objects_only(local_root, local_store):
    assert list(local_store.iter_artifact_ids()) == []
    ids = {local_store.put(f"object {n}".encode()).artifact_id for n in range(5)}
    (local_root / "objects" / "zz").mkdir()
    (local_root / "objects" / "zz" / "not-an-object").write_bytes(b"stray")
    (local_root / "tmp").mkdir(exist_ok=True)
    (local_root / "tmp" / "leftover.part").write_bytes(b"partial")

    listed = list(local_store.iter_artifact_ids())
    assert listed == sorted(ids)


# -- atomicity ---------------------------------------------------------------


def test_puts_leave_no_temporary_files(local_root, local_store):
    for n in range(20):
        local_store.put(f"payload {n}".encode() * 100)
    local_store.put_text("same\r\n")
    local_store.put_text("same\n")
    assert (local_root / "tmp").is_dir()
    assert tmp_leftovers(local_root) == []


def test_failed_rename_leaves_nothing_under_the_final_name(local_root, local_store, monkeypatch):
    from wf_pipeline.cas import backends

    def failing_replace(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(backends.os, "replace", failing_replace)
    data = b"interrupted write"
    with pytest.raises(CasError) as caught:
        local_store.put(data)
    assert caught.value.code == "CAS_BACKEND_ERROR"
    assert not object_path(local_root, digest(data)).exists()
    assert not local_store.exists(digest(data))
    assert tmp_leftovers(local_root) == []

    monkeypatch.undo()
    ref = local_store.put(data)
    assert local_store.get(ref.artifact_id) == data


def test_failed_whole_object_put_leaves_nothing(memory_url, monkeypatch):
    store = CasStore(memory_url)

    def failing_pipe(path, value, **kwargs):
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(store._fs, "pipe_file", failing_pipe)
    with pytest.raises(CasError) as caught:
        store.put(b"upload interrupted")
    assert caught.value.code == "CAS_BACKEND_ERROR"
    assert caught.value.details["error_type"] == "ConnectionError"

    monkeypatch.undo()
    assert not store.exists(digest(b"upload interrupted"))
    ref = store.put(b"upload interrupted")
    assert store.get(ref.artifact_id) == b"upload interrupted"


CRASH_BEFORE_RENAME = """
import os, sys
from wf_pipeline.cas import backends, open_cas

def die(source, target):
    os._exit(17)  # the process vanishes between fsync and rename

backends.os.replace = die
open_cas(sys.argv[1]).put(sys.argv[2].encode())
"""


def test_process_killed_before_rename_leaves_no_object(local_root, local_store):
    data = "written by a process that dies"
    result = subprocess.run(
        [sys.executable, "-c", CRASH_BEFORE_RENAME, local_root.as_uri(), data], check=False
    )
    assert result.returncode == 17
    artifact_id = digest(data.encode())
    assert not object_path(local_root, artifact_id).exists()
    assert len(tmp_leftovers(local_root)) == 1  # a real crash leaves its scratch file behind
    with pytest.raises(CasError) as caught:
        local_store.get(artifact_id)
    assert caught.value.code == "CAS_NOT_FOUND"

    local_store.put(data.encode())
    assert local_store.get(artifact_id) == data.encode()
    assert list(local_store.iter_artifact_ids()) == [artifact_id]


def _put_from_process(url: str, data: bytes, start: multiprocessing.synchronize.Barrier) -> None:
    start.wait()
    open_cas(url).put(data)


def test_concurrent_puts_of_same_data_from_processes(local_root, local_store):
    context = multiprocessing.get_context("fork")
    data = os.urandom(2 * 1024 * 1024)
    start = context.Barrier(4)
    processes = [
        context.Process(target=_put_from_process, args=(local_root.as_uri(), data, start)) for _ in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert list(local_store.iter_artifact_ids()) == [digest(data)]
    assert local_store.get(digest(data)) == data
    assert tmp_leftovers(local_root) == []


# -- batch put: one durability barrier ----------------------------------------


class SyscallLog:
    """Calls through to the real os functions of the write strategy, recording their order."""

    def __init__(self, monkeypatch) -> None:
        from wf_pipeline.cas import backends

        self.events: list[tuple[str, str]] = []
        real_fsync, real_open, real_replace = backends.os.fsync, backends.os.open, backends.os.replace
        opened: dict[int, str] = {}

        def logged_open(path, flags, *args):
            fd = real_open(path, flags, *args)
            opened[fd] = str(path)
            return fd

        def logged_fsync(fd):
            path = opened.get(fd, "?")
            kind = "fsync-dir" if os.path.isdir(path) else "fsync-file"
            self.events.append((kind, path))
            return real_fsync(fd)

        def logged_replace(source, target):
            self.events.append(("replace", str(target)))
            return real_replace(source, target)

        monkeypatch.setattr(backends.os, "open", logged_open)
        monkeypatch.setattr(backends.os, "fsync", logged_fsync)
        monkeypatch.setattr(backends.os, "replace", logged_replace)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


def test_put_many_syncs_the_batch_once_before_publishing_it(local_root, local_store, monkeypatch):
    items = [f"batch object {n}".encode() for n in range(12)]
    folders = {object_path(local_root, digest(item)).parent for item in items}
    log = SyscallLog(monkeypatch)

    refs = local_store.put_many(items)

    kinds = log.kinds()
    # Every object's bytes are durable before any name appears, and each folder is synced once, last.
    assert kinds == ["fsync-file"] * 12 + ["replace"] * 12 + ["fsync-dir"] * len(folders)
    assert {Path(path) for kind, path in log.events if kind == "fsync-dir"} == folders
    assert [local_store.get(ref.artifact_id) for ref in refs] == items
    assert tmp_leftovers(local_root) == []


def test_put_many_failing_midway_leaves_complete_objects_and_no_scratch(local_root, local_store, monkeypatch):
    from wf_pipeline.cas import backends

    items = [f"object {n}".encode() for n in range(5)]
    real_replace = backends.os.replace
    published: list[str] = []

    def replace_until_the_disk_fills(source, target):
        if len(published) == 2:
            raise OSError(28, "No space left on device")
        published.append(target)
        return real_replace(source, target)

    monkeypatch.setattr(backends.os, "replace", replace_until_the_disk_fills)
    with pytest.raises(CasError) as caught:
        local_store.put_many(items)
    assert caught.value.code == "CAS_BACKEND_ERROR"
    assert tmp_leftovers(local_root) == []
    stored = list(local_store.iter_artifact_ids())
    assert len(stored) == 2
    for artifact_id in stored:
        local_store.get(artifact_id)  # verified: complete objects only

    monkeypatch.undo()
    assert [ref.artifact_id for ref in local_store.put_many(items)] == [digest(item) for item in items]
    assert len(list(local_store.iter_artifact_ids())) == 5


# -- scratch files ---------------------------------------------------------------


def test_stale_part_files_are_listed_and_removed(local_root, local_store):
    local_store.put(b"a completed write leaves no scratch file")
    scratch = local_root / "tmp"
    stale = scratch / "0123abcd.part"
    stale.write_bytes(b"half an object")
    os.utime(stale, ns=(5_000_000_000, 5_000_000_000))
    (scratch / "not-a-part-file").write_bytes(b"x")

    listed = list(local_store.iter_scratch())

    assert [(f.name, f.size, f.modified_ms) for f in listed] == [("0123abcd.part", 14, 5_000)]
    local_store.delete_scratch("0123abcd.part")
    local_store.delete_scratch("0123abcd.part")  # already gone: not an error
    assert not stale.exists()
    assert (scratch / "not-a-part-file").exists()
    assert list(local_store.iter_scratch()) == []
