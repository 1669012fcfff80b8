"""Identities, signed grants and privileged reads: every denial has its code and its audit event.

A real home (SQLite records, file CAS, sealed payloads under the home's keyring) holds
recorded docs-writer threads; reads go through the service, as `wf privileged read` does.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import record_store_location
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from e2e_support import REPO_ROOT, WF_VARIABLES
from retention_support import ROLE_CLASSES, RecordedThread, write_recorded_thread

from wf_pipeline.cas import open_cas
from wf_pipeline.crypto.open import open_keyring
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.errors import SecurityError, WfError
from wf_pipeline.metadata.canonical import canonical_json, digest
from wf_pipeline.metadata.records import IdentityRecord, TombstoneRecord
from wf_pipeline.profiles.encryption import EncryptionPolicy
from wf_pipeline.records import RecordStore, open_record_store
from wf_pipeline.security.audit import audit_events, verify_audit_chain
from wf_pipeline.security.grants import (
    GrantDocument,
    SignedGrant,
    grant_record,
    issue_grant,
)
from wf_pipeline.security.identities import (
    MAX_PRIVATE_FILE_BYTES,
    create_identity,
    load_private_key,
    public_key_bytes,
)
from wf_pipeline.service.privileged import read_privileged, read_privileged_to
from wf_pipeline.service.telemetry import query_telemetry
from wf_pipeline.settings import Settings

WORKFLOW = "docs_writer_thread_v1"
OTHER_WORKFLOW = "other_workflow_v1"
TURNS = ("evidence_gather", "verification", "readme_struct")
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
NOW = T0 + HOUR
# Distinct payloads per role, so a read's bytes show which artifact came back.
TEXTS = {
    "system_prompt": "system prompt of {name}",
    "rendered_prompt": "PROMPT-PAYLOAD {name}/{turn} " + "p" * 40,
    "context": "CONTEXT-PAYLOAD of {name} " + "c" * 60,
    "output": "output of {name}/{turn}",
}


@dataclass
class Home:
    """A home with three recorded threads, four identities and their key files."""

    settings: Settings
    env: dict[str, str]
    records: RecordStore
    keys: dict[str, Path]
    main: RecordedThread  # WORKFLOW, node "node:pkg"
    sibling: RecordedThread  # WORKFLOW, node "node:lib"
    foreign: RecordedThread  # OTHER_WORKFLOW, node "node:pkg2"
    grant_files: list[Path] = field(default_factory=list)

    def key(self, name: str) -> Ed25519PrivateKey:
        from wf_pipeline.security.identities import load_private_key

        return load_private_key(self.keys[name])

    def issue(self, *, grantee: str = "alice", admin: str = "admin", **options) -> SignedGrant:
        arguments = {
            "capability": "prompt_payload_read",
            "scope": {"workflow_id": WORKFLOW},
            "reasons": ("incident_response",),
            "max_bytes": 10_000,
            "rate": (100, HOUR),
            "expires_in_ms": 2 * HOUR,
            "now_ms": T0,
            **options,
        }
        return issue_grant(self.records, self.key(admin), grantee=grantee, **arguments)

    def grant_file(self, content: SignedGrant | bytes | Path) -> Path:
        if isinstance(content, Path):
            return content  # a file given as it is (e.g. /dev/zero)
        path = self.settings.home / f"grant-{uuid.uuid4().hex[:8]}.json"
        path.write_bytes(content.file_bytes() if isinstance(content, SignedGrant) else content)
        return path

    def read(
        self,
        artifact_id: str,
        grant: SignedGrant | bytes | Path,
        *,
        requester: str = "alice",
        reason: str = "incident_response",
        at_ms: int = NOW,
        out: Path | None = None,
    ):
        options = {
            "identity_file": self.keys[requester],
            "grant_file": self.grant_file(grant),
            "reason": reason,
            "at_ms": at_ms,
        }
        if out is not None:
            return read_privileged_to(self.settings, artifact_id, out=out, **options)
        return read_privileged(self.settings, artifact_id, **options)


def build_home(
    root: Path, *, records_url: str | None = None, schema: str | None = None, identities: bool = True
) -> Home:
    env = {"WF_HOME": str(root), "WF_CONFIG_DIR": str(root / "user-config")}
    if records_url is not None:
        env["WF_RECORDS_URL"] = records_url
    if schema is not None:
        env["WF_RECORDS_SCHEMA"] = schema
    settings = Settings.from_env(env)
    settings.ensure_dirs()
    records = open_record_store(settings.records_url, schema=settings.records_schema)
    keyring = open_keyring(settings, records, required=True)  # makes the home's master key
    # Every class sealed: the read must open payloads through the keyring, as in a real home.
    cas = EncryptedArtifactStore(open_cas(settings.cas_url), EncryptionPolicy(default="required"), keyring)
    threads = [
        write_recorded_thread(
            records,
            cas,
            workflow_id=workflow,
            name=name,
            turn_ids=TURNS,
            at=T0,
            classes=ROLE_CLASSES,
            texts=TEXTS,
        )
        for workflow, name in ((WORKFLOW, "pkg"), (WORKFLOW, "lib"), (OTHER_WORKFLOW, "pkg2"))
    ]
    keys = {}
    for name, admin in (("admin", True), ("admin2", True), ("alice", False), ("bob", False))[
        : 4 * identities
    ]:
        keys[name] = root / "keys" / f"{name}.pem"
        # The first admin needs no approval; the second is approved by the first.
        approver = load_private_key(keys["admin"]) if name == "admin2" else None
        create_identity(records, name, admin=admin, key_path=keys[name], now_ms=T0, approver_key=approver)
    keys["not-a-key"] = root / "keys" / "not-a-key.pem"
    keys["not-a-key"].parent.mkdir(parents=True, exist_ok=True)
    keys["not-a-key"].write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    if identities:
        # Alice's own key followed by more bytes than any key file holds: refused for its size.
        keys["padded"] = root / "keys" / "padded.pem"
        keys["padded"].write_bytes(keys["alice"].read_bytes() + b"\n" * MAX_PRIVATE_FILE_BYTES)
    keys["endless"] = Path("/dev/zero")
    return Home(settings, env, records, keys, *threads)


@pytest.fixture
def home(tmp_path) -> Home:
    built = build_home(tmp_path / "home")
    yield built
    built.records.close()


def new_events(home: Home, after: int):
    return audit_events(home.records, after_seq=after)


def head_seq(home: Home) -> int:
    events = audit_events(home.records)
    return events[-1].seq if events else 0


def signed_by(key: Ed25519PrivateKey, document: GrantDocument) -> SignedGrant:
    return SignedGrant(document, key.sign(SignedGrant(document, b"").signed_bytes))


def tampered(signed: SignedGrant, **changes) -> bytes:
    """The grant file with fields of the document changed after signing (signature kept)."""
    body = json.loads(signed.file_bytes())
    body["grant"].update(changes)
    return canonical_json(body)


def document(home: Home, **changes) -> GrantDocument:
    base = home.issue().document.model_dump(mode="json")
    base.update(grant_id=f"grant-{uuid.uuid4().hex}", **changes)
    return GrantDocument.model_validate_json(json.dumps(base))


# --- the denial matrix -------------------------------------------------------------------------

# Each case: (name, expected code, builder(home) -> (artifact_id, grant or bytes, read options)).
Case = Callable[[Home], tuple[str, SignedGrant | bytes, dict]]


def _render(home: Home, turn: int = 1, thread: RecordedThread | None = None) -> str:
    return (thread or home.main).renders[turn - 1]


def _revoked(home: Home):
    grant = home.issue()
    assert home.records.revoke_grant(grant.document.grant_id, at_ms=T0 + 1)
    return _render(home), grant, {}


def _gone(home: Home):
    artifact = _render(home, 2)
    home.records.add_tombstones(
        [
            TombstoneRecord(
                artifact_id=artifact,
                artifact_class="prompt_render",
                workflow_id=WORKFLOW,
                reason="retention",
                bytes=10,
                deleted_at_ms=T0,
            )
        ]
    )
    return artifact, home.issue(), {}


def _unrecorded(home: Home):
    return _render(home), signed_by(home.key("admin"), document(home)), {}


def _grantee_unknown(home: Home):
    signed = signed_by(home.key("admin"), document(home, grantee="ghost"))
    home.records.add_grant(grant_record(signed))
    return _render(home), signed, {}


def _issuer_not_admin(home: Home):
    signed = signed_by(home.key("bob"), document(home, issuer="bob"))
    home.records.add_grant(grant_record(signed))
    return _render(home), signed, {}


def _budget(home: Home):
    artifact = _render(home)
    return artifact, home.issue(max_bytes=10), {}


def _rate(home: Home):
    grant = home.issue(rate=(1, HOUR))
    home.read(_render(home), grant)  # the window's one read
    return _render(home), grant, {}


def _bad_signature(home: Home):
    signed = home.issue()
    raw = bytearray(signed.signature)
    raw[0] ^= 0xFF
    body = json.loads(signed.file_bytes())
    body["signature"] = base64.b64encode(bytes(raw)).decode()
    return _render(home), canonical_json(body), {}


def _self_issued(home: Home):
    """A grant an admin signed for itself, recorded around `issue_grant` (which refuses it)."""
    signed = signed_by(home.key("admin"), document(home, grantee="admin"))
    home.records.add_grant(grant_record(signed))
    return _render(home), signed, {"requester": "admin"}


def _by_admin_row(home: Home, **approval) -> tuple[str, SignedGrant, dict]:
    """A grant by "mallory", written into the identities table as an admin (no `wf` command can)."""
    key = Ed25519PrivateKey.generate()
    home.records.add_identity(
        IdentityRecord(
            name="mallory", public_key=public_key_bytes(key), role="admin", created_at_ms=T0 + 1, **approval
        )
    )
    signed = signed_by(key, document(home, issuer="mallory"))
    home.records.add_grant(grant_record(signed))
    return _render(home), signed, {}


def _with_nan(signed: SignedGrant) -> bytes:
    """The grant file with a NaN budget: Python's JSON parser takes it, canonical JSON refuses it."""
    body = json.loads(signed.file_bytes())
    body["grant"]["max_bytes"] = float("nan")
    return json.dumps(body).encode()


