"""Secrets in the tree never reach a model or a README: the docs writer end to end through Dagster.

A copy of the sample tree gets a ``.env`` with a fake cloud key and a password, a
``config.env``, a ``settings.yaml`` and a module with a hard-coded token (all made at run
time). With the offline and the simulated provider, neither the READMEs nor any stored
context payload or prompt (read through the home's keyring) holds any of the values. A
workspace copy of the profile that opts ``context_payload`` out of masking shows the values
do flow into the stored context then, that the offline writer still quotes none (it reads
the masked view the evidence gate reads), that no output or README holds one, and that each
context built unmasked was audited.
"""

from __future__ import annotations

import secrets
import shutil
import string
import threading
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT, SAMPLE_REPO, cas_plaintexts, copy_tree, isolated_settings

from wf_pipeline.providers import ProviderRequest, ProviderResponse, create_provider
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.runtime.queries import thread_details
from wf_pipeline.runtime.threads import recorded_context_id
from wf_pipeline.security.audit import audit_events, verify_audit_chain
from wf_pipeline.service import resume_thread, run_workflow

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"


def _fake(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _planted(tree: Path) -> dict[str, str]:
    """Secret-shaped values written into ``tree``; name -> value (fresh every run)."""
    values = {
        "cloud_key": "AKIA" + _fake(string.ascii_uppercase + string.digits, 16),
        "env_password": "pw-" + _fake(string.ascii_letters + string.digits, 14),
        "config_password": "cfg-" + _fake(string.ascii_letters + string.digits, 14),
        "yaml_password": "yml-" + _fake(string.ascii_letters + string.digits, 14),
        "token": "ghp_" + _fake(string.ascii_letters + string.digits, 36),
        # Credentials written in prose: a module's docstring and a function's.
        "docstring_password": "Qm7" + _fake(string.ascii_letters + string.digits, 13),
        "prose_password": "Fd4" + _fake(string.ascii_letters + string.digits, 13),
        # Values set off by white space or given in a name/value mapping.
        "docker_password": "dk-" + _fake(string.ascii_letters + string.digits, 14),
        "k8s_password": _fake(string.ascii_lowercase, 12),
        "flag_token": "Ft5" + _fake(string.ascii_letters + string.digits, 13),
    }
    (tree / "Dockerfile").write_text(
        f'FROM python:3.11-slim\nENV DB_PASSWORD {values["docker_password"]}\nCMD ["python"]\n',
        encoding="utf-8",
    )
    (tree / "stationkit" / "deploy.yaml").write_text(
        "env:\n  - name: ARCHIVE_PASSWORD\n"
        f"    value: {values['k8s_password']}\n"
        "  - name: LOG_LEVEL\n    value: info\n",
        encoding="utf-8",
    )
    (tree / "stationkit" / "sync.sh").write_text(
        f"#!/bin/sh\n# Push readings to the archive.\narchive-cli push --token {values['flag_token']} readings/\n",
        encoding="utf-8",
    )
    (tree / ".env").write_text(
        f"AWS_ACCESS_KEY_ID={values['cloud_key']}\nDB_PASSWORD={values['env_password']}\nDEBUG=false\n",
        encoding="utf-8",
    )
    (tree / "config.env").write_text(
        f"SMTP_PASSWORD={values['config_password']}\nPORT=2525\n", encoding="utf-8"
    )
    (tree / "stationkit" / "settings.yaml").write_text(
        f"station: north\nupload:\n  password: {values['yaml_password']}\n", encoding="utf-8"
    )
    (tree / "stationkit" / "uploader.py").write_text(
        '"""Upload readings to the archive."""\n\n'
        f'GITHUB_TOKEN = "{values["token"]}"\n\n\n'
        "def upload(readings: list[float]) -> int:\n"
        '    """Send ``readings`` to the archive and return how many were sent."""\n'
        "    return len(readings)\n",
        encoding="utf-8",
    )
    (tree / "stationkit" / "archive_db.py").write_text(
        f'"""Archive database. Log in as admin with password={values["docstring_password"]} on db.internal."""\n\n\n'
        "def connect() -> None:\n"
        f'    """Connect; the archive password is ``password={values["prose_password"]}``."""\n',
        encoding="utf-8",
    )
    return values


def _leaks(data: bytes, values: dict[str, str]) -> list[str]:
    return [name for name, value in values.items() if value.encode() in data]


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return isolated_settings(monkeypatch, tmp_path / "home")


@pytest.fixture
def tree(tmp_path):
    return copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")


def _readmes(out_dir: str) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in Path(out_dir).rglob("README.md")}


