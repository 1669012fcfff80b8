"""Identities: named Ed25519 key pairs whose public keys and roles the record store keeps.

An identity is made once (`create_identity`): its private key goes to a key file (PEM,
PKCS8 per RFC 5958, unencrypted, mode 0600) that only its owner holds; the record store
registers the name, the raw 32-byte public key (RFC 8032) and the role, ``admin`` (signs
grants) or ``reader`` (is granted reads). Whoever later presents the key file proves
to be that identity: its public key must equal the registered one. Keys are made and
used with ``cryptography``; nothing here prints or logs a private key.

Admins vouch for admins. The store's first admin is registered freely (there is nobody
to approve it); every later admin needs an existing admin's private key, whose Ed25519
signature over the new admin's name and public key (`approval_message`) is recorded with
it (``approved_by``, ``approval``). `admin_refusal` re-checks that chain whenever an
admin's authority is used: an admin is one only when it is the store's first admin
(`first_admin`: the earliest registered, then by name) or its approval verifies under
the key of an approver that is itself an admin. So a ``wf`` user without an admin's key
cannot make an admin. Someone who can write the record store's tables directly can (the
audit trail's seal covers the trail, not identities).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from wf_pipeline.errors import (
    IDENTITY_ADMIN_APPROVAL_REQUIRED,
    IDENTITY_EXISTS,
    IDENTITY_INVALID,
    IDENTITY_NOT_ADMIN,
    IDENTITY_RESERVED,
    PRIVILEGED_OUT_INVALID,
    SecurityError,
    WfError,
    os_reason,
)
from wf_pipeline.metadata.canonical import canonical_json, digest
from wf_pipeline.metadata.records import IdentityRecord
from wf_pipeline.records.protocol import RecordStore

#: Identity names: lower-case letters, digits, ``.``, ``_`` and ``-``, 1 to 64 characters.
IDENTITY_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: The requester an audit event names when a key file could not be loaded; no identity may
#: take it, or its denials would read as that identity's.
RESERVED_REQUESTER = "unknown"
#: Names no identity may be registered under.
RESERVED_NAMES: frozenset[str] = frozenset({RESERVED_REQUESTER})
#: Mode of a key or grant file: readable and writable by its owner only.
PRIVATE_FILE_MODE = 0o600
#: The format tag of the message an admin signs to approve another; a new shape gets a new tag.
APPROVAL_FORMAT = "wf-admin-approval/1"
#: The most bytes read from a key file or a grant file (`read_private_file`). An Ed25519
#: key file (PEM, PKCS8) is 119 bytes and a grant file the product writes under 2 KiB (its
#: text fields are at most 200 characters); 64 KiB leaves room for comments and whitespace
#: while a path such as ``/dev/zero`` or a huge file can never grow the process.
MAX_PRIVATE_FILE_BYTES = 64 * 1024


def check_identity_name(name: Any) -> str:
    """``name`` if it matches `IDENTITY_NAME_RE` and is not reserved.

    Raises ``IDENTITY_INVALID`` (bad shape), ``IDENTITY_RESERVED`` (one of `RESERVED_NAMES`).
    """
    if not isinstance(name, str) or not IDENTITY_NAME_RE.fullmatch(name):
        raise SecurityError(
            IDENTITY_INVALID,
            f"identity name {str(name)[:80]!r} must be 1 to 64 of a-z 0-9 . _ - starting with a letter or digit",
        )
    if name in RESERVED_NAMES:
        raise SecurityError(
            IDENTITY_RESERVED,
            f"identity name {name!r} is reserved: the audit trail names unreadable key files so",
            name=name,
        )
    return name


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte Ed25519 public key of ``key`` (a private or a public key)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(public_key: bytes) -> str:
    """``sha256:<hex>`` of a raw public key: how listings and audit events name a key."""
    return digest(public_key)


def write_private_file(
    path: Path, data: bytes, *, replace: bool = False, failure_code: str = IDENTITY_INVALID
) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600.

    The bytes go to a temporary file (created 0600) in the same folder, are synced, then
    take the final name: with ``replace`` by rename (POSIX rename(2)), else by link(2),
    which fails when ``path`` exists. A reader never sees a partial file.

    Raises ``IDENTITY_EXISTS`` (``path`` exists and ``replace`` is False) and
    ``failure_code`` (default ``IDENTITY_INVALID``: the folder cannot be written), both
    naming the path.
    """
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SecurityError(failure_code, f"cannot write {path}: {os_reason(exc)}", path=str(path)) from exc
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp_name, path)
        else:
            os.link(tmp_name, path)
    except FileExistsError:
        raise SecurityError(IDENTITY_EXISTS, f"{path} exists; nothing written", path=str(path)) from None
    except OSError as exc:
        raise SecurityError(failure_code, f"cannot write {path}: {os_reason(exc)}", path=str(path)) from exc
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp_name)


