"""Identity and grant use cases: create and list identities, issue, revoke and list grants.

Called by ``wf identity ...`` and ``wf grants ...``. Each opens the record store of
``settings``, does one thing and returns JSON-ready values: names, roles, key
fingerprints, grant ids, scopes, limits and usage, times in Unix epoch ms and sizes in
bytes. Never a private key: key files are written with mode 0600 and only their path
is returned.

A second admin needs an admin's approval (`create_identity_file`'s ``approved_by``); a
grant is never issued to its issuer, nor for a scope that could never match; a
revocation needs an admin's key and appends an audit event before it is applied, so a
revocation the trail cannot record is not made (Vault's audit rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wf_pipeline.errors import (
    GRANT_MALFORMED,
    GRANT_REASON_NOT_ALLOWED,
    GRANT_SCOPE_INVALID,
    GRANT_UNKNOWN,
    IDENTITY_NOT_ADMIN,
    PRIVILEGED_OUT_INVALID,
    MetadataError,
    SecurityError,
)
from wf_pipeline.metadata.durations import MAX_DURATION_MS, format_duration_ms, parse_duration_ms
from wf_pipeline.metadata.records import now_ms
from wf_pipeline.records import open_settings_record_store
from wf_pipeline.security.audit import append_audit_event
from wf_pipeline.security.audit_key import audit_key_source
from wf_pipeline.security.grants import (
    MAX_GRANT_INT,
    check_scope_ids,
    grant_dict,
    issue_grant,
    parse_rate,
    parse_turns,
)
from wf_pipeline.security.identities import (
    admin_refusal,
    check_out_not_read,
    check_out_path,
    create_identity,
    first_admin,
    identity_dict,
    identity_of_key,
    key_fingerprint,
    load_private_key,
    public_key_bytes,
    write_private_file,
)
from wf_pipeline.security.privileged import grant_scope
from wf_pipeline.security.sinks import product_logger
from wf_pipeline.service.audit import copy_trail_to_telemetry
from wf_pipeline.service.privileged import check_out_of_home
from wf_pipeline.settings import Settings

log = product_logger(__name__)

#: Folder under the home where `create_identity_file` writes key files unless told otherwise.
IDENTITIES_DIR = "identities"
#: The policy version a revocation's audit event records (the action: revoke a grant).
REVOKE_POLICY_VERSION = "grant-revoke/1"
#: The reason code a revocation's audit event records when none is given.
REVOKE_DEFAULT_REASON = "GRANT_REVOKE"
#: The reasons a revocation may give (``--reason``).
REVOKE_REASONS: tuple[str, ...] = (
    "compromised",
    "no_longer_needed",
    "issued_in_error",
    "incident_response",
    "compliance_review",
)


def create_identity_file(
    settings: Settings, name: str, *, admin: bool, out_dir: Path | None, approved_by: Path | None = None
) -> dict[str, Any]:
    """Make and register the identity ``name``; its private key goes to ``<out_dir>/<name>.pem`` (mode 0600).

    Args:
        settings: the record store; ``out_dir`` defaults to ``<home>/identities``.
        name: the identity's name.
        admin: register it as an admin (signs grants) rather than a reader.
        out_dir: the folder of the key file.
        approved_by: an existing admin's key file, whose signature approves the new admin:
            required once the store has an admin (the first admin needs none).

    Returns:
        `identity_dict` plus ``key_file`` (the path written).

    Raises ``IDENTITY_INVALID`` (name, key files, an approval for a reader),
    ``IDENTITY_EXISTS`` (nothing written), ``IDENTITY_ADMIN_APPROVAL_REQUIRED`` and
    ``IDENTITY_NOT_ADMIN`` (no approval, or not an admin's; nothing written), ``RECORD_*``.
    """
    folder = out_dir if out_dir is not None else settings.home / IDENTITIES_DIR
    key_path = folder / f"{name}.pem"
    approver_key = None if approved_by is None else load_private_key(approved_by)
    with open_settings_record_store(settings) as records:
        record = create_identity(
            records, name, admin=admin, key_path=key_path, now_ms=now_ms(), approver_key=approver_key
        )
    return {**identity_dict(record), "key_file": str(key_path)}


def list_identities(settings: Settings) -> list[dict[str, Any]]:
    """Every registered identity (`identity_dict`), by name, with its admin ``standing``.

    ``standing`` is ``first-admin`` (the store's first admin), ``approved`` (an admin whose
    approval chain verifies), ``not-admin`` (role admin, but its approval does not verify:
    it signs and revokes nothing) or None for a reader. Raises ``RECORD_*``.
    """
    with open_settings_record_store(settings) as records:
        identities = records.list_identities()
        first = first_admin(identities)
        rows = []
        for record in identities:
            if record.role != "admin":
                standing = None
            elif first is not None and record.name == first.name:
                standing = "first-admin"
            else:
                standing = "approved" if admin_refusal(records, record) is None else "not-admin"
            rows.append({**identity_dict(record), "standing": standing})
        return rows


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
        max_bytes: the byte budget, 1 to 2**63-1 bytes.
        rate: ``READS/WINDOW`` such as ``10/min``.
        out: the grant file to write (replaced atomically if it exists).
        not_before: a delay before the grant becomes valid (default: valid now).

    Returns:
        `grant_dict` of the recorded grant plus ``grant_file``.

    Raises ``PRIVILEGED_OUT_INVALID`` (``out`` cannot be written, is ``admin_key_file``
    itself, by path, symlink or hard link (`check_out_not_read`), or lies in the home or a
    store of the product (`check_out_of_home`): checked before anything is recorded; a write
    that still fails revokes the grant just recorded), ``GRANT_SCOPE_INVALID``
    (a thread id not ``thread:`` + 24 hex, a node id not ``node:`` + 64 hex, a workflow
    that neither the profile catalogue seen from the current folder nor the record
    store's threads know), ``IDENTITY_INVALID`` (key file), ``IDENTITY_NOT_ADMIN``,
    ``IDENTITY_UNKNOWN`` (grantee), ``GRANT_SELF_ISSUED`` (grantee is the issuer), ``GRANT_MALFORMED``
    (bad options: durations, rate, turn range, a byte budget outside 1..2**63-1, text that
    is not UTF-8), ``RECORD_*``.
    """
    texts = {"grantee": grantee, "capability": capability, "workflow": workflow_id, "thread": thread_id}
    texts |= {"node": node_id, "turns": turns, "expires": expires, "rate": rate, "not-before": not_before}
    for what, text in [*texts.items(), *(("reason", reason) for reason in reasons)]:
        _check_text(text, what)
    # The grant file's path first: a grant recorded active whose file was never written is
    # a capability nobody holds, yet it counts in every listing. Nor may it replace the
    # admin's own key file: with a single admin, nobody could sign or revoke again.
    check_out_not_read(out, {"admin key file (--admin)": admin_key_file})
    check_out_path(check_out_of_home(settings, out))
    # A scope that can never match is refused: an active grant that reads nothing hides a typo.
    check_scope_ids(thread_id, node_id)
    key = load_private_key(admin_key_file)
    scope: dict[str, Any] = {"workflow_id": workflow_id, "thread_id": thread_id, "node_id": node_id}
    if turns is not None:
        scope["min_seq"], scope["max_seq"] = parse_turns(turns)
    # Zero is refused too: a grant with no budget can never read anything, so it would only
    # sit in every listing as active.
    if not 1 <= max_bytes <= MAX_GRANT_INT:
        raise SecurityError(
            GRANT_MALFORMED,
            f"the byte budget must be from 1 to {MAX_GRANT_INT} (2**63 - 1), got {max_bytes}",
            max_bytes=max_bytes,
        )
    now = now_ms()
    start = None if not_before is None else now + _duration(not_before, "not-before delay")
    with open_settings_record_store(settings) as records:
        _check_workflow_known(settings, records, workflow_id)
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


def _check_workflow_known(settings: Settings, records: Any, workflow_id: str) -> None:
    # Known: a profile of the catalogue (as `wf run` sees it from here), or a workflow with
    # recorded threads (a profile since removed still has payloads worth reading).
    from wf_pipeline.compiler.launch.executors import load_profiles  # the catalogue loads Dagster

    catalog = load_profiles(settings, Path.cwd(), warn=False)
    if workflow_id in catalog.profiles or records.list_threads(workflow_id=workflow_id):
        return
    known = sorted(catalog.profiles)
    raise SecurityError(
        GRANT_SCOPE_INVALID,
        f"workflow {workflow_id[:80]!r} is neither a profile of the catalogue ({len(known)} loaded: "
        f"{', '.join(known[:10]) or 'none'}) nor a workflow with recorded threads; a grant for it could never match",
        workflow_id=workflow_id[:80],
        workflows=known,
    )


def revoke_grant(
    settings: Settings, grant_id: str, *, admin_key_file: Path, reason: str | None = None
) -> dict[str, Any]:
    """Revoke the grant ``grant_id`` with an admin's key; returns its `grant_dict` afterwards.

    The revocation is audited before it is applied (Vault's rule: no audit record, no
    action): one ``allow`` event of the admin (requester), the grant's id and scope,
    ``reason_code`` the reason given (`REVOKE_DEFAULT_REASON` without one), no
    artifacts, 0 bytes, policy version `REVOKE_POLICY_VERSION`. If the event cannot be
    appended the grant stays as it was. A key that is no admin's is refused and audited as
    a ``deny`` (``IDENTITY_NOT_ADMIN``) of that identity (or of ``key:<fingerprint>``), so
    an attempt is traceable too. Revoking a revoked grant changes and appends nothing.

    Args:
        settings: the record store and the home's audit key.
        grant_id: the grant (``wf grants list``).
        admin_key_file: the revoking admin's key file (any admin, not only the issuer).
        reason: one of `REVOKE_REASONS`, or None.

    Returns:
        `grant_dict` of the grant after the revocation, plus ``audit_event_id`` (None when
        it was revoked already).

    Raises ``IDENTITY_INVALID`` (key file), ``GRANT_REASON_NOT_ALLOWED`` (a reason outside
    `REVOKE_REASONS`), ``IDENTITY_NOT_ADMIN`` (audited), ``GRANT_UNKNOWN`` (no such grant
    recorded; an id that is not UTF-8 text has none), ``AUDIT_UNAVAILABLE`` (nothing
    revoked), ``RECORD_*``.
    """
    _check_text(grant_id, "grant id", GRANT_UNKNOWN)
    if reason is not None and reason not in REVOKE_REASONS:
        raise SecurityError(
            GRANT_REASON_NOT_ALLOWED,
            f"revocation reason {str(reason)[:40]!r} is not one of {', '.join(REVOKE_REASONS)}",
        )
    key = load_private_key(admin_key_file)
    at = now_ms()
    try:
        with open_settings_record_store(settings) as records:
            record = records.get_grant(grant_id)
            if record is None:
                raise SecurityError(
                    GRANT_UNKNOWN, f"no grant {grant_id[:80]!r} is recorded", grant_id=grant_id[:80]
                )
            admin = identity_of_key(records, key)
            refusal = (
                "its key is no registered identity's" if admin is None else admin_refusal(records, admin)
            )

            def audit(outcome: str, code: str | None) -> Any:
                return append_audit_event(
                    records,
                    key=audit_key_source(settings, records),
                    requester=admin.name
                    if admin is not None
                    else f"key:{key_fingerprint(public_key_bytes(key))}",
                    grant_id=record.grant_id,
                    reason_code=reason or REVOKE_DEFAULT_REASON,
                    scope=grant_scope(record),
                    artifact_ids=(),
                    outcome=outcome,  # type: ignore[arg-type]  # allow or deny
                    code=code,
                    bytes=0,
                    policy_version=REVOKE_POLICY_VERSION,
                    now_ms=at,
                )

            if refusal is not None:
                audit("deny", IDENTITY_NOT_ADMIN)
                raise SecurityError(
                    IDENTITY_NOT_ADMIN,
                    f"the key cannot revoke grant {record.grant_id}: {refusal}",
                    grant_id=record.grant_id,
                )
            event_id = None
            if record.revoked_at_ms is None:
                # Audited first: a revocation the trail cannot record is not made.
                event_id = audit("allow", None).event_id
                records.revoke_grant(grant_id, at_ms=at)
            record = records.get_grant(grant_id)
    finally:
        # Allowed or denied, the event goes to its Parquet copy at once.
        copy_trail_to_telemetry(settings)
    assert record is not None  # revocation never deletes
    return {**grant_dict(record, now_ms=at), "audit_event_id": event_id}


def list_grants(settings: Settings) -> list[dict[str, Any]]:
    """Every recorded grant (`grant_dict`: scope, limits, usage, state), by issue time. Raises ``RECORD_*``."""
    at = now_ms()
    with open_settings_record_store(settings) as records:
        return [grant_dict(record, now_ms=at) for record in records.list_grants()]