def _kek_of(home: Home, artifact_id: str) -> str:
    return home.records.data_keys_for([artifact_id])[artifact_id].kek_id


def _shred(home: Home, artifact_id: str) -> None:
    """Destroy the KEK that wraps ``artifact_id``'s data key (`wf keys destroy`): crypto-shredding."""
    open_keyring(home.settings, home.records, required=True).destroy(_kek_of(home, artifact_id))


def _shredded(home: Home):
    artifact = _render(home, 2)
    _shred(home, artifact)
    return artifact, home.issue(), {}


def _missing(home: Home):
    artifact = _render(home, 2)
    open_cas(home.settings.cas_url).delete(artifact)
    return artifact, home.issue(), {}


def _padded_grant(signed: SignedGrant) -> bytes:
    """A valid grant file followed by more white space than any grant file holds (valid JSON still)."""
    return signed.file_bytes() + b" " * MAX_PRIVATE_FILE_BYTES


# Bad key files: the audit event names the requester "unknown".
BAD_KEYS = ("not-a-key", "padded", "endless")

DENIALS: list[tuple[str, str | tuple[str, str], Case]] = [
    ("key file not a key", "IDENTITY_INVALID", lambda h: (_render(h), h.issue(), {"requester": "not-a-key"})),
    # Key and grant files are read with a bound (a few tens of KiB), whatever the path names.
    ("key file too large", "IDENTITY_INVALID", lambda h: (_render(h), h.issue(), {"requester": "padded"})),
    ("key file endless", "IDENTITY_INVALID", lambda h: (_render(h), h.issue(), {"requester": "endless"})),
    ("grant file too large", "GRANT_MALFORMED", lambda h: (_render(h), _padded_grant(h.issue()), {})),
    ("grant file endless", "GRANT_MALFORMED", lambda h: (_render(h), Path("/dev/zero"), {})),
    ("not json", "GRANT_MALFORMED", lambda h: (_render(h), b"{not json", {})),
    (
        "field missing",
        "GRANT_MALFORMED",
        lambda h: (_render(h), tampered(h.issue(), max_bytes=None), {}),
    ),
    (
        "unknown capability",
        "GRANT_MALFORMED",
        lambda h: (_render(h), tampered(h.issue(), capability="payload_write"), {}),
    ),
    (
        "budget raised after signing",
        "GRANT_SIGNATURE_INVALID",
        lambda h: (_render(h), tampered(h.issue(), max_bytes=10**9), {}),
    ),
    ("damaged signature", "GRANT_SIGNATURE_INVALID", _bad_signature),
    (
        "signed by another admin",
        "GRANT_SIGNATURE_INVALID",
        lambda h: (_render(h), signed_by(h.key("admin2"), document(h)), {}),
    ),
    (
        "issuer unknown",
        "GRANT_ISSUER_UNKNOWN",
        lambda h: (_render(h), tampered(h.issue(), issuer="ghost"), {}),
    ),
    ("issuer not admin", "GRANT_ISSUER_NOT_ADMIN", _issuer_not_admin),
    ("never recorded", "GRANT_UNKNOWN", _unrecorded),
    ("grantee unknown", "GRANT_GRANTEE_UNKNOWN", _grantee_unknown),
    (
        "another reader's grant",
        "GRANT_GRANTEE_MISMATCH",
        lambda h: (_render(h), h.issue(), {"requester": "bob"}),
    ),
    (
        "admin is not the grantee",
        "GRANT_GRANTEE_MISMATCH",
        lambda h: (_render(h), h.issue(), {"requester": "admin"}),
    ),
    (
        "not yet valid",
        "GRANT_NOT_YET_VALID",
        lambda h: (_render(h), h.issue(not_before_ms=NOW + HOUR), {}),
    ),
    ("expired", "GRANT_EXPIRED", lambda h: (_render(h), h.issue(), {"at_ms": T0 + 2 * HOUR})),
    ("revoked", "GRANT_REVOKED", _revoked),
    (
        "reason not in grant",
        "GRANT_REASON_NOT_ALLOWED",
        lambda h: (_render(h), h.issue(), {"reason": "debugging"}),
    ),
    (
        "reason not in the list",
        "GRANT_REASON_NOT_ALLOWED",
        lambda h: (_render(h), h.issue(), {"reason": "curiosity"}),
    ),
    ("unknown artifact", "PRIVILEGED_ARTIFACT_UNKNOWN", lambda h: (digest(b"never stored"), h.issue(), {})),
    ("an output is no prompt", "PRIVILEGED_ARTIFACT_UNKNOWN", lambda h: (h.main.outputs[0], h.issue(), {})),
    (
        "a system prompt is profile content",
        "PRIVILEGED_ARTIFACT_UNKNOWN",
        lambda h: (h.main.system, h.issue(), {}),
    ),
    ("deleted by retention", "PRIVILEGED_ARTIFACT_GONE", _gone),
    # A payload that cannot be returned is denied before anything is charged, not allowed.
    ("object missing from the CAS", "PRIVILEGED_ARTIFACT_GONE", _missing),
    ("crypto-shredded (KEK destroyed)", "PRIVILEGED_ARTIFACT_SHREDDED", _shredded),
    # Told "unknown", as an id of no artifact is (nothing outside the grant's scope is said
    # to exist, in any of its dimensions); audited with the scope check it failed.
    (
        "another workflow",
        ("PRIVILEGED_ARTIFACT_UNKNOWN", "GRANT_SCOPE_WORKFLOW"),
        lambda h: (_render(h, 1, h.foreign), h.issue(), {}),
    ),
    # Retention's deletion and shredding are told only within the scope.
    (
        "deleted, and of another thread",
        ("PRIVILEGED_ARTIFACT_UNKNOWN", "GRANT_SCOPE_THREAD"),
        lambda h: (
            _gone(h)[0],
            h.issue(scope={"workflow_id": WORKFLOW, "thread_id": h.sibling.thread.thread_id}),
            {},
        ),
    ),
    (
        "shredded, and of another thread",
        ("PRIVILEGED_ARTIFACT_UNKNOWN", "GRANT_SCOPE_THREAD"),
        lambda h: (
            _shredded(h)[0],
            h.issue(scope={"workflow_id": WORKFLOW, "thread_id": h.sibling.thread.thread_id}),
            {},
        ),
    ),
    (
        "another thread",
        ("PRIVILEGED_ARTIFACT_UNKNOWN", "GRANT_SCOPE_THREAD"),
        lambda h: (
            _render(h, 1, h.sibling),
            h.issue(scope={"workflow_id": WORKFLOW, "thread_id": h.main.thread.thread_id}),
            {},
        ),
    ),
    (
        "another node",
        ("PRIVILEGED_ARTIFACT_UNKNOWN", "GRANT_SCOPE_NODE"),
        lambda h: (
            _render(h, 1, h.sibling),
            h.issue(scope={"workflow_id": WORKFLOW, "node_id": "node:pkg"}),
            {},
        ),
    ),
    (
        "turn after the range",
        ("PRIVILEGED_ARTIFACT_UNKNOWN", "GRANT_SCOPE_TURN"),
        lambda h: (_render(h, 3), h.issue(scope={"workflow_id": WORKFLOW, "min_seq": 1, "max_seq": 2}), {}),
    ),
    (
        "turn before the range",
        ("PRIVILEGED_ARTIFACT_UNKNOWN", "GRANT_SCOPE_TURN"),
        lambda h: (_render(h, 1), h.issue(scope={"workflow_id": WORKFLOW, "min_seq": 2, "max_seq": 3}), {}),
    ),
    (
        "prompt grant, context artifact",
        "GRANT_CAPABILITY_MISMATCH",
        lambda h: (h.main.context, h.issue(capability="prompt_payload_read"), {}),
    ),
    (
        "context grant, prompt artifact",
        "GRANT_CAPABILITY_MISMATCH",
        lambda h: (_render(h), h.issue(capability="context_payload_read"), {}),
    ),
    ("payload over the budget", "GRANT_BUDGET_EXCEEDED", _budget),
    ("second read in a 1/h window", "GRANT_RATE_LIMITED", _rate),
    ("grant holding NaN", "GRANT_MALFORMED", lambda h: (_render(h), _with_nan(h.issue()), {})),
    (
        "artifact id out of shape",
        "PRIVILEGED_ARTIFACT_ID_INVALID",
        lambda h: ("sha256:" + "G" * 64, h.issue(), {}),
    ),
    (
        "output path is a folder",
        "PRIVILEGED_OUT_INVALID",
        lambda h: (_render(h), h.issue(), {"out": h.settings.home.parent}),
    ),
    (
        "output folder missing",
        "PRIVILEGED_OUT_INVALID",
        lambda h: (_render(h), h.issue(), {"out": h.settings.home.parent / "no-such-dir" / "payload.bin"}),
    ),
    # The output file is replaced by an atomic rename: never over the product's own state.
    (
        "output is the master key",
        "PRIVILEGED_OUT_INVALID",
        lambda h: (_render(h), h.issue(), {"out": h.settings.home / "keys" / "master.key"}),
    ),
    (
        "output is the record store",
        "PRIVILEGED_OUT_INVALID",
        lambda h: (_render(h), h.issue(), {"out": h.settings.home / "records.db"}),
    ),
    (
        "output name too long",
        "PRIVILEGED_OUT_INVALID",
        lambda h: (_render(h), h.issue(), {"out": Path("/tmp") / ("o" * 300)}),
    ),
    ("self-issued", "GRANT_SELF_ISSUED", _self_issued),
    ("issuer an admin nobody approved", "GRANT_ISSUER_NOT_ADMIN", _by_admin_row),
    (
        "issuer an admin whose approval does not verify",
        "GRANT_ISSUER_NOT_ADMIN",
        lambda h: _by_admin_row(h, approved_by="admin", approval=b"\x00" * 64),
    ),
    (
        "issuer an admin approved by a reader",
        "GRANT_ISSUER_NOT_ADMIN",
        lambda h: _by_admin_row(h, approved_by="bob", approval=b"\x00" * 64),
    ),
]

