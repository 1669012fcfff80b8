"""The secret detector and masked view (`wf_pipeline.security.redaction`) and the redaction presets.

Every secret is made at run time (random fake keys, a private key generated with
`cryptography`), so nothing secret-shaped is committed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import threading
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from detect_secrets.settings import get_settings, transient_settings
from e2e_support import REPO_ROOT, SAMPLE_REPO

from wf_pipeline.cas.memory import MemoryArtifactStore
from wf_pipeline.errors import WfError
from wf_pipeline.metadata.canonical import derived_id, digest_text
from wf_pipeline.metadata.payloads import ContextFile, ContextPayload, ContextTarget
from wf_pipeline.profiles import Layer, load_catalog
from wf_pipeline.profiles.redaction import (
    MASKABLE_CLASSES,
    STANDARD_PRESET,
    redaction_presets,
    resolve_redaction,
)
from wf_pipeline.records import open_record_store
from wf_pipeline.runtime.masking import audit_unmasked_context, context_view
from wf_pipeline.security.audit import audit_events
from wf_pipeline.security.audit_key import AuditKey
from wf_pipeline.security.redaction import (
    PLACEHOLDER_PATTERN,
    SecretFinding,
    find_secrets,
    mask_secrets,
    masked_text,
)
from wf_pipeline.settings import Settings
from wf_pipeline.tree import build_context, scan_tree
from wf_pipeline.workflows.docs_writer.evidence import claim_evidence
from wf_pipeline.workflows.docs_writer.payloads import Claim
from wf_pipeline.workflows.docs_writer.sink import README_NAME, README_SINK

ALNUM = string.ascii_letters + string.digits
KEY = AuditKey(b"k" * 32, "test")


def _fake(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def aws_key() -> str:
    return "AKIA" + _fake(string.ascii_uppercase + string.digits, 16)


def github_token() -> str:
    return "ghp_" + _fake(ALNUM, 36)


def slack_token() -> str:
    return f"xoxb-{_fake(string.digits, 12)}-{_fake(string.digits, 13)}-{_fake(string.ascii_lowercase + string.digits, 24)}"


def jwt() -> str:
    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = part(json.dumps({"sub": _fake(ALNUM, 10)}).encode())
    return f"{header}.{claims}.{part(secrets.token_bytes(32))}"


def pem_keys() -> dict[str, str]:
    """Private keys in the PEM flavours tools write: PKCS#8, traditional EC, OpenSSH."""
    return {
        "pkcs8": rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode(),
        "ec": ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode(),
        "openssh": ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode(),
    }


def _masked_once(text: str, value: str, kind: str, *, filename: str | None = None) -> str:
    """``text`` masked: ``value`` gone, one finding of ``kind`` exactly over it, masking idempotent."""
    findings = find_secrets(text, filename=filename)
    assert [f.kind for f in findings] == [kind], findings
    (finding,) = findings
    assert text[finding.start : finding.end] == value
    masked = mask_secrets(text, filename=filename)
    assert value not in masked
    assert finding.placeholder in masked
    assert PLACEHOLDER_PATTERN.fullmatch(finding.placeholder)
    assert mask_secrets(masked, filename=filename) == masked
    assert find_secrets(masked, filename=filename) == []
    return masked


# --- one test per kind -----------------------------------------------------------------


def test_a_cloud_access_key_is_masked_wherever_it_stands() -> None:
    key = aws_key()
    for text in (f'client = boto3.client("s3", aws_access_key_id="{key}")\n', f"key {key} in prose\n"):
        masked = _masked_once(text, key, "AWS Access Key", filename="upload.py")
        assert masked.startswith(text.split(key)[0])  # what surrounds the value is kept


def test_github_and_slack_tokens_and_jwts_are_masked() -> None:
    for value, kind in (
        (github_token(), "GitHub Token"),
        (slack_token(), "Slack Token"),
        (jwt(), "JSON Web Token"),
    ):
        _masked_once(f"headers = {{'Authorization': 'Bearer {value}'}}\n", value, kind, filename="api.py")


