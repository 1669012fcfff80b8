"""The ArtifactStore conformance suite.

A backend is described by `CasBackend`: how to open the store under test (every call
opens the same store), how to damage a stored object behind its back, and, if other
processes can reach it, the URL they open (with the storage options they pass). A new implementation adds one `CasBackend`
to ``tests/test_cas_conformance.py`` and must pass every check in `CHECKS`.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from wf_pipeline.cas import ArtifactRef, ArtifactStore, ObjectInfo, open_cas
from wf_pipeline.errors import CasError
from wf_pipeline.metadata.canonical import digest


@dataclass(frozen=True)
class CasBackend:
    """One implementation under test."""

    name: str
    open: Callable[[], ArtifactStore]
    corrupt: Callable[[ArtifactStore, str, bytes], None]
    process_url: str | None = None
    # Makes a stored object look last written at the given epoch ms, behind the store's back.
    backdate: Callable[[ArtifactStore, str, int], None] | None = None
    # What other processes pass to `open_cas` with ``process_url`` (endpoint, credentials).
    process_options: dict[str, Any] = field(default_factory=dict)
    # Opens the store in another (forked) process; default: ``open_cas(process_url, **process_options)``.
    process_open: Callable[[], ArtifactStore] | None = None

    def open_in_process(self) -> ArtifactStore:
        """The store as another process opens it."""
        if self.process_open is not None:
            return self.process_open()
        assert self.process_url is not None
        return open_cas(self.process_url, **self.process_options)


CHECKS: list[Callable[[CasBackend], None]] = []


def check(function: Callable[[CasBackend], None]) -> Callable[[CasBackend], None]:
    CHECKS.append(function)
    return function


def code_of(call: Callable[[], object]) -> str:
    with pytest.raises(CasError) as caught:
        call()
    return caught.value.code


@check
def check_put_returns_the_digest_and_get_the_bytes(backend: CasBackend) -> None:
    store = backend.open()
    assert isinstance(store, ArtifactStore)  # every method of the protocol is there
    data = bytes(range(256)) * 3
    ref = store.put(data)
    assert ref == ArtifactRef(digest(data), len(data))
    assert store.get(ref.artifact_id) == data
    assert store.get(ref.artifact_id, size=len(data)) == data
    assert store.exists(ref.artifact_id)
    assert store.stat(ref.artifact_id) == ref
    assert store.size(ref.artifact_id) == len(data)
    empty = store.put(b"")
    assert store.get(empty.artifact_id, size=0) == b""


@check
def check_put_is_idempotent(backend: CasBackend) -> None:
    store = backend.open()
    first = store.put(b"written once")
    again = store.put(b"written once")
    through_another_handle = backend.open().put(b"written once")
    assert first == again == through_another_handle
    assert list(store.iter_artifact_ids()) == [first.artifact_id]
    assert store.get(first.artifact_id) == b"written once"


@check
def check_put_many_stores_a_batch_in_input_order(backend: CasBackend) -> None:
    store = backend.open()
    present = store.put(b"already there")
    items = [b"one", b"two", b"one", b"already there", b"three" * 1000]
    refs = store.put_many(items)
    assert refs == [ArtifactRef(digest(item), len(item)) for item in items]
    assert refs[0] == refs[2] and refs[3] == present
    for item, ref in zip(items, refs):
        assert store.get(ref.artifact_id) == item
    assert list(store.iter_artifact_ids()) == sorted({ref.artifact_id for ref in refs})
    assert store.put_many(items) == refs  # idempotent as a batch too
    assert store.put_many([]) == []


@check
def check_get_verifies_the_digest(backend: CasBackend) -> None:
    store = backend.open()
    payload = b"payload text that must never appear in an error"
    ref = store.put(payload)
    damaged = bytearray(payload)
    damaged[5] ^= 0xFF  # same size, other bytes
    backend.corrupt(store, ref.artifact_id, bytes(damaged))
    with pytest.raises(CasError) as caught:
        store.get(ref.artifact_id)
    error = caught.value
    assert error.code == "CAS_DIGEST_MISMATCH"
    assert error.details["actual_digest"] == digest(bytes(damaged))
    assert error.details["actual_size"] == len(payload)
    assert "payload" not in str(error) and "payload" not in repr(error.details)
    assert code_of(lambda: store.get_text(ref.artifact_id)) == "CAS_DIGEST_MISMATCH"


@check
def check_truncation_and_wrong_size_are_digest_mismatches(backend: CasBackend) -> None:
    store = backend.open()
    ref = store.put(b"0123456789" * 10)
    assert code_of(lambda: store.get(ref.artifact_id, size=ref.size + 1)) == "CAS_DIGEST_MISMATCH"
    backend.corrupt(store, ref.artifact_id, b"0123456789" * 3)
    assert code_of(lambda: store.get(ref.artifact_id)) == "CAS_DIGEST_MISMATCH"
    # A put of the intact bytes repairs the damaged object.
    assert store.put(b"0123456789" * 10) == ref
    assert store.get(ref.artifact_id) == b"0123456789" * 10


@check
def check_put_replaces_a_damaged_object_of_the_same_size(backend: CasBackend) -> None:
    # A flipped byte keeps the size: put must compare the bytes, not only the size.
    store = backend.open()
    payload = b"the bytes a later run links to"
    ref = store.put(payload)
    damaged = bytearray(payload)
    damaged[0] ^= 0x01
    backend.corrupt(store, ref.artifact_id, bytes(damaged))
    assert store.put(payload) == ref
    assert store.get(ref.artifact_id) == payload
    backend.corrupt(store, ref.artifact_id, bytes(damaged))
    assert store.put_many([b"other", payload])[1] == ref
    assert store.get(ref.artifact_id) == payload


@check
def check_quarantine_moves_an_object_aside(backend: CasBackend) -> None:
    store = backend.open()
    kept = store.put(b"kept")
    ref = store.put(b"damaged later")
    backend.corrupt(store, ref.artifact_id, b"damaged LATER")
    where = store.quarantine(ref.artifact_id)
    assert where is not None and "quarantine" in where
    assert not store.exists(ref.artifact_id)
    assert code_of(lambda: store.get(ref.artifact_id)) == "CAS_NOT_FOUND"
    assert list(store.iter_artifact_ids()) == [kept.artifact_id]
    assert store.quarantine(ref.artifact_id) is None  # nothing left under the id
    assert store.put(b"damaged later") == ref  # the intact bytes can be stored again
    assert store.get(ref.artifact_id) == b"damaged later"
    assert code_of(lambda: store.quarantine("sha256:nothex")) == "CAS_INVALID_ID"


@check
def check_absent_and_invalid_ids(backend: CasBackend) -> None:
    store = backend.open()
    absent = digest(b"never stored")
    assert not store.exists(absent)
    for read in (store.get, store.get_text, store.get_json, store.stat, store.size):
        assert code_of(lambda read=read: read(absent)) == "CAS_NOT_FOUND"
    for bad in ("", "sha256:" + "0" * 63, "sha256:" + "A" * 64, "sha256:../../" + "0" * 58, "0" * 64):
        for call in (store.get, store.exists, store.stat, store.delete):
            assert code_of(lambda call=call, bad=bad: call(bad)) == "CAS_INVALID_ID"


@check
def check_text_and_json_are_canonical(backend: CasBackend) -> None:
    store = backend.open()
    assert store.put_text("a\r\nb\r\n") == store.put_text("a\nb\n")
    assert store.get_text(store.put_text("héllo\n").artifact_id) == "héllo\n"
    ref = store.put_json({"b": 1, "a": {"d": 2, "c": 3}})
    assert ref.artifact_id == digest(b'{"a":{"c":3,"d":2},"b":1}')
    assert store.get_json(ref.artifact_id) == {"a": {"c": 3, "d": 2}, "b": 1}
    before = list(store.iter_artifact_ids())
    assert code_of(lambda: store.put_json(float("nan"))) == "CAS_INVALID_JSON"
    assert list(store.iter_artifact_ids()) == before
    binary = store.put(b"\xff\xfe\x00")
    assert code_of(lambda: store.get_text(binary.artifact_id)) == "CAS_DECODE_ERROR"


@check
def check_listing_is_sorted_and_complete(backend: CasBackend) -> None:
    store = backend.open()
    assert list(store.iter_artifact_ids()) == []
    ids = {store.put(f"object {n}".encode()).artifact_id for n in range(12)}
    store.set_ref("not/an/object", sorted(ids)[0])
    assert list(store.iter_artifact_ids()) == sorted(ids)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# Filesystem clocks and timestamp granularity: a time read back may lag the wall clock slightly.
CLOCK_SLACK_MS = 2_000


@check
def check_objects_list_sizes_and_put_times(backend: CasBackend) -> None:
    store = backend.open()
    assert list(store.iter_objects()) == []
    before = _now_ms()
    refs = [store.put(f"timed object {n}".encode() * (n + 1)) for n in range(5)]
    after = _now_ms()
    infos = list(store.iter_objects())
    assert [info.artifact_id for info in infos] == sorted(ref.artifact_id for ref in refs)
    assert all(isinstance(info, ObjectInfo) for info in infos)
    sizes = {ref.artifact_id: ref.size for ref in refs}
    assert {info.artifact_id: info.size for info in infos} == sizes
    for info in infos:
        assert before - CLOCK_SLACK_MS <= info.modified_ms <= after + CLOCK_SLACK_MS
    store.delete(refs[0].artifact_id)
    assert refs[0].artifact_id not in {info.artifact_id for info in store.iter_objects()}


@check
def check_putting_a_present_object_again_makes_it_young(backend: CasBackend) -> None:
    # A run puts objects before it records them: an old object put again must not look old.
    assert backend.backdate is not None, "a backend must say how to age an object"
    store = backend.open()
    ref = store.put(b"put long ago")
    long_ago = _now_ms() - 30 * 86_400_000
    backend.backdate(store, ref.artifact_id, long_ago)
    (aged,) = store.iter_objects()
    assert aged.modified_ms < long_ago + CLOCK_SLACK_MS
    before = _now_ms()
    assert store.put_many([b"put long ago"]) == [ref]
    (fresh,) = store.iter_objects()
    assert fresh.modified_ms >= before - CLOCK_SLACK_MS
    assert store.get(ref.artifact_id) == b"put long ago"


@check
def check_scratch_listing_and_removal(backend: CasBackend) -> None:
    store = backend.open()
    store.put_many([b"staged and renamed", b"another"])
    # A completed write leaves no scratch file behind.
    assert list(store.iter_scratch()) == []
    store.delete_scratch("absent.part")  # not an error
    for bad in ("../objects", "a/b.part", "", ".."):
        assert code_of(lambda bad=bad: store.delete_scratch(bad)) == "CAS_INVALID_REF"


@check
def check_delete_removes_one_object_and_is_idempotent(backend: CasBackend) -> None:
    store = backend.open()
    kept = store.put(b"kept")
    removed = store.put(b"removed")
    store.delete(removed.artifact_id)
    store.delete(removed.artifact_id)
    assert not store.exists(removed.artifact_id)
    assert code_of(lambda: store.get(removed.artifact_id)) == "CAS_NOT_FOUND"
    assert list(store.iter_artifact_ids()) == [kept.artifact_id]
    assert store.get(kept.artifact_id) == b"kept"
    assert store.put(b"removed") == removed  # and it can come back
    assert store.get(removed.artifact_id) == b"removed"


@check
def check_refs_point_at_artifacts(backend: CasBackend) -> None:
    store = backend.open()
    first, second = store.put(b"first"), store.put(b"second")
    store.set_ref("outputs/a", first.artifact_id)
    assert store.get_ref("outputs/a") == first.artifact_id
    store.set_ref("outputs/a", second.artifact_id)
    assert backend.open().get_ref("outputs/a") == second.artifact_id
    assert code_of(lambda: store.get_ref("missing")) == "CAS_REF_NOT_FOUND"
    for name in ("", "../escape", "a//b", "a/./b"):
        assert code_of(lambda name=name: store.set_ref(name, first.artifact_id)) == "CAS_INVALID_REF"
    assert code_of(lambda: store.set_ref("r", "not-a-digest")) == "CAS_INVALID_ID"


@check
def check_concurrent_writers_in_threads(backend: CasBackend) -> None:
    store = backend.open()
    shared = os.urandom(1024 * 1024)
    shared_id = digest(shared)
    writers, rounds = 6, 3
    barrier = threading.Barrier(writers + 2)
    writing = threading.Event()
    writing.set()
    refs: list[ArtifactRef] = []
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        barrier.wait()
        try:
            for r in range(rounds):
                refs.append(store.put(shared))
                refs.extend(store.put_many([shared, f"own {n} {r}".encode()]))
                store.delete(shared_id)  # so the next put writes again while readers read
            refs.append(store.put(shared))
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        barrier.wait()
        while writing.is_set():
            try:
                if store.get(shared_id) != shared:
                    errors.append(AssertionError("a read returned other bytes"))
                    return
            except CasError as exc:
                if exc.code != "CAS_NOT_FOUND":  # a half-written object shows up here
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads + readers:
        thread.start()
    for thread in threads:
        thread.join()
    writing.clear()
    for thread in readers:
        thread.join()

    assert errors == [], [f"{type(e).__name__}: {e}" for e in errors]
    assert {ref for ref in refs if ref.artifact_id == shared_id} == {ArtifactRef(shared_id, len(shared))}
    own = {digest(f"own {n} {r}".encode()) for n in range(writers) for r in range(rounds)}
    assert set(store.iter_artifact_ids()) == own | {shared_id}
    assert store.get(shared_id, size=len(shared)) == shared


def _put_from_process(backend: CasBackend, items: list[bytes], start) -> None:
    start.wait()
    store = backend.open_in_process()
    store.put(items[0])
    store.put_many(items)


@check
def check_concurrent_writers_in_processes(backend: CasBackend) -> None:
    if backend.process_url is None and backend.process_open is None:
        return  # a store other processes cannot reach has no cross-process writers
    context = multiprocessing.get_context("fork")
    shared = os.urandom(512 * 1024)
    workers = 4
    start = context.Barrier(workers)
    batches = [[shared, f"process {n}".encode()] for n in range(workers)]
    processes = [context.Process(target=_put_from_process, args=(backend, batch, start)) for batch in batches]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0] * workers
    store = backend.open()
    expected = {digest(item) for batch in batches for item in batch}
    assert set(store.iter_artifact_ids()) == expected
    for batch in batches:
        for item in batch:
            assert store.get(digest(item)) == item


def _change_from_process(url: str, options: dict[str, Any], put: bytes, delete: str) -> None:
    store = open_cas(url, **options)
    store.put(put)
    store.delete(delete)


@check
def check_a_handle_sees_what_other_processes_changed(backend: CasBackend) -> None:
    # An object store changes under other machines' feet: a handle that listed and looked up
    # objects before must not answer from what it saw then (a cached listing).
    if backend.process_url is None:
        return
    store = backend.open()
    gone = store.put(b"deleted by another process")
    added = digest(b"added by another process")
    assert list(store.iter_artifact_ids()) == [gone.artifact_id]
    assert store.exists(gone.artifact_id) and not store.exists(added)
    assert [info.artifact_id for info in store.iter_objects()] == [gone.artifact_id]
    context = multiprocessing.get_context("fork")
    process = context.Process(
        target=_change_from_process,
        args=(backend.process_url, backend.process_options, b"added by another process", gone.artifact_id),
    )
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 0
    assert not store.exists(gone.artifact_id)
    assert code_of(lambda: store.stat(gone.artifact_id)) == "CAS_NOT_FOUND"
    assert code_of(lambda: store.get(gone.artifact_id)) == "CAS_NOT_FOUND"
    assert store.exists(added) and store.get(added) == b"added by another process"
    assert list(store.iter_artifact_ids()) == [added]
    assert [info.artifact_id for info in store.iter_objects()] == [added]


# Big enough that a write takes a while (so the kill lands in one), small enough for a test.
KILLED_WRITER_OBJECT = 2 * 1024 * 1024


def _write_until_killed(url: str, options: dict[str, Any], started) -> None:
    store = open_cas(url, **options)
    store.put(os.urandom(KILLED_WRITER_OBJECT))
    started.set()  # one object is complete; the kill lands in one of the writes that follow
    while True:
        store.put(os.urandom(KILLED_WRITER_OBJECT))


@check
def check_a_killed_writer_leaves_no_partial_object(backend: CasBackend) -> None:
    # A writer killed at any point leaves each object whole under its name or not there at
    # all: every listed object reads back verified (a write in place would leave a prefix).
    if backend.process_url is None:
        return
    context = multiprocessing.get_context("fork")
    started = context.Event()
    store = backend.open()
    for kill_after in (0.05, 0.2, 0.45):
        process = context.Process(
            target=_write_until_killed, args=(backend.process_url, backend.process_options, started)
        )
        process.start()
        assert started.wait(timeout=60)
        time.sleep(kill_after)
        process.kill()
        process.join(timeout=60)
        started.clear()
    listed = list(store.iter_artifact_ids())
    assert len(listed) >= 3  # each writer completed one object at least
    for artifact_id in listed:
        assert len(store.get(artifact_id)) == KILLED_WRITER_OBJECT
    # A later put of any object still works (no lock or half-state was left behind).
    assert store.get(store.put(b"after the kills").artifact_id) == b"after the kills"