#: Codes refused when a grant is issued, never when one is read (no read can meet them).
ISSUE_ONLY_CODES = {"GRANT_SCOPE_INVALID"}


def test_the_matrix_has_at_least_twenty_cases_and_covers_every_denial_code() -> None:
    assert len(DENIALS) >= 20
    codes = {code for _, told, _ in DENIALS for code in ((told,) if isinstance(told, str) else told)}
    from wf_pipeline.errors import CATALOGUE

    denial_codes = {name for name in CATALOGUE if name.startswith(("GRANT_", "PRIVILEGED_"))}
    assert denial_codes - ISSUE_ONLY_CODES <= codes


@pytest.mark.parametrize(("name", "code", "build"), DENIALS, ids=[name for name, _, _ in DENIALS])
def test_each_denial_has_its_code_and_a_deny_event(
    home: Home, name: str, code: str | tuple[str, str], build: Case
) -> None:
    code, audited = (code, code) if isinstance(code, str) else code
    artifact_id, grant, options = build(home)
    before = head_seq(home)
    grant_id = grant.document.grant_id if isinstance(grant, SignedGrant) else json_grant_id(grant)

    with pytest.raises(SecurityError) as caught:
        home.read(artifact_id, grant, **options)

    assert caught.value.code == code
    events = new_events(home, before)
    assert len(events) == 1
    event = events[0]
    assert (event.outcome, event.code, event.bytes) == ("deny", audited, 0)
    assert event.grant_id == grant_id
    assert event.artifact_ids == (artifact_id,)
    assert event.reason_code == options.get("reason", "incident_response")
    requester = options.get("requester", "alice")
    assert event.requester == ("unknown" if requester in BAD_KEYS else requester)
    assert verify_audit_chain(home.records).ok


def test_a_grant_cannot_tell_an_artifact_of_another_workflow_from_no_artifact(home: Home) -> None:
    grant = home.issue()
    told = []
    for artifact_id in (_render(home, 1, home.foreign), digest(b"never stored")):
        with pytest.raises(SecurityError) as caught:
            home.read(artifact_id, grant)
        told.append(
            (caught.value.code, caught.value.message.replace(artifact_id, "ID"), caught.value.details)
        )
    assert told[0][:2] == told[1][:2]
    assert told[0][0] == "PRIVILEGED_ARTIFACT_UNKNOWN"
    assert [e.code for e in audit_events(home.records)[-2:]] == [
        "GRANT_SCOPE_WORKFLOW",
        "PRIVILEGED_ARTIFACT_UNKNOWN",
    ]


def json_grant_id(data: bytes | Path) -> str | None:
    if isinstance(data, Path) or len(data) > MAX_PRIVATE_FILE_BYTES:
        return None  # a file over the bound is never parsed: its grant id is not known
    try:
        return json.loads(data)["grant"]["grant_id"]
    except (ValueError, KeyError, TypeError):
        return None


# --- allowed reads -------------------------------------------------------------------------------


def test_a_valid_grant_returns_the_exact_payload_after_its_allow_event(home: Home, monkeypatch) -> None:
    grant = home.issue(
        scope={"workflow_id": WORKFLOW, "thread_id": home.main.thread.thread_id, "min_seq": 2, "max_seq": 3}
    )
    artifact = _render(home, 2)
    expected = TEXTS["rendered_prompt"].format(name="pkg", turn=TURNS[1]).encode()
    # Record what the audit trail holds at the moment the CAS is asked for the payload.
    seen_at_fetch: list[list] = []
    original_get = EncryptedArtifactStore.get

    def watching_get(store, artifact_id, **options):
        seen_at_fetch.append([(e.outcome, e.artifact_ids) for e in audit_events(home.records)])
        return original_get(store, artifact_id, **options)

    monkeypatch.setattr(EncryptedArtifactStore, "get", watching_get)
    read = home.read(artifact, grant)

    assert read.payload == expected
    assert (read.artifact_class, read.grant_id, read.requester) == (
        "prompt_render",
        grant.document.grant_id,
        "alice",
    )
    assert seen_at_fetch == [[("allow", (artifact,))]]  # committed before the payload was fetched
    [event] = audit_events(home.records)
    assert (event.event_id, event.seq, event.outcome, event.code) == (
        read.audit_event_id,
        read.audit_seq,
        "allow",
        None,
    )
    assert event.bytes == len(expected) and event.requester == "alice"
    assert event.scope["thread_id"] == home.main.thread.thread_id
    stored = home.records.get_grant(grant.document.grant_id)
    assert (stored.bytes_used, stored.reads) == (len(expected), 1)
    assert expected not in canonical_json(read.summary())


def test_every_decision_is_in_the_audit_telemetry_table_without_an_export_command(home: Home) -> None:
    grant = home.issue()
    allowed = home.read(_render(home, 2), grant)
    with pytest.raises(SecurityError) as denied:
        home.read(_render(home, 2), grant, reason="curiosity")
    sql = "select seq, event_id, outcome, code from audit_events order by seq"
    rows = query_telemetry(home.settings, sql)["rows"]
    assert rows == [
        [allowed.audit_seq, allowed.audit_event_id, "allow", None],
        [allowed.audit_seq + 1, audit_events(home.records)[-1].event_id, "deny", denied.value.code],
    ]


def test_a_damaged_parquet_copy_never_breaks_a_decided_read_and_is_reported(home: Home) -> None:
    from wf_pipeline.service.audit import export_audit_events, verify_audit

    grant = home.issue()
    home.read(_render(home, 2), grant)
    newest = max((home.settings.home / "telemetry").rglob("*.parquet"), key=lambda p: p.stat().st_mtime_ns)
    assert "audit_events" in str(newest)
    newest.write_bytes(b"garbage\n")
    before = head_seq(home)

    read = home.read(_render(home, 2), grant)

    assert read.payload == TEXTS["rendered_prompt"].format(name="pkg", turn=TURNS[1]).encode()
    assert [(e.seq, e.outcome) for e in new_events(home, before)] == [(read.audit_seq, "allow")]
    with pytest.raises(WfError) as caught:
        export_audit_events(home.settings)
    assert caught.value.code == "TELEMETRY_FILE_UNREADABLE"
    report = verify_audit(home.settings)
    assert report["ok"] and report["witness"] is None
    assert report["witness_error"]["code"] == "TELEMETRY_FILE_UNREADABLE"


def test_a_context_grant_reads_the_context_payload(home: Home) -> None:
    grant = home.issue(capability="context_payload_read", reasons=("debugging", "quality_audit"))
    read = home.read(home.main.context, grant, reason="quality_audit")
    assert read.payload == TEXTS["context"].format(name="pkg").encode()
    assert read.artifact_class == "context_payload"


def test_a_read_denied_for_the_budget_leaves_the_budget_unspent(home: Home) -> None:
    size = len(TEXTS["rendered_prompt"].format(name="pkg", turn=TURNS[0]).encode())
    grant = home.issue(max_bytes=size + 1)
    home.read(_render(home, 1), grant)
    with pytest.raises(SecurityError) as caught:
        home.read(_render(home, 1), grant)
    assert caught.value.code == "GRANT_BUDGET_EXCEEDED"
    assert home.records.get_grant(grant.document.grant_id).bytes_used == size


