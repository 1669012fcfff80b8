"""Every ArtifactStore implementation passes the conformance suite; broken ones fail it."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

import fsspec
import pytest
from conformance import failing_checks
from conformance.cas_suite import CHECKS, CasBackend
from s3_support import MotoServer

from wf_pipeline.cas import (
    CasStore,
    FsspecArtifactStore,
    MemoryArtifactStore,
    open_cas,
    register_artifact_store,
)
from wf_pipeline.cas.protocol import ArtifactRef, not_found
from wf_pipeline.errors import CasError


def corrupt_fsspec(store: FsspecArtifactStore, artifact_id: str, data: bytes) -> None:
    # Damage the object behind the store's back, through the same filesystem.
    store._fs.pipe_file(store._object_path(artifact_id), data)


def corrupt_memory(store: MemoryArtifactStore, artifact_id: str, data: bytes) -> None:
    store.corrupt_for_testing(artifact_id, data)


def backdate_file(store: FsspecArtifactStore, artifact_id: str, modified_ms: int) -> None:
    seconds = modified_ms / 1000
    os.utime(store._object_path(artifact_id), (seconds, seconds))


def backdate_fsspec_memory(store: FsspecArtifactStore, artifact_id: str, modified_ms: int) -> None:
    # fsspec's memory filesystem reports a file's ``created`` time as its age.
    memory_file = store._fs.store[store._object_path(artifact_id)]
    memory_file.created = datetime.fromtimestamp(modified_ms / 1000, tz=UTC)


def backdate_memory(store: MemoryArtifactStore, artifact_id: str, modified_ms: int) -> None:
    store.backdate_for_testing(artifact_id, modified_ms)


def file_backend(tmp_path) -> CasBackend:
    url = (tmp_path / "cas").as_uri()
    return CasBackend("file", lambda: open_cas(url), corrupt_fsspec, process_url=url, backdate=backdate_file)


def fsspec_memory_backend(tmp_path) -> CasBackend:
    # fsspec's memory filesystem stands in for an object store: whole-object uploads.
    url = f"memory://cas-conformance-{uuid.uuid4().hex}"
    return CasBackend("fsspec-memory", lambda: CasStore(url), corrupt_fsspec, backdate=backdate_fsspec_memory)


def memory_backend(tmp_path) -> CasBackend:
    url = f"memory://cas-conformance-{uuid.uuid4().hex}"
    return CasBackend("memory", lambda: open_cas(url), corrupt_memory, backdate=backdate_memory)


def s3_backend(tmp_path, server: MotoServer) -> CasBackend:
    # A real S3 wire: moto's server on loopback, a fresh bucket per test, the store under a prefix.
    bucket = server.create_bucket()
    url = f"s3://{bucket}/cas"
    options = server.storage_options()

    def backdate(store: FsspecArtifactStore, artifact_id: str, modified_ms: int) -> None:
        # S3 sets LastModified itself on every upload; only the server's own state can age an object.
        key = store._object_path(artifact_id).removeprefix(f"{bucket}/")
        server.backdate(bucket, key, modified_ms)

    return CasBackend(
        "s3",
        lambda: open_cas(url, **options),
        corrupt_fsspec,
        process_url=url,
        backdate=backdate,
        process_options=options,
    )


# A new backend adds its factory here and must pass every check. Factories that need a
# server name its fixture (second item); it starts only when such a backend is tested.
BACKENDS = {
    "file": (file_backend, None),
    "fsspec-memory": (fsspec_memory_backend, None),
    "memory": (memory_backend, None),
    "s3": (s3_backend, "moto_server"),
}


@pytest.fixture(params=sorted(BACKENDS))
def cas_backend(request, tmp_path) -> CasBackend:
    factory, server_fixture = BACKENDS[request.param]
    backend = (
        factory(tmp_path, request.getfixturevalue(server_fixture)) if server_fixture else factory(tmp_path)
    )
    yield backend
    fs = fsspec.filesystem("memory")
    for path in fs.ls("/", detail=False):
        if "cas-conformance-" in path:
            fs.rm(path, recursive=True)


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__.removeprefix("check_") for check in CHECKS])
def test_conformance(cas_backend: CasBackend, check) -> None:
    check(cas_backend)


def test_memory_url_opens_the_in_memory_store_and_names_share_contents() -> None:
    name = f"memory://shared-{uuid.uuid4().hex}"
    first, second = open_cas(name), open_cas(name)
    assert isinstance(first, MemoryArtifactStore)
    ref = first.put(b"seen by both")
    assert second.get(ref.artifact_id) == b"seen by both"
    assert not open_cas("memory://").exists(ref.artifact_id)  # no name: a private store


# --- broken implementations fail the suite -------------------------------------------


def memory_like_backend(store_class: type[MemoryArtifactStore]) -> CasBackend:
    """A fresh named store of ``store_class``, so every handle the checks open shares it."""
    name = f"{store_class.__name__}-{uuid.uuid4().hex}"
    return CasBackend(
        store_class.__name__, lambda: store_class(name), corrupt_memory, backdate=backdate_memory
    )


class SkipsVerification(MemoryArtifactStore):
    """Returns stored bytes without checking them against the id."""

    def get(self, artifact_id: str, *, size: int | None = None) -> bytes:
        data = self._contents.objects.get(artifact_id)
        if data is None:
            raise not_found(artifact_id, where=self.url)
        return data


class RefusesSecondPut(MemoryArtifactStore):
    """Treats storing present bytes again as an error, like an exclusive create."""

    def put_many(self, items):
        items = [bytes(item) for item in items]
        for ref in ArtifactRefs(items):
            if self.exists(ref.artifact_id):
                raise CasError("CAS_BACKEND_ERROR", f"{ref.artifact_id} already exists")
        return super().put_many(items)


def ArtifactRefs(items: list[bytes]) -> list[ArtifactRef]:
    return MemoryArtifactStore().put_many(items)


class PublishesInTwoSteps(MemoryArtifactStore):
    """Makes a half-written object visible before the whole one, as a non-atomic write does."""

    def put_many(self, items):
        items = [bytes(item) for item in items]
        refs = ArtifactRefs(items)
        for ref, item in zip(refs, items):
            if not self.exists(ref.artifact_id):
                with self._contents.lock:
                    self._contents.objects[ref.artifact_id] = item[: len(item) // 2]
                time.sleep(0.01)
            with self._contents.lock:
                self._contents.objects[ref.artifact_id] = item
        return refs


class TrustsSameSizedObjects(MemoryArtifactStore):
    """Keeps any stored object of the right size, as put did before it compared bytes."""

    def put_many(self, items):
        items = [bytes(item) for item in items]
        refs = ArtifactRefs(items)
        with self._contents.lock:
            for ref, item in zip(refs, items):
                stored = self._contents.objects.get(ref.artifact_id)
                if stored is None or len(stored) != len(item):
                    self._contents.objects[ref.artifact_id] = item
        return refs


class KeepsFirstPutTime(MemoryArtifactStore):
    """Dates an object by its first put only, so an object put again still looks old."""

    def put_many(self, items):
        items = [bytes(item) for item in items]
        with self._contents.lock:
            first_put = dict(self._contents.modified_ms)
        refs = super().put_many(items)
        with self._contents.lock:
            self._contents.modified_ms.update(first_put)
        return refs


class KeepsDeletedObjects(MemoryArtifactStore):
    """Acknowledges a delete but keeps the object."""

    def delete(self, artifact_id: str) -> None:
        return None


@pytest.mark.parametrize(
    ("broken", "caught_by"),
    [
        (
            SkipsVerification,
            {"check_get_verifies_the_digest", "check_truncation_and_wrong_size_are_digest_mismatches"},
        ),
        (RefusesSecondPut, {"check_put_is_idempotent", "check_put_many_stores_a_batch_in_input_order"}),
        (PublishesInTwoSteps, {"check_concurrent_writers_in_threads"}),
        (KeepsDeletedObjects, {"check_delete_removes_one_object_and_is_idempotent"}),
        (KeepsFirstPutTime, {"check_putting_a_present_object_again_makes_it_young"}),
        (TrustsSameSizedObjects, {"check_put_replaces_a_damaged_object_of_the_same_size"}),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_a_broken_implementation_fails_the_suite(broken, caught_by) -> None:
    failed = failing_checks(CHECKS, lambda: memory_like_backend(broken))

    assert caught_by <= failed, f"{broken.__name__} passed {sorted(caught_by - failed)}"


def test_the_reference_implementation_fails_no_check() -> None:
    # The harness above reports real failures only: the correct store passes every check through it.
    assert failing_checks(CHECKS, lambda: memory_like_backend(MemoryArtifactStore)) == set()


class WritesInPlace:
    """Writes each object straight under its final name, a chunk at a time, as a non-atomic store does."""

    def write(self, fs, path: str, data: bytes, *, tmp_dir: str) -> None:
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as handle:
            for start in range(0, len(data), 64 * 1024):
                handle.write(data[start : start + 64 * 1024])
                handle.flush()
                time.sleep(0.002)  # a slow disk: a kill lands inside a write


def test_a_store_writing_in_place_fails_the_killed_writer_check(tmp_path) -> None:
    scheme = f"inplace{uuid.uuid4().hex[:8]}"

    def open_in_place(url: str, **options) -> FsspecArtifactStore:
        store = FsspecArtifactStore(url.removeprefix(f"{scheme}://"), **options)
        store._write_strategy = WritesInPlace()
        return store

    # Registered before the checks fork their writers, so the children open the same store.
    register_artifact_store(scheme, open_in_place)
    url = f"{scheme}://{tmp_path / 'cas'}"
    backend = CasBackend(
        scheme, lambda: open_cas(url), corrupt_fsspec, process_url=url, backdate=backdate_file
    )
    by_name = {check.__name__: check for check in CHECKS}

    assert failing_checks([by_name["check_a_killed_writer_leaves_no_partial_object"]], lambda: backend) == {
        "check_a_killed_writer_leaves_no_partial_object"
    }
