"""Which `ArtifactStore` a URL opens: a small registry of openers by URL scheme.

Like fsspec's own registry: a backend registers an opener for its scheme, and
`open_cas` picks it by the URL's scheme. ``memory://`` opens the in-memory store; every
other URL (a bare path, ``file://``, ``s3://``, ...) opens the fsspec store, which in turn
asks fsspec for the filesystem.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wf_pipeline.cas.memory import MEMORY_SCHEME, open_memory_store
from wf_pipeline.cas.protocol import ArtifactStore
from wf_pipeline.cas.store import FsspecArtifactStore
from wf_pipeline.registry import Registry

ArtifactStoreOpener = Callable[..., ArtifactStore]

# Every scheme without an opener falls back to the fsspec store, so a lookup never fails.
_OPENERS: Registry[str, ArtifactStoreOpener] = Registry(
    "artifact store opener", key="scheme", reregister="replace"
)
_OPENERS.register(MEMORY_SCHEME, open_memory_store)


def register_artifact_store(scheme: str, opener: ArtifactStoreOpener) -> None:
    """Make `open_cas` call ``opener(url, **storage_options)`` for URLs ``<scheme>://...``.

    A later registration for the same scheme replaces the earlier one.

    Args:
        scheme: the URL scheme, lower-case (``memory``, ``s3``).
        opener: builds the store from the URL and the storage options.

    Raises nothing.
    """
    _OPENERS.register(scheme, opener)


def url_scheme(url: str) -> str:
    """The scheme of ``url`` (``"file"`` for a bare path), lower-cased."""
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def open_cas(url: str, **storage_options: Any) -> ArtifactStore:
    """Open the artifact store at ``url``.

    Args:
        url: ``memory://<name>``, a local path or ``file://`` URL, or any fsspec URL.
        **storage_options: passed to the opener (fsspec options for the fsspec store).

    Returns the store for the URL's scheme (see `register_artifact_store`). Raises
    ``CAS_INVALID_URL`` when no filesystem serves the URL.
    """
    opener = _OPENERS.find(url_scheme(url))
    if opener is not None:
        return opener(url, **storage_options)
    return FsspecArtifactStore(url, **storage_options)