def test_the_rate_window_opens_again_after_it_ends(home: Home) -> None:
    grant = home.issue(rate=(2, 60_000))
    for at in (NOW, NOW + 1):
        home.read(_render(home), grant, at_ms=at)
    with pytest.raises(SecurityError) as caught:
        home.read(_render(home), grant, at_ms=NOW + 59_999)
    assert caught.value.code == "GRANT_RATE_LIMITED"
    assert home.read(_render(home), grant, at_ms=NOW + 60_000).payload
    assert [e.outcome for e in audit_events(home.records)] == ["allow", "allow", "deny", "allow"]


def test_an_audit_trail_that_cannot_be_written_returns_nothing(home: Home) -> None:
    grant = home.issue()
    engine = sa.create_engine(home.settings.records_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE wf_audit_events")
    engine.dispose()

    with pytest.raises(SecurityError) as caught:
        read_privileged(
            home.settings,
            _render(home),
            identity_file=home.keys["alice"],
            grant_file=home.grant_file(grant),
            reason="incident_response",
            at_ms=NOW,
        )
    assert caught.value.code == "AUDIT_UNAVAILABLE"
    # A denial that cannot be audited fails the same way, not with its own code.
    with pytest.raises(SecurityError) as denied:
        home.read(_render(home), grant, requester="bob")
    assert denied.value.code == "AUDIT_UNAVAILABLE"


def test_an_unaudited_read_never_fetches_the_payload(home: Home, monkeypatch) -> None:
    import wf_pipeline.security.privileged as privileged

    def broken(*args, **kwargs):
        raise SecurityError("AUDIT_UNAVAILABLE", "the audit store is down")

    fetched: list[str] = []
    monkeypatch.setattr(privileged, "append_audit_event", broken)
    monkeypatch.setattr(
        EncryptedArtifactStore, "get", lambda store, artifact_id, **o: fetched.append(artifact_id)
    )
    with pytest.raises(SecurityError) as caught:
        home.read(_render(home), home.issue())
    assert caught.value.code == "AUDIT_UNAVAILABLE"
    assert fetched == []


# --- identities and grant files ---------------------------------------------------------------


def test_identity_key_files_are_private_and_registration_keeps_only_the_public_key(home: Home) -> None:
    mode = stat.S_IMODE(os.stat(home.keys["alice"]).st_mode)
    assert mode == 0o600
    record = home.records.get_identity("alice")
    assert record.role == "reader" and len(record.public_key) == 32
    assert home.records.get_identity("admin").role == "admin"
    with pytest.raises(SecurityError) as caught:
        create_identity(home.records, "alice", admin=False, key_path=home.settings.home / "x.pem", now_ms=T0)
    assert caught.value.code == "IDENTITY_EXISTS"
    assert not (home.settings.home / "x.pem").exists()


def test_only_an_admin_key_issues_grants(home: Home) -> None:
    with pytest.raises(SecurityError) as caught:
        home.issue(admin="bob")
    assert caught.value.code == "IDENTITY_NOT_ADMIN"
    with pytest.raises(SecurityError) as unknown:
        home.issue(grantee="nobody")
    assert unknown.value.code == "IDENTITY_UNKNOWN"
    assert home.records.list_grants() == []


@pytest.mark.parametrize(
    "options",
    [
        {"reasons": ("because",)},
        {"reasons": ()},
        {"capability": "prompt_payload_write"},
        {"scope": {"workflow_id": WORKFLOW, "min_seq": 3, "max_seq": 1}},
        {"max_bytes": -1},
        {"max_bytes": 2**63},
        {"rate": (1, 2**63)},
        {"expires_in_ms": 0},
    ],
)
def test_a_grant_outside_the_schema_is_malformed_and_not_recorded(home: Home, options) -> None:
    with pytest.raises(SecurityError) as caught:
        home.issue(**options)
    assert caught.value.code == "GRANT_MALFORMED"
    assert home.records.list_grants() == []


# --- malformed and oversized input is refused with a code, audited, and bounded -------------------


def test_an_oversized_request_writes_a_bounded_audit_row(home: Home) -> None:
    huge_id, huge_reason = "A" * 5_000_000, "B" * 5_000_000
    before = head_seq(home)

    with pytest.raises(SecurityError) as caught:
        read_privileged(
            home.settings,
            huge_id,
            identity_file=home.settings.home / "no-such-key.pem",
            grant_file=home.settings.home / "no-such-grant.json",
            reason=huge_reason,
        )

    assert caught.value.code == "IDENTITY_INVALID"
    (event,) = new_events(home, before)
    row = json.dumps(event.to_dict())
    assert len(row) < 2_000
    # The bounded forms keep the digest of the whole, so the value can still be matched.
    assert event.artifact_ids[0].endswith(digest(huge_id.encode()))
    assert event.reason_code.endswith(digest(huge_reason.encode()))
    assert verify_audit_chain(home.records).ok


def test_an_oversized_artifact_id_with_a_valid_grant_is_denied_for_its_shape(home: Home) -> None:
    grant = home.issue()
    before = head_seq(home)

    with pytest.raises(SecurityError) as caught:
        home.read("sha256:" + "a" * 5_000_000, grant, reason="C" * 1_000_000)

    assert caught.value.code == "PRIVILEGED_ARTIFACT_ID_INVALID"
    (event,) = new_events(home, before)
    assert (event.outcome, event.code) == ("deny", "PRIVILEGED_ARTIFACT_ID_INVALID")
    assert len(json.dumps(event.to_dict())) < 2_000
    assert home.records.get_grant(grant.document.grant_id).reads == 0


@pytest.mark.parametrize(
    ("artifact", "reason", "code"),
    [
        # Undecodable command-line bytes reach Python as lone surrogates (PEP 383).
        ("sha256:\udcfe", "incident_response", "PRIVILEGED_ARTIFACT_ID_INVALID"),
        (None, "incident\udcff", "GRANT_REASON_NOT_ALLOWED"),
    ],
)
def test_text_no_store_can_encode_is_denied_with_its_code_and_audited(
    home: Home, artifact: str | None, reason: str, code: str
) -> None:
    before = head_seq(home)

    with pytest.raises(SecurityError) as caught:
        home.read(artifact or _render(home), home.issue(), reason=reason)

    assert caught.value.code == code
    (event,) = new_events(home, before)
    assert (event.outcome, event.code) == ("deny", code)
    event.artifact_ids[0].encode("utf-8")
    event.reason_code.encode("utf-8")
    assert verify_audit_chain(home.records).ok


@pytest.mark.parametrize("where", ["folder", "missing folder", "read-only folder"])
def test_an_output_that_cannot_be_written_is_denied_before_anything_is_charged(
    home: Home, tmp_path, where: str
) -> None:
    if where == "folder":
        out = tmp_path
    elif where == "missing folder":
        out = tmp_path / "missing" / "payload.bin"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        out = locked / "payload.bin"
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
    grant = home.issue()
    before = head_seq(home)

    with pytest.raises(SecurityError) as caught:
        home.read(_render(home), grant, out=out)

    assert caught.value.code == "PRIVILEGED_OUT_INVALID"
    events = new_events(home, before)
    assert [(e.outcome, e.code) for e in events] == [("deny", "PRIVILEGED_OUT_INVALID")]
    stored = home.records.get_grant(grant.document.grant_id)
    assert (stored.reads, stored.bytes_used) == (0, 0)
    # The same grant still reads once the path is fixed: nothing of its budget was spent.
    summary, payload = home.read(_render(home), grant, out=tmp_path / "ok.bin")
    assert payload is None and (tmp_path / "ok.bin").read_bytes()


def test_the_reserved_requester_name_cannot_be_registered(home: Home, tmp_path) -> None:
    with pytest.raises(SecurityError) as caught:
        create_identity(home.records, "unknown", admin=False, key_path=tmp_path / "unknown.pem", now_ms=T0)

    assert caught.value.code == "IDENTITY_RESERVED"
    assert home.records.get_identity("unknown") is None
    assert not (tmp_path / "unknown.pem").exists()


def issue_options(home: Home, **changes) -> dict:
    options = {
        "admin_key_file": home.keys["admin"],
        "grantee": "alice",
        "capability": "prompt_payload_read",
        "workflow_id": WORKFLOW,
        "thread_id": None,
        "node_id": None,
        "turns": None,
        "expires": "1h",
        "reasons": ["incident_response"],
        "max_bytes": 1000,
        "rate": "10/min",
    }
    return {**options, **changes}


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"max_bytes": 9_223_372_036_854_775_808}, "GRANT_MALFORMED"),
        # A zero budget is a grant that can never read anything.
        ({"max_bytes": 0}, "GRANT_MALFORMED"),
        ({"max_bytes": -1}, "GRANT_MALFORMED"),
        # Unicode digits are no number of a duration (int() would take them).
        ({"expires": "\u0661h"}, "GRANT_MALFORMED"),
        ({"not_before": "\uff11m"}, "GRANT_MALFORMED"),
        ({"rate": "5/\u0661h"}, "GRANT_MALFORMED"),
        ({"rate": "\u0665/min"}, "GRANT_MALFORMED"),
        ({"turns": "\u0661-3"}, "GRANT_MALFORMED"),
        ({"expires": "100000000d"}, "GRANT_MALFORMED"),
        ({"expires": "forever"}, "GRANT_MALFORMED"),
        ({"grantee": "alice\udcff"}, "GRANT_MALFORMED"),
        ({"workflow_id": "docs\udcfe"}, "GRANT_MALFORMED"),
        ({"out": "folder"}, "PRIVILEGED_OUT_INVALID"),
        ({"out": "missing"}, "PRIVILEGED_OUT_INVALID"),
    ],
)
def test_a_grant_that_cannot_be_issued_or_written_is_not_recorded(
    home: Home, tmp_path, changes: dict, code: str
) -> None:
    from wf_pipeline.service.grants import issue_grant_file

    paths = {"folder": tmp_path, "missing": tmp_path / "missing" / "grant.json"}
    if "out" in changes:
        changes = {**changes, "out": paths[changes["out"]]}
    out = tmp_path / "grant.json"

    with pytest.raises(SecurityError) as caught:
        issue_grant_file(home.settings, **issue_options(home, **{"out": out, **changes}))

    assert caught.value.code == code
    assert home.records.list_grants() == []
    assert not out.exists()