@pytest.mark.parametrize("flavour", ["pkcs8", "ec", "openssh"])
def test_a_private_key_block_is_masked_whole(flavour: str) -> None:
    pem = pem_keys()[flavour]
    text = f"# deploy key\n{pem}after = 1\n"
    masked = _masked_once(text, pem.rstrip("\n"), "Private Key", filename="deploy_key")
    assert masked.startswith("# deploy key\n[secret:private-key]") and masked.endswith("\nafter = 1\n")
    # Quoted in JSON (a log line, a payload), the escaped block goes whole too.
    quoted = json.dumps({"key": pem})
    (finding,) = find_secrets(quoted)
    assert mask_secrets(quoted) == json.dumps({"key": finding.placeholder + "\n"})


def test_a_private_key_in_base64_is_masked_across_its_wrapped_lines() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encoded = base64.b64encode(pem).decode()
    wrapped = "\n    ".join(encoded[i : i + 60] for i in range(0, len(encoded), 60))
    text = f"apiVersion: v1\nkind: Secret\ndata:\n  tls.key: {wrapped}\n  tls.crt: Zm9v\n"
    masked = mask_secrets(text, filename="secret.yaml")
    assert all(encoded[i : i + 60] not in masked for i in range(0, len(encoded), 60))
    assert "tls.crt: Zm9v" in masked
    # A certificate encoded the same way is no secret.
    certificate = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n").decode()
    assert find_secrets(f"ca.crt: {certificate}\n", filename="notes.txt") == []


def test_a_putty_key_file_is_masked_to_its_mac_line() -> None:
    body = base64.b64encode(secrets.token_bytes(48)).decode()
    putty = (
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\n"
        f"Public-Lines: 1\n{base64.b64encode(secrets.token_bytes(32)).decode()}\n"
        f"Private-Lines: 1\n{body}\nPrivate-MAC: {secrets.token_hex(32)}"
    )
    _masked_once(f"{putty}\n", putty, "Private Key", filename="deploy.ppk")


def test_a_password_in_a_url_is_masked_and_the_url_kept() -> None:
    password = "Pw" + _fake(ALNUM, 12)
    text = f'DATABASE_URL = "postgresql://app:{password}@db.internal:5432/app"\n'
    masked = _masked_once(text, password, "Basic Auth Credentials", filename="settings.py")
    assert "postgresql://app:[secret:basic-auth-credentials]" in masked and "@db.internal:5432/app" in masked


@pytest.mark.parametrize("name", [".env", "config.env", ".env.production"])
def test_env_file_passwords_and_keys_are_masked_and_plain_settings_kept(name: str) -> None:
    password = "pw-" + _fake(ALNUM, 12)
    token = secrets.token_urlsafe(32)  # 43 characters of base64url: over detect-secrets' limit
    text = f"DB_PASSWORD={password}\nexport API_TOKEN={token}\nDEBUG=false\nPORT=8080\nHOST=db.internal\n"
    findings = find_secrets(text, filename=name)
    assert [text[f.start : f.end] for f in findings] == [password, token]
    masked = mask_secrets(text, filename=name)
    assert password not in masked and token not in masked
    assert masked.endswith("\nDEBUG=false\nPORT=8080\nHOST=db.internal\n")


def test_config_quoted_in_markdown_is_read_as_its_file_type() -> None:
    env_password, yaml_password = "pw-" + _fake(ALNUM, 12), "yml-" + _fake(ALNUM, 12)
    readme = (
        "# pkg\n\nSet the variables:\n\n```\n"
        f"DB_PASSWORD={env_password}\nPORT=8080\n```\n\n```yaml\nupload:\n  password: {yaml_password}\n```\n\n"
        "Then run `make PORT=8080`.\n"
    )
    for name in ("README.md", None):  # a head frame has no file name
        masked = mask_secrets(readme, filename=name)
        assert env_password not in masked and yaml_password not in masked
        assert "PORT=8080\n" in masked and masked.endswith("Then run `make PORT=8080`.\n")


def test_yaml_settings_passwords_are_masked() -> None:
    password = "s3-" + _fake(ALNUM, 10)
    text = f"station: north\nupload:\n  password: {password}\n  retries: 3\n"
    _masked_once(text, password, "Secret Keyword", filename="settings.yaml")


