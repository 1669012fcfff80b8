"""Content-addressed artifact store over fsspec."""

from __future__ import annotations

from wf_pipeline.cas.backends import (
    LocalRenameWrite,
    WholeObjectPut,
    WriteStrategy,
    register_cas_backend,
    write_strategy_for,
)
from wf_pipeline.cas.store import ArtifactRef, CasStore, open_cas

__all__ = [
    "ArtifactRef",
    "CasStore",
    "LocalRenameWrite",
    "WholeObjectPut",
    "WriteStrategy",
    "open_cas",
    "register_cas_backend",
    "write_strategy_for",
]