# --- who may make admins, issue and revoke -------------------------------------------------------


def test_the_first_admin_is_free_and_every_later_admin_needs_an_admins_approval(home: Home, tmp_path) -> None:
    path = tmp_path / "mallory.pem"
    with pytest.raises(SecurityError) as unapproved:
        create_identity(home.records, "mallory", admin=True, key_path=path, now_ms=NOW)
    with pytest.raises(SecurityError) as by_reader:
        create_identity(
            home.records, "mallory", admin=True, key_path=path, now_ms=NOW, approver_key=home.key("bob")
        )

    assert unapproved.value.code == "IDENTITY_ADMIN_APPROVAL_REQUIRED"
    assert by_reader.value.code == "IDENTITY_NOT_ADMIN"
    assert home.records.get_identity("mallory") is None and not path.exists()
    # Approved by the second admin, itself approved by the first: a chain of two.
    carol = create_identity(
        home.records,
        "carol",
        admin=True,
        key_path=tmp_path / "carol.pem",
        now_ms=NOW,
        approver_key=home.key("admin2"),
    )
    assert carol.approved_by == "admin2" and len(carol.approval) == 64
    home.keys["carol"] = tmp_path / "carol.pem"
    assert home.read(_render(home), home.issue(admin="carol")).payload


def test_an_approval_binds_the_name_and_the_key_it_was_given_for(home: Home) -> None:
    # An approval copied to another name or key (a forged row) makes no admin.
    admin2 = home.records.get_identity("admin2")
    for name, key in (("eve", admin2.public_key), ("admin3", public_key_bytes(Ed25519PrivateKey.generate()))):
        forged = IdentityRecord(
            name=name,
            public_key=key,
            role="admin",
            created_at_ms=NOW,
            approved_by="admin",
            approval=admin2.approval,
        )
        home.records.add_identity(forged)
    from wf_pipeline.security.identities import admin_refusal

    assert admin_refusal(home.records, admin2) is None
    assert "does not verify" in admin_refusal(home.records, home.records.get_identity("eve"))
    assert "does not verify" in admin_refusal(home.records, home.records.get_identity("admin3"))


def test_an_admin_cannot_issue_a_grant_to_itself(home: Home) -> None:
    with pytest.raises(SecurityError) as caught:
        home.issue(grantee="admin")

    assert caught.value.code == "GRANT_SELF_ISSUED"
    assert home.records.list_grants() == []
    # Another admin may grant it: the two-person rule, not a ban on admins reading.
    assert home.read(_render(home), home.issue(admin="admin2", grantee="admin"), requester="admin").payload


def test_an_unapproved_admin_row_cannot_issue(home: Home) -> None:
    key = Ed25519PrivateKey.generate()
    home.records.add_identity(
        IdentityRecord(name="mallory", public_key=public_key_bytes(key), role="admin", created_at_ms=NOW)
    )

    with pytest.raises(SecurityError) as caught:
        issue_grant(
            home.records,
            key,
            grantee="alice",
            capability="prompt_payload_read",
            scope={"workflow_id": WORKFLOW},
            reasons=("incident_response",),
            max_bytes=10,
            rate=(1, HOUR),
            expires_in_ms=HOUR,
            now_ms=NOW,
        )

    assert caught.value.code == "IDENTITY_NOT_ADMIN"
    assert home.records.list_grants() == []


def test_a_revocation_needs_an_admins_key_and_is_audited_before_it_is_applied(home: Home) -> None:
    from wf_pipeline.service.grants import revoke_grant

    grant = home.issue()
    grant_id = grant.document.grant_id
    before = head_seq(home)

    with pytest.raises(SecurityError) as by_reader:
        revoke_grant(home.settings, grant_id, admin_key_file=home.keys["alice"])
    assert by_reader.value.code == "IDENTITY_NOT_ADMIN"
    assert home.records.get_grant(grant_id).revoked_at_ms is None
    revoked = revoke_grant(home.settings, grant_id, admin_key_file=home.keys["admin2"], reason="compromised")
    again = revoke_grant(home.settings, grant_id, admin_key_file=home.keys["admin"])

    assert revoked["state"] == again["state"] == "revoked" and again["audit_event_id"] is None
    denied, allowed = new_events(home, before)
    assert (denied.requester, denied.outcome, denied.code, denied.grant_id) == (
        "alice",
        "deny",
        "IDENTITY_NOT_ADMIN",
        grant_id,
    )
    assert (allowed.event_id, allowed.requester, allowed.outcome, allowed.code) == (
        revoked["audit_event_id"],
        "admin2",
        "allow",
        None,
    )
    assert (allowed.grant_id, allowed.reason_code, allowed.artifact_ids, allowed.bytes) == (
        grant_id,
        "compromised",
        (),
        0,
    )
    assert allowed.policy_version == "grant-revoke/1" and allowed.scope["workflow_id"] == WORKFLOW
    assert home.records.get_grant(grant_id).revoked_at_ms == allowed.at_ms
    assert verify_audit_chain(home.records).ok
    with pytest.raises(SecurityError) as caught:
        home.read(_render(home), grant)
    assert caught.value.code == "GRANT_REVOKED"


