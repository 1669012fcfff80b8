"""How an object reaches its final name atomically, per fsspec protocol.

fsspec already maps protocols to filesystems; this registry only maps a protocol to
the write strategy that guarantees a reader never sees a half-written object. Local
filesystems write a temporary file beside the store and rename it; object stores
make a single whole-object upload atomic on their own, so a plain ``pipe_file``
serves every protocol nobody registered.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from contextlib import suppress
from typing import Protocol

from fsspec import AbstractFileSystem

from wf_pipeline.registry import Registry

# Permission bits of every object a local store writes (owner read/write only).
OBJECT_MODE = 0o600


class WriteStrategy(Protocol):
    """Publishes objects under their final path so that no reader sees a partial object.

    A strategy may also define ``write_many(fs, items, *, tmp_dir)`` (see `LocalRenameWrite`)
    to put a batch behind one durability barrier; `write_batch` falls back to one `write`
    per object for strategies without it.
    """

    def write(self, fs: AbstractFileSystem, path: str, data: bytes, *, tmp_dir: str) -> None:
        """Make ``path`` hold exactly ``data``, or leave it untouched on failure.

        ``tmp_dir`` is a scratch folder inside the store on the same filesystem. Errors
        are the filesystem's own; the store turns them into ``CAS_BACKEND_ERROR``.
        """
        ...


class LocalRenameWrite:
    """Write to a unique temporary file (mode `OBJECT_MODE`, 0600), fsync, then rename over the final name.

    ``os.replace`` is atomic within one filesystem (POSIX rename(2)), so concurrent
    writers of the same object (threads or processes) each land a complete file and the
    last one wins.
    """

    def write(self, fs: AbstractFileSystem, path: str, data: bytes, *, tmp_dir: str) -> None:
        """Publish one object: temp file, fsync, rename, fsync of its folder. Raises OSError."""
        self.write_many(fs, [(path, data)], tmp_dir=tmp_dir)

    def write_many(self, fs: AbstractFileSystem, items: Sequence[tuple[str, bytes]], *, tmp_dir: str) -> None:
        """Publish a batch behind one durability barrier (group commit).

        Every object's temporary file is written first, then all are fsynced in one
        pass, then each is renamed to its final path, then each distinct folder is
        fsynced once. A failure removes the temporary files not yet renamed; objects
        already renamed are complete. Raises OSError.
        """
        os.makedirs(tmp_dir, exist_ok=True)
        staged: list[tuple[str, str]] = []  # (temporary path, final path)
        published = 0
        folders: dict[str, None] = {}
        try:
            for path, data in items:
                tmp_path = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.part")
                staged.append((tmp_path, path))
                # 0600: objects hold prompts and source code; only the store's owner reads them.
                fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OBJECT_MODE)
                with open(fd, "wb") as handle:
                    handle.write(data)
            # One barrier for the batch: the data of every object is durable before any name is.
            for tmp_path, _ in staged:
                _fsync_path(tmp_path)
            for tmp_path, path in staged:
                folder = os.path.dirname(path)
                os.makedirs(folder, exist_ok=True)
                os.replace(tmp_path, path)
                published += 1
                folders[folder] = None
        except BaseException:
            for tmp_path, _ in staged[published:]:
                with suppress(FileNotFoundError):
                    os.unlink(tmp_path)
            raise
        for folder in folders:
            # Persist the renames themselves; without it a power loss can forget the new names.
            _fsync_path(folder)


class WholeObjectPut:
    """One whole-object upload; object stores publish it atomically."""

    def write(self, fs: AbstractFileSystem, path: str, data: bytes, *, tmp_dir: str) -> None:
        """Upload ``data`` to ``path`` with ``pipe_file``; errors are the filesystem's own."""
        fs.pipe_file(path, data)

    def write_many(self, fs: AbstractFileSystem, items: Sequence[tuple[str, bytes]], *, tmp_dir: str) -> None:
        """Upload each object whole; an object store makes each upload durable when it returns."""
        for path, data in items:
            fs.pipe_file(path, data)


def write_batch(
    strategy: WriteStrategy, fs: AbstractFileSystem, items: Sequence[tuple[str, bytes]], *, tmp_dir: str
) -> None:
    """Publish ``items`` (final path, bytes) through ``strategy``, batched when it can batch."""
    write_many = getattr(strategy, "write_many", None)
    if write_many is not None:
        write_many(fs, items, tmp_dir=tmp_dir)
        return
    for path, data in items:
        strategy.write(fs, path, data, tmp_dir=tmp_dir)


def _fsync_path(path: str) -> None:
    # Linux flushes a file's or a folder's data through a read-only descriptor as well.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LOCAL_RENAME = LocalRenameWrite()
_WHOLE_OBJECT_PUT = WholeObjectPut()
# A later registration for a protocol replaces the earlier one; unknown protocols fall back below.
_STRATEGIES: Registry[str, WriteStrategy] = Registry("write strategy", key="protocol", reregister="replace")
_STRATEGIES.register_many({"file": _LOCAL_RENAME, "local": _LOCAL_RENAME})


def register_cas_backend(protocol: str, write_strategy: WriteStrategy) -> None:
    """Use ``write_strategy`` for fsspec stores whose filesystem speaks ``protocol`` (e.g. ``"s3"``).

    This picks how the fsspec store writes; to plug in a whole other store for a URL
    scheme, use `wf_pipeline.cas.register_artifact_store`. A later registration for the
    same protocol replaces the earlier one.

    Args:
        protocol: an fsspec protocol name (``"s3"``, ``"gcs"``).
        write_strategy: how the fsspec store writes objects to such a filesystem.

    Raises nothing.
    """
    _STRATEGIES.register(protocol, write_strategy)


def write_strategy_for(fs: AbstractFileSystem) -> WriteStrategy:
    """The strategy registered for one of ``fs``'s protocols, else `WholeObjectPut`."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    for protocol in protocols:
        strategy = _STRATEGIES.find(protocol)
        if strategy is not None:
            return strategy
    return _WHOLE_OBJECT_PUT