def test_the_same_value_gives_the_same_placeholder_and_it_holds_no_digest_of_the_value() -> None:
    token = github_token()
    findings = find_secrets(f"a = '{token}'\nb = '{token}'\n")
    assert (
        len(findings) == 2 and findings[0].placeholder == findings[1].placeholder == "[secret:github-token]"
    )
    assert findings[0].digest == digest_text(token)
    assert isinstance(findings[0], SecretFinding)
    # A weak password cannot be confirmed from what is published: no part of its hash is.
    masked = mask_secrets("DB_PASSWORD=Summer2024!\n", filename=".env")
    assert masked == "DB_PASSWORD=[secret:secret-keyword]\n"
    assert hashlib.sha256(b"Summer2024!").hexdigest()[:8] not in masked


# --- no false positives -------------------------------------------------------------------


def test_product_ids_digests_and_uuids_are_not_secrets() -> None:
    ids = [
        digest_text("a README"),
        derived_id("thread", "docs_writer_thread_v1", "node", "frame"),
        derived_id("node", "pkg/mod.py"),
        str(uuid.uuid4()),
        uuid.uuid4().hex[:12],  # a migration revision
    ]
    text = json.dumps({"artifact_id": ids[0], "thread_id": ids[1], "node_id": ids[2], "run_id": ids[3]})
    text += f'\nrevision = "{ids[4]}"\ncontext_digest = "{ids[0]}"\n'
    assert find_secrets(text, filename="x.py") == []
    assert find_secrets(text) == []


def test_the_sample_tree_and_the_product_source_have_nothing_masked() -> None:
    roots = [SAMPLE_REPO, REPO_ROOT / "wf_pipeline" / "runtime", REPO_ROOT / "wf_pipeline" / "metadata"]
    scanned = 0
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                try:
                    text = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    continue
                scanned += 1
                assert find_secrets(text, filename=path.name) == [], path
    assert scanned > 30


# --- global state and threads ------------------------------------------------------------


def test_detect_secrets_global_settings_are_never_read_or_changed() -> None:
    before = get_settings().json()
    token = github_token()
    assert find_secrets(f"t = '{token}'\n")
    assert get_settings().json() == before
    # Another part of the process may configure detect-secrets with no plugin at all:
    # the detector does not follow it.
    with transient_settings({"plugins_used": []}):
        assert [f.kind for f in find_secrets(f"t = '{token}'\n")] == ["GitHub Token"]


def test_many_threads_get_the_same_findings() -> None:
    text = "\n".join(
        f"k{i} = '{value}'" for i, value in enumerate([aws_key(), github_token(), slack_token(), jwt()])
    )
    expected = find_secrets(text, filename="m.py")
    results: list[list[SecretFinding]] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(20):
            found = find_secrets(text, filename="m.py")
            with lock:
                results.append(found)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(results) == 160 and all(found == expected for found in results)
    assert len(expected) == 4


# --- the masked view in context building, the evidence gate and the README sink ---------


def test_context_payloads_show_files_through_the_masked_view(tmp_path: Path) -> None:
    token = github_token()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "client.py").write_text(f'TOKEN = "{token}"\n\ndef ping():\n    return 1\n')
    (tmp_path / "pkg" / ".env").write_text("DB_PASSWORD=hunter2-" + _fake(ALNUM, 8) + "\n")
    scan = scan_tree(tmp_path)
    view = context_view(resolve_redaction(None, workflow_id="w"))
    payload = build_context(scan, "pkg", {}, view=view)
    text = json.dumps(payload.to_json())
    assert token not in text and "hunter2-" not in text
    assert view.count == 2
    assert payload.file("pkg/client.py").language == "python"
    opted_out = resolve_redaction({"unmasked_classes": ["context_payload"]}, workflow_id="w")
    assert context_view(opted_out) is None
    assert token in json.dumps(build_context(scan, "pkg", {}, view=None).to_json())


@pytest.mark.parametrize(
    ("preset", "level"), [("debug", "WARNING"), ("standard", "INFO"), ("strict", "INFO")]
)
def test_what_masking_logs_follows_the_preset(tmp_path: Path, caplog, preset: str, level: str) -> None:
    token = github_token()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "client.py").write_text(f'TOKEN = "{token}"\n')
    view = context_view(resolve_redaction({"preset": preset}, workflow_id="w"))
    build_context(scan_tree(tmp_path), "pkg", {}, view=view)
    with caplog.at_level("INFO", logger="wf_pipeline.runtime.masking"):
        view.report("pkg", "node:" + "1" * 64)
    records = [r for r in caplog.records if r.name == "wf_pipeline.runtime.masking"]
    assert records and {r.levelname for r in records} == {level}
    assert token not in caplog.text
    # debug names each file and its placeholders; strict names the node, not the path.
    assert ("client.py: [secret:github-token]" in caplog.text) == (preset == "debug")
    assert ("context of pkg:" in caplog.text) == (preset != "strict")