def test_a_revocation_the_trail_cannot_record_is_not_applied(home: Home) -> None:
    from wf_pipeline.service.grants import revoke_grant

    grant = home.issue()
    engine = sa.create_engine(home.settings.records_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE wf_audit_events")
    engine.dispose()

    with pytest.raises(SecurityError) as caught:
        revoke_grant(home.settings, grant.document.grant_id, admin_key_file=home.keys["admin"])

    assert caught.value.code == "AUDIT_UNAVAILABLE"
    assert home.records.get_grant(grant.document.grant_id).revoked_at_ms is None


@pytest.mark.parametrize(
    ("changes", "figure"),
    [
        ({"thread_id": "garbage"}, "thread id 'garbage'"),
        ({"thread_id": "thread:" + "A" * 24}, "thread: and 24"),
        ({"node_id": "garbage"}, "node id 'garbage'"),
        ({"node_id": "node:" + "a" * 24}, "node: and 64"),
        ({"workflow_id": "nonexistent_wf"}, "docs_writer_thread_v1"),
    ],
)
def test_a_scope_that_could_never_match_is_not_issued(
    home: Home, tmp_path, changes: dict, figure: str
) -> None:
    from wf_pipeline.service.grants import issue_grant_file

    out = tmp_path / "grant.json"
    with pytest.raises(SecurityError) as caught:
        issue_grant_file(home.settings, **issue_options(home, out=out, **changes))

    assert caught.value.code == "GRANT_SCOPE_INVALID"
    assert figure in caught.value.message
    assert home.records.list_grants() == [] and not out.exists()


def test_a_scope_of_real_ids_or_of_a_workflow_with_recorded_threads_is_issued(home: Home, tmp_path) -> None:
    from wf_pipeline.service.grants import issue_grant_file

    node = "node:" + "ab" * 32
    scoped = issue_grant_file(
        home.settings,
        **issue_options(home, out=tmp_path / "a.json", thread_id=home.main.thread.thread_id, node_id=node),
    )
    # No profile of the catalogue defines it, but its threads are recorded.
    retired = issue_grant_file(
        home.settings, **issue_options(home, out=tmp_path / "b.json", workflow_id=OTHER_WORKFLOW)
    )

    assert (scoped["thread_id"], scoped["node_id"], scoped["state"]) == (
        home.main.thread.thread_id,
        node,
        "active",
    )
    assert retired["workflow_id"] == OTHER_WORKFLOW


def test_the_identity_listing_tells_admins_from_admin_rows_nobody_approved(home: Home) -> None:
    from wf_pipeline.service.grants import list_identities

    home.records.add_identity(
        IdentityRecord(name="mallory", public_key=b"m" * 32, role="admin", created_at_ms=T0 + 1)
    )

    standing = {row["name"]: (row["standing"], row["approved_by"]) for row in list_identities(home.settings)}

    assert standing == {
        "admin": ("first-admin", None),
        "admin2": ("approved", "admin"),
        "alice": (None, None),
        "bob": (None, None),
        "mallory": ("not-admin", None),
    }


# --- concurrency: budget and rate hold across processes ------------------------------------------

READER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from wf_pipeline.errors import SecurityError
    from wf_pipeline.service.privileged import read_privileged
    from wf_pipeline.settings import Settings

    artifact, key, grant, at_ms, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    settings = Settings.from_env()
    for _ in range(count):
        try:
            read = read_privileged(settings, artifact, identity_file=Path(key), grant_file=Path(grant),
                                   reason="incident_response", at_ms=at_ms)
            print(json.dumps({"code": "allow", "bytes": len(read.payload)}))
        except SecurityError as exc:
            print(json.dumps({"code": exc.code}))
    """
)


def race(home: Home, artifact: str, grant: SignedGrant, *, processes: int, reads: int) -> list[dict]:
    grant_file = home.grant_file(grant)
    env = {key: value for key, value in os.environ.items() if key not in WF_VARIABLES}
    env.update(home.env)
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                READER,
                artifact,
                str(home.keys["alice"]),
                str(grant_file),
                str(NOW),
                str(reads),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO_ROOT,
        )
        for _ in range(processes)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0] * processes, [err.decode()[-2000:] for _, err in outputs]
    return [json.loads(line) for out, _ in outputs for line in out.decode().splitlines()]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_home(request, tmp_path):
    with record_store_location(request.param, tmp_path) as target:
        built = build_home(
            tmp_path / "home",
            records_url=target.url if target.backend != "sqlite" else None,
            schema=target.schema,
        )
        yield built
        built.records.close()


def test_concurrent_reads_never_pass_the_byte_budget(shared_home: Home) -> None:
    artifact = _render(shared_home)
    size = len(TEXTS["rendered_prompt"].format(name="pkg", turn=TURNS[0]).encode())
    grant = shared_home.issue(max_bytes=3 * size + size // 2)

    results = race(shared_home, artifact, grant, processes=4, reads=3)

    codes = sorted(r["code"] for r in results)
    assert codes == ["GRANT_BUDGET_EXCEEDED"] * 9 + ["allow"] * 3
    assert shared_home.records.get_grant(grant.document.grant_id).bytes_used == 3 * size
    events = audit_events(shared_home.records)
    assert sorted(e.outcome for e in events) == ["allow"] * 3 + ["deny"] * 9
    assert sum(e.bytes for e in events) == 3 * size
    assert verify_audit_chain(shared_home.records).ok


def test_concurrent_reads_never_pass_the_rate_limit(shared_home: Home) -> None:
    grant = shared_home.issue(rate=(5, HOUR))

    results = race(shared_home, _render(shared_home), grant, processes=4, reads=3)

    assert sorted(r["code"] for r in results) == ["GRANT_RATE_LIMITED"] * 7 + ["allow"] * 5
    assert shared_home.records.get_grant(grant.document.grant_id).window_reads == 5


# --- the wf commands ---------------------------------------------------------------------------

WF = REPO_ROOT / ".venv" / "bin" / "wf"
CANARIES = (b"PROMPT-PAYLOAD", b"CONTEXT-PAYLOAD")


def wf(home: Home, *args: str) -> subprocess.CompletedProcess:
    env = {
        key: value for key, value in os.environ.items() if key not in WF_VARIABLES and key != "DAGSTER_HOME"
    }
    env.update(home.env)
    return subprocess.run([str(WF), *args], env=env, capture_output=True, timeout=300, cwd=home.settings.home)


@pytest.mark.slow
@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_the_wf_commands_issue_read_revoke_and_never_print_keys(tmp_path) -> None:
    home = build_home(tmp_path / "home", identities=False)
    keys = tmp_path / "keys"
    try:
        for args in (("admin", "--admin"), ("alice",)):
            made = wf(home, "identity", "create", *args, "--out", str(keys), "--json")
            assert made.returncode == 0, made.stderr
            assert json.loads(made.stdout)["key_file"] == str(keys / f"{args[0]}.pem")
            assert b"PRIVATE KEY" not in made.stdout + made.stderr
        assert stat.S_IMODE(os.stat(keys / "alice.pem").st_mode) == 0o600
        # A second admin needs the first's approval; anyone can still make a reader.
        mallory = wf(home, "identity", "create", "mallory", "--admin", "--out", str(keys))
        assert mallory.returncode == 1 and not (keys / "mallory.pem").exists()
        assert mallory.stderr.decode().startswith("IDENTITY_ADMIN_APPROVAL_REQUIRED: ")
        approved = wf(
            home, "identity", "create", "ops", "--admin", "--approved-by", str(keys / "admin.pem"),
            "--out", str(keys), "--json",
        )  # fmt: skip
        assert approved.returncode == 0, approved.stderr
        assert json.loads(approved.stdout)["approved_by"] == "admin"
        listed = json.loads(wf(home, "identity", "list", "--json").stdout)
        assert [(i["name"], i["role"], i["standing"]) for i in listed] == [
            ("admin", "admin", "first-admin"),
            ("alice", "reader", None),
            ("ops", "admin", "approved"),
        ]

        grant_file = tmp_path / "grant.json"
        issued = wf(
            home,
            "grants", "issue", "--admin", str(keys / "admin.pem"), "--grantee", "alice",
            "--capability", "prompt_payload_read", "--workflow", WORKFLOW,
            "--thread", home.main.thread.thread_id, "--turns", "1-2", "--expires", "1h",
            "--reason", "incident_response", "--max-bytes", "1000", "--rate", "10/min",
            "--out", str(grant_file), "--json",
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
        grant_id = json.loads(issued.stdout)["grant_id"]
        assert stat.S_IMODE(os.stat(grant_file).st_mode) == 0o600
        read_args = (
            "--identity",
            str(keys / "alice.pem"),
            "--grant",
            str(grant_file),
            "--reason",
            "incident_response",
        )
        artifact = _render(home, 2)
        expected = TEXTS["rendered_prompt"].format(name="pkg", turn=TURNS[1]).encode()

        to_stdout = wf(home, "privileged", "read", artifact, *read_args)
        assert (to_stdout.returncode, to_stdout.stdout) == (0, expected), to_stdout.stderr
        out = tmp_path / "payload.txt"
        to_file = wf(home, "privileged", "read", artifact, *read_args, "--out", str(out), "--json")
        assert to_file.returncode == 0, to_file.stderr
        assert out.read_bytes() == expected and stat.S_IMODE(os.stat(out).st_mode) == 0o600
        summary = json.loads(to_file.stdout)
        assert (summary["bytes"], summary["sha256"], summary["grant_id"]) == (
            len(expected),
            digest(expected),
            grant_id,
        )
        # --json without --out would deliver nothing: a usage error, decided and charged never.
        as_json = wf(home, "privileged", "read", artifact, *read_args, "--json")
        assert as_json.returncode == 2 and expected not in as_json.stdout

        outside = wf(home, "privileged", "read", _render(home, 3), *read_args)
        assert outside.returncode == 1 and outside.stdout == b""
        # Outside the grant's turn range: told unknown, audited as the scope check it failed.
        assert outside.stderr.decode().startswith("PRIVILEGED_ARTIFACT_UNKNOWN: ")

        unsigned = wf(home, "grants", "revoke", grant_id)
        assert unsigned.returncode == 2 and b"--admin" in unsigned.stderr
        revoked = wf(home, "grants", "revoke", grant_id, "--admin", str(keys / "ops.pem"), "--json")
        assert revoked.returncode == 0, revoked.stderr
        assert json.loads(revoked.stdout)["state"] == "revoked"
        after = wf(home, "privileged", "read", artifact, *read_args)
        assert after.returncode == 1 and after.stdout == b""
        assert after.stderr.decode().startswith("GRANT_REVOKED: ")

        [grant] = json.loads(wf(home, "grants", "list", "--json").stdout)
        assert (grant["grant_id"], grant["reads"], grant["bytes_used"]) == (grant_id, 2, 2 * len(expected))
        events = audit_events(home.records)
        assert [(e.outcome, e.code) for e in events] == [
            ("allow", None),
            ("allow", None),
            ("deny", "GRANT_SCOPE_TURN"),
            ("allow", None),  # the revocation, by ops
            ("deny", "GRANT_REVOKED"),
        ]
        assert (events[3].requester, events[3].policy_version) == ("ops", "grant-revoke/1")
        listed = wf(home, "audit", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [e["code"] for e in json.loads(listed.stdout)["events"]] == [e.code for e in events]
        assert expected not in listed.stdout
        verified = wf(home, "audit", "verify", "--json")
        assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    finally:
        home.records.close()


@pytest.mark.slow
@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_no_other_command_prints_a_prompt_or_context_payload(tmp_path) -> None:
    home = build_home(tmp_path / "home", identities=False)
    try:
        shown = wf(home, "threads", "show", home.main.thread.thread_id, "--json")
        outputs = [
            shown,
            wf(home, "threads", "list", "--json"),
            wf(home, "threads", "show", home.main.thread.thread_id),
            wf(home, "cas", "verify", "--json"),
            wf(home, "keys", "report", "--json"),
        ]
    finally:
        home.records.close()
    # The thread is really shown: its prompt and context artifacts by id, their bytes nowhere.
    artifact_ids = {a["artifact_id"] for a in json.loads(shown.stdout)["artifacts"]}
    assert {home.main.renders[0], home.main.context} <= artifact_ids
    for done in outputs:
        assert done.returncode == 0, done.stderr
        for canary in CANARIES:
            assert canary not in done.stdout + done.stderr


@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_an_empty_grant_file_path_is_a_usage_error(home: Home) -> None:
    done = wf(
        home,
        "grants", "issue", "--admin", str(home.keys["admin"]), "--grantee", "alice",
        "--capability", "prompt_payload_read", "--workflow", WORKFLOW, "--expires", "1h",
        "--reason", "incident_response", "--max-bytes", "1000", "--rate", "10/min", "--out", "",
    )  # fmt: skip

    assert done.returncode == 2
    assert b"--out needs a file path" in done.stderr and b"is a folder" not in done.stderr
    assert home.records.list_grants() == []


@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_json_without_out_is_a_usage_error_that_decides_nothing(home: Home) -> None:
    grant = home.grant_file(home.issue())
    before = head_seq(home)

    done = wf(
        home,
        "privileged",
        "read",
        _render(home),
        "--identity",
        str(home.keys["alice"]),
        "--grant",
        str(grant),
        "--reason",
        "incident_response",
        "--json",
    )

    assert done.returncode == 2
    assert b"--json needs --out" in done.stderr
    assert new_events(home, before) == []


# --- nothing outside the scope is said to exist, in any dimension ---------------------------------


@pytest.mark.parametrize(
    ("scope", "audited"),
    [
        ({"thread_id": "main"}, "GRANT_SCOPE_THREAD"),
        ({"node_id": "node:pkg"}, "GRANT_SCOPE_NODE"),
        ({"thread_id": "sibling", "min_seq": 2, "max_seq": 3}, "GRANT_SCOPE_TURN"),
    ],
)
def test_a_scoped_grant_cannot_tell_an_artifact_outside_its_scope_from_a_random_id(
    home: Home, scope: dict, audited: str
) -> None:
    threads = {"main": home.main.thread.thread_id, "sibling": home.sibling.thread.thread_id}
    grant = home.issue(
        scope={
            "workflow_id": WORKFLOW,
            **{k: threads.get(v, v) if k == "thread_id" else v for k, v in scope.items()},
        }
    )
    # The sibling thread's first prompt: another thread, another node, or a turn before the range.
    outside = _render(home, 1, home.sibling)
    told = []
    for artifact_id in (outside, digest(uuid.uuid4().bytes)):
        with pytest.raises(SecurityError) as caught:
            home.read(artifact_id, grant)
        told.append(
            (caught.value.code, caught.value.message.replace(artifact_id, "ID"), caught.value.details)
        )
    assert told[0][0] == "PRIVILEGED_ARTIFACT_UNKNOWN"
    assert (told[0][1], sorted(told[0][2])) == (told[1][1], sorted(told[1][2]))
    assert [e.code for e in audit_events(home.records)[-2:]] == [audited, "PRIVILEGED_ARTIFACT_UNKNOWN"]


# --- nothing returned, nothing recorded as delivered -------------------------------------------


def test_an_unreadable_payload_is_denied_before_the_budget_is_charged(home: Home) -> None:
    grant = home.issue()
    artifact = _render(home, 2)
    _shred(home, artifact)
    with pytest.raises(SecurityError) as caught:
        home.read(artifact, grant)
    assert caught.value.code == "PRIVILEGED_ARTIFACT_SHREDDED"
    assert [(e.outcome, e.code, e.bytes) for e in audit_events(home.records)] == [
        ("deny", "PRIVILEGED_ARTIFACT_SHREDDED", 0)
    ]
    stored = home.records.get_grant(grant.document.grant_id)
    assert (stored.reads, stored.bytes_used) == (0, 0)


@pytest.mark.parametrize(
    "failure", ["shredded after the check", "object gone after the check", "output write"]
)
def test_a_read_allowed_then_not_delivered_gets_a_follow_up_deny_event(
    home: Home, tmp_path, monkeypatch, failure: str
) -> None:
    import wf_pipeline.service.privileged as service

    grant = home.issue()
    artifact = _render(home, 2)
    size = len(TEXTS["rendered_prompt"].format(name="pkg", turn=TURNS[1]).encode())
    out = None
    real_check = service.payload_check

    def racing_check(store, records):
        check = real_check(store, records)

        def then_lost(artifact_id: str, artifact_class: str) -> None:
            check(artifact_id, artifact_class)  # available when checked ...
            if failure == "shredded after the check":  # ... and lost before the fetch
                _shred(home, artifact_id)
            elif failure == "object gone after the check":
                open_cas(home.settings.cas_url).delete(artifact_id)

        return then_lost

    monkeypatch.setattr(service, "payload_check", racing_check)
    if failure == "output write":
        out = tmp_path / "payload.bin"

        def failing_write(path, data, **options):
            raise SecurityError("PRIVILEGED_OUT_INVALID", f"cannot write {path}: No space left on device")

        monkeypatch.setattr(service, "write_private_file", failing_write)
    expected = {
        "shredded after the check": "CAS_KEY_DESTROYED",
        "object gone after the check": "CAS_NOT_FOUND",
        "output write": "PRIVILEGED_OUT_INVALID",
    }[failure]

    with pytest.raises(WfError) as caught:
        home.read(artifact, grant, out=out)

    assert caught.value.code == expected
    events = audit_events(home.records)
    assert [(e.outcome, e.code, e.bytes, e.artifact_ids) for e in events] == [
        ("allow", None, size, (artifact,)),
        ("deny", expected, 0, (artifact,)),
    ]
    assert events[1].grant_id == events[0].grant_id == grant.document.grant_id
    # Not refunded: the limits err on the safe side.
    assert home.records.get_grant(grant.document.grant_id).bytes_used == size
    assert verify_audit_chain(home.records).ok


@pytest.mark.skipif(os.geteuid() != 0, reason="only root passes the folder check of /proc")
def test_an_output_under_proc_as_root_is_audited_as_not_delivered(home: Home) -> None:
    with pytest.raises(SecurityError) as caught:
        home.read(_render(home, 2), home.issue(), out=Path("/proc/x"))
    assert caught.value.code == "PRIVILEGED_OUT_INVALID"
    # The folder check passes (root may write anywhere), the write fails after the decision.
    assert [(e.outcome, e.code) for e in audit_events(home.records)] == [
        ("allow", None),
        ("deny", "PRIVILEGED_OUT_INVALID"),
    ]


# --- the product's own files are never an output ------------------------------------------------


def test_an_output_in_the_home_is_refused_and_the_master_key_survives(home: Home, tmp_path) -> None:
    master = home.settings.home / "keys" / "master.key"
    before = master.read_bytes()
    link = tmp_path / "innocent.bin"
    link.symlink_to(master)
    grant = home.issue()
    for out in (master, home.settings.home / "records.db", link, home.settings.home / "new-file.bin"):
        with pytest.raises(SecurityError) as caught:
            home.read(_render(home), grant, out=out)
        assert caught.value.code == "PRIVILEGED_OUT_INVALID", out
    assert master.read_bytes() == before
    assert [e.code for e in audit_events(home.records)] == ["PRIVILEGED_OUT_INVALID"] * 4
    assert home.records.get_grant(grant.document.grant_id).reads == 0


@pytest.mark.parametrize("where", ["records", "cas", "master key", "audit key", "telemetry"])
def test_stores_configured_outside_the_home_are_refused_as_outputs(tmp_path, where: str) -> None:
    from wf_pipeline.service.privileged import check_out_of_home

    stores = tmp_path / "elsewhere"
    env = {
        "WF_HOME": str(tmp_path / "home"),
        "WF_RECORDS_URL": f"sqlite:///{stores / 'records' / 'wf.db'}",
        "WF_CAS_URL": (stores / "cas").as_uri(),
        "WF_MASTER_KEY_FILE": str(stores / "keys" / "master.b64"),
        "WF_AUDIT_KEY_FILE": str(stores / "keys" / "audit.b64"),
        "WF_TELEMETRY_URL": str(stores / "telemetry"),
    }
    settings = Settings.from_env(env)
    target = {
        "records": stores / "records" / "wf.db-wal",
        "cas": stores / "cas" / "objects" / "ab" / "cd",
        "master key": stores / "keys" / "master.b64",
        "audit key": stores / "keys" / "audit.b64",
        "telemetry": stores / "telemetry" / "audit_events" / "x.parquet",
    }[where]
    with pytest.raises(SecurityError) as caught:
        check_out_of_home(settings, target)
    assert caught.value.code == "PRIVILEGED_OUT_INVALID"
    # A neighbour of the stores is fine.
    assert check_out_of_home(settings, stores / "keys" / "payload.bin") == stores / "keys" / "payload.bin"


def test_a_grant_file_is_never_written_over_the_homes_state(home: Home) -> None:
    from wf_pipeline.service.grants import issue_grant_file

    master = home.settings.home / "keys" / "master.key"
    before = master.read_bytes()
    with pytest.raises(SecurityError) as caught:
        issue_grant_file(home.settings, **issue_options(home, out=master))
    assert caught.value.code == "PRIVILEGED_OUT_INVALID"
    assert master.read_bytes() == before
    assert home.records.list_grants() == []


# --- audit rows never keep a secret a caller typed in the wrong place ---------------------------

AWS_KEY = "AKIAQ3EGVN7XKDE4WQPA"
CANARY_PASSWORD = "Zebra9CanaryPw"


@pytest.mark.parametrize(
    ("artifact", "reason", "grant", "code"),
    [
        (AWS_KEY, f"password={CANARY_PASSWORD}", "valid", "PRIVILEGED_ARTIFACT_ID_INVALID"),
        (None, f"password={CANARY_PASSWORD}", "valid", "GRANT_REASON_NOT_ALLOWED"),
        (None, "incident_response", "secret scope", "GRANT_SIGNATURE_INVALID"),
        (None, "incident_response", "secret grant id", "GRANT_MALFORMED"),
    ],
)
def test_caller_values_out_of_shape_are_recorded_masked(
    home: Home, artifact: str | None, reason: str, grant: str, code: str
) -> None:
    signed = home.issue()
    content: SignedGrant | bytes = {
        "valid": signed,
        "secret scope": tampered(signed, scope={"workflow_id": WORKFLOW, "thread_id": AWS_KEY}),
        "secret grant id": canonical_json({"grant": {"grant_id": AWS_KEY}, "signature": "eA=="}),
    }[grant]

    with pytest.raises(SecurityError) as caught:
        home.read(artifact or _render(home), content, reason=reason)

    assert caught.value.code == code
    assert AWS_KEY not in caught.value.message and CANARY_PASSWORD not in caught.value.message
    engine = sa.create_engine(home.settings.records_url)
    with engine.connect() as conn:
        rows = [tuple(map(str, row)) for row in conn.exec_driver_sql("SELECT * FROM wf_audit_events")]
    engine.dispose()
    assert len(rows) == 1
    for secret in (AWS_KEY, CANARY_PASSWORD):
        assert not any(secret in value for value in rows[0])
    (event,) = audit_events(home.records)
    assert "[secret:" in json.dumps(event.to_dict())
    assert verify_audit_chain(home.records).ok


@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_an_output_name_too_long_is_a_code_not_a_traceback(home: Home, tmp_path) -> None:
    long_out = str(tmp_path / ("o" * 300))
    grant = home.grant_file(home.issue())
    read = wf(
        home, "privileged", "read", _render(home), "--identity", str(home.keys["alice"]),
        "--grant", str(grant), "--reason", "incident_response", "--out", long_out,
    )  # fmt: skip
    issued = wf(
        home, "grants", "issue", "--admin", str(home.keys["admin"]), "--grantee", "alice",
        "--capability", "prompt_payload_read", "--workflow", WORKFLOW, "--expires", "1h",
        "--reason", "incident_response", "--max-bytes", "1000", "--rate", "10/min", "--out", long_out,
    )  # fmt: skip
    for done in (read, issued):
        assert done.returncode == 1
        assert done.stderr.decode().startswith("PRIVILEGED_OUT_INVALID: "), done.stderr[-400:]
        assert b"Traceback" not in done.stderr
    assert [(e.outcome, e.code) for e in audit_events(home.records)] == [("deny", "PRIVILEGED_OUT_INVALID")]


# --- an output never replaces a file the same command reads -------------------------------------


def _same_file_as(original: Path, how: str, tmp_path: Path) -> Path:
    # The original itself, a symlink to it, or a hard link (another name, the same inode).
    if how == "same path":
        return original
    other = tmp_path / f"other-{how.replace(' ', '-')}{original.suffix}"
    if how == "symlink":
        other.symlink_to(original)
    else:
        os.link(original, other)
    return other


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_a_grant_file_is_never_written_over_the_admin_key_that_signs_it(
    home: Home, tmp_path, how: str
) -> None:
    from wf_pipeline.service.grants import issue_grant_file

    # Outside the home, where the home's own protection does not reach.
    admin_key = tmp_path / "ops.pem"
    admin_key.write_bytes(home.keys["admin"].read_bytes())
    before = admin_key.read_bytes()
    out = _same_file_as(admin_key, how, tmp_path)

    with pytest.raises(SecurityError) as caught:
        issue_grant_file(home.settings, **issue_options(home, admin_key_file=admin_key, out=out))

    assert caught.value.code == "PRIVILEGED_OUT_INVALID"
    assert "admin key file (--admin)" in caught.value.message and str(out) in caught.value.message
    assert admin_key.read_bytes() == before
    assert home.records.list_grants() == []


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
@pytest.mark.parametrize("which", ["grant", "identity"])
def test_a_payload_is_never_written_over_the_grant_or_key_file_of_the_read(
    home: Home, tmp_path, how: str, which: str
) -> None:
    grant = home.issue()
    files = {"grant": tmp_path / "grant.json", "identity": tmp_path / "alice.pem"}
    files["grant"].write_bytes(grant.file_bytes())
    files["identity"].write_bytes(home.keys["alice"].read_bytes())
    before = {name: path.read_bytes() for name, path in files.items()}
    out = _same_file_as(files[which], how, tmp_path)

    with pytest.raises(SecurityError) as caught:
        read_privileged_to(
            home.settings,
            _render(home),
            out=out,
            identity_file=files["identity"],
            grant_file=files["grant"],
            reason="incident_response",
            at_ms=NOW,
        )

    assert caught.value.code == "PRIVILEGED_OUT_INVALID"
    assert f"--{which}" in caught.value.message
    assert {name: path.read_bytes() for name, path in files.items()} == before
    # Denied before the decision: audited as such, nothing charged.
    assert [(e.outcome, e.code) for e in audit_events(home.records)] == [("deny", "PRIVILEGED_OUT_INVALID")]
    assert home.records.get_grant(grant.document.grant_id).reads == 0


def test_a_new_identity_never_replaces_the_key_that_approves_it(home: Home, tmp_path) -> None:
    from wf_pipeline.service.grants import create_identity_file

    approver = tmp_path / "ops.pem"
    approver.write_bytes(home.keys["admin"].read_bytes())
    before = approver.read_bytes()

    with pytest.raises(SecurityError) as caught:
        create_identity_file(home.settings, "ops", admin=True, out_dir=tmp_path, approved_by=approver)

    assert caught.value.code == "IDENTITY_EXISTS"
    assert approver.read_bytes() == before
    assert home.records.get_identity("ops") is None


@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_the_wf_commands_refuse_an_out_that_is_their_own_key_or_grant(home: Home, tmp_path) -> None:
    ops = tmp_path / "ops.pem"
    ops.write_bytes(home.keys["admin"].read_bytes())
    issue = (
        "grants", "issue", "--admin", str(ops), "--grantee", "alice",
        "--capability", "prompt_payload_read", "--workflow", WORKFLOW, "--expires", "1h",
        "--reason", "incident_response", "--max-bytes", "1000", "--rate", "10/min",
    )  # fmt: skip
    over_key = wf(home, *issue, "--out", str(ops))
    assert over_key.returncode == 1
    assert over_key.stderr.decode().startswith("PRIVILEGED_OUT_INVALID: "), over_key.stderr[-400:]
    assert load_private_key(ops) is not None and home.records.list_grants() == []

    grant_file = tmp_path / "grant.json"
    assert wf(home, *issue, "--out", str(grant_file)).returncode == 0
    grant_bytes = grant_file.read_bytes()
    read = (
        "privileged",
        "read",
        _render(home),
        "--identity",
        str(home.keys["alice"]),
        "--reason",
        "incident_response",
    )
    over_grant = wf(home, *read, "--grant", str(grant_file), "--out", str(grant_file))
    assert over_grant.returncode == 1
    assert over_grant.stderr.decode().startswith("PRIVILEGED_OUT_INVALID: "), over_grant.stderr[-400:]
    assert grant_file.read_bytes() == grant_bytes


@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_wf_refuses_a_budget_or_count_in_unicode_digits(home: Home, tmp_path) -> None:
    base = (
        "grants", "issue", "--admin", str(home.keys["admin"]), "--grantee", "alice",
        "--capability", "prompt_payload_read", "--workflow", WORKFLOW, "--reason", "incident_response",
        "--rate", "10/min", "--out", str(tmp_path / "grant.json"),
    )  # fmt: skip
    for budget in ("\u0661\u0660\u0660\u0660", "1_000", "\uff11"):
        done = wf(home, *base, "--expires", "1h", "--max-bytes", budget)
        assert done.returncode == 2 and b"--max-bytes" in done.stderr, done.stderr[-400:]
    zero = wf(home, *base, "--expires", "1h", "--max-bytes", "0")
    assert zero.returncode == 1 and zero.stderr.decode().startswith("GRANT_MALFORMED: ")
    arabic_hour = wf(home, *base, "--expires", "\u0661h", "--max-bytes", "1000")
    assert arabic_hour.returncode == 1 and arabic_hour.stderr.decode().startswith("GRANT_MALFORMED: ")
    assert home.records.list_grants() == [] and not (tmp_path / "grant.json").exists()


@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_wf_identity_create_prints_where_the_key_file_went(home: Home, tmp_path) -> None:
    # A path after "private key:" reads like a credential to the output filter and was masked.
    done = wf(home, "identity", "create", "gina", "--out", str(tmp_path / "keys"))
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert str(tmp_path / "keys" / "gina.pem") in text and "[secret:" not in text, text
    assert "PRIVATE KEY" not in text
