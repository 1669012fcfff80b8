"""Content-addressed store over fsspec.

An artifact's id is ``sha256:<hex>`` of its bytes; callers pass canonical bytes (or
use `put_text` / `put_json`, which canonicalise). Objects live at
``<root>/objects/<hex[:2]>/<hex[2:]>``. Writes are idempotent and atomic, reads verify
the digest, so a corrupt or truncated object is reported, never returned.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fsspec.core import url_to_fs

from wf_pipeline.cas.backends import write_strategy_for
from wf_pipeline.errors import CasError, WfError
from wf_pipeline.metadata.canonical import (
    DIGEST_PREFIX,
    canonical_json,
    canonical_text,
    digest,
    is_digest,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArtifactRef:
    artifact_id: str
    size: int


class CasStore:
    """A store rooted at an fsspec URL (``file:///abs/path``, ``memory://bucket``, ``s3://...``)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        try:
            self._fs, root = url_to_fs(url, **storage_options)
        except (ValueError, ImportError) as exc:
            raise CasError("CAS_INVALID_URL", f"cannot open a store at {url}: {exc}", url=url) from exc
        root = root.rstrip("/")
        self._objects_dir = f"{root}/objects"
        self._tmp_dir = f"{root}/tmp"
        self._refs_dir = f"{root}/refs"
        self._write_strategy = write_strategy_for(self._fs)

    def __repr__(self) -> str:
        return f"CasStore({self.url!r})"

    # -- writing -------------------------------------------------------------

    def put(self, data: bytes) -> ArtifactRef:
        """Store ``data`` under its digest; a present, intact-sized object is left alone."""
        data = bytes(data)
        artifact_id = digest(data)
        path = self._object_path(artifact_id)
        with self._backend("put", artifact_id):
            stored_size = self._stored_size(path)
            # A size difference means an earlier write was damaged; replace it atomically.
            if stored_size != len(data):
                if stored_size is not None:
                    log.warning(
                        "cas replacing damaged object %s (%d bytes stored, %d expected)",
                        artifact_id,
                        stored_size,
                        len(data),
                    )
                self._write_strategy.write(self._fs, path, data, tmp_dir=self._tmp_dir)
                log.debug("cas wrote %s (%d bytes)", artifact_id, len(data))
        return ArtifactRef(artifact_id, len(data))

    def put_text(self, text: str) -> ArtifactRef:
        return self.put(canonical_text(text))

    def put_json(self, value: Any) -> ArtifactRef:
        try:
            data = canonical_json(value)
        except (TypeError, ValueError) as exc:
            raise CasError("CAS_INVALID_JSON", f"value is not canonical JSON: {type(exc).__name__}") from exc
        return self.put(data)

    def delete(self, artifact_id: str) -> None:
        """Remove an object; deleting an absent one is not an error."""
        path = self._object_path(artifact_id)
        with self._backend("delete", artifact_id):
            try:
                self._fs.rm_file(path)
            except FileNotFoundError:
                return
        log.debug("cas deleted %s", artifact_id)

    # -- reading -------------------------------------------------------------

    def get(self, artifact_id: str, *, size: int | None = None) -> bytes:
        """The verified bytes of ``artifact_id`` (and of ``size`` bytes, if given)."""
        path = self._object_path(artifact_id)
        with self._backend("get", artifact_id):
            try:
                data = bytes(self._fs.cat_file(path))
            except FileNotFoundError:
                raise self._not_found(artifact_id) from None
        self._verify(artifact_id, data, size)
        return data

    def get_text(self, artifact_id: str, *, size: int | None = None) -> str:
        data = self.get(artifact_id, size=size)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CasError(
                "CAS_DECODE_ERROR", f"{artifact_id} is not UTF-8 text", artifact_id=artifact_id
            ) from exc

    def get_json(self, artifact_id: str, *, size: int | None = None) -> Any:
        text = self.get_text(artifact_id, size=size)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CasError("CAS_DECODE_ERROR", f"{artifact_id} is not JSON", artifact_id=artifact_id) from exc

    def exists(self, artifact_id: str) -> bool:
        path = self._object_path(artifact_id)
        with self._backend("exists", artifact_id):
            return self._stored_size(path) is not None

    def size(self, artifact_id: str) -> int:
        """Stored size in bytes, without reading or verifying the object."""
        path = self._object_path(artifact_id)
        with self._backend("size", artifact_id):
            stored_size = self._stored_size(path)
        if stored_size is None:
            raise self._not_found(artifact_id)
        return stored_size

    def iter_artifact_ids(self) -> Iterator[str]:
        """Ids of every stored object, in id order; stray files under objects/ are skipped."""
        with self._backend("list", None):
            if self._stored_size(self._objects_dir) is None:  # nothing stored yet
                return
            paths = self._fs.find(self._objects_dir)
        for path in paths:
            fan_out, rest = path.rsplit("/", 2)[-2:]
            artifact_id = f"{DIGEST_PREFIX}{fan_out}{rest}"
            if len(fan_out) == 2 and is_digest(artifact_id):
                yield artifact_id

    # -- refs ----------------------------------------------------------------
    # A ref is the one mutable thing here: a named pointer to an artifact id, replaced
    # atomically like an object, so readers see the old or the new id, never a mix.

    def set_ref(self, name: str, artifact_id: str) -> None:
        self._object_path(artifact_id)  # validates the id
        with self._backend("set_ref", artifact_id):
            self._write_strategy.write(
                self._fs, self._ref_path(name), artifact_id.encode("ascii"), tmp_dir=self._tmp_dir
            )

    def get_ref(self, name: str) -> str:
        with self._backend("get_ref", None):
            try:
                value = bytes(self._fs.cat_file(self._ref_path(name))).decode("ascii").strip()
            except FileNotFoundError:
                raise CasError("CAS_REF_NOT_FOUND", f"no ref {name!r} in {self.url}", ref=name) from None
        if not is_digest(value):
            raise CasError(
                "CAS_REF_CORRUPT", f"ref {name!r} in {self.url} does not hold an artifact id", ref=name
            )
        return value

    # -- internals -----------------------------------------------------------

    def _ref_path(self, name: str) -> str:
        parts = name.split("/")
        if not name or any(part in ("", ".", "..") for part in parts):
            raise CasError("CAS_INVALID_REF", f"invalid ref name {name!r}", ref=name)
        return f"{self._refs_dir}/{name}"

    def _object_path(self, artifact_id: str) -> str:
        if not is_digest(artifact_id):
            raise CasError(
                "CAS_INVALID_ID",
                "artifact id must be sha256:<64 lowercase hex>",
                artifact_id=str(artifact_id)[:80],
            )
        hex_digest = artifact_id[len(DIGEST_PREFIX) :]
        return f"{self._objects_dir}/{hex_digest[:2]}/{hex_digest[2:]}"

    def _stored_size(self, path: str) -> int | None:
        try:
            return int(self._fs.info(path)["size"])
        except FileNotFoundError:
            return None

    def _verify(self, artifact_id: str, data: bytes, expected_size: int | None) -> None:
        actual_id = digest(data)
        if actual_id == artifact_id and (expected_size is None or expected_size == len(data)):
            return
        raise CasError(
            "CAS_DIGEST_MISMATCH",
            f"stored object {artifact_id} in {self.url} does not match its id or expected size",
            artifact_id=artifact_id,
            actual_digest=actual_id,
            expected_size=expected_size,
            actual_size=len(data),
        )

    def _not_found(self, artifact_id: str) -> CasError:
        return CasError("CAS_NOT_FOUND", f"{artifact_id} is not in {self.url}", artifact_id=artifact_id)

    @contextmanager
    def _backend(self, operation: str, artifact_id: str | None) -> Iterator[None]:
        # fsspec backends raise OSError subclasses and their own client errors alike;
        # callers get one code either way, with the original chained for diagnosis.
        try:
            yield
        except WfError:
            raise
        except Exception as exc:
            raise CasError(
                "CAS_BACKEND_ERROR",
                f"{operation} {artifact_id or ''} on {self.url} failed: {type(exc).__name__}: {exc}",
                operation=operation,
                artifact_id=artifact_id,
                error_type=type(exc).__name__,
            ) from exc


def open_cas(url: str, **storage_options: Any) -> CasStore:
    return CasStore(url, **storage_options)
