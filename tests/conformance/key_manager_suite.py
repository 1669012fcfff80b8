"""The KeyManager conformance suite.

A manager under test is described by `KeyManagerBackend`: how to open it (every call opens
a new handle on the same key store, as another process would). A new manager adds one
`KeyManagerBackend` to ``tests/test_key_manager_conformance.py`` and must pass every
check in `CHECKS`. KEK records are built as the keyring builds them; a destroyed KEK is
its record as the keyring leaves it (state ``destroyed``, no ``key_ref``).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from wf_pipeline.crypto.envelope import DATA_KEY_BYTES, wrap_context
from wf_pipeline.crypto.managers import KeyManager
from wf_pipeline.errors import CAS_DECRYPT_FAILED, CAS_KEY_DESTROYED, WfError
from wf_pipeline.metadata.records import KekRecord

DAY_MS = 86_400_000


@dataclass(frozen=True)
class KeyManagerBackend:
    """One key manager under test.

    ``foreign_key_code`` is the code `KeyManager.unwrap` raises for a blob wrapped under
    another KEK: ``CAS_DECRYPT_FAILED`` for a conforming manager (AWS KMS answers
    ``IncorrectKeyException``); a test double that answers otherwise says so here.
    """

    name: str
    open: Callable[[], KeyManager]
    foreign_key_code: str = CAS_DECRYPT_FAILED


CHECKS: list[Callable[[KeyManagerBackend], None]] = []


def check(function: Callable[[KeyManagerBackend], None]) -> Callable[[KeyManagerBackend], None]:
    CHECKS.append(function)
    return function


def new_kek(manager: KeyManager, artifact_class: str = "output") -> KekRecord:
    """A KEK record with fresh material from ``manager``, as the keyring makes one."""
    kek_id = f"kek-{artifact_class}-20260101-g1-{uuid.uuid4().hex[:8]}"
    return KekRecord(
        kek_id=kek_id,
        manager=manager.name,
        key_ref=manager.create_kek(kek_id),
        artifact_class=artifact_class,
        period_start_ms=1_767_225_600_000,
        period_ms=DAY_MS,
        generation=1,
        state="primary",
        created_at_ms=1_767_225_600_000,
    )


def as_destroyed(kek: KekRecord) -> KekRecord:
    """``kek`` as the keyring leaves it once destroyed: state ``destroyed``, ``key_ref`` erased."""
    return kek.model_copy(
        update={"state": "destroyed", "key_ref": None, "destroyed_at_ms": 1_767_312_000_000}
    )


def artifact_context(kek: KekRecord, artifact_class: str = "output") -> dict[str, str]:
    """The wrap context of a fresh artifact id under ``kek``."""
    return wrap_context(f"sha256:{uuid.uuid4().hex * 2}", artifact_class, kek.kek_id)


def spellings(secret: bytes) -> list[str]:
    """The ways a secret could show up in text: hex, base64 (standard and URL-safe), repr."""
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
        repr(secret)[2:-1],
    ]


def failure(call: Callable[[], object], *secrets: bytes) -> WfError:
    """The `WfError` ``call`` raises, after checking no secret appears in its text or details."""
    with pytest.raises(WfError) as caught:
        call()
    error = caught.value
    text = " ".join((str(error), repr(error), repr(error.to_dict())))
    for secret in secrets:
        for spelled in spellings(secret):
            assert spelled not in text, f"{error.code} carries key material"
    return error


@check
def check_create_kek_returns_a_distinct_reference_per_kek(backend: KeyManagerBackend) -> None:
    manager = backend.open()
    assert isinstance(manager, KeyManager)  # every method of the protocol is there
    assert isinstance(manager.name, str) and manager.name
    first, second = new_kek(manager), new_kek(manager)
    assert isinstance(first.key_ref, bytes) and first.key_ref
    assert first.key_ref != second.key_ref


@check
def check_generate_then_unwrap_returns_the_data_key(backend: KeyManagerBackend) -> None:
    manager = backend.open()
    kek = new_kek(manager)
    context = artifact_context(kek)
    data_key, wrapped = manager.generate_data_key(kek, context)
    assert len(data_key) == DATA_KEY_BYTES
    assert data_key not in wrapped  # wrapped, not stored beside its wrapping
    assert manager.unwrap(kek, wrapped, context) == data_key
    # Another handle (another process) unwraps it from the record alone.
    assert backend.open().unwrap(kek, wrapped, dict(context)) == data_key
    again, wrapped_again = manager.generate_data_key(kek, context)
    assert again != data_key and wrapped_again != wrapped  # a fresh key per call


@check
def check_wrap_of_a_given_data_key_unwraps_to_it(backend: KeyManagerBackend) -> None:
    # A data key moved here from another manager's KEK is wrapped as given.
    manager = backend.open()
    kek = new_kek(manager)
    context = artifact_context(kek)
    data_key = bytes(range(DATA_KEY_BYTES))
    wrapped = manager.wrap(kek, data_key, context)
    assert data_key not in wrapped
    assert manager.unwrap(kek, wrapped, context) == data_key


@check
def check_a_wrong_context_does_not_unwrap(backend: KeyManagerBackend) -> None:
    manager = backend.open()
    kek, other_kek = new_kek(manager), new_kek(manager)
    context = artifact_context(kek)
    data_key, wrapped = manager.generate_data_key(kek, context)
    wrong = {
        "another artifact id": {**context, "wf:artifact_id": f"sha256:{'0' * 64}"},
        "another class": {**context, "wf:artifact_class": "prompt_render"},
        "another KEK id": {**context, "wf:kek_id": other_kek.kek_id},
        "another format": {**context, "wf:format": "2"},
    }
    for what, other in wrong.items():
        error = failure(lambda other=other: manager.unwrap(kek, wrapped, other), data_key, wrapped)
        assert error.code == CAS_DECRYPT_FAILED, what
    assert manager.unwrap(kek, wrapped, context) == data_key  # the right context still works


@check
def check_a_tampered_wrapped_key_does_not_unwrap(backend: KeyManagerBackend) -> None:
    manager = backend.open()
    kek = new_kek(manager)
    context = artifact_context(kek)
    data_key, wrapped = manager.generate_data_key(kek, context)
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 0x01])
    error = failure(lambda: manager.unwrap(kek, tampered, context), data_key, wrapped, tampered)
    assert error.code == CAS_DECRYPT_FAILED


@check
def check_rewrap_moves_the_data_key_to_another_kek(backend: KeyManagerBackend) -> None:
    manager = backend.open()
    source, target = new_kek(manager), new_kek(manager)
    source_context = artifact_context(source)
    target_context = {**source_context, "wf:kek_id": target.kek_id}
    data_key, wrapped = manager.generate_data_key(source, source_context)

    moved = manager.rewrap(source, target, wrapped, source_context, target_context)

    assert moved != wrapped and data_key not in moved
    assert manager.unwrap(target, moved, target_context) == data_key  # the same data key
    assert backend.open().unwrap(target, moved, target_context) == data_key
    under_source = failure(lambda: manager.unwrap(source, moved, target_context), data_key, moved)
    assert under_source.code == backend.foreign_key_code
    under_source_context = failure(lambda: manager.unwrap(target, moved, source_context), data_key, moved)
    assert under_source_context.code == CAS_DECRYPT_FAILED


@check
def check_rewrap_refuses_a_wrong_source_context(backend: KeyManagerBackend) -> None:
    manager = backend.open()
    source, target = new_kek(manager), new_kek(manager)
    source_context = artifact_context(source)
    data_key, wrapped = manager.generate_data_key(source, source_context)
    wrong = {**source_context, "wf:artifact_class": "prompt_render"}
    target_context = {**source_context, "wf:kek_id": target.kek_id}
    error = failure(lambda: manager.rewrap(source, target, wrapped, wrong, target_context), data_key, wrapped)
    assert error.code == CAS_DECRYPT_FAILED


@check
def check_a_destroyed_kek_unwraps_nothing(backend: KeyManagerBackend) -> None:
    manager = backend.open()
    kek, survivor = new_kek(manager), new_kek(manager)
    context, survivor_context = artifact_context(kek), artifact_context(survivor)
    data_key, wrapped = manager.generate_data_key(kek, context)
    survivor_key, survivor_wrapped = manager.generate_data_key(survivor, survivor_context)

    manager.destroy_kek(kek)
    manager.destroy_kek(kek)  # a retried destroy is fine
    destroyed = as_destroyed(kek)

    for handle in (manager, backend.open()):
        error = failure(lambda handle=handle: handle.unwrap(destroyed, wrapped, context), data_key, wrapped)
        assert error.code == CAS_KEY_DESTROYED
        assert failure(lambda handle=handle: handle.generate_data_key(destroyed, context)).code == (
            CAS_KEY_DESTROYED
        )
    target_context = {**context, "wf:kek_id": survivor.kek_id}
    error = failure(lambda: manager.rewrap(destroyed, survivor, wrapped, context, target_context), data_key)
    assert error.code == CAS_KEY_DESTROYED
    # Other KEKs are untouched.
    assert manager.unwrap(survivor, survivor_wrapped, survivor_context) == survivor_key
