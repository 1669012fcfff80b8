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
from collections.abc import Iterator

import pytest
from conformance.cas_suite import CHECKS, CasBackend
from test_cas_conformance import BACKENDS as PLAIN_BACKENDS

from wf_pipeline.cas import ArtifactStore
from wf_pipeline.crypto.envelope import seal
from wf_pipeline.crypto.keyring import Keyring, check_master_key
from wf_pipeline.crypto.managers import LocalKeyManager, new_master_key_text
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.profiles.encryption import EncryptionPolicy
from wf_pipeline.records import open_record_store

ALL_REQUIRED = EncryptionPolicy(default="required", source="conformance")


def encrypted(plain: CasBackend, records_url: str) -> tuple[CasBackend, list]:
    """``plain`` behind the encrypting store, every class required, keys in ``records_url``."""
    master = base64.b64decode(new_master_key_text())
    opened: list = []

    def sealed(inner: ArtifactStore) -> EncryptedArtifactStore:
        records = open_record_store(records_url)
        opened.append(records)
        check_master_key(records, master, source="conformance")
        keyring = Keyring(records, {"local": LocalKeyManager(master)}, default_manager="local")
        return EncryptedArtifactStore(inner, ALL_REQUIRED, keyring)

    def corrupt(store: ArtifactStore, artifact_id: str, data: bytes) -> None:
        assert isinstance(store, EncryptedArtifactStore) and store.keyring is not None
        data_key, row = store.keyring.data_key_for_get(artifact_id)
        store.inner.write_objects([(artifact_id, seal(data_key, artifact_id, row.artifact_class, data))])

    def backdate(store: ArtifactStore, artifact_id: str, modified_ms: int) -> None:
        assert plain.backdate is not None
        plain.backdate(store.inner, artifact_id, modified_ms)  # type: ignore[attr-defined]

    reachable = plain.process_url is not None or plain.process_open is not None
    backend = CasBackend(
        f"{plain.name}-encrypted",
        lambda: sealed(plain.open()),
        corrupt,
        backdate=backdate,
        process_open=(lambda: sealed(plain.open_in_process())) if reachable else None,
    )
    return backend, opened


# Every plain backend of the suite, encrypted; server fixtures as test_cas_conformance names them.
PLAIN = {name: entry for name, entry in PLAIN_BACKENDS.items() if name != "fsspec-memory"}


@pytest.fixture(params=sorted(PLAIN))
def encrypted_cas(request, tmp_path) -> Iterator[CasBackend]:
    factory, server_fixture = PLAIN[request.param]
    plain = (
        factory(tmp_path, request.getfixturevalue(server_fixture)) if server_fixture else factory(tmp_path)
    )
    backend, opened = encrypted(plain, f"sqlite:///{tmp_path / 'records.db'}")
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
