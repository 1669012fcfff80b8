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
from contextlib import suppress
from typing import Protocol

from fsspec import AbstractFileSystem


class WriteStrategy(Protocol):
    def write(self, fs: AbstractFileSystem, path: str, data: bytes, *, tmp_dir: str) -> None:
        """Make ``path`` hold exactly ``data``, or leave it untouched on failure.

        ``tmp_dir`` is a scratch folder inside the store on the same filesystem.
        """
        ...


class LocalRenameWrite:
    """Write to a unique temporary file, fsync, then rename over the final name.

    ``os.replace`` is atomic within one filesystem, so concurrent writers of the same
    object (threads or processes) each land a complete file and the last one wins.
    """

    def write(self, fs: AbstractFileSystem, path: str, data: bytes, *, tmp_dir: str) -> None:
        object_dir = os.path.dirname(path)
        os.makedirs(tmp_dir, exist_ok=True)
        os.makedirs(object_dir, exist_ok=True)
        tmp_path = os.path.join(tmp_dir, f"{uuid.uuid4().hex}.part")
        try:
            with open(tmp_path, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_path, path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp_path)
            raise
        _fsync_dir(object_dir)


class WholeObjectPut:
    """One whole-object upload; object stores publish it atomically."""

    def write(self, fs: AbstractFileSystem, path: str, data: bytes, *, tmp_dir: str) -> None:
        fs.pipe_file(path, data)


def _fsync_dir(path: str) -> None:
    # Persist the rename itself; without it a power loss can forget the new name.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LOCAL_RENAME = LocalRenameWrite()
_WHOLE_OBJECT_PUT = WholeObjectPut()
_STRATEGIES: dict[str, WriteStrategy] = {"file": _LOCAL_RENAME, "local": _LOCAL_RENAME}


def register_cas_backend(protocol: str, write_strategy: WriteStrategy) -> None:
    """Use ``write_strategy`` for stores whose fsspec filesystem speaks ``protocol``."""
    _STRATEGIES[protocol] = write_strategy


def write_strategy_for(fs: AbstractFileSystem) -> WriteStrategy:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    for protocol in protocols:
        if protocol in _STRATEGIES:
            return _STRATEGIES[protocol]
    return _WHOLE_OBJECT_PUT
