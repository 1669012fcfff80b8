"""The privileged read use case: a prompt or context payload under a signed grant.

Called by ``wf privileged read`` and usable from Python (`read_privileged`). It opens the
record store and the home's CAS through its keyring (payloads rest sealed), and lets
`wf_pipeline.security.privileged.privileged_read` decide and audit. The payload is
returned to the caller, or written to a file with mode 0600; everything else it
returns is ids, digests and sizes.

Before the decision it refuses an output path that would overwrite the product's own state
(`check_out_of_home`) or the key or grant file of the read itself (`check_out_not_read`); it lets the decision check, without decrypting, that the payload
can still be read (`payload_check`) and hands it the file write, so a write that fails
after the allow event is recorded as not delivered.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from wf_pipeline.crypto.open import reading_store
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.errors import (
    CAS_KEY_DESTROYED,
    GRANT_MALFORMED,
    PRIVILEGED_OUT_INVALID,
    CasError,
    SecurityError,
    os_reason,
)
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.records.registry import open_record_store
from wf_pipeline.security.audit_key import audit_key_source
from wf_pipeline.security.grants import SignedGrant, parse_signed_grant
from wf_pipeline.security.identities import (
    check_out_not_read,
    check_out_path,
    load_private_key,
    read_private_file,
    write_private_file,
)
from wf_pipeline.security.privileged import PayloadCheck, PayloadSink, PrivilegedRead, privileged_read
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.service.audit import copy_trail_to_telemetry
from wf_pipeline.settings import Settings

log = product_logger(__name__)


def _grant_from_file(path: Path) -> SignedGrant | SecurityError:
    # A grant file that cannot be read or parsed is still a request to audit: the error
    # travels to the decision, which records the denial before raising it.
    # The read is bounded (`read_private_file`): ``--grant /dev/zero`` is malformed, not an OOM.
    try:
        return parse_signed_grant(
            read_private_file(
                path,
                error=lambda message, **details: SecurityError(GRANT_MALFORMED, message, **details),
                what="grant file",
            )
        )
    except SecurityError as exc:
        return exc


# Files next to a SQLite database that belong to it (its write-ahead log, shared memory and
# rollback journal): replacing one damages the database as much as replacing the file.
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def _local_root(url: str | None) -> Path | None:
    # A bare path or a file:// URL names a local folder; any other scheme is remote.
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme == "" or (len(parts.scheme) == 1 and url[1:2] == ":"):
        return Path(url)
    return None


def protected_paths(settings: Settings) -> tuple[list[Path], list[Path]]:
    """The product's own state on this machine, which no payload or grant file may replace.

    Returns:
        (folders whose every path is protected: the home, a local CAS root, a local
        telemetry store, the Dagster home; files protected one by one: a SQLite record
        store with its ``-wal``, ``-shm`` and ``-journal`` files, the master key file and
        the audit key file when settings name them). Paths are absolute with symlinks
        resolved; stores configured outside the home are covered as well as those in it.
    """
    folders = [settings.home, _local_root(settings.cas_url), _local_root(settings.telemetry_url)]
    folders.append(settings.dagster_home)
    files = [settings.master_key_file, settings.audit_key_file]
    try:
        url = make_url(settings.records_url)
    except ArgumentError:
        url = None
    if url is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = str(Path(url.database).expanduser())
        files += [Path(database + suffix) for suffix in _SQLITE_COMPANIONS]
    return (
        [_resolved(path) for path in folders if path is not None],
        [_resolved(path) for path in files if path is not None],
    )


def _resolved(path: Path) -> Path:
    # Symlinks resolved as far as the path exists, so a link into the home is seen for what it is.
    return Path(os.path.realpath(path.expanduser()))


def check_out_of_home(settings: Settings, out: Path) -> Path:
    """``out`` unless it lies in the home or names a store or key file of ``settings``.

    An output file is written by an atomic rename that replaces whatever is there, so a
    payload (or grant) written over ``<home>/keys/master.key`` or ``records.db`` would
    destroy the keyring or the record store. Any path inside the home, inside a local CAS
    or telemetry root or the Dagster home, or equal to the SQLite record store (and its
    journal files) or a configured key file, is refused (`protected_paths`), symlinks
    resolved on both sides.

    Args:
        settings: whose home and stores are protected.
        out: the output file asked for.

    Returns:
        ``out``.

    Raises ``PRIVILEGED_OUT_INVALID`` naming the path (also when it cannot be resolved: a
    name too long, a symlink loop).
    """
    try:
        target = _resolved(out)
    except (OSError, ValueError) as exc:
        reason = os_reason(exc) if isinstance(exc, OSError) else type(exc).__name__
        raise SecurityError(
            PRIVILEGED_OUT_INVALID, f"{out} cannot be resolved: {reason}", path=str(out)
        ) from exc
    folders, files = protected_paths(settings)
    inside = next((folder for folder in folders if target == folder or folder in target.parents), None)
    if inside is not None or target in files:
        raise SecurityError(
            PRIVILEGED_OUT_INVALID,
            f"{out} is the product's own state ({inside if inside is not None else target}); "
            "write the file outside the home and its stores",
            path=str(out),
        )
    return out


def payload_check(store: EncryptedArtifactStore, records: RecordStore) -> PayloadCheck:
    """A check that a payload can still be read, from its metadata alone (nothing decrypted).

    The object must be in the CAS (`EncryptedArtifactStore.stat`: ``CAS_NOT_FOUND``), and
    when its data key is recorded, the KEK wrapping it must not be destroyed (nor retired
    with its material gone), the rule `wf_pipeline.crypto.keyring.Keyring` unwraps by:
    ``CAS_KEY_DESTROYED``. Other failures (``CAS_BACKEND_ERROR``, ``RECORD_*``) are raised
    as they are.
    """

    def check(artifact_id: str, artifact_class: str) -> None:
        store.stat(artifact_id)
        row = records.data_keys_for([artifact_id]).get(artifact_id)
        if row is None:
            return
        kek = records.get_kek(row.kek_id)
        if kek is not None and (kek.state == "destroyed" or (kek.state == "retired" and kek.key_ref is None)):
            raise CasError(
                CAS_KEY_DESTROYED,
                f"{artifact_id} ({artifact_class}) was shredded: its KEK {kek.kek_id} is {kek.state}",
                artifact_id=artifact_id,
                kek_id=kek.kek_id,
            )

    return check


def read_privileged(
    settings: Settings,
    artifact_id: str,
    *,
    identity_file: Path,
    grant_file: Path,
    reason: str,
    at_ms: int | None = None,
    refusal: SecurityError | None = None,
    deliver: PayloadSink | None = None,
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
        deliver: takes the payload to its destination after the allow event (a file
            write); when it raises, a follow-up deny event records the read as not
            delivered.

    Before anything is charged, the payload's object must be in the CAS and its KEK not
    destroyed (`payload_check`): otherwise ``PRIVILEGED_ARTIFACT_GONE`` or
    ``PRIVILEGED_ARTIFACT_SHREDDED``, audited.

    Returns:
        The `PrivilegedRead`: exact payload bytes, with the grant and audit event ids.

    Every decision's audit event is then copied to the ``audit_events`` telemetry table
    (`copy_trail_to_telemetry`; a failed copy is logged by code and left to the next export).

    Raises every denial code of `privileged_read`, ``IDENTITY_INVALID`` (the key file)
    among them (each audited first), ``AUDIT_UNAVAILABLE``, ``CAS_*`` and ``KEYS_*`` from reading the
    payload and what ``deliver`` raises (each after a follow-up deny event), ``RECORD_*``.
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
                audit_key=audit_key_source(settings, records),
                refusal=refusal,
                check_payload=payload_check(store, records),
                deliver=deliver,
            )
    finally:
        records.close()
        copy_trail_to_telemetry(settings)


def read_privileged_to(
    settings: Settings,
    artifact_id: str,
    *,
    out: Path | None,
    identity_file: Path,
    grant_file: Path,
    **options: Any,
) -> tuple[dict[str, Any], bytes | None]:
    """`read_privileged`, then the payload written to ``out`` (atomically, mode 0600) when given.

    ``out`` is checked before the decision (`check_out_not_read`, `check_out_path`,
    `check_out_of_home`): when it is ``identity_file`` or ``grant_file`` itself (by path,
    symlink or hard link: the payload would replace the key or the grant), cannot take the
    payload, or lies in the home or a store of the product, the read is denied with
    ``PRIVILEGED_OUT_INVALID`` and audited as such, and nothing is charged to the grant.
    A write that still fails after the allow event is audited as a follow-up deny event
    (`read_privileged`'s ``deliver``).

    Returns:
        (the read's `PrivilegedRead.summary` plus ``out`` when written, the payload when
        ``out`` is None else None).

    Raises as `read_privileged`, and ``PRIVILEGED_OUT_INVALID`` when ``out`` cannot be
    written (before the decision; or, rarely, after it, when the write itself fails).
    """
    refusal = None
    deliver = None
    if out is not None:
        try:
            reads = {"key file (--identity)": identity_file, "grant file (--grant)": grant_file}
            check_out_not_read(out, reads)
            check_out_path(check_out_of_home(settings, out))
        except SecurityError as exc:
            refusal = exc

        def deliver(payload: bytes) -> None:
            write_private_file(out, payload, replace=True, failure_code=PRIVILEGED_OUT_INVALID)

    read = read_privileged(
        settings,
        artifact_id,
        identity_file=identity_file,
        grant_file=grant_file,
        refusal=refusal,
        deliver=deliver,
        **options,
    )
    summary = read.summary()
    if out is None:
        return summary, read.payload
    return {**summary, "out": str(out)}, None