def _context(name: str, text: str) -> ContextPayload:
    return ContextPayload(
        target=ContextTarget(path="pkg", name="pkg", node_id="node:" + "0" * 64),
        files=(ContextFile(path=f"pkg/{name}", name=name, size=len(text), text=text),),
    )


def test_evidence_holding_a_secret_never_verifies_and_its_placeholder_does() -> None:
    key = aws_key()
    line = f"AWS_ACCESS_KEY_ID={key}"
    unmasked = _context(".env", line + "\n")
    claim = Claim(claim_id="c1", statement="The key is set.", evidence_path="pkg/.env", evidence_quote=line)
    assert claim_evidence(claim, unmasked).quote_found is False  # even when the model saw it
    masked_line = masked_text(line + "\n", ".env").strip()
    placeholder_claim = claim.model_copy(update={"evidence_quote": masked_line})
    assert claim_evidence(placeholder_claim, unmasked).quote_found is True
    assert claim_evidence(placeholder_claim, _context(".env", masked_line + "\n")).quote_found is True


class _SinkEnv:
    """What a sink reads of the runtime: its CAS and its set of warnings already given."""

    def __init__(self) -> None:
        self.cas = MemoryArtifactStore()
        self.warned: set[str] = set()


def test_the_readme_sink_never_writes_a_secret(tmp_path: Path) -> None:
    token, key = github_token(), aws_key()
    env = _SinkEnv()
    ref = env.cas.put_text(
        f"# pkg\n\nCalls the API with `{token}`.\n\n```\nAWS_ACCESS_KEY_ID={key}\n```\n",
        artifact_class="output",
    )
    written = README_SINK.write(env, ref.artifact_id, tmp_path / "pkg", overwrite=False, root=tmp_path)
    assert written == tmp_path / "pkg" / README_NAME
    text = written.read_text()
    assert token not in text and key not in text
    assert "[secret:github-token]" in text and text.startswith("# pkg\n")


# --- presets ----------------------------------------------------------------------------------


def test_the_shipped_presets_and_the_default() -> None:
    presets = redaction_presets()
    assert set(presets) == {"strict", "standard", "debug"}
    assert presets["strict"]["hash_free_text"] and not presets["strict"]["allow_unmasked"]
    default = resolve_redaction(None, workflow_id="w")
    assert default.preset == STANDARD_PRESET and default.unmasked_classes == frozenset()
    assert default.masks("context_payload")
    debug = resolve_redaction({"preset": "debug", "unmasked_classes": ["context_payload"]}, workflow_id="w")
    assert debug.log_findings and not debug.masks("context_payload")
    assert MASKABLE_CLASSES == ("context_payload",)


@pytest.mark.parametrize(
    "block",
    [
        {"preset": "nope"},
        {"preset": "strict", "unmasked_classes": ["context_payload"]},
        {"unmasked_classes": ["output"]},  # written outputs are always masked
        {"unmasked_classes": "context_payload"},
        {"hash_free_text": False},  # a preset's flags are not set per profile
    ],
)
def test_bad_redaction_blocks_are_refused(block: dict) -> None:
    with pytest.raises(WfError) as caught:
        resolve_redaction(block, workflow_id="w", path="p.yaml")
    assert caught.value.code == "PROFILE_REDACTION_INVALID"
    assert caught.value.details["field"].startswith("redaction.")


def test_the_shipped_docs_writer_profile_names_its_preset() -> None:
    settings = Settings.from_env({"WF_HOME": "/nonexistent-wf-home", "WF_BUILTIN_ROOT": str(REPO_ROOT)})
    loaded = load_catalog([Layer("builtin", settings.builtin_root)]).get("docs_writer_thread_v1")
    assert loaded.profile.redaction == {"preset": "standard"}
    assert loaded.redaction.preset == "standard" and loaded.redaction.masks("context_payload")


# --- the opt-out is audited, and fails closed ----------------------------------------------


