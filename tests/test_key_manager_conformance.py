"""Every KeyManager passes the conformance suite: the local keyring and AWS KMS (moto on loopback).

Broken managers fail it, so the checks can fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import pytest
from conformance import failing_checks
from conformance.key_manager_suite import CHECKS, KeyManagerBackend
from kms_support import MotoKms, moto_server

from wf_pipeline.crypto.managers import LocalKeyManager, new_master_key_text, parse_master_key
from wf_pipeline.errors import CAS_DECRYPT_FAILED, KEYS_MANAGER_ERROR, CasError
from wf_pipeline.metadata.records import KekRecord


def local_backend() -> KeyManagerBackend:
    master_key = parse_master_key(new_master_key_text(), source="test")
    return KeyManagerBackend("local", lambda: LocalKeyManager(master_key))


def aws_kms_backend(kms: MotoKms) -> KeyManagerBackend:
    # KMS answers IncorrectKeyException (CAS_DECRYPT_FAILED) for a blob of another key;
    # moto answers AccessDeniedException instead, which the manager rightly reports as a
    # manager error (tests/test_crypto_aws_kms.py checks IncorrectKeyException itself).
    prefix = f"wf-conf-{os.urandom(4).hex()}"
    return KeyManagerBackend("aws-kms", lambda: kms.manager(prefix), foreign_key_code=KEYS_MANAGER_ERROR)


@pytest.fixture(scope="module")
def moto_kms() -> Iterator[MotoKms]:
    with moto_server() as kms:
        yield kms


@pytest.fixture(params=["local", "aws-kms"])
def key_manager_backend(request) -> KeyManagerBackend:
    if request.param == "local":
        return local_backend()
    return aws_kms_backend(request.getfixturevalue("moto_kms"))


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__.removeprefix("check_") for check in CHECKS])
def test_conformance(key_manager_backend: KeyManagerBackend, check) -> None:
    check(key_manager_backend)


# --- broken managers fail the suite ----------------------------------------------------


class IgnoresContext(LocalKeyManager):
    """Wraps every data key with the same associated data, whatever the context."""

    def _wrap(self, kek, data_key: bytes, context: Mapping[str, str]) -> bytes:
        return super()._wrap(kek, data_key, {})

    def unwrap(self, kek: KekRecord, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        return super().unwrap(kek, wrapped, {})


class ShowsTheWrappedKey(LocalKeyManager):
    """Puts the wrapped key into its error message."""

    def unwrap(self, kek: KekRecord, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        try:
            return super().unwrap(kek, wrapped, context)
        except CasError as exc:
            raise CasError(CAS_DECRYPT_FAILED, f"cannot unwrap {wrapped.hex()}") from exc


class ForgetsDestruction(LocalKeyManager):
    """Keeps using a KEK it has cached after the KEK is destroyed."""

    def _kek(self, kek: KekRecord):
        if kek.state == "destroyed":
            with self._lock:
                cached = self._keks.get(kek.kek_id)
            if cached is not None:
                return cached
        return super()._kek(kek)

    def destroy_kek(self, kek: KekRecord) -> None:
        return None


@pytest.mark.parametrize(
    ("broken", "caught_by"),
    [
        (
            IgnoresContext,
            {"check_a_wrong_context_does_not_unwrap", "check_rewrap_moves_the_data_key_to_another_kek"},
        ),
        (
            ShowsTheWrappedKey,
            {"check_a_wrong_context_does_not_unwrap", "check_a_tampered_wrapped_key_does_not_unwrap"},
        ),
        (ForgetsDestruction, {"check_a_destroyed_kek_unwraps_nothing"}),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_a_broken_manager_fails_the_suite(broken, caught_by) -> None:
    master_key = parse_master_key(new_master_key_text(), source="test")
    failed = failing_checks(CHECKS, lambda: KeyManagerBackend(broken.__name__, lambda: broken(master_key)))
    assert caught_by <= failed, f"{broken.__name__} passed {sorted(caught_by - failed)}"


def test_the_reference_manager_fails_no_check() -> None:
    # The harness reports real failures only: the local manager passes every check through it.
    assert failing_checks(CHECKS, local_backend) == set()
