"""The aws-kms key manager against KMS on loopback: moto's server, and an endpoint answering AWS errors.

The protocol checks shared with the local manager are in tests/conformance/key_manager_suite.py
(run by tests/test_key_manager_conformance.py); these are the KMS-specific ones.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from conformance.key_manager_suite import artifact_context, as_destroyed, failure, new_kek
from kms_support import REGION, MotoKms, closed_port_url, error_kms, moto_server, set_aws_test_env

from wf_pipeline.crypto.aws_kms import AWS_KMS, KEK_ID_TAG, PENDING_WINDOW_DAYS, AwsKmsKeyManager
from wf_pipeline.crypto.managers import key_manager_names, open_key_manager
from wf_pipeline.errors import (
    CAS_DECRYPT_FAILED,
    CAS_KEY_DESTROYED,
    KEYS_MANAGER_ERROR,
    KEYS_MANAGER_UNKNOWN,
    KeysError,
)
from wf_pipeline.metadata.records import KekRecord
from wf_pipeline.settings import Settings

ARN = "arn:aws:kms:us-east-1:123456789012:key/0b0c3cb4-1111-4222-8333-944445555666"
WRAPPED = bytes(range(7, 7 + 96))


@pytest.fixture(scope="module")
def moto_kms() -> Iterator[MotoKms]:
    with moto_server() as kms:
        yield kms


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_aws_test_env(monkeypatch)


def kek_at(arn: str = ARN) -> KekRecord:
    return KekRecord(
        kek_id=f"kek-output-20260101-g1-{uuid.uuid4().hex[:6]}",
        manager=AWS_KMS,
        key_ref=arn.encode(),
        artifact_class="output",
        period_start_ms=0,
        period_ms=86_400_000,
        generation=1,
        state="primary",
        created_at_ms=0,
    )


# --- create, describe, destroy against moto ---------------------------------------------


def test_create_kek_makes_a_symmetric_key_with_its_alias_and_tags(moto_kms: MotoKms) -> None:
    manager = moto_kms.manager(alias_prefix="wf-create")
    kek_id = f"kek-output-20260101-g1-{uuid.uuid4().hex[:6]}"

    arn = manager.create_kek(kek_id).decode("utf-8")

    client = moto_kms.client()
    meta = client.describe_key(KeyId=arn)["KeyMetadata"]
    assert meta["Arn"] == arn and arn.startswith(f"arn:aws:kms:{REGION}:")
    assert (meta["KeySpec"], meta["KeyUsage"], meta["KeyState"]) == (
        "SYMMETRIC_DEFAULT",
        "ENCRYPT_DECRYPT",
        "Enabled",
    )
    assert meta["Description"] == kek_id
    tags = {tag["TagKey"]: tag["TagValue"] for tag in client.list_resource_tags(KeyId=meta["KeyId"])["Tags"]}
    assert tags[KEK_ID_TAG] == kek_id
    alias = client.describe_key(KeyId=f"alias/wf-create/{kek_id}")["KeyMetadata"]
    assert alias["Arn"] == arn


def test_creating_the_same_kek_again_returns_the_first_key_and_drops_the_new_one(moto_kms: MotoKms) -> None:
    # A retry after a crash between CreateKey/CreateAlias and the record write converges on one key.
    manager = moto_kms.manager()
    kek_id = f"kek-output-20260101-g1-{uuid.uuid4().hex[:6]}"
    client = moto_kms.client()
    before = {key["KeyArn"] for key in client.list_keys(Limit=1000)["Keys"]}

    first = manager.create_kek(kek_id)
    again = moto_kms.manager(alias_prefix=manager.alias_prefix).create_kek(kek_id)

    assert again == first
    made = {key["KeyArn"] for key in client.list_keys(Limit=1000)["Keys"]} - before
    assert len(made) == 2
    (spare,) = made - {first.decode()}
    assert client.describe_key(KeyId=spare)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_destroy_kek_disables_the_key_and_schedules_its_deletion_after_seven_days(moto_kms: MotoKms) -> None:
    manager = moto_kms.manager()
    kek = new_kek(manager)
    arn = kek.key_ref.decode()
    before_s = time.time()

    manager.destroy_kek(kek)

    client = moto_kms.client()
    meta = client.describe_key(KeyId=arn)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion" and meta["Enabled"] is False
    window_s = meta["DeletionDate"].timestamp() - before_s
    assert PENDING_WINDOW_DAYS * 86_400 - 60 < window_s < PENDING_WINDOW_DAYS * 86_400 + 60
    aliases = {alias["AliasName"] for alias in client.list_aliases(KeyId=meta["KeyId"])["Aliases"]}
    assert manager.alias_name(kek.kek_id) not in aliases  # the alias no longer resolves
    manager.destroy_kek(kek)  # again: no error, still pending
    manager.destroy_kek(as_destroyed(kek))  # the keyring's record: nothing left to reach
    assert client.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_a_wrong_context_is_a_decrypt_failure_and_names_no_key_material(moto_kms: MotoKms) -> None:
    manager = moto_kms.manager()
    kek = new_kek(manager)
    context = artifact_context(kek)
    data_key, wrapped = manager.generate_data_key(kek, context)

    error = failure(
        lambda: manager.unwrap(kek, wrapped, {**context, "wf:artifact_id": "sha256:" + "1" * 64}),
        data_key,
        wrapped,
    )

    assert error.code == CAS_DECRYPT_FAILED
    assert error.details["aws_code"] == "InvalidCiphertextException"
    assert error.details["kek_id"] == kek.kek_id


def test_the_manager_opens_by_name_from_settings(moto_kms: MotoKms, aws_env) -> None:
    settings = Settings.from_env(
        {
            "WF_KEY_MANAGER": "aws-kms",
            "WF_KMS_ENDPOINT_URL": moto_kms.endpoint_url,
            "WF_KMS_REGION": REGION,
            "WF_KMS_ALIAS_PREFIX": "wf-settings",
        }
    )
    manager = open_key_manager(settings.key_manager, **settings.key_manager_options())

    assert isinstance(manager, AwsKmsKeyManager) and manager.name == AWS_KMS
    kek_id = f"kek-output-20260101-g1-{uuid.uuid4().hex[:6]}"
    kek = new_kek(manager)
    context = artifact_context(kek)
    data_key, wrapped = manager.generate_data_key(kek, context)
    assert manager.unwrap(kek, wrapped, context) == data_key
    assert manager.alias_name(kek_id) == f"alias/wf-settings/{kek_id}"


def test_importing_the_package_registers_aws_kms_without_loading_boto3() -> None:
    assert AWS_KMS in key_manager_names()
    code = (
        "import sys, wf_pipeline.crypto.envelope, wf_pipeline.settings\n"
        "from wf_pipeline.crypto.managers import key_manager_names\n"
        "assert 'aws-kms' in key_manager_names(), key_manager_names()\n"
        "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    with pytest.raises(KeysError) as caught:
        open_key_manager("no-such-kms")
    assert caught.value.code == KEYS_MANAGER_UNKNOWN


# --- KMS failures: a closed port, and the errors moto never answers --------------------


def test_an_endpoint_that_is_down_is_a_retryable_manager_error(aws_env) -> None:
    manager = AwsKmsKeyManager(
        endpoint_url=closed_port_url(), region_name=REGION, max_attempts=2, connect_timeout_s=1
    )
    kek = kek_at()
    context = artifact_context(kek)

    for call in (
        lambda: manager.create_kek(kek.kek_id),
        lambda: manager.generate_data_key(kek, context),
        lambda: manager.unwrap(kek, WRAPPED, context),
        lambda: manager.rewrap(kek, kek_at(), WRAPPED, context, context),
        lambda: manager.destroy_kek(kek),
    ):
        error = failure(call, WRAPPED)
        assert error.code == KEYS_MANAGER_ERROR and error.retryable
        assert error.details["aws_code"] == "EndpointConnectionError"


@pytest.mark.parametrize(
    ("aws_code", "expected"),
    [
        ("KMSInvalidStateException", CAS_KEY_DESTROYED),  # pending deletion
        ("DisabledException", CAS_KEY_DESTROYED),
        ("IncorrectKeyException", CAS_DECRYPT_FAILED),  # a blob of another key
        ("InvalidCiphertextException", CAS_DECRYPT_FAILED),
        ("AccessDeniedException", KEYS_MANAGER_ERROR),
        ("KMSInternalException", KEYS_MANAGER_ERROR),
    ],
)
def test_decrypt_errors_map_to_codes_with_the_request_id_and_no_blob(aws_env, aws_code, expected) -> None:
    kek = kek_at()
    context = artifact_context(kek)
    status = 500 if aws_code == "KMSInternalException" else 400
    with error_kms(aws_code, status) as kms:
        error = failure(lambda: kms.manager().unwrap(kek, WRAPPED, context), WRAPPED)

    assert error.code == expected
    assert error.details["aws_code"] == aws_code
    assert kms.request_id in str(error)
    assert kek.kek_id in str(error)
    action, body = kms.received[0]
    assert action == "Decrypt"
    assert body["KeyId"] == ARN and body["EncryptionContext"] == context


def test_throttling_is_retried_in_standard_mode_then_a_manager_error(aws_env) -> None:
    kek = kek_at()
    context = artifact_context(kek)
    with error_kms("ThrottlingException") as kms:
        error = failure(lambda: kms.manager(max_attempts=3).generate_data_key(kek, context))

    assert error.code == KEYS_MANAGER_ERROR and error.retryable
    assert error.details["aws_code"] == "ThrottlingException"
    assert [action for action, _ in kms.received] == ["GenerateDataKey"] * 3
    body = kms.received[0][1]
    assert (body["KeyId"], body["KeySpec"], body["EncryptionContext"]) == (ARN, "AES_256", context)


def test_rewrap_sends_one_reencrypt_with_both_keys_and_contexts(aws_env) -> None:
    source, target = kek_at(ARN), kek_at(ARN.replace("0b0c3cb4", "1c1d4dc5"))
    source_context = artifact_context(source)
    target_context = {**source_context, "wf:kek_id": target.kek_id}
    with error_kms("DisabledException") as kms:
        error = failure(
            lambda: kms.manager().rewrap(source, target, WRAPPED, source_context, target_context), WRAPPED
        )

    assert error.code == CAS_KEY_DESTROYED
    ((action, body),) = kms.received
    assert action == "ReEncrypt"
    assert body["SourceKeyId"] == source.key_ref.decode()
    assert body["DestinationKeyId"] == target.key_ref.decode()
    assert body["SourceEncryptionContext"] == source_context
    assert body["DestinationEncryptionContext"] == target_context


def test_destroy_kek_addresses_the_key_by_its_id_and_reports_a_refusal(aws_env) -> None:
    # Management actions take the key id (DisableKey and ScheduleKeyDeletion are same-account only);
    # their order and effect are checked on moto above.
    with error_kms("AccessDeniedException") as kms:
        error = failure(lambda: kms.manager().destroy_kek(kek_at()))
    assert error.code == KEYS_MANAGER_ERROR
    assert [action for action, _ in kms.received] == ["DescribeKey"]
    assert kms.received[0][1]["KeyId"] == ARN.rsplit("/", 1)[1]


def test_no_region_anywhere_is_a_manager_error(aws_env) -> None:
    with pytest.raises(KeysError) as caught:
        AwsKmsKeyManager(endpoint_url=closed_port_url())
    assert caught.value.code == KEYS_MANAGER_ERROR
    assert caught.value.details["aws_code"] == "NoRegionError"


# --- settings ----------------------------------------------------------------------------


def test_kms_settings_defaults_and_variables() -> None:
    default = Settings.from_env({})
    assert (default.key_manager, default.kms_endpoint_url, default.kms_region, default.kms_alias_prefix) == (
        "local",
        None,
        None,
        "wf",
    )
    assert default.key_manager_options() == {}

    settings = Settings.from_env(
        {
            "WF_KEY_MANAGER": "aws-kms",
            "WF_KMS_ENDPOINT_URL": "http://127.0.0.1:4566",
            "WF_KMS_REGION": "eu-west-1",
            "WF_KMS_ALIAS_PREFIX": "team-a",
        }
    )
    assert settings.key_manager_options() == {
        "endpoint_url": "http://127.0.0.1:4566",
        "region_name": "eu-west-1",
        "alias_prefix": "team-a",
    }


def test_kms_settings_travel_to_step_processes() -> None:
    settings = Settings.from_env(
        {
            "WF_KEY_MANAGER": "aws-kms",
            "WF_KMS_ENDPOINT_URL": "http://127.0.0.1:4566",
            "WF_KMS_REGION": "eu-west-1",
        }
    )
    values = settings.launch_values()
    assert values["key_manager"] == "aws-kms" and values["kms_region"] == "eu-west-1"
    # A step process with other variables of its own gets the launcher's values.
    step = Settings.from_values(values, env={"WF_KEY_MANAGER": "local", "WF_KMS_REGION": "us-west-2"})
    assert step.key_manager_options() == settings.key_manager_options()

    # An endpoint URL with a password is not carried in run config; the step reads its own.
    secret = Settings.from_env({"WF_KMS_ENDPOINT_URL": "http://user:pw@127.0.0.1:4566"})
    assert secret.launch_values()["kms_endpoint_url"] is None