def test_an_unmasked_context_is_audited_and_fails_when_the_audit_cannot_be_written(tmp_path: Path) -> None:
    policy = resolve_redaction({"unmasked_classes": ["context_payload"]}, workflow_id="w", layer="workspace")
    context = digest_text("a context")
    path = tmp_path / "records.db"
    with open_record_store(f"sqlite:///{path}") as store:
        audit_unmasked_context(
            store,
            policy,
            audit_key=KEY,
            workflow_id="w",
            thread_id="thread:1",
            node_id="node:1",
            artifact_id=context,
            size=9,
        )
        (event,) = audit_events(store)
    assert (event.reason_code, event.outcome, event.artifact_ids, event.bytes) == (
        "REDACTION_OPT_OUT",
        "allow",
        (context,),
        9,
    )
    assert event.policy_version == "w@workspace+preset:standard"
    assert event.seal == KEY.seal(event.event_hash) and event.seal_key_id == KEY.key_id
    with open_record_store(f"sqlite:///file:{path}?mode=ro&uri=true") as read_only:
        with pytest.raises(WfError) as caught:
            audit_unmasked_context(
                read_only,
                policy,
                audit_key=KEY,
                workflow_id="w",
                thread_id="thread:2",
                node_id="node:2",
                artifact_id=context,
                size=9,
            )
    assert caught.value.code == "AUDIT_UNAVAILABLE"


# --- credential keywords anywhere, credential files, more token formats -------------------


def _literal() -> str:
    """A literal credential: letters and digits, 16 characters (always holds both)."""
    return "Qm7" + _fake(ALNUM, 12) + "x9"


def _values(text: str, *, filename: str | None = None) -> list[str]:
    return [text[f.start : f.end] for f in find_secrets(text, filename=filename)]


@pytest.mark.parametrize("filename", [None, "db.py", "README.md", "notes.txt"])
def test_a_password_in_prose_or_a_docstring_is_masked(filename: str | None) -> None:
    first, second = _literal(), _literal()
    text = (
        f'"""Database access. Log in as admin with password={first} on db.internal."""\n\n'
        "def connect() -> None:\n"
        f'    """Connect; the database password is ``password={second}``."""\n'
    )
    assert _values(text, filename=filename) == [first, second]
    masked = mask_secrets(text, filename=filename)
    assert first not in masked and second not in masked and "on db.internal." in masked
    assert mask_secrets(masked, filename=filename) == masked


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "api_token",
        "access_key",
        "secret_key",
        "auth_token",
        "client_secret",
        "apiKey",
        "apiToken",
        "API_TOKEN",
        "DB_PASSWORD",
        "Password",
    ],
)
@pytest.mark.parametrize("separator", ["=", ": ", " = "])
def test_a_credential_keyword_value_is_masked_anywhere_in_a_line(name: str, separator: str) -> None:
    value = _literal()
    text = f"Before you start, set {name}{separator}{value} and run the job.\n"
    assert _values(text) == [value]
    assert _values(text, filename="guide.md") == [value]


def test_a_value_that_looks_like_a_type_or_a_path_but_is_not_one_is_masked() -> None:
    for value in ("Summer2024x", "Qm7v.Lx2pRt9s", "Xk4mPq9z.", "x25519Secret9"):
        text = f"Use password: {value}, then log in.\n"
        assert _values(text) == [value.rstrip(".")], text


