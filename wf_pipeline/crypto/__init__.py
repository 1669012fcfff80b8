"""Envelope encryption of artifacts at rest: the envelope format, key managers and the keyring.

`wf_pipeline.crypto.envelope` seals payloads under per-artifact data keys;
`wf_pipeline.crypto.managers` holds KEK material behind the `KeyManager` protocol (local
keyring under a master key, AWS KMS); `wf_pipeline.crypto.keyring` ties KEK records and
data keys in the record store to the managers; `wf_pipeline.crypto.store` is the
`ArtifactStore` wrapper that encrypts per the policy of each artifact class.
"""

# Importing the package registers both key managers (``local`` and ``aws-kms``); the AWS
# manager loads boto3 only when one is built.
from wf_pipeline.crypto import aws_kms, managers  # noqa: E402, F401