@pytest.mark.parametrize("provider_name", ["offline", "simulated"])
def test_no_secret_reaches_a_readme_or_a_stored_context(settings, tree, provider_name):
    values = _planted(tree)
    provider = create_provider(provider_name, {"latency_ms": "0"} if provider_name == "simulated" else {})
    summary = run_workflow(settings, WORKFLOW, tree, provider=provider)
    assert summary.ok, [(t.path, t.status) for t in summary.threads]

    readmes = _readmes(summary.out_dir)
    assert len(readmes) == len(summary.threads)
    for path, data in readmes.items():
        assert _leaks(data, values) == [], path
    stored = cas_plaintexts(settings.home)
    assert stored
    for artifact_id, data in stored.items():
        assert _leaks(data, values) == [], artifact_id
    # The files were read, and their values replaced by placeholders.
    masked = b"\n".join(stored.values())
    assert b".env" in masked and b"uploader.py" in masked and b"settings.yaml" in masked
    assert b"[secret:aws-access-key]" in masked and b"[secret:github-token]" in masked


class _CopyingModel:
    """The offline provider, recording everything it is sent, whose README copies the planted files.

    It stands for a model (an OpenAI-wire one) that writes secrets into its README anyway:
    the values are not in what it was sent, so it is given the files out of band.
    """

    def __init__(self, copied: str) -> None:
        self._inner = create_provider("offline")
        self.provider_type = "openai"
        self.model = "copying-model"
        self._copied = copied
        self._lock = threading.Lock()
        self.sent: list[str] = []

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        with self._lock:
            self.sent.append(
                "\n".join([request.system_prompt, request.user_prompt, *request.inputs.values()])
            )
        text = self._inner.complete(request).text
        if request.output_type == "readme_final":
            text += "\n## Credentials\n\n" + self._copied
        return ProviderResponse(text=text, provider_type=self.provider_type, model=self.model)


def test_a_model_that_copies_secrets_sees_none_and_publishes_none(settings, tree):
    values = _planted(tree)
    # The planted files quoted as a model might quote them: fenced blocks, tagged or not.
    model = _CopyingModel(
        "```dotenv\n"
        + (tree / ".env").read_text()
        + "```\n\n```\n"
        + (tree / "config.env").read_text()
        + "```\n\n```yaml\n"
        + (tree / "stationkit" / "settings.yaml").read_text()
        + "```\n\n```python\n"
        + (tree / "stationkit" / "uploader.py").read_text()
        + (tree / "stationkit" / "archive_db.py").read_text()
        + "```\n\n```dockerfile\n"
        + (tree / "Dockerfile").read_text()
        + "```\n\n```\n"
        + (tree / "stationkit" / "deploy.yaml").read_text()
        + "```\n\n```sh\n"
        + (tree / "stationkit" / "sync.sh").read_text()
        + "```\n"
    )
    summary = run_workflow(settings, WORKFLOW, tree, provider=model)
    assert summary.ok, [(t.path, t.status, t.error_code) for t in summary.threads if t.status != "completed"]

    # Every prompt and input the provider was sent is masked.
    assert len(model.sent) == 4 * len(summary.threads)
    for sent in model.sent:
        assert _leaks(sent.encode(), values) == []
    # The README outputs in the CAS hold what the model wrote; the written READMEs do not.
    assert set(_leaks(b"\n".join(cas_plaintexts(settings.home).values()), values)) == set(values)
    readmes = _readmes(summary.out_dir)
    for path, data in readmes.items():
        assert _leaks(data, values) == [], path
        assert b"## Credentials" in data and b"[secret:" in data