@pytest.mark.parametrize(
    "text",
    [
        "password=None and token=null, api_key=true, secret=false\n",
        'token = get_token()\npassword = os.environ["DB_PASSWORD"]\n',
        "def login(user: str, password: str, token: str | None = None) -> None:\n",
        "api_key = settings.api_key\nAPI_KEY_ENV = OPENAI_API_KEY\n",
        "password=${DB_PASSWORD} token={{ vault_token }} secret=$SECRET pwd=<your-password>\n",
        'token = ""\npassword=hunter\nmax_tokens=1024\nsecret=abcdefgh\n',
        "Pass the token=tok_name to the call; the password: see the vault.\n",
        'password_field = "password"\nTOKEN_HEADER = "token"\n',
        "def sign(private_key: PKCS7PrivateKeyTypes, token: X25519PrivateKey) -> None:\n",
        "MLKEM768X25519PrivateKey = rust_openssl.hpke.MLKEM768X25519PrivateKey\n",
        "def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:\n",
        "login(user, password=pw_value2, token=access_token_v2)\n",
        "cat secret_key | base64sum2024 > out\n",
        "Use `--token TOKEN` to pass it. The token is valid for an hour. The password is required.\n",
        "Pass --password-file secrets/db.txt or --api-key $API_KEY or --token ${TOKEN}.\n",
        "ENV PASSWORD_FILE /run/secrets/db\nENV DB_PASSWORD ${DB_PASSWORD}\nENV TOKEN_URL https://x\n",
        "env:\n  - name: PASSWORD_FILE\n    value: /run/secrets/pw\n  - name: DB_PASSWORD\n    valueFrom: {}\n",
        '[{"name": "DB_PASSWORD", "value": "${DB_PASSWORD}"}, {"name": "LOG_LEVEL", "value": "debug"}]\n',
        '{"name": "API_TOKEN", "value": token_from(vault)}\n',
        "the password is ``password=${DB_PASSWORD}``\n",
        "Return the object identified by hexsha2024 from the user identified by name.\n",
        "# the last token was position-only, but this one isn't\n",
        "#  define XXH3_64bits_withSecret XXH_NAME2(XXH_NAMESPACE, XXH3_64bits_withSecret)\n#  define kSecret XXH3_kSecret\n",
        'if key not in ("token", "placeable", "auto_delim"):\n__slots__ = ("next_token", "position")\n',
        "if credentials._credentials is _insecure_channel2_credentials:\n",
        "The raw bytes of the private key (64-byte seed).\n",
        "fs = fsspec.filesystem('gist', url='gist://:TOKEN@gist_id/file.txt')\n",
        'echo "::error title=Missing Secret::ANTHROPIC_API_KEY must be configured"\n',
        "created reader gina (sha256:abc); private key: /srv/ops/keys/gina2024.pem\n",
        "password: >\n  ${DB_PASSWORD}\n",
        "API_KEY_HEADER = 'X-Api-Key'\npassword_prompt = 'Enter password'\n",
    ],
)
def test_keyword_values_that_name_no_literal_are_kept(text: str) -> None:
    assert find_secrets(text, filename="app.py") == []
    assert find_secrets(text) == []


