"""The audit key: the secret that seals each audit event, kept out of the record store.

The audit trail's hash chain (`wf_pipeline.security.audit`) is unkeyed: someone who can
write the database can rewrite an event and recompute every hash after it. A seal cannot
be recomputed without this key, which the database never holds, as Vault HMACs its audit
log with a key of its own and certificate transparency signs its tree heads.

Where a home finds its key, in this order (like the keyring's master key,
`wf_pipeline.crypto.open.master_key`):

- ``WF_AUDIT_KEY``: base64 of 32 bytes, a secret read from the environment the settings
  were read from (`Settings.secrets`);
- ``WF_AUDIT_KEY_FILE``: a file holding that text;
- ``<home>/keys/audit.key``: made (mode 0600, published whole with
  `wf_pipeline.crypto.keyfiles.publish_key_file`) by the first append that finds no key,
  unless the trail already holds a sealed event.

Every home that appends to one record store must hold the same key: a home that made its
own would seal events under another key id, and every home's `verify_audit_chain` would
report them from then on. So the key an append uses (`home_audit_key`) is checked against
the trail's first sealed event (`trail_key`, one lookup): a home without a key makes none
when the trail is already sealed, and a home whose key is not the trail's appends nothing;
both are ``AUDIT_KEY_INVALID`` (the append fails with ``AUDIT_UNAVAILABLE``, Vault's rule).
Messages name where a key came from and its key id, never the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from wf_pipeline.crypto.keyfiles import configured_key_text, decode_key_text, new_key_text, publish_key_file
from wf_pipeline.errors import AUDIT_KEY_INVALID, SecurityError, os_reason
from wf_pipeline.settings import Settings

if TYPE_CHECKING:
    from wf_pipeline.records.protocol import RecordStore

__all__ = [
    "AUDIT_KEY_BYTES",
    "AUDIT_KEY_VARIABLE",
    "SEAL_PREFIX",
    "AuditKey",
    "AuditKeySource",
    "audit_key",
    "audit_key_source",
    "home_audit_key",
    "new_audit_key_text",
    "parse_audit_key",
    "trail_key",
]

AUDIT_KEY_VARIABLE = "WF_AUDIT_KEY"
#: Bytes of an audit key: 256 bits, HMAC-SHA256's block-sized secret.
AUDIT_KEY_BYTES = 32
#: How a seal starts: the MAC that made it, then 64 hex digits.
SEAL_PREFIX = "hmac-sha256:"
#: Hex digits of a key id: the first 64 bits of the key's SHA-256.
KEY_ID_HEX = 16
#: Events `trail_key` reads per query while it looks for the first sealed event.
TRAIL_KEY_PAGE = 1000


@dataclass(frozen=True)
class AuditKey:
    """An audit key, with where it came from.

    Attributes:
        key: the 32 secret bytes (never shown: not in repr).
        source: where it was found (``WF_AUDIT_KEY``, ``WF_AUDIT_KEY_FILE (<path>)``, the
            home's key file), for messages.
        key_id: the first 16 hex digits of the key's SHA-256: names the key in events and
            reports without revealing it.
    """

    key: bytes = field(repr=False)
    source: str
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != AUDIT_KEY_BYTES:
            raise ValueError(f"an audit key is {AUDIT_KEY_BYTES} bytes")
        digest = hashes.Hash(hashes.SHA256())
        digest.update(self.key)
        object.__setattr__(self, "key_id", digest.finalize().hex()[:KEY_ID_HEX])

    def seal(self, event_hash: str) -> str:
        """``hmac-sha256:<64 hex>``: HMAC-SHA256 (RFC 2104) under this key of ``event_hash``'s UTF-8 bytes."""
        mac = hmac.HMAC(self.key, hashes.SHA256())
        mac.update(event_hash.encode("utf-8"))
        return SEAL_PREFIX + mac.finalize().hex()

    def verifies(self, event_hash: str, seal: str) -> bool:
        """Whether ``seal`` is this key's seal of ``event_hash`` (compared in constant time)."""
        if not seal.startswith(SEAL_PREFIX):
            return False
        try:
            tag = bytes.fromhex(seal[len(SEAL_PREFIX) :])
        except ValueError:
            return False
        mac = hmac.HMAC(self.key, hashes.SHA256())
        mac.update(event_hash.encode("utf-8"))
        try:
            mac.verify(tag)
        except InvalidSignature:
            return False
        return True


#: What `wf_pipeline.security.audit.append_audit_event` takes: the key, or a function that
#: finds (or makes) it when the event is appended.
AuditKeySource = AuditKey | Callable[[], AuditKey]


def new_audit_key_text() -> str:
    """A new audit key: base64 of 32 bytes from the operating system's CSPRNG, one line."""
    return new_key_text(AUDIT_KEY_BYTES)


def parse_audit_key(text: str | bytes | None, *, source: str) -> AuditKey:
    """The audit key ``text`` holds in base64 (`decode_key_text`).

    Raises ``AUDIT_KEY_INVALID`` when empty, not base64, or not 32 bytes; the message names
    ``source`` and the length found, never the key.
    """
    key = decode_key_text(
        text,
        source=source,
        size=AUDIT_KEY_BYTES,
        what="an audit key",
        error=_invalid,
    )
    return AuditKey(key, source)


def audit_key(settings: Settings) -> AuditKey | None:
    """The audit key ``settings`` configure, or None when none is set and the home has made none.

    Looks at ``WF_AUDIT_KEY``, then ``WF_AUDIT_KEY_FILE``, then ``<home>/keys/audit.key``
    (only if that file exists). Makes nothing.

    Raises:
        SecurityError: ``AUDIT_KEY_INVALID`` when both variables are set, the file cannot
            be read, or the key is malformed (figure: the source).
    """
    found = configured_key_text(
        variable=AUDIT_KEY_VARIABLE,
        text=settings.secrets.get(AUDIT_KEY_VARIABLE, ""),
        file_variable="WF_AUDIT_KEY_FILE",
        file=settings.audit_key_file,
        default_file=settings.default_audit_key_file,
        what="the home's audit key file",
        error=_invalid,
    )
    return None if found is None else parse_audit_key(found[0], source=found[1])


def _invalid(message: str, **details: object) -> SecurityError:
    return SecurityError(AUDIT_KEY_INVALID, message, **details)


def trail_key(records: RecordStore, *, page: int = TRAIL_KEY_PAGE) -> tuple[int, str] | None:
    """(seq, seal_key_id) of the trail's first sealed event, or None when no event is sealed.

    Reads the trail from its start in pages of ``page`` events and stops at the first event
    with a seal and a key id: one query on a trail sealed from its first event; events
    written before seals existed are read through, a page at a time.

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``, ``RECORD_INTEGRITY`` (a row before the first
            sealed event does not load) from the store.
    """
    after = 0
    while True:
        # Only events past the last page: a store that repeats a page cannot loop this forever.
        batch = [event for event in records.audit_records(after_seq=after, limit=page) if event.seq > after]
        if not batch:
            return None
        for event in batch:
            if event.seal is not None and event.seal_key_id is not None:
                return event.seq, event.seal_key_id
        after = batch[-1].seq


def home_audit_key(settings: Settings, records: RecordStore) -> AuditKey:
    """The audit key appends to ``records`` under ``settings`` seal with: `audit_key`, or ``<home>/keys/audit.key`` made now.

    The trail's first sealed event (`trail_key`) decides: a key that ``settings``
    configure must be the key that sealed it, and when ``settings`` configure none, a new
    key is made only if no event is sealed yet (a new store, or a trail written before
    seals existed). Otherwise another home already seals this trail, and a key of this
    home's own would break it for every home from the first event it sealed. The file is
    made once (`publish_key_file`): processes that find no key at the same moment all end
    up with the key the first of them published. Two homes that each find an empty trail
    at the same moment can still each make a key; the second's next append is refused.

    Args:
        settings: where the key is configured (or made).
        records: the record store whose trail the key seals.

    Raises:
        SecurityError: ``AUDIT_KEY_INVALID`` as `audit_key`; when the trail is sealed under
            another key id than the configured key's, or sealed at all while no key is
            configured (figures: the trail's key id and first sealed seq, the key's id and
            source; the fix: WF_AUDIT_KEY or WF_AUDIT_KEY_FILE set to the other homes' key);
            when the key file cannot be made (figure: the path and the operating system's
            reason).
        RecordError: ``RECORD_*`` from reading the trail.
    """
    found = audit_key(settings)
    sealed = trail_key(records)
    share = "set WF_AUDIT_KEY or WF_AUDIT_KEY_FILE to the audit key the other homes of this record store use"
    if sealed is not None:
        seq, key_id = sealed[0], str(sealed[1])[:32]
        if found is None:
            raise _invalid(
                f"the audit trail of {records.url} is sealed under audit key {key_id!r} from event {seq}, "
                f"and this home has none: {share} (a key of this home's own would break the trail)",
                trail_key_id=key_id,
                first_sealed=seq,
            )
        if key_id != found.key_id:
            raise _invalid(
                f"the audit trail of {records.url} is sealed under audit key {key_id!r} from event {seq}, "
                f"not under this home's key {found.key_id} ({found.source}): {share}",
                trail_key_id=key_id,
                first_sealed=seq,
                key_id=found.key_id,
            )
    if found is not None:
        return found
    path = settings.default_audit_key_file
    try:
        publish_key_file(path, new_audit_key_text())
    except OSError as exc:
        raise SecurityError(
            AUDIT_KEY_INVALID,
            f"the home's audit key file ({path}) cannot be made: {os_reason(exc)}",
            source=str(path),
        ) from exc
    # Read back: another process may have published its key first, and that one counts.
    found = audit_key(settings)
    if found is None:  # removed between publish and read: say so rather than loop
        raise _invalid(f"the home's audit key file ({path}) vanished after it was made", source=str(path))
    return found


def audit_key_source(settings: Settings, records: RecordStore) -> Callable[[], AuditKey]:
    """The key source appends to ``records`` under ``settings`` take: `home_audit_key`, looked up (and checked against the trail) at each append."""
    return lambda: home_audit_key(settings, records)
