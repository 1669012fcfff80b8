"""Identity and grant use cases: create and list identities, issue, revoke and list grants.

Called by ``wf identity ...`` and ``wf grants ...``. Each opens the record store of
``settings``, does one thing and returns JSON-ready values: names, roles, key
fingerprints, grant ids, scopes, limits and usage, times in Unix epoch ms and sizes in
bytes. Never a private key: key files are written with mode 0600 and only their path
is returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wf_pipeline.errors import (
    GRANT_MALFORMED,
    GRANT_UNKNOWN,
    PRIVILEGED_OUT_INVALID,
    MetadataError,
    SecurityError,
)
from wf_pipeline.metadata.durations import MAX_DURATION_MS, format_duration_ms, parse_duration_ms
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.records import open_settings_record_store
from wf_pipeline.security.grants import MAX_GRANT_INT, grant_dict, issue_grant, parse_rate, parse_turns
from wf_pipeline.security.identities import (
    check_out_path,
    create_identity,
    identity_dict,
    load_private_key,
    write_private_file,
)
from wf_pipeline.service.privileged import check_out_of_home
from wf_pipeline.settings import Settings

#: Folder under the home where `create_identity_file` writes key files unless told otherwise.
IDENTITIES_DIR = "identities"


def create_identity_file(
    settings: Settings, name: str, *, admin: bool, out_dir: Path | None
) -> dict[str, Any]:
    """Make and register the identity ``name``; its private key goes to ``<out_dir>/<name>.pem`` (mode 0600).

    Args:
        settings: the record store; ``out_dir`` defaults to ``<home>/identities``.
        name: the identity's name.
        admin: register it as an admin (signs grants) rather than a reader.
        out_dir: the folder of the key file.

    Returns:
        `identity_dict` plus ``key_file`` (the path written).

    Raises ``IDENTITY_INVALID``, ``IDENTITY_EXISTS`` (nothing written), ``RECORD_*``.
    """
    folder = out_dir if out_dir is not None else settings.home / IDENTITIES_DIR
    key_path = folder / f"{name}.pem"
    with open_settings_record_store(settings) as records:
        record = create_identity(records, name, admin=admin, key_path=key_path, now_ms=now_ms())
    return {**identity_dict(record), "key_file": str(key_path)}


def list_identities(settings: Settings) -> list[dict[str, Any]]:
    """Every registered identity (`identity_dict`), by name. Raises ``RECORD_*``."""
    with open_settings_record_store(settings) as records:
        return [identity_dict(record) for record in records.list_identities()]


def _duration(text: str, what: str) -> int:
    # Grants never last forever, so the message names the finite range only (the duration
    # parser's own message would suggest 'forever').
    finite = f"a finite duration from 1ms up to {format_duration_ms(MAX_DURATION_MS)}, e.g. 1h or 7d"
    try:
        value = parse_duration_ms(text)
    except MetadataError:
        raise SecurityError(GRANT_MALFORMED, f"{what} {str(text)[:40]!r} is not {finite}") from None
    if value is None:
        raise SecurityError(GRANT_MALFORMED, f"{what} must be {finite}; grants do not last forever")
    return value


def _check_text(text: str | None, what: str, code: str = GRANT_MALFORMED) -> None:
    # Undecodable command-line bytes arrive as lone surrogates (PEP 383), which no record
    # store can encode: refused with a code before any query.
    if text is None:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SecurityError(code, f"the {what} is not UTF-8 text") from None


def issue_grant_file(
    settings: Settings,
    *,
    admin_key_file: Path,
    grantee: str,
    capability: str,
    workflow_id: str,
    thread_id: str | None,
    node_id: str | None,
    turns: str | None,
    expires: str,
    reasons: list[str],
    max_bytes: int,
    rate: str,
    out: Path,
    not_before: str | None = None,
) -> dict[str, Any]:
    """Sign a grant with the admin key in ``admin_key_file``, record it and write the grant file ``out`` (mode 0600).

    Args:
        settings: the record store.
        admin_key_file: the issuer's key file (a registered admin's).
        grantee, capability: who may read, and what (``prompt_payload_read`` or ``context_payload_read``).
        workflow_id, thread_id, node_id, turns: the scope; ``turns`` is ``N`` or ``N-M`` (None: any).
        expires: validity from the start, a duration such as ``1h``.
        reasons: the reason codes allowed.
        max_bytes: the byte budget.
        rate: ``READS/WINDOW`` such as ``10/min``.
        out: the grant file to write (replaced atomically if it exists).
        not_before: a delay before the grant becomes valid (default: valid now).

    Returns:
        `grant_dict` of the recorded grant plus ``grant_file``.

    Raises ``PRIVILEGED_OUT_INVALID`` (``out`` cannot be written, or lies in the home or a
    store of the product (`check_out_of_home`): checked before anything is recorded; a write
    that still fails revokes the grant just recorded), ``IDENTITY_INVALID``
    (key file), ``IDENTITY_NOT_ADMIN``, ``IDENTITY_UNKNOWN`` (grantee), ``GRANT_MALFORMED``
    (bad options: durations, rate, turn range, a byte budget outside 0..2**63-1, text that
    is not UTF-8), ``RECORD_*``.
    """
    texts = {"grantee": grantee, "capability": capability, "workflow": workflow_id, "thread": thread_id}
    texts |= {"node": node_id, "turns": turns, "expires": expires, "rate": rate, "not-before": not_before}
    for what, text in [*texts.items(), *(("reason", reason) for reason in reasons)]:
        _check_text(text, what)
    # The grant file's path first: a grant recorded active whose file was never written is
    # a capability nobody holds, yet it counts in every listing.
    check_out_path(check_out_of_home(settings, out))
    key = load_private_key(admin_key_file)
    scope: dict[str, Any] = {"workflow_id": workflow_id, "thread_id": thread_id, "node_id": node_id}
    if turns is not None:
        scope["min_seq"], scope["max_seq"] = parse_turns(turns)
    if not 0 <= max_bytes <= MAX_GRANT_INT:
        raise SecurityError(
            GRANT_MALFORMED, f"the byte budget must be from 0 to {MAX_GRANT_INT} (2**63 - 1), got {max_bytes}"
        )
    now = now_ms()
    start = None if not_before is None else now + _duration(not_before, "not-before delay")
    with open_settings_record_store(settings) as records:
        signed = issue_grant(
            records,
            key,
            grantee=grantee,
            capability=capability,
            scope=scope,
            reasons=tuple(reasons),
            max_bytes=max_bytes,
            rate=parse_rate(rate),
            expires_in_ms=_duration(expires, "expiry"),
            now_ms=now,
            not_before_ms=start,
        )
        record = records.get_grant(signed.document.grant_id)
        try:
            write_private_file(out, signed.file_bytes(), replace=True, failure_code=PRIVILEGED_OUT_INVALID)
        except SecurityError:
            # The file could not be written after all (a full disk, a race): a grant nobody
            # holds must not stay active, so it is revoked before the error goes up.
            records.revoke_grant(signed.document.grant_id)
            raise
    assert record is not None  # just recorded
    return {**grant_dict(record, now_ms=now), "grant_file": str(out)}


def revoke_grant(settings: Settings, grant_id: str) -> dict[str, Any]:
    """Revoke the grant ``grant_id``; returns its `grant_dict` afterwards.

    Revoking a revoked grant changes nothing and is not an error. Raises ``GRANT_UNKNOWN``
    (no such grant recorded; an id that is not UTF-8 text has none), ``RECORD_*``.
    """
    _check_text(grant_id, "grant id", GRANT_UNKNOWN)
    with open_settings_record_store(settings) as records:
        records.revoke_grant(grant_id)
        record = records.get_grant(grant_id)
    if record is None:
        raise SecurityError(GRANT_UNKNOWN, f"no grant {grant_id[:80]!r} is recorded", grant_id=grant_id)
    return grant_dict(record, now_ms=now_ms())


def list_grants(settings: Settings) -> list[dict[str, Any]]:
    """Every recorded grant (`grant_dict`: scope, limits, usage, state), by issue time. Raises ``RECORD_*``."""
    at = now_ms()
    with open_settings_record_store(settings) as records:
        return [grant_dict(record, now_ms=at) for record in records.list_grants()]