def _cases() -> list[tuple[str, str, str]]:
    """(file name, text, planted value): the shapes a credential takes in source and configuration."""
    token32, value = _fake(ALNUM, 31) + "7", _literal()
    bearer = _fake(ALNUM, 38) + "q7"
    aws_secret = _fake(ALNUM + "/+", 38) + "a1"
    # AWS secret keys are base64: one may begin with "/" and still be no file's path.
    slash_secret = "/" + _fake(ALNUM, 30) + "7q/" + _fake(ALNUM, 6)
    return [
        (
            "credentials",
            f"[default]\naws_access_key_id = x\naws_secret_access_key = {slash_secret}\n",
            slash_secret,
        ),
        ("pyproject.toml", f'[tool.publish]\ntoken = "{token32}"\n', token32),
        ("client.py", f'API_TOKEN = "{token32}"\n', token32),
        ("client.go", f'package client\n\nconst apiToken = "{token32}"\n', token32),
        ("client.ts", f'export const apiKey: string = "{token32}";\n', token32),
        ("settings.py", f'API_TOKEN: str = "{token32}"\n', token32),
        ("Dockerfile", f"FROM python:3.11\nENV API_KEY={value}\n", value),
        ("Dockerfile", f"FROM python:3.11\nARG DB_PASSWORD={value}\n", value),
        ("deploy.sh", f'curl -H "Authorization: Bearer {bearer}" https://api.example.com\n', bearer),
        (".netrc", f"machine api.example.com\n  login deploy\n  password {value}\n", value),
        ("notes.txt", f"machine api.example.com login deploy password {value}\n", value),
        (".pgpass", f"db.internal:5432:app:deploy:{value}\n", value),
        ("setup.md", f"Add `db.internal:5432:*:deploy:{value}` to the file.\n", value),
        (
            "credentials",
            f"[default]\naws_access_key_id = x\naws_secret_access_key = {aws_secret}\n",
            aws_secret,
        ),
        (
            "Db.cs",
            f'var cs = "Server=db;Database=app;User Id=deploy;Password={value};";\n',
            value,
        ),
        ("App.config", f"<settings>\n  <password>{value}</password>\n</settings>\n", value),
        ("README.md", f"Log in with `password: {value}` first.\n", value),
        ("README.md", f"| name | value |\n|---|---|\n| `DB_PASSWORD` | `{value}` |\n", value),
        ("README.md", f"| password | {value} |\n", value),
        ("README.md", f"```netrc\nmachine h\nlogin u\npassword {value}\n```\n", value),
        # A value set off by white space: Docker's legacy ENV form, a flag, prose.
        ("Dockerfile", f"FROM python:3.11\nENV DB_PASSWORD {value}\n", value),
        ("Dockerfile", 'FROM python:3.11\nENV API_KEY "changeme now"\n', "changeme now"),
        ("Dockerfile", "FROM python:3.11\nENV DB_PASSWORD changeme\n", "changeme"),
        ("deploy.sh", f"mysql --password {value} -u root\n", value),
        ("deploy.sh", f'app --api-key "{value}" serve\n', value),
        ("README.md", f"The admin password is {value}, change it.\n", value),
        ("notes.txt", f"the deploy token was `{value}`.\n", value),
        # A credential named in one field of a mapping and given in another.
        ("deploy.yaml", f'env:\n  - name: DB_PASSWORD\n    value: "{value}"\n', value),
        ("deploy.yaml", "env:\n  - name: API_KEY\n    value: changeme\n", "changeme"),
        ("compose.yaml", f"environment:\n  - name: stripeSecret\n    value: {value}\n", value),
        ("task.json", f'[{{"name": "DB_PASSWORD", "value": "{value}"}}]', value),
        ("stack.json", f'[{{"ParameterKey": "MasterUserPassword", "ParameterValue": "{value}"}}]', value),
        # Prose that gives a password without "=", and names that end in a bare "pass".
        ("admin.py", f'"""Log in as root with password {value} on the host."""\n', value),
        ("notes.md", "The staging password is `tangerine`.\n", "tangerine"),
        ("notes.md", "the password is hunter2\n", "hunter2"),
        ("Dockerfile", f"ENV DB_PASS {value}\n", value),
        ("db.properties", "db.pass=propShortPw\n", "propShortPw"),
        ("settings.yaml", "db:\n  pass: yamlshortpw\n", "yamlshortpw"),
        ("redis.conf", f"requirepass {value}\n", value),
        ("settings.xml", "<password>mvnPassCanary</password>\n", "mvnPassCanary"),
        ("conn.cs", 'var cs = "Server=x;Database=y;User Id=sa;Pwd=abcdefgh;";\n', "abcdefgh"),
        # Command lines, SQL, code and URL shapes.
        ("deploy.sh", f"mysql -u root -p{value} app\n", value),
        ("deploy.sh", f"curl -u admin:{value} https://api.example.com\n", value),
        ("init.sql", f"ALTER USER app IDENTIFIED BY {value};\n", value),
        ("init.sql", "CREATE USER app WITH PASSWORD 'pgCanaryPw';\n", "pgCanaryPw"),
        ("client.py", f'requests.get(url, auth=("deploy", "{value}"))\n', value),
        ("wp-config.php", f"define('DB_PASSWORD', '{value}');\n", value),
        ("cache.py", "url = 'redis://:redisOnlyPw@cache:6379/0'\n", "redisOnlyPw"),
        ("notes.md", f"https://acct.blob.core.windows.net/c?sv=2020&sig={value}%3D\n", value),
        ("notes.md", f"client secret GOCSPX-{value}{value}\n", value),
        ("notes.md", "Authorization: Basic dXNlcjpwYXNz\n", "dXNlcjpwYXNz"),
        (
            "config.json",
            '{"auths": {"r.example.com": {"auth": "dXNlcjpwYXNzd29yZA=="}}}',
            "dXNlcjpwYXNzd29yZA",
        ),
        ("hooks.py", f'"""The webhook secret is whsec_{value} for the shop."""\n', value),
        (
            "errors.py",
            '"""Errors go to https://f00dbabe1234cafe5678@o123.ingest.sentry.io/42."""\n',
            "f00dbabe1234cafe5678",
        ),
        ("settings.yaml", f"db:\n  password: >\n    {value}\n  user: app\n", value),
        ("settings.yaml", "replica_password: |-\n  changeme please\nother: 1\n", "changeme please"),
        (".htpasswd", "admin:$apr1$abcdefgh$ZyxWvuTsrqPONMLkjihgf.\n", "ZyxWvuTsrqPONMLkjihgf"),
    ]


