"""The ArtifactStore conformance suite, passed by the encrypting store over each backend.

Every class is ``required`` here, so every object the checks put rests sealed. Damage
"behind the store's back" seals the damaged bytes under the artifact's own data key: the
envelope authenticates, so what is caught is the digest check after decryption, the same
``CAS_DIGEST_MISMATCH`` a plain store gives. Tampering with the envelope itself
(``CAS_DECRYPT_FAILED``) is tested in ``test_crypto_store.py``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conformance.cas_suite import CHECKS, CasBackend

from wf_pipeline.cas import ArtifactStore, open_cas
from wf_pipeline.crypto.envelope import seal
from wf_pipeline.crypto.keyring import Keyring, check_master_key
from wf_pipeline.crypto.managers import LocalKeyManager, new_master_key_text
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.profiles.encryption import EncryptionPolicy
from wf_pipeline.records import open_record_store

ALL_REQUIRED = EncryptionPolicy(default="required", source="conformance")


def encrypted_backend(
    name: str, inner_url: str, records_url: str, *, processes: bool
) -> tuple[CasBackend, list]:
    master = base64.b64decode(new_master_key_text())
    opened: list = []

    def open_store() -> EncryptedArtifactStore:
        records = open_record_store(records_url)
        opened.append(records)
        check_master_key(records, master, source="conformance")
        keyring = Keyring(records, {"local": LocalKeyManager(master)}, default_manager="local")
        return EncryptedArtifactStore(open_cas(inner_url), ALL_REQUIRED, keyring)

    def corrupt(store: ArtifactStore, artifact_id: str, data: bytes) -> None:
        assert isinstance(store, EncryptedArtifactStore) and store.keyring is not None
        data_key, row = store.keyring.data_key_for_get(artifact_id)
        store.inner.write_objects([(artifact_id, seal(data_key, artifact_id, row.artifact_class, data))])

    backdate: Callable[[ArtifactStore, str, int], None] | None = None
    if inner_url.startswith("file://"):

        def backdate(store: ArtifactStore, artifact_id: str, modified_ms: int) -> None:
            path = store.inner._object_path(artifact_id)  # type: ignore[attr-defined]
            os.utime(path, (modified_ms / 1000, modified_ms / 1000))

    else:

        def backdate(store: ArtifactStore, artifact_id: str, modified_ms: int) -> None:
            store.inner.backdate_for_testing(artifact_id, modified_ms)  # type: ignore[attr-defined]

    backend = CasBackend(
        name,
        open_store,
        corrupt,
        backdate=backdate,
        process_open=open_store if processes else None,
    )
    return backend, opened


def file_encrypted(tmp_path: Path) -> tuple[CasBackend, list]:
    return encrypted_backend(
        "file-encrypted",
        (tmp_path / "cas").as_uri(),
        f"sqlite:///{tmp_path / 'records.db'}",
        processes=True,
    )


def memory_encrypted(tmp_path: Path) -> tuple[CasBackend, list]:
    name = f"cas-conformance-{os.urandom(6).hex()}"
    return encrypted_backend(
        "memory-encrypted",
        f"memory://{name}",
        f"sqlite:///{tmp_path / 'records.db'}",
        processes=False,
    )


BACKENDS = {"file-encrypted": file_encrypted, "memory-encrypted": memory_encrypted}


@pytest.fixture(params=sorted(BACKENDS))
def encrypted_cas(request, tmp_path) -> CasBackend:
    backend, opened = BACKENDS[request.param](tmp_path)
    yield backend
    for records in opened:
        records.close()


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__.removeprefix("check_") for check in CHECKS])
def test_conformance_encrypted(encrypted_cas: CasBackend, check) -> None:
    check(encrypted_cas)


def test_every_object_the_suite_leaves_is_sealed(encrypted_cas: CasBackend) -> None:
    store = encrypted_cas.open()
    canaries = [f"canary-{n}-{os.urandom(4).hex()}".encode() for n in range(20)]
    refs = store.put_many(canaries)
    for ref, canary in zip(refs, canaries):
        raw = store.inner.read_object(ref.artifact_id)  # type: ignore[attr-defined]
        assert canary not in raw
        assert store.get(ref.artifact_id) == canary
