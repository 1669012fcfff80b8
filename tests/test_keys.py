"""The key lifecycle use cases and ``wf keys``: create, rotate, rewrap, retire, destroy, the shredding
report, ``key_events`` telemetry read by DuckDB, and shredded artifacts in ``wf threads show``."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT
from keys_support import artifact_ids, keyed_home, opened
from retention_support import ROLE_CLASSES, write_recorded_thread

from wf_pipeline.cas import open_cas
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.errors import (
    CAS_KEY_DESTROYED,
    KEYS_CONFIRMATION_REQUIRED,
    KEYS_KEK_IN_USE,
    KEYS_KEK_NOT_FOUND,
    KEYS_KEK_STATE,
    CasError,
    KeysError,
)
from wf_pipeline.metadata.records import (
    now_ms,
)
from wf_pipeline.profiles.encryption import EncryptionPolicy
from wf_pipeline.retention.archive import RecordArchive
from wf_pipeline.retention.compaction import archive_threads
from wf_pipeline.service import keys, show_thread
from wf_pipeline.service.telemetry import query_telemetry
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry.query import archive_location

WF = REPO_ROOT / ".venv" / "bin" / "wf"
WORKFLOW = "docs_writer_thread_v1"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with keyed_home(request.param, monkeypatch, tmp_path / "home") as keyed:
        yield keyed


def _code(call) -> str:
    with pytest.raises((KeysError, CasError)) as caught:
        call()
    return caught.value.code


def _today() -> str:
    return datetime.now(tz=UTC).strftime("%Y%m%d")


def test_a_lifecycle_moves_keys_refuses_what_it_must_and_writes_key_events(settings):
    created = keys.create_key(settings, "output")
    assert created["created"] and created["state"] == "primary" and created["generation"] == 1
    assert created["kek_id"] == f"kek-output-{_today()}-g1"
    again = keys.create_key(settings, "output")
    assert not again["created"] and again["kek_id"] == created["kek_id"]
    ids = artifact_ids(50)
    with opened(settings) as (_, keyring):
        originals = {a: key for a, (key, _) in keyring.data_keys_for_put(ids, "output").items()}
    listed = keys.list_keys(settings)
    assert [k["kek_id"] for k in listed["keks"]] == [created["kek_id"]]
    assert listed["data_keys"] == 50 and listed["under_decrypt_only"] == 0

    rotated = keys.rotate_keys(settings, ["output"])
    (new,) = rotated["rotated"]
    assert new["generation"] == 2 and new["state"] == "primary" and rotated["under_decrypt_only"] == 50
    old = created["kek_id"]
    assert _code(lambda: keys.retire_key(settings, old)) == KEYS_KEK_IN_USE

    seen: list[tuple[int, int]] = []
    result = keys.rewrap_keys(settings, lambda done, total: seen.append((done, total)), page=20)
    assert (result["rewrapped"], result["skipped"], result["remaining"]) == (50, 0, 0)
    assert seen[0] == (0, 50) and seen[-1] == (50, 50) and len(seen) >= 4  # 3 pages of 20
    with opened(settings) as (_, keyring):
        # The same data keys, now under generation 2: payloads need no re-encryption.
        for artifact_id in ids:
            key, row = keyring.data_key_for_get(artifact_id)
            assert key == originals[artifact_id] and row.kek_id == new["kek_id"]

    assert keys.retire_key(settings, old)["state"] == "retired"
    assert _code(lambda: keys.retire_key(settings, new["kek_id"])) == KEYS_KEK_STATE
    assert _code(lambda: keys.destroy_keys(settings, new["kek_id"])) == KEYS_CONFIRMATION_REQUIRED
    assert {k["kek_id"]: k["state"] for k in keys.list_keys(settings)["keks"]}[new["kek_id"]] == "primary"
    assert _code(lambda: keys.destroy_keys(settings, "kek-nope", confirm=True)) == KEYS_KEK_NOT_FOUND

    destroyed = keys.destroy_keys(settings, new["kek_id"], confirm=True)
    assert destroyed["data_keys_shredded"] == 50
    assert [k["state"] for k in destroyed["destroyed"]] == ["destroyed"]
    with opened(settings) as (_, keyring):
        assert _code(lambda: keyring.data_key_for_get(ids[0])) == CAS_KEY_DESTROYED
    report = keys.keys_report(settings)
    assert report["shredded"] == 50 and report["by_class"] == {"output": 50}
    assert {a["artifact_id"] for a in report["artifacts"]} == set(ids)
    assert all(a["kek_id"] == new["kek_id"] and a["links"] == [] for a in report["artifacts"])

    # Never key material: no KEK reference, no wrapped key, in anything a command returns.
    shown = json.dumps([created, listed, rotated, result, destroyed, report])
    assert "key_ref" not in shown and "wrapped_key" not in shown
    with opened(settings) as (records, _):
        for row in records.data_keys_for(ids[:5]).values():
            assert base64.b64encode(row.wrapped_key).decode() not in shown
            assert row.wrapped_key.hex() not in shown

    rows = query_telemetry(
        settings,
        "select event, kek_id, artifact_class, period_start, state, data_keys, outcome, error_code, date "
        "from key_events order by event_at",
    )
    events = [dict(zip(rows["columns"], row)) for row in rows["rows"]]
    assert [(e["event"], e["outcome"], e["error_code"]) for e in events] == [
        ("create", "ok", None),
        ("rotate", "ok", None),
        ("retire", "failed", KEYS_KEK_IN_USE),
        ("rewrap", "ok", None),
        ("retire", "ok", None),
        ("retire", "failed", KEYS_KEK_STATE),
        ("destroy", "failed", KEYS_KEK_NOT_FOUND),
        ("destroy", "ok", None),
    ]
    by_event = {(e["event"], e["outcome"]): e for e in events}
    assert by_event[("create", "ok")]["kek_id"] == old
    assert by_event[("rotate", "ok")]["kek_id"] == new["kek_id"]
    assert by_event[("rewrap", "ok")]["data_keys"] == 50 and by_event[("rewrap", "ok")]["kek_id"] is None
    assert by_event[("destroy", "ok")]["data_keys"] == 50
    assert by_event[("destroy", "ok")]["state"] == "destroyed"
    today = datetime.now(tz=UTC).date().isoformat()
    assert str(by_event[("create", "ok")]["period_start"]) == today == str(by_event[("create", "ok")]["date"])
    assert by_event[("create", "ok")]["artifact_class"] == "output"


def _thread_with_artifacts(
    settings, name: str, *, target: str = "", at: int | None = None
) -> tuple[str, dict[str, str]]:
    """A thread of two turns whose artifacts are sealed: per turn a prompt render and an output.

    Returns the thread id and artifact id -> class.
    """
    policy = EncryptionPolicy(levels={}, default="required", source="test")
    at = now_ms() if at is None else at
    with opened(settings) as (records, keyring):
        cas = EncryptedArtifactStore(open_cas(settings.cas_url), policy, keyring)
        written = write_recorded_thread(
            records,
            cas,
            workflow_id=WORKFLOW,
            name=name,
            turn_ids=("evidence_gather", "style_refine"),
            at=at,
            target_key=target,
            roles=("rendered_prompt", "output"),
            classes=ROLE_CLASSES,
            texts={"rendered_prompt": "prompt {name} {turn}", "output": "output {name} {turn}"},
            prompt_link=False,
            frame=False,
        )
        cas.close()
    return written.thread.thread_id, written.classes


def test_destroying_a_lineage_shreds_its_class_and_period_and_threads_show_marks_them(settings):
    thread_id, classes = _thread_with_artifacts(settings, "pkg", target="pkg")
    # A superseded thread of another target, archived by compaction: the report finds it there.
    other_id, other_classes = _thread_with_artifacts(settings, "lib v1", target="lib", at=now_ms() - 60_000)
    _thread_with_artifacts(settings, "lib v2", target="lib")
    with opened(settings) as (records, _):
        archive = RecordArchive(Path(archive_location(settings)))
        with archive.locked():
            run = archive_threads(
                records, archive, now_ms=now_ms(), archive_after_ms={WORKFLOW: 30_000}, compaction_id="c1"
            )
        assert run.threads_archived == 1 and records.get_thread(other_id) is None
    outputs = {a for a, c in classes.items() if c == "output"}
    assert (
        _code(lambda: keys.destroy_keys(settings, lineage=f"output:{_today()}")) == KEYS_CONFIRMATION_REQUIRED
    )
    assert {a["state"] for a in show_thread(settings, thread_id)["artifacts"]} == {"stored"}

    destroyed = keys.destroy_keys(settings, lineage=f"output:{_today()}", confirm=True)
    assert [k["kek_id"] for k in destroyed["destroyed"]] == [f"kek-output-{_today()}-g1"]
    assert destroyed["data_keys_shredded"] == 6  # two outputs per thread
    assert _code(lambda: keys.destroy_keys(settings, lineage="output:20000101", confirm=True)) == (
        KEYS_KEK_NOT_FOUND
    )
    again = keys.destroy_keys(settings, lineage=f"output:{_today()}", confirm=True)
    assert again["destroyed"] == [] and again["already_gone"] == [f"kek-output-{_today()}-g1"]
    repeat = keys.destroy_keys(settings, f"kek-output-{_today()}-g1", confirm=True)
    assert repeat["data_keys_shredded"] == 0  # shredded once, counted once
    assert repeat["destroyed"] == [] and repeat["already_gone"] == [f"kek-output-{_today()}-g1"]
    for bad in ("", "nope", "x:y", "prompt-render"):
        assert _code(lambda bad=bad: keys.create_key(settings, bad)) == "KEYS_CLASS_UNKNOWN"
        assert _code(lambda bad=bad: keys.rotate_keys(settings, [bad])) == "KEYS_CLASS_UNKNOWN"

    shown = show_thread(settings, thread_id)
    states = {a["artifact_id"]: a["state"] for a in shown["artifacts"]}
    assert states == {a: "shredded" if c == "output" else "stored" for a, c in classes.items()}
    assert len(shown["turns"]) == 2  # the records stay

    archived = show_thread(settings, other_id)
    assert archived["archived"]
    assert {a["artifact_id"]: a["state"] for a in archived["artifacts"]} == {
        a: "shredded" if c == "output" else "stored" for a, c in other_classes.items()
    }

    report = keys.keys_report(settings)
    assert report["shredded"] == 6 and report["by_class"] == {"output": 6}
    by_thread = {t["thread_id"]: (t["artifacts"], t["archived"]) for t in report["by_thread"]}
    assert by_thread[thread_id] == (2, False) and by_thread[other_id] == (2, True)
    assert len(by_thread) == 3
    mine = {a["artifact_id"]: a for a in report["artifacts"] if a["artifact_id"] in outputs}
    assert set(mine) == outputs
    for artifact in mine.values():
        (link,) = artifact["links"]
        assert link["thread_id"] == thread_id and link["role"] == "output"
        assert link["turn_id"] in ("evidence_gather", "style_refine")
    # The prompt renders' lineage is untouched: still readable.
    with opened(settings) as (_, keyring):
        for artifact_id, artifact_class in {**classes, **other_classes}.items():
            if artifact_class == "prompt_render":
                keyring.data_key_for_get(artifact_id)


def wf(settings, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
    env.update({k: v for k, v in settings.secrets.items() if k.startswith("WF_")})
    return subprocess.run([str(WF), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")
def test_the_wf_keys_commands_print_ids_states_and_counts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with keyed_home("sqlite", monkeypatch, tmp_path / "home") as settings:
        created = wf(settings, "keys", "create", "output", "--json")
        assert created.returncode == 0, created.stderr
        kek_id = json.loads(created.stdout)["kek_id"]
        with opened(settings) as (_, keyring):
            keyring.data_keys_for_put(artifact_ids(7), "output")
        listed = wf(settings, "keys", "list")
        assert listed.returncode == 0 and kek_id in listed.stdout and "primary" in listed.stdout
        rotated = json.loads(wf(settings, "keys", "rotate", "--class", "output", "--json").stdout)
        assert rotated["under_decrypt_only"] == 7
        rewrap = wf(settings, "keys", "rewrap")
        assert rewrap.returncode == 0 and "rewrapped 7 data keys" in rewrap.stdout
        assert wf(settings, "keys", "retire", kek_id).returncode == 0

        refused = wf(settings, "keys", "destroy", "--lineage", f"output:{_today()}")
        assert refused.returncode == 1
        assert refused.stderr.startswith(f"{KEYS_CONFIRMATION_REQUIRED}: ")
        as_json = json.loads(wf(settings, "keys", "destroy", "--lineage", "output:20000101", "--json").stdout)
        assert as_json["error"]["code"] == KEYS_CONFIRMATION_REQUIRED
        usage = wf(settings, "keys", "destroy", "--lineage", "output-2026")
        assert usage.returncode == 2
        done = wf(settings, "keys", "destroy", "--lineage", f"output:{_today()}", "--yes")
        assert done.returncode == 0 and "7 artifacts shredded" in done.stdout
        report = wf(settings, "keys", "report", "--json")
        assert report.returncode == 0 and json.loads(report.stdout)["shredded"] == 7
        # The master key never reaches the output.
        secret = settings.secrets["WF_MASTER_KEY"]
        for out in (created, listed, rewrap, done, report):
            assert secret not in out.stdout + out.stderr


def test_the_lineage_argument_is_checked_before_anything_runs():
    assert keys.lineage_problem("output:20261130") is None
    assert keys.lineage_problem("my:class:20261130") is None  # the class is all before the last colon
    for bad in ("output", "output:2026113", "output:20261340", ":20261130x"):
        assert keys.lineage_problem(bad) is not None


def test_listing_and_reporting_keys_need_no_master_key_and_make_none(tmp_path):
    settings = Settings.from_env({"WF_HOME": str(tmp_path / "home")})
    settings.ensure_dirs()
    assert keys.list_keys(settings)["keks"] == []
    assert keys.keys_report(settings)["artifacts"] == []
    assert not settings.default_master_key_file.exists()