@pytest.mark.parametrize("index", range(len(_cases())))
def test_credentials_of_source_and_configuration_files_are_masked(index: int) -> None:
    filename, text, value = _cases()[index]
    masked = mask_secrets(text, filename=filename)
    assert value not in masked, (filename, masked)
    assert "[secret:" in masked
    assert mask_secrets(masked, filename=filename) == masked


def _tokens() -> list[tuple[str, str]]:
    """(kind, value) of token formats detect-secrets' own plugins do not know."""
    bech32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"
    return [
        ("GitHub Token", f"github_pat_{_fake(ALNUM, 22)}_{_fake(ALNUM, 59)}"),
        ("Hugging Face Token", "hf_" + _fake(string.ascii_letters, 34)),
        ("PyPI Token", "pypi-AgEIcHlwaS5vcmcCJ" + _fake(ALNUM + "-_", 80)),
        ("PyPI Token", "pypi-AgEOaW5kZXguZXhhbXBsZS5vcmc" + _fake(ALNUM + "-_", 60)),
        ("Anthropic API Key", "sk-ant-api03-" + _fake(ALNUM + "-_", 93) + "AA"),
        ("Age Secret Key", "AGE-SECRET-KEY-1" + _fake(bech32, 58)),
        ("OpenAI Token", "sk-proj-" + _fake(ALNUM + "-_", 60) + "A1"),
    ]


@pytest.mark.parametrize("index", range(len(_tokens())))
def test_token_formats_beyond_detect_secrets_plugins_are_masked(index: int) -> None:
    kind, value = _tokens()[index]
    # In prose, unquoted and named by nothing: the format alone tells.
    masked = _masked_once(f"use {value} here\n", value, kind)
    assert masked.startswith("use [secret:")


def test_a_discord_webhook_url_keeps_its_id_and_loses_its_token() -> None:
    token = _fake(ALNUM + "-_", 66) + "a1"
    text = f"post to https://discord.com/api/webhooks/123456789012345678/{token}\n"
    masked = _masked_once(text, token, "Discord Webhook")
    assert "https://discord.com/api/webhooks/123456789012345678/[secret:discord-webhook]" in masked


def test_a_value_that_only_starts_with_a_placeholder_is_masked() -> None:
    real = _literal()
    for text in (f"DB_PASSWORD=[secret:x:12345678]{real}\n", f'token = "[secret:a:0badf00d]{real}"\n'):
        masked = mask_secrets(text, filename=".env")
        assert real not in masked, masked
        assert mask_secrets(masked, filename=".env") == masked
    # A whole placeholder is never found again.
    assert find_secrets("DB_PASSWORD=[secret:secret-keyword:0badf00d]\n", filename=".env") == []
    # Nor one whose "[" a Markdown renderer escaped.
    for escaped in (
        "the password is password=\\[secret:secret-keyword:0badf00d].\n",
        "the password is password=\\[secret:secret-keyword:0badf00d\\].\n",
    ):
        assert find_secrets(escaped) == [] and find_secrets(escaped, filename="README.md") == []


def test_quoted_digests_and_integrity_hashes_are_not_secrets() -> None:
    empty_sha256 = hashlib.sha256(b"").hexdigest()
    text = (
        f'EMPTY_DIGEST = "{empty_sha256}"\n'
        f'checksum = "{hashlib.sha256(secrets.token_bytes(8)).hexdigest()}"\n'
        f'COMMIT = "{hashlib.sha1(secrets.token_bytes(8)).hexdigest()}"\n'  # noqa: S324 - a git SHA's shape
        f'sha512 = "{hashlib.sha512(secrets.token_bytes(8)).hexdigest()}"\n'
    )
    assert find_secrets(text, filename="versions.py") == []
    sri = "sha384-" + base64.b64encode(hashlib.sha384(secrets.token_bytes(8)).digest()).decode()
    html = f'<script src="app.js" integrity="{sri}" crossorigin="anonymous"></script>\n'
    assert find_secrets(html, filename="index.html") == []
    # A hex key named as a secret is still one: the name, not the shape, decides.
    key = secrets.token_hex(32)
    assert _values(f'SECRET_KEY = "{key}"\n', filename="settings.py") == [key]
    assert _values(f'signing_key = "{key}"\n', filename="settings.py") == [key]
