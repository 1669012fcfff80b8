"""Content-addressed store over fsspec.

An artifact's id is ``sha256:<hex>`` of its bytes; callers pass canonical bytes (or
use `put_text` / `put_json`, which canonicalise). Objects live at
``<root>/objects/<hex[:2]>/<hex[2:]>``. Writes are idempotent and atomic, reads verify
the digest, so a corrupt or truncated object is reported, never returned.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from wf_pipeline.cas.backends import write_batch, write_strategy_for
from wf_pipeline.cas.protocol import (
    ArtifactCodec,
    ArtifactRef,
    ObjectInfo,
    ScratchFile,
    batch_of,
    check_ref_name,
    check_ref_value,
    check_scratch_name,
    hex_of,
    not_found,
    ref_not_found,
    verify,
)
from wf_pipeline.errors import (
    CAS_BACKEND_ERROR,
    CAS_DIGEST_MISMATCH,
    CAS_INVALID_URL,
    CasError,
    WfError,
    masked_url,
    os_reason,
)
from wf_pipeline.metadata.canonical import DIGEST_PREFIX, is_digest
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

# How old (ms) a present object may look before a put of it again renews its age on a store
# that cannot touch in place. Grace periods of age rules (the orphan sweep) must be longer.
REFRESH_AGE_MS = 60_000


class FsspecArtifactStore(ArtifactCodec):
    """An `ArtifactStore` rooted at an fsspec URL (``file:///abs/path``, ``s3://bucket/cas``, ...).

    Args:
        url: the store's root; a bare path is a local folder. Created lazily on first write.
        **storage_options: passed to fsspec (credentials, endpoint, ...).

    Raises ``CAS_INVALID_URL`` when fsspec knows no filesystem for the URL. How an object
    is published atomically depends on the protocol (`wf_pipeline.cas.backends`).
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        self._where = masked_url(url)  # how messages name the store
        if _scheme_of(url) in LISTING_CACHE_OFF_SCHEMES:
            # Other processes add and delete objects behind this one's back: a cached listing
            # would show deleted objects as present (an `info` served from it) and hide new ones.
            storage_options.setdefault("use_listings_cache", False)
        try:
            self._fs, root = url_to_fs(url, **storage_options)
        except (ValueError, ImportError) as exc:
            safe = masked_url(url)
            raise CasError(
                CAS_INVALID_URL, f"cannot open a store at {safe}: {str(exc).replace(url, safe)}", url=safe
            ) from exc
        root = root.rstrip("/")
        self._objects_dir = f"{root}/objects"
        self._tmp_dir = f"{root}/tmp"
        self._refs_dir = f"{root}/refs"
        self._quarantine_dir = f"{root}/quarantine"
        self._write_strategy = write_strategy_for(self._fs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._where!r})"

    # -- writing -------------------------------------------------------------

    def put(self, data: bytes, *, artifact_class: str | None = None) -> ArtifactRef:
        """Store ``data`` under its digest; a present object holding exactly ``data`` is left alone.

        Returns the ref (id, size in bytes); the class is ignored. Raises ``CAS_BACKEND_ERROR``.
        """
        return self.put_many([data])[0]

    def put_many(self, items: Iterable[bytes], *, artifact_class: str | None = None) -> list[ArtifactRef]:
        """Store a batch behind one durability barrier; one ref per item, in input order.

        Objects already stored with exactly these bytes are skipped (compared byte for
        byte, so a damaged copy of the same size is replaced), duplicates are written once. Local filesystems stage every object, fsync them in one pass, rename each
        into place and fsync each folder once; object stores upload each object whole.
        A present object's age starts again (local: touched; object stores: uploaded again
        once older than `REFRESH_AGE_MS`), see `iter_objects`.
        Raises ``CAS_BACKEND_ERROR``; no object is ever half-written under its name.
        """
        refs, distinct = batch_of(items)
        with self._backend("put", refs[0].artifact_id if len(distinct) == 1 else None):
            to_write = []
            for artifact_id, data in distinct.items():
                path = self._object_path(artifact_id)
                stored = self._stored_info(path)
                stored_size = None if stored is None else int(stored["size"])
                # A present object is trusted only if it holds exactly these bytes: a damaged
                # copy (a flipped byte keeps the size) is replaced atomically, never linked to.
                if stored is not None and stored_size == len(data) and self._stored_bytes(path) == data:
                    if not self._refresh(path, stored):
                        to_write.append((path, data))
                    continue
                if stored_size is not None:
                    log.warning(
                        "%s: replacing damaged object %s in %s (%d bytes stored, %d expected)",
                        CAS_DIGEST_MISMATCH,
                        artifact_id,
                        self._where,
                        stored_size,
                        len(data),
                    )
                to_write.append((path, data))
            if to_write:
                write_batch(self._write_strategy, self._fs, to_write, tmp_dir=self._tmp_dir)
                log.debug("cas wrote %d objects (%d bytes)", len(to_write), sum(len(d) for _, d in to_write))
        return refs

    def delete(self, artifact_id: str) -> None:
        """Remove an object; deleting an absent one is not an error.

        Raises ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR``.
        """
        path = self._object_path(artifact_id)
        with self._backend("delete", artifact_id):
            try:
                self._fs.rm_file(path)
            except FileNotFoundError:
                return
        log.debug("cas deleted %s", artifact_id)

    def quarantine(self, artifact_id: str) -> str | None:
        """Move the object to ``<root>/quarantine/<hex>.<unique>``: kept, no longer readable by id.

        Returns the quarantine path, or None when nothing is stored under the id. Raises
        ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR``.
        """
        path = self._object_path(artifact_id)
        target = f"{self._quarantine_dir}/{hex_of(artifact_id)}.{uuid.uuid4().hex[:12]}"
        with self._backend("quarantine", artifact_id):
            if self._stored_size(path) is None:
                return None
            self._fs.makedirs(self._quarantine_dir, exist_ok=True)
            try:
                self._fs.mv(path, target)
            except FileNotFoundError:
                return None  # another process moved it first
        log.debug("cas quarantined %s to %s", artifact_id, target)  # callers report it
        return target

    # -- reading -------------------------------------------------------------

    def get(self, artifact_id: str, *, size: int | None = None, artifact_class: str | None = None) -> bytes:
        """The verified bytes of ``artifact_id`` (and of ``size`` bytes, if given); the class is ignored.

        Raises ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``, ``CAS_DIGEST_MISMATCH``, ``CAS_BACKEND_ERROR``.
        """
        return verify(artifact_id, self.read_object(artifact_id), size, where=self._where)

    def read_object(self, artifact_id: str) -> bytes:
        """The stored bytes of ``artifact_id``, unverified.

        Raises ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``, ``CAS_BACKEND_ERROR``.
        """
        path = self._object_path(artifact_id)
        with self._backend("get", artifact_id):
            try:
                return bytes(self._fs.cat_file(path))
            except FileNotFoundError:
                raise not_found(artifact_id, where=self._where) from None

    def write_objects(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish each ``(artifact_id, bytes)`` under its id as given, behind one durability barrier.

        Raises ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR``; nothing is half-written under an id.
        """
        to_write = [(self._object_path(artifact_id), bytes(data)) for artifact_id, data in items]
        if not to_write:
            return
        with self._backend("put", items[0][0] if len(items) == 1 else None):
            write_batch(self._write_strategy, self._fs, to_write, tmp_dir=self._tmp_dir)

    def touch_object(self, artifact_id: str) -> bool:
        """Renew the object's age (local: touched; object stores: True while younger than `REFRESH_AGE_MS`).

        False when the object is absent or must be uploaded again to look young. Raises
        ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR``.
        """
        path = self._object_path(artifact_id)
        with self._backend("touch", artifact_id):
            stored = self._stored_info(path)
            return stored is not None and self._refresh(path, stored)

    def exists(self, artifact_id: str) -> bool:
        """Whether an object is stored under ``artifact_id`` (not verified).

        Raises ``CAS_INVALID_ID``, ``CAS_BACKEND_ERROR``.
        """
        path = self._object_path(artifact_id)
        with self._backend("exists", artifact_id):
            return self._stored_size(path) is not None

    def stat(self, artifact_id: str) -> ArtifactRef:
        """The stored object's id and size in bytes, without reading or verifying it.

        Raises ``CAS_INVALID_ID``, ``CAS_NOT_FOUND``, ``CAS_BACKEND_ERROR``.
        """
        path = self._object_path(artifact_id)
        with self._backend("size", artifact_id):
            stored_size = self._stored_size(path)
        if stored_size is None:
            raise not_found(artifact_id, where=self._where)
        return ArtifactRef(artifact_id, stored_size)

    def iter_artifact_ids(self) -> Iterator[str]:
        """Ids of every stored object, in id order; stray files under objects/ are skipped.

        Raises ``CAS_BACKEND_ERROR``.
        """
        with self._backend("list", None):
            if self._stored_size(self._objects_dir) is None:  # nothing stored yet
                return
            paths = self._fs.find(self._objects_dir)
        for path in sorted(paths):
            fan_out, rest = path.rsplit("/", 2)[-2:]
            artifact_id = f"{DIGEST_PREFIX}{fan_out}{rest}"
            if len(fan_out) == 2 and is_digest(artifact_id):
                yield artifact_id

    def iter_objects(self) -> Iterator[ObjectInfo]:
        """Every object with its size (bytes) and last write time (ms, from fsspec's info), in id order.

        The time is the filesystem's ``mtime`` (local), ``created`` (memory), ``LastModified``
        (S3) or ``updated`` (GCS); a backend reporting none gives the listing time, so an age
        rule never takes the object for old. Raises ``CAS_BACKEND_ERROR``.
        """
        with self._backend("list", None):
            if self._stored_size(self._objects_dir) is None:  # nothing stored yet
                return
            details = self._fs.find(self._objects_dir, detail=True)
        now_ms = time.time_ns() // 1_000_000
        for path in sorted(details):
            fan_out, rest = path.rsplit("/", 2)[-2:]
            artifact_id = f"{DIGEST_PREFIX}{fan_out}{rest}"
            if len(fan_out) == 2 and is_digest(artifact_id):
                info = details[path]
                yield ObjectInfo(artifact_id, int(info.get("size") or 0), modified_ms(info, default=now_ms))

    def iter_scratch(self) -> Iterator[ScratchFile]:
        """Staged writes left in ``<root>/tmp/`` (``*.part``), in name order. Raises ``CAS_BACKEND_ERROR``."""
        with self._backend("list", None):
            if self._stored_size(self._tmp_dir) is None:
                return
            details = self._fs.ls(self._tmp_dir, detail=True)
        now_ms = time.time_ns() // 1_000_000
        for info in sorted(details, key=lambda item: str(item["name"])):
            name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
            if info.get("type") == "file" and name.endswith(".part"):
                yield ScratchFile(name, int(info.get("size") or 0), modified_ms(info, default=now_ms))

    def delete_scratch(self, name: str) -> None:
        """Remove ``<root>/tmp/<name>``; an absent file is not an error.

        Raises ``CAS_INVALID_REF`` (a name with a folder part), ``CAS_BACKEND_ERROR``.
        """
        path = f"{self._tmp_dir}/{check_scratch_name(name)}"
        with self._backend("delete_scratch", None):
            try:
                self._fs.rm_file(path)
            except FileNotFoundError:
                return

    # -- refs ----------------------------------------------------------------
    # A ref is the one mutable thing here: a named pointer to an artifact id, replaced
    # atomically like an object, so readers see the old or the new id, never a mix.

    def set_ref(self, name: str, artifact_id: str) -> None:
        """Point ``name`` at ``artifact_id``, atomically.

        Raises ``CAS_INVALID_ID``, ``CAS_INVALID_REF``, ``CAS_BACKEND_ERROR``.
        """
        self._object_path(artifact_id)  # validates the id
        with self._backend("set_ref", artifact_id):
            self._write_strategy.write(
                self._fs, self._ref_path(name), artifact_id.encode("ascii"), tmp_dir=self._tmp_dir
            )

    def get_ref(self, name: str) -> str:
        """The artifact id ``name`` points at.

        Raises ``CAS_INVALID_REF``, ``CAS_REF_NOT_FOUND``, ``CAS_REF_CORRUPT``, ``CAS_BACKEND_ERROR``.
        """
        with self._backend("get_ref", None):
            try:
                value = bytes(self._fs.cat_file(self._ref_path(name))).decode("ascii").strip()
            except FileNotFoundError:
                raise ref_not_found(name, where=self._where) from None
        return check_ref_value(name, value, where=self._where)

    # -- internals -----------------------------------------------------------

    def _ref_path(self, name: str) -> str:
        return f"{self._refs_dir}/{check_ref_name(name)}"

    def _object_path(self, artifact_id: str) -> str:
        hex_digest = hex_of(artifact_id)
        return f"{self._objects_dir}/{hex_digest[:2]}/{hex_digest[2:]}"

    def _stored_bytes(self, path: str) -> bytes | None:
        try:
            return bytes(self._fs.cat_file(path))
        except FileNotFoundError:
            return None

    def _refresh(self, path: str, info: Mapping[str, Any]) -> bool:
        # A put of a present object makes it young again: a run puts before it records
        # (CAS first), and the orphan sweep's grace period counts from the last put. A
        # local file is touched; elsewhere False asks the caller to upload the object again
        # (atomic, whole), but only once it is older than REFRESH_AGE_MS, so repeated puts
        # of a fresh object cost nothing. fsspec's own touch is not used: it would create an
        # empty file under the id if the object vanished in between.
        if isinstance(self._fs, LocalFileSystem):
            try:
                os.utime(path)
            except FileNotFoundError:
                return False
            return True
        now = time.time_ns() // 1_000_000
        return now - modified_ms(info, default=now) <= REFRESH_AGE_MS

    def _stored_info(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(self._fs.info(path))
        except FileNotFoundError:
            return None

    def _stored_size(self, path: str) -> int | None:
        try:
            return int(self._fs.info(path)["size"])
        except FileNotFoundError:
            return None

    @contextmanager
    def _backend(self, operation: str, artifact_id: str | None) -> Iterator[None]:
        # fsspec backends raise OSError subclasses and their own client errors alike;
        # callers get one code either way, with the original chained for diagnosis.
        try:
            yield
        except WfError:
            raise
        except Exception as exc:
            # The operating system's reason ("No space left on device (ENOSPC)") leads, so a
            # full disk or an I/O error reads as such; the URL never shows a password.
            reason = os_reason(exc)
            target = f" {artifact_id}" if artifact_id else ""
            raise CasError(
                CAS_BACKEND_ERROR,
                f"{operation}{target} on {self._where} failed: {reason}",
                operation=operation,
                artifact_id=artifact_id,
                error_type=type(exc).__name__,
                reason=reason,
            ) from exc


# Object-store schemes (s3fs, gcsfs, adlfs) whose fsspec listing cache the store turns off:
# other processes change these stores, so every listing and `info` asks the store itself.
# Each of these filesystems passes ``use_listings_cache`` on to fsspec's DirCache; other
# filesystems (sftp, ...) may not accept the keyword, so they are left as they are.
LISTING_CACHE_OFF_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az"})


def _scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


# fsspec info keys holding a last-write time, by backend: local, memory, S3, GCS/Azure.
_MODIFIED_KEYS = ("mtime", "created", "LastModified", "last_modified", "updated")


def modified_ms(info: Mapping[str, Any], *, default: int) -> int:
    """The last write time in an fsspec ``info`` dict, as Unix epoch ms; ``default`` when it has none.

    Accepts seconds as a number, a `datetime`, or ISO 8601 text, whichever the backend gives.
    """
    for key in _MODIFIED_KEYS:
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return int(value.timestamp() * 1000)
        if isinstance(value, int | float):
            return int(float(value) * 1000)
        if isinstance(value, str):
            try:
                return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
            except ValueError:
                continue
    return default


# The name callers have always imported; the fsspec store is the default implementation.
CasStore = FsspecArtifactStore
