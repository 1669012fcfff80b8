from __future__ import annotations

import uuid

import fsspec
from fsspec.implementations.memory import MemoryFileSystem

from wf_pipeline.cas import (
    LocalRenameWrite,
    WholeObjectPut,
    open_cas,
    register_cas_backend,
    write_strategy_for,
)
from wf_pipeline.metadata.canonical import digest


class RecordingWrite:
    """Stands in for a backend-specific strategy and delegates to a real upload."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def write(self, fs, path, data, *, tmp_dir) -> None:
        self.paths.append(path)
        fs.pipe_file(path, data)


def register_test_filesystem(protocol: str) -> None:
    # Each test filesystem keeps its own store so tests cannot see each other's objects.
    filesystem_class = type(
        f"Fs_{protocol}", (MemoryFileSystem,), {"protocol": protocol, "store": {}, "pseudo_dirs": [""]}
    )
    fsspec.register_implementation(protocol, filesystem_class, clobber=True)


def test_local_and_memory_stores_pick_their_strategies(tmp_path):
    assert isinstance(write_strategy_for(fsspec.filesystem("file")), LocalRenameWrite)
    assert isinstance(write_strategy_for(fsspec.filesystem("memory")), WholeObjectPut)


def test_registered_strategy_is_used_for_its_protocol():
    protocol = f"wfcas{uuid.uuid4().hex[:8]}"
    register_test_filesystem(protocol)
    recorder = RecordingWrite()
    register_cas_backend(protocol, recorder)

    store = open_cas(f"{protocol}://bucket/cas")
    ref = store.put(b"through the registered strategy")
    store.put(b"through the registered strategy")

    hex_digest = ref.artifact_id.removeprefix("sha256:")
    assert len(recorder.paths) == 1
    assert recorder.paths[0].endswith(f"bucket/cas/objects/{hex_digest[:2]}/{hex_digest[2:]}")
    assert store.get(ref.artifact_id) == b"through the registered strategy"


def test_unregistered_protocol_falls_back_to_whole_object_put():
    protocol = f"wfcas{uuid.uuid4().hex[:8]}"
    register_test_filesystem(protocol)
    store = open_cas(f"{protocol}://bucket")
    assert isinstance(store._write_strategy, WholeObjectPut)
    ref = store.put(b"plain upload")
    assert ref.artifact_id == digest(b"plain upload")
    assert list(store.iter_artifact_ids()) == [ref.artifact_id]
