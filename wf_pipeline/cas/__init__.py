"""Content-addressed artifact storage: the `ArtifactStore` protocol and its stores.

`open_cas` opens a store by URL: the fsspec store (`FsspecArtifactStore`, also known as
`CasStore`) for paths and fsspec URLs, `MemoryArtifactStore` for ``memory://``.
"""

from __future__ import annotations

from wf_pipeline.cas.backends import (
    LocalRenameWrite,
    WholeObjectPut,
    WriteStrategy,
    register_cas_backend,
    write_strategy_for,
)
from wf_pipeline.cas.memory import MemoryArtifactStore
from wf_pipeline.cas.protocol import ArtifactRef, ArtifactStore, ObjectInfo, ScratchFile
from wf_pipeline.cas.registry import open_cas, register_artifact_store
from wf_pipeline.cas.store import CasStore, FsspecArtifactStore

__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "CasStore",
    "FsspecArtifactStore",
    "LocalRenameWrite",
    "MemoryArtifactStore",
    "ObjectInfo",
    "ScratchFile",
    "WholeObjectPut",
    "WriteStrategy",
    "open_cas",
    "register_artifact_store",
    "register_cas_backend",
    "write_strategy_for",
]