def _opted_out_workspace(tmp_path: Path) -> Path:
    """A workspace layer whose copy of the shipped profile opts the context out of masking."""
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    document["redaction"] = {"preset": "debug", "unmasked_classes": ["context_payload"]}
    (workspace / "profiles").mkdir()
    (workspace / "profiles" / f"{WORKFLOW}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return workspace


def test_an_opted_out_context_holds_the_values_but_no_evidence_or_readme_does(settings, tree, tmp_path):
    values = _planted(tree)
    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=_opted_out_workspace(tmp_path))

    stored = cas_plaintexts(settings.home)
    # Unmasked, the values do reach the stored context (so the masked runs above prove something).
    assert set(_leaks(b"\n".join(stored.values()), values)) == set(values)
    # The offline writer reads its context as the evidence gate does (masked), so every thread
    # completes and no output it wrote (evidence map, report, struct, README) holds a value.
    assert summary.ok, [(t.path, t.status) for t in summary.threads]
    env = RuntimeEnv.open(settings)
    for thread in summary.threads:
        for turn in thread_details(env, thread.thread_id)["turns"]:
            assert turn["gate"] is None or turn["gate"]["outcome"] == "pass", turn["gate"]
            assert _leaks(stored[turn["output_artifact_id"]], values) == [], (thread.path, turn["seq"])
    for path, data in _readmes(summary.out_dir).items():
        assert _leaks(data, values) == [], path

    # Every context built unmasked was audited first: one event per thread, naming the
    # context artifact the thread's turns read and the policy that allowed it.
    events = audit_events(env.records)
    assert verify_audit_chain(env.records).ok
    assert len(events) == len(summary.threads)
    contexts = {recorded_context_id(env, t.thread_id) for t in summary.threads}
    assert {event.artifact_ids for event in events} == {(context,) for context in contexts}
    for event in events:
        assert (event.outcome, event.reason_code, event.code) == ("allow", "REDACTION_OPT_OUT", None)
        assert event.requester == f"profile:{WORKFLOW}" and event.scope["class"] == "context_payload"
        assert event.policy_version == f"{WORKFLOW}@workspace+preset:debug"
        assert event.bytes == len(cas_plaintexts(settings.home)[event.artifact_ids[0]])


def test_a_context_recorded_unmasked_is_masked_when_its_thread_resumes(settings, tree, tmp_path):
    values = _planted(tree)
    # Opted out, stationkit's thread records its context unmasked and fails at verification.
    failing = create_provider(
        "simulated", {"latency_ms": "0", "fail_targets": "stationkit", "fail_turns": "verification"}
    )
    first = run_workflow(
        settings, WORKFLOW, tree, workspace_dir=_opted_out_workspace(tmp_path), provider=failing
    )
    (failed,) = [t for t in first.threads if t.path == "stationkit"]
    assert failed.status == "failed"
    env = RuntimeEnv.open(settings)
    recorded = recorded_context_id(env, failed.thread_id)
    assert _leaks(cas_plaintexts(settings.home)[recorded], values)  # the settings and the token

    # Resumed under the shipped profile (standard preset, no opt-out): the provider is sent
    # a masked copy of the recorded context, and the thread's turns record that copy.
    model = _CopyingModel("")
    resumed = resume_thread(settings, failed.thread_id, provider=model)
    assert resumed.ok, [(t.path, t.status, t.error_code) for t in resumed.threads]
    assert model.sent
    for sent in model.sent:
        assert _leaks(sent.encode(), values) == []
    now = recorded_context_id(env, failed.thread_id)
    assert now != recorded
    assert _leaks(cas_plaintexts(settings.home)[now], values) == []