def read_private_file(path: Path, *, error: Callable[..., WfError], what: str) -> bytes:
    """The bytes of a key file or grant file ``path``, read with a bound.

    At most `MAX_PRIVATE_FILE_BYTES` + 1 bytes are ever read, whatever ``path`` names (a
    device such as ``/dev/zero``, a pipe, a huge file), so a bad path cannot exhaust memory.

    Args:
        path: the file to read.
        error: ``(message, **details) -> WfError``: the caller's error for a file that cannot
            be read or is too large (``IDENTITY_INVALID`` for a key file, ``GRANT_MALFORMED``
            for a grant file).
        what: the file's name in a message (``key file``, ``grant file``).

    Returns:
        Its bytes (at most `MAX_PRIVATE_FILE_BYTES`).

    Raises ``error``'s, naming the path (the operating system's reason, or the bound
    and that the file passes it); never quotes the file.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PRIVATE_FILE_BYTES + 1)
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {os_reason(exc)}", path=str(path)) from exc
    if len(data) > MAX_PRIVATE_FILE_BYTES:
        raise error(
            f"{what} {path} holds more than {MAX_PRIVATE_FILE_BYTES} bytes; no {what} is that large",
            path=str(path),
            max_bytes=MAX_PRIVATE_FILE_BYTES,
        )
    return data


def check_out_path(path: Path) -> Path:
    """``path`` if a file can be written there by `write_private_file`; ``PRIVILEGED_OUT_INVALID`` naming the path otherwise.

    Checked before anything is decided or recorded, so a payload or grant is never lost
    to a path that cannot take it: the path must not be a folder, its folder must exist
    and be a writable, searchable folder (POSIX access(2) for W_OK and X_OK), and an
    existing file there must be writable. A later failure (a full disk, a race) is still
    reported by `write_private_file`.

    Args:
        path: the file to write (a privileged read's payload, a grant file).

    Returns:
        ``path``.

    A path the operating system refuses to look at (a name too long, ``ENAMETOOLONG``; a
    symlink loop) is ``PRIVILEGED_OUT_INVALID`` with its reason too.
    """
    try:
        return _checked_out_path(path)
    except OSError as exc:
        raise SecurityError(
            PRIVILEGED_OUT_INVALID, f"{path} cannot be written: {os_reason(exc)}", path=str(path)
        ) from exc


def check_out_not_read(out: Path, reads: Mapping[str, Path]) -> Path:
    """``out`` unless it is a file the same command reads; ``PRIVILEGED_OUT_INVALID`` naming the clash otherwise.

    An output is written by an atomic rename that replaces whatever is there, so
    ``wf grants issue --admin ops.pem --out ops.pem`` would put the grant in place of the
    admin's private key (with a single admin, nobody could sign again) and
    ``wf privileged read --grant g.json --out g.json`` would put the payload in place of
    the grant. Checked before anything is decided or recorded. Two paths are the same file
    when they resolve to one path (symlinks resolved, POSIX realpath) or, both existing,
    name one inode (`os.path.samefile`: a hard link).

    Args:
        out: the output file asked for.
        reads: the files the command reads, by how a message names them (e.g.
            ``{"--admin key file": path}``).

    Returns:
        ``out``.

    Raises ``PRIVILEGED_OUT_INVALID`` naming ``out``, the file it clashes with and its option.
    """
    for what, path in reads.items():
        if _same_file(out, path):
            raise SecurityError(
                PRIVILEGED_OUT_INVALID,
                f"{out} is the {what} this command reads ({path}); writing there would replace it: "
                "give the output another path",
                path=str(out),
                clashes_with=what,
            )
    return out


def _same_file(first: Path, second: Path) -> bool:
    # A path the system refuses to resolve or stat (too long, a loop, a NUL) is left to the
    # writability check, which reports it with its reason.
    try:
        if os.path.realpath(first) == os.path.realpath(second):
            return True
    except (OSError, ValueError):
        pass
    try:
        return os.path.samefile(first, second)
    except (OSError, ValueError):
        return False  # one of them does not exist: nothing there to replace


def _checked_out_path(path: Path) -> Path:
    if path.is_dir():
        raise SecurityError(PRIVILEGED_OUT_INVALID, f"{path} is a folder; give a file path", path=str(path))
    folder = path.parent
    if not folder.is_dir():
        raise SecurityError(
            PRIVILEGED_OUT_INVALID, f"the folder of {path} does not exist or is not a folder", path=str(path)
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SecurityError(PRIVILEGED_OUT_INVALID, f"the folder of {path} is not writable", path=str(path))
    if path.exists() and not os.access(path, os.W_OK):
        raise SecurityError(PRIVILEGED_OUT_INVALID, f"{path} exists and is not writable", path=str(path))
    return path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM (PKCS8) file ``path``.

    Raises ``IDENTITY_INVALID`` naming the path when the file cannot be read, is larger
    than `MAX_PRIVATE_FILE_BYTES` (`read_private_file`), is not PEM, is encrypted, or holds
    another kind of key. The message never quotes the file.
    """
    data = read_private_file(
        path,
        error=lambda message, **details: SecurityError(IDENTITY_INVALID, message, **details),
        what="key file",
    )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SecurityError(
            IDENTITY_INVALID, f"key file {path} is not an unencrypted PEM private key", path=str(path)
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SecurityError(IDENTITY_INVALID, f"key file {path} is not an Ed25519 key", path=str(path))
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """``key`` as PEM, PKCS8, unencrypted (the file's mode protects it)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def approval_message(name: str, public_key: bytes) -> bytes:
    """The bytes an admin signs to approve ``name`` with ``public_key`` as an admin.

    Canonical JSON of ``{"format": APPROVAL_FORMAT, "name", "public_key": <hex>, "role": "admin"}``:
    the approval binds the name to that key and that role, so it cannot be moved to
    another identity or key.
    """
    body = {"format": APPROVAL_FORMAT, "name": name, "public_key": public_key.hex(), "role": "admin"}
    return canonical_json(body)


def first_admin(identities: list[IdentityRecord]) -> IdentityRecord | None:
    """The store's first admin among ``identities``: the earliest registered, then by name; None without admins.

    It needs no approval (bootstrap): nobody could have given one.
    """
    admins = [found for found in identities if found.role == "admin"]
    return min(admins, key=lambda found: (found.created_at_ms, found.name), default=None)


def admin_refusal(records: RecordStore, identity: IdentityRecord) -> str | None:
    """Why ``identity`` is not an admin now, or None when it is one.

    It is one when its role is ``admin`` and it is `first_admin`, or its ``approval`` is a
    valid Ed25519 signature of `approval_message` (its name and public key) under the
    registered key of ``approved_by``, another identity that is itself an admin by this
    rule (checked up the chain; a cycle never reaches the first admin and fails).

    Args:
        records: where identities are registered.
        identity: the identity to judge.

    Returns:
        None, or one sentence naming the identity and the broken link (names only, never keys).

    Raises ``RECORD_UNAVAILABLE``.
    """
    everyone = {found.name: found for found in records.list_identities()}
    first = first_admin(list(everyone.values()))
    current: IdentityRecord | None = identity
    seen: set[str] = set()
    while current is not None:
        if current.role != "admin":
            return f"{identity.name} is no admin: {current.name} has role {current.role}"
        if first is not None and current.name == first.name and current.public_key == first.public_key:
            return None
        if current.approved_by is None or current.approval is None:
            return f"{identity.name} is no admin: admin {current.name} was never approved by another admin"
        if current.name in seen or current.approved_by == current.name:
            return f"{identity.name} is no admin: the approvals of {current.name} form a cycle"
        seen.add(current.name)
        approver = everyone.get(current.approved_by)
        if approver is None:
            return f"{identity.name} is no admin: approver {current.approved_by[:80]!r} is not registered"
        try:
            Ed25519PublicKey.from_public_bytes(approver.public_key).verify(
                current.approval, approval_message(current.name, current.public_key)
            )
        except (InvalidSignature, ValueError):
            return (
                f"{identity.name} is no admin: the approval of {current.name} does not verify "
                f"against {approver.name}'s public key"
            )
        current = approver
    return None  # pragma: no cover  # the loop returns on every path


def create_identity(
    records: RecordStore,
    name: str,
    *,
    admin: bool,
    key_path: Path,
    now_ms: int,
    approver_key: Ed25519PrivateKey | None = None,
) -> IdentityRecord:
    """Make an Ed25519 key pair for ``name``, write its private key to ``key_path``, register it.

    Args:
        records: where the identity is registered.
        name: the identity's name (`IDENTITY_NAME_RE`).
        admin: register it as ``admin`` (may sign grants) instead of ``reader``.
        key_path: the key file to create (mode 0600); it must not exist.
        now_ms: the registration time (Unix epoch ms).
        approver_key: for an admin: an existing admin's private key, which signs
            `approval_message` of the new name and key. Needed once any admin is
            registered; the first admin of a store needs none. Only for admins.

    Returns:
        The registered `IdentityRecord` (with ``approved_by`` and ``approval`` when approved).

    Raises ``IDENTITY_INVALID`` (bad name, unwritable folder, an approver for a reader),
    ``IDENTITY_RESERVED``, ``IDENTITY_EXISTS`` (the name is registered or the key file
    exists; nothing is written, and a key file written by a registration that lost a race
    is removed), ``IDENTITY_ADMIN_APPROVAL_REQUIRED`` (an admin exists and no approver key
    was given; nothing written), ``IDENTITY_NOT_ADMIN`` (the approver key is not an admin's
    by `admin_refusal`; nothing written), ``RECORD_UNAVAILABLE``.
    """
    check_identity_name(name)
    if records.get_identity(name) is not None:
        raise SecurityError(IDENTITY_EXISTS, f"identity {name} is already registered", name=name)
    approver = _approver(records, name, admin=admin, approver_key=approver_key)
    key = Ed25519PrivateKey.generate()
    # The key file first: a registered public key whose private key was never kept is useless.
    write_private_file(key_path, private_key_pem(key))
    public_key = public_key_bytes(key)
    record = IdentityRecord(
        name=name,
        public_key=public_key,
        role="admin" if admin else "reader",
        created_at_ms=now_ms,
        approved_by=None if approver is None else approver.name,
        approval=None if approver_key is None else approver_key.sign(approval_message(name, public_key)),
    )
    try:
        stored = records.add_identity(record)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    if stored.public_key != record.public_key:
        key_path.unlink(missing_ok=True)
        raise SecurityError(IDENTITY_EXISTS, f"identity {name} is already registered", name=name)
    return stored


def _approver(
    records: RecordStore, name: str, *, admin: bool, approver_key: Ed25519PrivateKey | None
) -> IdentityRecord | None:
    # The admin whose key approves a new admin; None for a reader and for a store's first admin.
    if not admin:
        if approver_key is not None:
            raise SecurityError(
                IDENTITY_INVALID, f"an approval is for admins; {name} is registered as a reader"
            )
        return None
    if approver_key is None:
        existing = first_admin(records.list_identities())
        if existing is None:
            return None  # the first admin: nobody could approve it
        raise SecurityError(
            IDENTITY_ADMIN_APPROVAL_REQUIRED,
            f"admin {existing.name} is registered already: a new admin {name} needs an admin's approval "
            "(--approved-by KEYFILE); nothing registered",
            name=name,
        )
    approver = identity_of_key(records, approver_key)
    refusal = "its key is no registered identity's" if approver is None else admin_refusal(records, approver)
    if approver is None or refusal is not None:
        raise SecurityError(
            IDENTITY_NOT_ADMIN, f"the approving key cannot approve admin {name}: {refusal}", name=name
        )
    return approver


def identity_of_key(records: RecordStore, key: Ed25519PrivateKey) -> IdentityRecord | None:
    """The registered identity whose public key is ``key``'s, or None."""
    wanted = public_key_bytes(key)
    return next((found for found in records.list_identities() if found.public_key == wanted), None)


def identity_dict(record: IdentityRecord) -> dict[str, Any]:
    """JSON-ready facts of an identity: name, role, public key fingerprint (``sha256:``), created_at_ms, approved_by."""
    return {
        "name": record.name,
        "role": record.role,
        "public_key_sha256": key_fingerprint(record.public_key),
        "created_at_ms": record.created_at_ms,
        "approved_by": record.approved_by,
    }
