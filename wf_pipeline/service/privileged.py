"""The privileged read use case: a prompt or context payload under a signed grant.

Called by ``wf privileged read`` and usable from Python (`read_privileged`). It opens the
record store and the home's CAS through its keyring (payloads rest sealed), and lets
`wf_pipeline.security.privileged.privileged_read` decide and audit. The payload is
returned to the caller, or written to a file with mode 0600; everything else it
returns is ids, digests and sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wf_pipeline.crypto.open import reading_store
from wf_pipeline.errors import GRANT_MALFORMED, PRIVILEGED_OUT_INVALID, SecurityError, WfError, os_reason
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.records.registry import open_record_store
from wf_pipeline.security.audit_key import audit_key_source
from wf_pipeline.security.grants import SignedGrant, parse_signed_grant
from wf_pipeline.security.identities import check_out_path, load_private_key, write_private_file
from wf_pipeline.security.privileged import PrivilegedRead, privileged_read
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.service.audit import export_audit_events
from wf_pipeline.settings import Settings

log = product_logger(__name__)


def _grant_from_file(path: Path) -> SignedGrant | SecurityError:
    # A grant file that cannot be read or parsed is still a request to audit: the error
    # travels to the decision, which records the denial before raising it.
    try:
        return parse_signed_grant(path.read_bytes())
    except OSError as exc:
        return SecurityError(GRANT_MALFORMED, f"grant file {path} cannot be read: {os_reason(exc)}")
    except SecurityError as exc:
        return exc


def read_privileged(
    settings: Settings,
    artifact_id: str,
    *,
    identity_file: Path,
    grant_file: Path,
    reason: str,
    at_ms: int | None = None,
    refusal: SecurityError | None = None,
) -> PrivilegedRead:
    """The payload of ``artifact_id`` if the grant in ``grant_file`` lets the holder of ``identity_file`` read it.

    Args:
        settings: the record store, the CAS, the master key and the audit key of the home
            (the audit key file is made on the first event that needs it).
        artifact_id: a rendered prompt or context artifact (``sha256:<hex>``).
        identity_file: the requester's key file (PEM, PKCS8, Ed25519).
        grant_file: the signed grant file.
        reason: the reason code of the read.
        at_ms: the decision time (Unix epoch ms; default now).
        refusal: a refusal found before the decision (``PRIVILEGED_OUT_INVALID``), denied
            and audited before any other check (`privileged_read`).

    Returns:
        The `PrivilegedRead`: exact payload bytes, with the grant and audit event ids.

    Every decision's audit event is then copied to the ``audit_events`` telemetry table
    (`export_audit_events`; a failed copy is logged by code and left to the next export).

    Raises every denial code of `privileged_read`, ``IDENTITY_INVALID`` (the key file)
    among them (each audited first), ``AUDIT_UNAVAILABLE``, ``CAS_*`` and ``KEYS_*`` from reading the
    payload, ``RECORD_*``.
    """
    try:
        key: Ed25519PrivateKey | SecurityError = load_private_key(identity_file)
    except SecurityError as exc:
        key = exc  # denied and audited like any other failed check
    grant = _grant_from_file(grant_file)
    records = open_record_store(settings.records_url, schema=settings.records_schema)
    try:
        with reading_store(settings, records) as store:
            return privileged_read(
                records,
                lambda aid, cls, size: store.get(aid, size=size, artifact_class=cls),
                artifact_id=artifact_id,
                requester_key=key,
                grant=grant,
                reason=reason,
                now_ms=now_ms() if at_ms is None else at_ms,
                audit_key=audit_key_source(settings),
                refusal=refusal,
            )
    finally:
        records.close()
        _export_trail(settings)


def _export_trail(settings: Settings) -> None:
    # The decision's event is committed in the record store, the trail of record; its
    # Parquet copy follows at once so `wf telemetry query` sees it. A copy that fails
    # here is made by the next export, so it does not undo a read already decided:
    # whatever breaks it (a damaged Parquet file, a full disk, a bug) is logged by code
    # or type and swallowed.
    try:
        export_audit_events(settings)
    except WfError as exc:
        log.warning("audit events not copied to telemetry yet: %s", exc.code)
    except Exception as exc:
        log.warning("audit events not copied to telemetry yet: %s", type(exc).__name__)


def read_privileged_to(
    settings: Settings, artifact_id: str, *, out: Path | None, **options: Any
) -> tuple[dict[str, Any], bytes | None]:
    """`read_privileged`, then the payload written to ``out`` (atomically, mode 0600) when given.

    ``out`` is checked before the decision (`check_out_path`): when it cannot take the
    payload the read is denied with ``PRIVILEGED_OUT_INVALID`` and audited as such, and
    nothing is charged to the grant.

    Returns:
        (the read's `PrivilegedRead.summary` plus ``out`` when written, the payload when
        ``out`` is None else None).

    Raises as `read_privileged`, and ``PRIVILEGED_OUT_INVALID`` when ``out`` cannot be
    written (before the decision; or, rarely, after it, when the write itself fails).
    """
    refusal = None
    if out is not None:
        try:
            check_out_path(out)
        except SecurityError as exc:
            refusal = exc
    read = read_privileged(settings, artifact_id, refusal=refusal, **options)
    summary = read.summary()
    if out is None:
        return summary, read.payload
    write_private_file(out, read.payload, replace=True, failure_code=PRIVILEGED_OUT_INVALID)
    return {**summary, "out": str(out)}, None
