"""The log-sink contract end to end: canaries planted in prompts, contexts and provider
responses never reach a sink.

Unique canaries, made at test time, go into a workspace profile's prompt templates, into
files of a copy of the sample tree (plain markers, a ``.env`` with a fake AWS key, a module
with a hard-coded token) and into the answers of the openai provider served on loopback
(plain markers and a fake AWS key); the simulated provider's answers quote the tree, so its
canaries travel through responses too. The OpenAI key itself is a canary. Then `wf` runs a
docs-writer run (simulated), a failing run (openai: an answer that is not JSON), a resume
(openai: evidence that fails its gate), a retention run, and the thread queries, each as its
own process; and every sink is scanned: every file of the home (Dagster's run and event-log
storage and compute logs, the records database, the telemetry Parquet, decoded cell by
cell) except the CAS, every table of the PostgreSQL database when the home uses one, and
the captured stdout and stderr of every command. The CAS and the written READMEs are
payload stores and exempt, except that a README must not hold a secret-shaped canary.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import string
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from e2e_support import REPO_ROOT, SAMPLE_REPO, cas_plaintexts, copy_tree, isolated_settings
from openai_wire_support import serving
from postgres_support import fresh_database, postgres_settings

from wf_pipeline.settings import Settings

pytestmark = pytest.mark.slow

WORKFLOW = "docs_writer_thread_v1"
# A command's own time limit, in seconds: a hung run fails the test instead of stalling it.
COMMAND_TIMEOUT_S = 240


def _token(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(10)}"


def _fake_aws_key() -> str:
    # The documented shape of an AWS access key id: AKIA + 16 of A-Z0-9.
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def _fake_github_token() -> str:
    # The shape of a GitHub personal access token: ghp_ + 36 letters and digits.
    return "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))


@dataclass
class Canaries:
    """Every canary of one test: payload canaries (sinks only) and secret-shaped ones (READMEs too)."""

    prompt: str = field(default_factory=lambda: _token("PROMPTCANARY"))
    context: str = field(default_factory=lambda: _token("CONTEXTCANARY"))
    response: str = field(default_factory=lambda: _token("RESPONSECANARY"))
    evidence: str = field(default_factory=lambda: _token("EVIDENCECANARY"))
    api_key: str = field(default_factory=lambda: _token("sk-KEYCANARY"))
    env_secret: str = field(default_factory=_fake_aws_key)
    code_secret: str = field(default_factory=_fake_github_token)
    response_secret: str = field(default_factory=_fake_aws_key)

    def payload(self) -> dict[str, str]:
        return {
            "prompt": self.prompt,
            "context": self.context,
            "response": self.response,
            "evidence": self.evidence,
        }

    def secret(self) -> dict[str, str]:
        return {
            "api_key": self.api_key,
            "env_secret": self.env_secret,
            "code_secret": self.code_secret,
            "response_secret": self.response_secret,
        }

    def every(self) -> dict[str, str]:
        return {**self.payload(), **self.secret()}


@dataclass(frozen=True)
class Hit:
    canary: str
    where: str  # a file, a table or a command's stream
    offset: str  # a byte offset, or row/column

    def __str__(self) -> str:
        return f"{self.canary} in {self.where} at {self.offset}"


def _byte_hits(name: str, data: bytes, canaries: dict[str, str]) -> list[Hit]:
    """Every occurrence of each canary in ``data``, as UTF-8 and as hex (a blob column dumped as text)."""
    hits = []
    for label, value in canaries.items():
        for needle in (value.encode(), value.encode().hex().encode()):
            start = data.find(needle)
            while start != -1:
                hits.append(Hit(label, name, f"byte {start}"))
                start = data.find(needle, start + 1)
    return hits


def _parquet_hits(path: Path, canaries: dict[str, str]) -> list[Hit]:
    """Canaries in the decoded cells of a Parquet file (its bytes may be compressed)."""
    hits = []
    table = pq.read_table(path)
    for column in table.column_names:
        for row, value in enumerate(table.column(column).to_pylist()):
            text = str(value)
            hits += [
                Hit(label, str(path), f"row {row} column {column}")
                for label, c in canaries.items()
                if c in text
            ]
    return hits


def _home_hits(home: Path, canaries: dict[str, str]) -> tuple[list[Hit], int]:
    """Every file under the home except the CAS (a payload store); returns hits and files scanned."""
    cas = home / "cas"
    hits, scanned = [], 0
    for path in sorted(home.rglob("*")):
        if not path.is_file() or path.is_relative_to(cas):
            continue
        scanned += 1
        hits += _byte_hits(str(path), path.read_bytes(), canaries)
        if path.suffix == ".parquet":
            hits += _parquet_hits(path, canaries)
    return hits, scanned


def _postgres_hits(url: sa.URL, canaries: dict[str, str]) -> tuple[list[Hit], int]:
    """Every row of every table of the database (Dagster's storage and the records), as text."""
    engine = sa.create_engine(url)
    hits, tables = [], 0
    try:
        with engine.connect() as conn:
            names = conn.execute(
                sa.text(
                    "SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_type = 'BASE TABLE' "
                    "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
                )
            ).all()
            for schema, table in names:
                tables += 1
                rows = conn.execute(sa.text(f'SELECT t::text FROM "{schema}"."{table}" AS t')).scalars()
                for row, text in enumerate(rows):
                    hits += [
                        Hit(label, f"{schema}.{table}", f"row {row}")
                        for label, value in canaries.items()
                        if value in text or value.encode().hex() in text
                    ]
    finally:
        engine.dispose()
    return hits, tables


@dataclass
class Home:
    """Where the commands run and what they print."""

    home: Path
    workspace: Path
    env: dict[str, str]
    database: sa.URL | None
    outputs: list[tuple[str, str, str]] = field(default_factory=list)  # (command, stream, text)

    def wf(
        self, *args: str, extra_env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "wf_pipeline.cli.main", *args],
            cwd=cwd or self.workspace,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        label = "wf " + " ".join(args)
        self.outputs += [(label, "stdout", done.stdout), (label, "stderr", done.stderr)]
        return done


def _workspace(tmp_path: Path, canaries: Canaries, name: str, *, unmasked: bool) -> Path:
    """A workspace layer whose copy of the shipped profile's prompts each hold the prompt canary;
    ``unmasked``: the profile opts its contexts out of secret masking."""
    workspace = tmp_path / name
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    for template in (workspace / "assets" / "prompts").rglob("*.md"):
        with template.open("a", encoding="utf-8") as out:
            out.write(f"\nReference marker for this review: {canaries.prompt}\n")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    if unmasked:
        document["redaction"] = {"preset": "standard", "unmasked_classes": ["context_payload"]}
    (workspace / "profiles").mkdir()
    (workspace / "profiles" / f"{WORKFLOW}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return workspace


def _plant_tree(tree: Path, canaries: Canaries) -> Path:
    """Canaries in the tree's files: a plain marker in every Python module, a .env with a fake
    AWS key, a module with a hard-coded token."""
    modules = sorted(tree.rglob("*.py"))
    assert modules
    for module in modules:
        with module.open("a", encoding="utf-8") as out:
            out.write(f'\nMARKER = "{canaries.context}"  # build marker\n')
    first_package = modules[0].parent
    (first_package / ".env").write_text(f"AWS_ACCESS_KEY_ID={canaries.env_secret}\n", encoding="utf-8")
    (first_package / "settings_local.py").write_text(
        f'"""Local settings."""\n\nGITHUB_TOKEN = "{canaries.code_secret}"\n', encoding="utf-8"
    )
    return tree


@pytest.fixture(params=["sqlite", "postgres"])
def home(request, tmp_path, monkeypatch) -> Home:
    monkeypatch.chdir(tmp_path)
    if request.param == "sqlite":
        isolated_settings(monkeypatch, tmp_path / "home")
        yield Home(tmp_path / "home", tmp_path, dict(os.environ), None)
        return
    with fresh_database() as database:
        postgres_settings(monkeypatch, tmp_path / "home", database)
        yield Home(tmp_path / "home", tmp_path, dict(os.environ), database.url)


def test_no_canary_reaches_any_sink(home: Home, tmp_path):
    canaries = Canaries()
    home.workspace = _workspace(tmp_path, canaries, "workspace", unmasked=False)
    # The openai runs' profile sends contexts unmasked (an audited opt-out): the secrets reach the
    # server and the CAS, the scan shows they still reach no sink, and the audit trail has events.
    unmasked = _workspace(tmp_path, canaries, "workspace-unmasked", unmasked=True)
    # Three directories for the simulated run, one for the openai runs (a run is a Dagster
    # run per level: a small tree keeps the test's time in bounds).
    tree = _plant_tree(copy_tree(SAMPLE_REPO / "stationkit", tmp_path / "stationkit"), canaries)
    small = _plant_tree(copy_tree(SAMPLE_REPO / "stationkit" / "sensors", tmp_path / "sensors"), canaries)
    out = tmp_path / "out"

    # 1. A docs-writer run, simulated provider: its answers quote the planted tree.
    done = home.wf(
        "run", WORKFLOW, str(tree), "--out", str(out / "run"), extra_env={"WF_PROVIDER": "simulated"}
    )
    assert done.returncode == 0, done.stderr[-2000:]

    with serving() as server:
        openai = {
            "WF_PROVIDER": "openai",
            "WF_OPENAI_BASE_URL": server.base_url,
            "WF_OPENAI_MODEL": "served-model",
            "OPENAI_API_KEY": canaries.api_key,
        }
        # 2. A failing run: the answer is not JSON and quotes markers and a key.
        server.answer(f"Sure! {canaries.response} uses key {canaries.response_secret} {{claims: [")
        done = home.wf(
            "run",
            WORKFLOW,
            str(small),
            "--out",
            str(out / "failing"),
            "--json",
            extra_env=openai,
            cwd=unmasked,
        )
        assert done.returncode == 1, done.stderr[-2000:]
        (failed,) = [t for t in json.loads(done.stdout)["threads"] if t["status"] == "failed"]
        assert failed["error_code"] == "RUN_OUTPUT_SHAPE"

        # 3. A resume: evidence whose claims (their ids too, which gate reasons name) quote
        # markers and a key, and fail the evidence gate.
        claims = [
            {
                "claim_id": claim_id,
                "statement": f"The module keeps {canaries.evidence} and {canaries.response_secret}",
                "evidence_path": f"{canaries.evidence}.py",
                "evidence_quote": canaries.evidence,
            }
            for claim_id in (canaries.evidence, canaries.response_secret)
        ]
        server.answer(json.dumps({"claims": claims}))
        done = home.wf(
            "resume", failed["thread_id"], "--out", str(out / "resumed"), extra_env=openai, cwd=unmasked
        )
        assert done.returncode == 1, done.stderr[-2000:]
        assert len(server.received) >= 2
        # 4. Another resume: the server refuses, and its words hold a key.
        refusal = {
            "error": {
                "message": f"key {canaries.response_secret} has no access",
                "type": "invalid_request_error",
            }
        }
        server.respond(400, json.dumps(refusal).encode())
        done = home.wf(
            "resume", failed["thread_id"], "--out", str(out / "refused"), extra_env=openai, cwd=unmasked
        )
        assert done.returncode == 1, done.stderr[-2000:]
        # The key and the unmasked tree's secrets did go to the server (so they were in play).
        sent = json.dumps([r["body"] for r in server.received])
        assert canaries.env_secret in sent and canaries.context in sent and canaries.prompt in sent
        assert any(canaries.api_key in json.dumps(r["headers"]) for r in server.received)

    # 5. Retention, and the queries a user reads failures with.
    for args in (
        ("retention", "plan"),
        ("retention", "apply"),
        ("threads", "list"),
        ("threads", "list", "--json"),
        ("audit", "export"),
        ("audit", "list"),
        ("audit", "verify"),
        ("threads", "show", failed["thread_id"]),
        ("threads", "show", failed["thread_id"], "--json"),
    ):
        done = home.wf(*args)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    shown = json.loads(home.outputs[-2][2])
    # The refusal is recorded with the server's words, the key in them masked by the filter.
    assert (shown["status"], shown["error_code"]) == ("failed", "PROVIDER_HTTP_ERROR")
    assert "[secret:aws-access-key]" in shown["error_text"], shown["error_text"]

    # The canaries were in play: the payload store (the CAS, opened with the home's keyring)
    # holds the rendered prompts, the context snapshots and the evidence of the resumed turn,
    # and the same scan finds them there. So a sink that held one would be found too.
    stored = b"\n".join(cas_plaintexts(home.home, Settings.from_env(home.env)).values())
    in_play = {hit.canary for hit in _byte_hits("cas", stored, canaries.every())}
    assert {"prompt", "context", "evidence", "env_secret", "code_secret"} <= in_play, in_play

    # Every sink, every canary: 0 hits, each hit named with its place.
    every = canaries.every()
    hits, files = _home_hits(home.home, every)
    assert files > 10  # the scan saw the home's stores, not an empty folder
    parquet = {
        p.relative_to(home.home).parts[1]
        for p in home.home.rglob("*.parquet")
        if "date=1970-01-01" not in str(p)
    }
    assert {"artifact_writes", "audit_events"} <= parquet, parquet  # telemetry and audit rows were written
    if home.database is not None:
        found, tables = _postgres_hits(home.database, every)
        assert tables > 10
        hits += found
    for command, stream, text in home.outputs:
        hits += _byte_hits(f"{stream} of `{command}`", text.encode(), every)
    assert not hits, "\n".join(map(str, hits))

    # The READMEs are a payload store: markers may be there, secret-shaped values may not.
    readmes = sorted(out.rglob("README.md"))
    assert readmes
    readme_hits = [
        hit for path in readmes for hit in _byte_hits(str(path), path.read_bytes(), canaries.secret())
    ]
    assert not readme_hits, "\n".join(map(str, readme_hits))
