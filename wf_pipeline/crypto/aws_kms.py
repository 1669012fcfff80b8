"""The ``aws-kms`` key manager: KEKs are AWS KMS keys, data keys are made and wrapped by KMS.

A KEK is one symmetric KMS key (``SYMMETRIC_DEFAULT``, AES-256-GCM inside KMS) with the
alias ``alias/<prefix>/<kek_id>``; its `KekRecord.key_ref` is the key ARN as UTF-8. The
wrap context (`wf_pipeline.crypto.envelope.wrap_context`) is passed as the KMS
``EncryptionContext``, which KMS authenticates as additional data, so a wrapped key moved
to another artifact, class or KEK does not decrypt. The data key's plaintext exists only in
the process that asked for it; KEK material never leaves KMS.

AWS API actions used: ``CreateKey``, ``CreateAlias``, ``DescribeKey``, ``GenerateDataKey``,
``Decrypt``, ``ReEncrypt``, ``Encrypt``, ``DisableKey``, ``ScheduleKeyDeletion``, ``DeleteAlias``.
Credentials come from boto3's default chain (environment, shared files, instance role);
``endpoint_url`` points the client at LocalStack, moto or any KMS-compatible service.
boto3 is imported when a manager is built, never when `wf_pipeline` is imported.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

from wf_pipeline.crypto.managers import KeyManager, kek_destroyed, key_destroyed, register_key_manager
from wf_pipeline.errors import CAS_DECRYPT_FAILED, CAS_KEY_DESTROYED, KEYS_MANAGER_ERROR, CasError, KeysError
from wf_pipeline.metadata.records import KekRecord

#: The name this manager is registered under (``WF_KEY_MANAGER=aws-kms``).
AWS_KMS = "aws-kms"
#: Days KMS waits before deleting a scheduled key; 7 is the least ``ScheduleKeyDeletion`` allows.
PENDING_WINDOW_DAYS = 7
#: The tag key that names the KEK id on its KMS key.
KEK_ID_TAG = "wf:kek_id"

# Decrypt errors that mean "this wrapped key does not authenticate under this key and context".
_NOT_AUTHENTIC = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})
# The key is disabled or pending deletion: destroy_kek has run (or someone disabled the key).
_KEY_GONE = frozenset({"KMSInvalidStateException", "DisabledException"})
# Key states after ScheduleKeyDeletion; destroying such a key again is a no-op.
_DELETION_STATES = frozenset({"PendingDeletion", "PendingReplicaDeletion"})
# Characters KMS allows in an alias name.
_ALIAS_UNSAFE = re.compile(r"[^A-Za-z0-9:/_-]")


class AwsKmsKeyManager:
    """KEKs as AWS KMS keys; data keys by ``GenerateDataKey``, ``Decrypt`` and ``ReEncrypt``.

    Args:
        endpoint_url: the KMS endpoint (None: AWS's regional endpoint); any KMS-compatible
            service, e.g. LocalStack or moto on loopback.
        region_name: the AWS region (None: boto3's default chain, e.g. ``AWS_REGION``).
        alias_prefix: KEK aliases are ``alias/<alias_prefix>/<kek_id>``.
        client: a ready boto3 KMS client (then the other client options are unused).
        connect_timeout_s: seconds to open a connection, per attempt.
        read_timeout_s: seconds to wait for a response, per attempt.
        max_attempts: attempts per call, the first included, under botocore's ``standard``
            retry mode (exponential backoff with jitter on throttling, 5xx and connection
            errors).

    Every failure of KMS itself (endpoint down, throttled past the retries, access denied,
    no credentials or region) raises ``KEYS_MANAGER_ERROR`` (retryable) naming the AWS
    error code and request id; key material, data keys and ciphertext blobs never appear
    in a message. Raises ``KEYS_MANAGER_ERROR`` when built without a region anywhere.
    """

    name = AWS_KMS

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        alias_prefix: str = "wf",
        client: Any = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        self.alias_prefix = alias_prefix.strip("/") or "wf"
        if client is None:
            client = _new_client(endpoint_url, region_name, connect_timeout_s, read_timeout_s, max_attempts)
        self._client = client

    def __repr__(self) -> str:
        return f"AwsKmsKeyManager(alias_prefix={self.alias_prefix!r})"

    def alias_name(self, kek_id: str) -> str:
        """The KMS alias of ``kek_id``: ``alias/<prefix>/<kek_id>``, characters KMS refuses replaced by ``-``."""
        return _ALIAS_UNSAFE.sub("-", f"alias/{self.alias_prefix}/{kek_id}")

    def create_kek(self, kek_id: str) -> bytes:
        """A new KMS key for ``kek_id`` (``CreateKey``, then ``CreateAlias``); returns its ARN as UTF-8 bytes.

        The key is ``SYMMETRIC_DEFAULT`` for ``ENCRYPT_DECRYPT``, described by and tagged with
        the KEK id. If the alias already names an enabled key made for the same KEK id (an
        earlier attempt that crashed before its record was written, or a concurrent one),
        that key is returned and the one just made is scheduled for deletion, so a retry
        converges on one key. Raises ``KEYS_MANAGER_ERROR``.
        """
        created = self._call(
            "CreateKey",
            kek_id,
            KeySpec="SYMMETRIC_DEFAULT",
            KeyUsage="ENCRYPT_DECRYPT",
            Description=kek_id,
            Tags=[
                {"TagKey": KEK_ID_TAG, "TagValue": kek_id},
                {"TagKey": "wf:managed_by", "TagValue": "wf_pipeline"},
            ],
        )
        arn = created["KeyMetadata"]["Arn"]
        alias = self.alias_name(kek_id)
        try:
            self._call("CreateAlias", kek_id, AliasName=alias, TargetKeyId=arn)
        except KeysError as exc:
            if exc.details.get("aws_code") != "AlreadyExistsException":
                # Best effort: the alias error is the one to report, not a failed cleanup.
                with contextlib.suppress(KeysError):
                    self._schedule_deletion(kek_id, created["KeyMetadata"]["KeyId"])
                raise
            # The key just made is surplus either way; drop it before anything else can fail.
            self._schedule_deletion(kek_id, created["KeyMetadata"]["KeyId"])
            existing = self._call("DescribeKey", kek_id, KeyId=alias)["KeyMetadata"]
            if existing.get("Description") != kek_id or existing.get("KeyState") != "Enabled":
                raise KeysError(
                    KEYS_MANAGER_ERROR,
                    f"KMS alias {alias} already names another key (state {existing.get('KeyState')})",
                    kek_id=kek_id,
                    aws_code="AlreadyExistsException",
                ) from None
            arn = existing["Arn"]
        return arn.encode("utf-8")

    def generate_data_key(self, kek: KekRecord, context: Mapping[str, str]) -> tuple[bytes, bytes]:
        """``(data_key, wrapped)`` from ``GenerateDataKey(KeySpec=AES_256, EncryptionContext=context)``.

        ``data_key`` is 32 bytes (``Plaintext``), ``wrapped`` KMS's ``CiphertextBlob``.
        Raises ``CAS_KEY_DESTROYED`` (the KEK is destroyed, disabled or pending deletion)
        or ``KEYS_MANAGER_ERROR``.
        """
        reply = self._crypto_call(
            "GenerateDataKey",
            kek,
            context,
            KeyId=self._arn(kek),
            KeySpec="AES_256",
            EncryptionContext=dict(context),
        )
        return reply["Plaintext"], reply["CiphertextBlob"]

    def wrap(self, kek: KekRecord, data_key: bytes, context: Mapping[str, str]) -> bytes:
        """``data_key`` wrapped under the KEK by ``Encrypt(KeyId=<ARN>, Plaintext, EncryptionContext=context)``.

        Used when a data key moves from another manager's KEK to this one. Raises
        ``CAS_KEY_DESTROYED`` or ``KEYS_MANAGER_ERROR`` as `generate_data_key`.
        """
        reply = self._crypto_call(
            "Encrypt",
            kek,
            context,
            KeyId=self._arn(kek),
            Plaintext=data_key,
            EncryptionContext=dict(context),
        )
        return reply["CiphertextBlob"]

    def unwrap(self, kek: KekRecord, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        """The data key in ``wrapped``, by ``Decrypt(CiphertextBlob, KeyId=<ARN>, EncryptionContext=context)``.

        Raises ``CAS_DECRYPT_FAILED`` when KMS refuses the blob under this key and context
        (``InvalidCiphertextException``, ``IncorrectKeyException``), ``CAS_KEY_DESTROYED``
        when the key is disabled or pending deletion (``DisabledException``,
        ``KMSInvalidStateException``) or the record says it is destroyed, and
        ``KEYS_MANAGER_ERROR`` for anything else (endpoint down, throttling, access denied).
        """
        reply = self._crypto_call(
            "Decrypt",
            kek,
            context,
            CiphertextBlob=wrapped,
            KeyId=self._arn(kek),
            EncryptionContext=dict(context),
        )
        return reply["Plaintext"]

    def rewrap(
        self,
        source: KekRecord,
        target: KekRecord,
        wrapped: bytes,
        source_context: Mapping[str, str],
        target_context: Mapping[str, str],
    ) -> bytes:
        """``wrapped`` moved from ``source`` to ``target`` inside KMS by ``ReEncrypt``; the data key never leaves KMS.

        Calls ``ReEncrypt(CiphertextBlob, SourceKeyId, SourceEncryptionContext,
        DestinationKeyId, DestinationEncryptionContext)`` and returns the new
        ``CiphertextBlob``. Raises as `unwrap` does (errors name the source KEK), and
        ``CAS_KEY_DESTROYED`` for a target whose record says it is destroyed.
        """
        if kek_destroyed(target):
            raise key_destroyed(target)
        return self._crypto_call(
            "ReEncrypt",
            source,
            source_context,
            CiphertextBlob=wrapped,
            SourceKeyId=self._arn(source),
            SourceEncryptionContext=dict(source_context),
            DestinationKeyId=self._arn(target),
            DestinationEncryptionContext=dict(target_context),
        )["CiphertextBlob"]

    def destroy_kek(self, kek: KekRecord) -> None:
        """Disable the KEK's KMS key (``DisableKey``) and schedule its deletion (``ScheduleKeyDeletion``).

        KMS deletes the key material only after the pending window, `PENDING_WINDOW_DAYS`
        (7 days, the least KMS allows); until then the key is unusable (``Decrypt`` answers
        ``KMSInvalidStateException``) but could be restored with ``CancelKeyDeletion``. The
        keyring treats the KEK as destroyed at once: it marks the record ``destroyed`` and
        erases ``key_ref``, and every manager refuses such a record (``CAS_KEY_DESTROYED``).
        The alias under this manager's prefix is removed (``DeleteAlias``) so the name no
        longer resolves; KMS removes any other alias with the key itself. A key already
        pending deletion or gone is fine (a retried destroy). Raises ``KEYS_MANAGER_ERROR``.
        """
        if kek.key_ref is None:
            return  # nothing left to reach; the keyring already erased the reference
        key_id = _key_id(kek.key_ref.decode("utf-8"))
        try:
            state = self._call("DescribeKey", kek.kek_id, KeyId=key_id)["KeyMetadata"]["KeyState"]
        except KeysError as exc:
            if exc.details.get("aws_code") == "NotFoundException":
                return
            raise
        if state not in _DELETION_STATES:
            if state != "Disabled":
                self._call("DisableKey", kek.kek_id, KeyId=key_id)
            self._schedule_deletion(kek.kek_id, key_id)
        try:
            self._call("DeleteAlias", kek.kek_id, AliasName=self.alias_name(kek.kek_id))
        except KeysError as exc:
            if exc.details.get("aws_code") != "NotFoundException":
                raise

    def _schedule_deletion(self, kek_id: str, key_id: str) -> None:
        self._call("ScheduleKeyDeletion", kek_id, KeyId=key_id, PendingWindowInDays=PENDING_WINDOW_DAYS)

    def _arn(self, kek: KekRecord) -> str:
        key_ref = kek.key_ref
        if key_ref is None or kek_destroyed(kek):
            raise key_destroyed(kek)
        return key_ref.decode("utf-8")

    def _crypto_call(
        self, operation: str, kek: KekRecord, context: Mapping[str, str], **params: Any
    ) -> dict[str, Any]:
        """One data-key call, its AWS errors mapped to the envelope's codes."""
        try:
            return self._call(operation, kek.kek_id, **params)
        except KeysError as exc:
            aws_code = exc.details.get("aws_code")
            artifact_id = context.get("wf:artifact_id", "")
            if aws_code in _NOT_AUTHENTIC:
                raise CasError(
                    CAS_DECRYPT_FAILED,
                    f"KMS {operation} refused the data key of {artifact_id} under KEK {kek.kek_id} "
                    f"({aws_code}, request id {exc.details.get('request_id')})",
                    artifact_id=artifact_id,
                    kek_id=kek.kek_id,
                    aws_code=aws_code,
                ) from None
            if aws_code in _KEY_GONE:
                raise CasError(
                    CAS_KEY_DESTROYED,
                    f"KMS {operation}: the key of KEK {kek.kek_id} is disabled or pending deletion "
                    f"({aws_code}, request id {exc.details.get('request_id')})",
                    artifact_id=artifact_id,
                    kek_id=kek.kek_id,
                    aws_code=aws_code,
                ) from None
            raise

    def _call(self, operation: str, kek_id: str, **params: Any) -> dict[str, Any]:
        """Call the AWS API action ``operation``; any failure becomes ``KEYS_MANAGER_ERROR``.

        The error carries the AWS error code (``aws_code``) and request id, never the
        parameters or the service's raw text, which could echo a blob.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self._client, _snake(operation))
        try:
            return method(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            aws_code = str(error.get("Code") or "Unknown")
            request_id = exc.response.get("ResponseMetadata", {}).get("RequestId", "")
            raise KeysError(
                KEYS_MANAGER_ERROR,
                f"KMS {operation} for KEK {kek_id} failed: {aws_code} (request id {request_id or 'none'})",
                kek_id=kek_id,
                operation=operation,
                aws_code=aws_code,
                request_id=request_id,
            ) from None
        except BotoCoreError as exc:
            # Connection refused, timeouts after the retries, no credentials or region.
            raise KeysError(
                KEYS_MANAGER_ERROR,
                f"KMS {operation} for KEK {kek_id} failed: {type(exc).__name__}",
                kek_id=kek_id,
                operation=operation,
                aws_code=type(exc).__name__,
                request_id="",
            ) from None


def _new_client(
    endpoint_url: str | None,
    region_name: str | None,
    connect_timeout_s: float,
    read_timeout_s: float,
    max_attempts: int,
) -> Any:
    # Imported here so that importing wf_pipeline never loads the AWS SDK.
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    config = Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    try:
        # A session per manager: boto3's module-level default session is shared state.
        return boto3.session.Session().client(
            "kms", endpoint_url=endpoint_url or None, region_name=region_name or None, config=config
        )
    except BotoCoreError as exc:
        raise KeysError(
            KEYS_MANAGER_ERROR,
            f"cannot build the KMS client: {type(exc).__name__} (set WF_KMS_REGION for a missing region)",
            aws_code=type(exc).__name__,
        ) from None


def _key_id(arn: str) -> str:
    # Key management actions (DisableKey, ScheduleKeyDeletion) take the key id in the
    # key's own account and region; some KMS-compatible services only accept that form.
    return arn.rsplit(":key/", 1)[-1]


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _open_aws_kms(**options: Any) -> KeyManager:
    """`open_key_manager`'s factory: `AwsKmsKeyManager` from its keyword options (others are ignored)."""
    known = {
        "endpoint_url",
        "region_name",
        "alias_prefix",
        "client",
        "connect_timeout_s",
        "read_timeout_s",
        "max_attempts",
    }
    return AwsKmsKeyManager(**{key: value for key, value in options.items() if key in known})


register_key_manager(AWS_KMS, _open_aws_kms)
