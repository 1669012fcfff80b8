"""The moto fixture serves S3 and KMS on one loopback endpoint, with buckets private to each test."""

from __future__ import annotations

from urllib.parse import urlsplit

from s3_support import MotoServer


def test_s3_and_kms_answer_on_one_loopback_endpoint(moto_server: MotoServer, s3_bucket: str) -> None:
    assert urlsplit(moto_server.endpoint_url).hostname == "127.0.0.1"
    s3 = moto_server.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"v"
    assert moto_server.create_bucket() != s3_bucket  # each test its own bucket

    kms = moto_server.client("kms")
    key_id = kms.create_key(Description="test key")["KeyMetadata"]["KeyId"]
    wrapped = kms.encrypt(KeyId=key_id, Plaintext=b"\x01" * 32)["CiphertextBlob"]
    assert wrapped != b"\x01" * 32
    assert kms.decrypt(CiphertextBlob=wrapped)["Plaintext"] == b"\x01" * 32


def test_backdate_changes_what_s3_reports_as_last_modified(moto_server: MotoServer, s3_bucket: str) -> None:
    s3 = moto_server.client("s3")
    s3.put_object(Bucket=s3_bucket, Key="old", Body=b"v")
    moto_server.backdate(s3_bucket, "old", 1_600_000_000_000)
    listed = s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert [int(item["LastModified"].timestamp() * 1000) for item in listed] == [1_600_000_000_000]
