"""Scale-out by configuration: the executor, its settings, and the same run with one process per step."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterRunStatus
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, isolated_settings
from postgres_support import RECORDS_SCHEMA, fresh_database, postgres_settings

from wf_pipeline.compiler import open_instance
from wf_pipeline.compiler.launch.executors import (
    check_launch_settings,
    executor_definition,
    executor_run_config,
    runtime_run_config,
    validated_executor_config,
)
from wf_pipeline.compiler.resources import RUNTIME_CONFIG_SCHEMA, settings_from_config
from wf_pipeline.errors import (
    CONFIG_BAD_EXECUTOR_CONFIG,
    CONFIG_STORE_NOT_SHARED,
    RUN_PROVIDER_NOT_PORTABLE,
    ConfigError,
    RunError,
)
from wf_pipeline.providers import create_provider
from wf_pipeline.records import open_record_store
from wf_pipeline.runtime.targets import tree_key_for
from wf_pipeline.service import backfill, resume_thread, run_workflow
from wf_pipeline.settings import LAUNCH_FIELDS, SETTINGS_VARIABLES, Settings

WORKFLOW = "docs_writer_thread_v1"


def _settings(tmp_path: Path, **variables: str) -> Settings:
    return Settings.from_env({"WF_HOME": str(tmp_path / "home"), **variables})


# --- settings ------------------------------------------------------------------------------


def test_in_process_is_the_default_executor(tmp_path):
    settings = _settings(tmp_path)
    assert settings.executor == "in_process"
    assert settings.max_processes is None
    assert settings.records_schema is None


def _step_settings(settings: Settings, environ: dict[str, str]) -> Settings:
    """What a step process opens: the run's resource config, its own environment for the rest."""
    return Settings.from_values(settings.launch_values(), environ)


def test_settings_reach_steps_through_run_config_not_the_environment(tmp_path):
    config = tmp_path / "executor.yaml"
    settings = _settings(
        tmp_path,
        WF_EXECUTOR="multiprocess",
        WF_MAX_PROCESSES="3",
        WF_EXECUTOR_CONFIG=str(config),
        WF_RECORDS_URL="postgresql://wf@db.internal:5432/wf",
        WF_CAS_URL="s3://bucket/wf-cas",
        WF_PROVIDER="openai",
        WF_OPENAI_BASE_URL="http://127.0.0.1:9/v1",
        WF_OPENAI_API_KEY_ENV="WF_TEST_KEY",
        WF_TEST_KEY="sk-secret",
        WF_PROVIDER_CONCURRENCY="5",
    )
    assert settings.max_processes == 3 and settings.executor_config == config
    # A step process whose environment says otherwise (stale or missing values) opens the
    # launcher's runtime all the same: only the executor's own settings stay behind.
    stale = {"WF_HOME": "/elsewhere", "WF_RECORDS_SCHEMA": "stale_schema", "WF_PROVIDER": "offline"}
    step = _step_settings(settings, stale)
    launcher_only = {"executor", "max_processes", "executor_config"}
    assert step.model_dump(exclude=launcher_only) == settings.model_dump(exclude=launcher_only)
    assert step.records_schema is None and step.provider_options == {
        "base_url": "http://127.0.0.1:9/v1",
        "api_key_env": "WF_TEST_KEY",
    }
    # The key never enters run config: the step looks it up, by name, in its own environment.
    assert "sk-secret" not in repr(runtime_run_config(settings))
    assert step.secrets.get("WF_TEST_KEY") is None
    assert _step_settings(settings, {"WF_TEST_KEY": "sk-step"}).secrets["WF_TEST_KEY"] == "sk-step"


def test_a_url_with_a_password_stays_out_of_run_config(tmp_path):
    url = "postgresql://wf:pg-secret@db.internal:5432/wf"
    settings = _settings(tmp_path, WF_RECORDS_URL=url)
    config = runtime_run_config(settings)["resources"]["wf_runtime"]["config"]
    assert config["records_url"] == {"env": "WF_RECORDS_URL"} and "pg-secret" not in repr(config)
    # The step reads it from its own environment, as Dagster resolves `env:` there.
    step = Settings.from_values(
        {**settings.launch_values(), "records_url": None}, {"WF_RECORDS_URL": url, "WF_HOME": "/elsewhere"}
    )
    assert step.records_url == url and step.home == settings.home


def test_the_resource_config_schema_has_every_launch_field(tmp_path):
    assert set(RUNTIME_CONFIG_SCHEMA) == set(LAUNCH_FIELDS)
    settings = _settings(tmp_path, WF_RECORDS_SCHEMA="wf_records", WF_PROVIDER_CONCURRENCY="3")
    config = runtime_run_config(settings)["resources"]["wf_runtime"]["config"]
    assert settings_from_config(config) == settings
    assert len(SETTINGS_VARIABLES) == len(set(SETTINGS_VARIABLES))


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"WF_EXECUTOR": "threads"}, "CONFIG_BAD_EXECUTOR"),
        ({"WF_MAX_PROCESSES": "0"}, "CONFIG_BAD_NUMBER"),
        ({"WF_MAX_PROCESSES": "many"}, "CONFIG_BAD_NUMBER"),
        ({"WF_PROVIDER_CONCURRENCY": "-2"}, "CONFIG_BAD_NUMBER"),
    ],
)
def test_bad_executor_settings_are_refused(tmp_path, variables, code):
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, **variables)
    assert caught.value.code == code


def test_executor_run_config_merges_the_config_file_over_the_process_limit(tmp_path):
    config = tmp_path / "executor.yaml"
    config.write_text("execution:\n  config:\n    start_method:\n      spawn: {}\n    max_concurrent: 6\n")
    settings = _settings(
        tmp_path, WF_EXECUTOR="multiprocess", WF_MAX_PROCESSES="2", WF_EXECUTOR_CONFIG=str(config)
    )
    assert executor_run_config(settings) == {"max_concurrent": 6, "start_method": {"spawn": {}}}
    assert executor_run_config(_settings(tmp_path, WF_EXECUTOR="multiprocess", WF_MAX_PROCESSES="2")) == {
        "max_concurrent": 2
    }
    # Celery has no process limit of its own: its workers' concurrency decides.
    assert executor_run_config(_settings(tmp_path, WF_EXECUTOR="celery", WF_MAX_PROCESSES="2")) == {}


@pytest.mark.parametrize(
    "content",
    [
        "- not\n- a mapping\n",
        "execution: [unclosed\n",
        "max_concurrent: 4\n",  # the executor's mapping without execution: config: around it
        "execution:\n  config:\n    max_concurrent: 4\nresources: {}\n",  # more than the executor
        "execution:\n  config: 4\n",
    ],
)
def test_an_executor_config_other_than_execution_config_is_refused(tmp_path, content):
    config = tmp_path / "executor.yaml"
    config.write_text(content)
    settings = _settings(tmp_path, WF_EXECUTOR="multiprocess", WF_EXECUTOR_CONFIG=str(config))
    with pytest.raises(ConfigError) as caught:
        executor_run_config(settings)
    assert caught.value.code == "CONFIG_BAD_EXECUTOR_CONFIG"


@pytest.mark.parametrize(
    ("executor", "expected"),
    [
        ("k8s", {"job_namespace": "wf", "max_concurrent": 8}),  # the file's limit wins over WF_MAX_PROCESSES
        ("celery", {"backend": "rpc://"}),
    ],
)
def test_the_shipped_executor_configs_are_executor_run_config(tmp_path, executor, expected):
    shipped = REPO_ROOT / "deploy" / f"{executor}-executor.yaml"
    settings = _settings(
        tmp_path, WF_EXECUTOR=executor, WF_EXECUTOR_CONFIG=str(shipped), WF_MAX_PROCESSES="3"
    )
    config = executor_run_config(settings)
    assert expected.items() <= config.items()


def test_a_missing_executor_config_file_is_refused(tmp_path):
    settings = _settings(tmp_path, WF_EXECUTOR="k8s", WF_EXECUTOR_CONFIG=str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError) as caught:
        executor_run_config(settings)
    assert caught.value.code == "CONFIG_BAD_EXECUTOR_CONFIG"


@pytest.mark.parametrize(("name", "module"), [("k8s", "dagster_k8s"), ("celery", "dagster_celery")])
def test_a_cluster_executor_without_its_package_is_named(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if the package were not installed
    with pytest.raises(ConfigError) as caught:
        executor_definition(name)
    assert caught.value.code == "CONFIG_EXECUTOR_UNAVAILABLE"
    assert caught.value.details["package"] == module.replace("_", "-")


def test_executor_definition_rejects_an_unknown_name():
    with pytest.raises(ConfigError) as caught:
        executor_definition("in_process")  # runs in the launching process: no executor to build
    assert caught.value.code == "CONFIG_BAD_EXECUTOR"
    assert executor_definition("multiprocess").name == "multiprocess"


@pytest.mark.parametrize("entry", ["run", "resume"])
def test_a_provider_object_cannot_cross_processes(tmp_path, monkeypatch, entry):
    monkeypatch.chdir(tmp_path)
    isolated_settings(monkeypatch, tmp_path / "home")
    settings = _settings(tmp_path, WF_EXECUTOR="multiprocess")
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    provider = create_provider("offline")
    with pytest.raises(RunError) as caught:
        if entry == "run":
            run_workflow(settings, WORKFLOW, tree, provider=provider)
        else:
            resume_thread(settings, "thread:unknown", provider=provider)
    assert caught.value.code == RUN_PROVIDER_NOT_PORTABLE
    assert not (settings.home / "records.db").exists()  # refused before anything was recorded


# --- refused before anything is planned or recorded --------------------------------------


def _launch(entry: str, settings: Settings, tree: Path) -> None:
    """Call the use case ``entry`` (run, backfill or resume) the way the CLI does."""
    if entry == "run":
        run_workflow(settings, WORKFLOW, tree)
    elif entry == "backfill":
        backfill(settings, WORKFLOW, tree)
    else:
        resume_thread(settings, "thread:unknown")  # the refusal comes before the thread lookup


def _recorded_threads(url: str) -> list:
    with open_record_store(url) as store:
        return store.list_threads()


@pytest.mark.parametrize("entry", ["run", "backfill", "resume"])
@pytest.mark.parametrize(
    ("content", "entries"),
    [
        ("execution: {config: {bogus_key: 1}}\n", ["bogus_key"]),  # an unknown entry
        ("execution: {config: {max_concurrent: many}}\n", ["max_concurrent"]),  # the wrong type
        (  # a required entry left out
            "execution: {config: {tag_concurrency_limits: [{value: x}]}}\n",
            ["tag_concurrency_limits:key", "tag_concurrency_limits:limit"],
        ),
    ],
    ids=["unknown", "type", "missing"],
)
def test_an_executor_config_that_does_not_fit_the_executor_is_refused_before_recording(
    tmp_path, monkeypatch, entry, content, entries
):
    monkeypatch.chdir(tmp_path)
    isolated_settings(monkeypatch, tmp_path / "home")
    config = tmp_path / "executor.yaml"
    config.write_text(content)
    settings = _settings(tmp_path, WF_EXECUTOR="multiprocess", WF_EXECUTOR_CONFIG=str(config))
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    with pytest.raises(ConfigError) as caught:
        _launch(entry, settings, tree)
    assert caught.value.code == CONFIG_BAD_EXECUTOR_CONFIG
    assert caught.value.details["path"] == str(config) and caught.value.details["executor"] == "multiprocess"
    assert caught.value.details["entries"] == entries
    assert str(config) in str(caught.value)
    assert not (settings.home / "records.db").exists()  # nothing planned, nothing recorded


def test_a_fitting_executor_config_passes_the_check(tmp_path):
    config = tmp_path / "executor.yaml"
    config.write_text("execution:\n  config:\n    start_method:\n      spawn: {}\n    max_concurrent: 6\n")
    settings = _settings(tmp_path, WF_EXECUTOR="multiprocess", WF_EXECUTOR_CONFIG=str(config))
    check_launch_settings(settings)
    # The run gets the file's mapping as written; Dagster fills in its own defaults.
    assert validated_executor_config(settings) == {"max_concurrent": 6, "start_method": {"spawn": {}}}
    check_launch_settings(_settings(tmp_path, WF_EXECUTOR="multiprocess", WF_MAX_PROCESSES="2"))


@pytest.mark.parametrize(("executor", "module"), [("k8s", "dagster_k8s"), ("celery", "dagster_celery")])
def test_cluster_executor_configs_are_checked_against_their_schema(tmp_path, executor, module):
    pytest.importorskip(module)
    shipped = _settings(
        tmp_path,
        WF_EXECUTOR=executor,
        WF_EXECUTOR_CONFIG=str(REPO_ROOT / "deploy" / f"{executor}-executor.yaml"),
    )
    check_launch_settings(shipped)
    config = tmp_path / "executor.yaml"
    config.write_text("execution: {config: {bogus_key: 1}}\n")
    with pytest.raises(ConfigError) as caught:
        check_launch_settings(_settings(tmp_path, WF_EXECUTOR=executor, WF_EXECUTOR_CONFIG=str(config)))
    assert caught.value.code == CONFIG_BAD_EXECUTOR_CONFIG
    assert caught.value.details["entries"] == ["bogus_key"]


@pytest.mark.parametrize("entry", ["run", "backfill", "resume"])
def test_an_executor_config_for_the_in_process_executor_is_refused(tmp_path, monkeypatch, entry):
    monkeypatch.chdir(tmp_path)
    isolated_settings(monkeypatch, tmp_path / "home")
    config = tmp_path / "executor.yaml"
    config.write_text("execution: {config: {max_concurrent: 2}}\n")  # would fit multiprocess
    settings = _settings(tmp_path, WF_EXECUTOR_CONFIG=str(config))
    assert settings.executor == "in_process"
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    with pytest.raises(ConfigError) as caught:
        _launch(entry, settings, tree)
    assert caught.value.code == CONFIG_BAD_EXECUTOR_CONFIG
    assert caught.value.details == {"executor": "in_process", "path": str(config)}
    assert not (settings.home / "records.db").exists()


@pytest.mark.parametrize("entry", ["run", "backfill", "resume"])
@pytest.mark.parametrize(
    ("variables", "store"),
    [
        ({"WF_CAS_URL": "memory://shared-cas"}, "cas"),
        ({"WF_RECORDS_URL": "memory://shared-records"}, "records"),
        ({"WF_CAS_URL": "memory://both", "WF_RECORDS_URL": "memory://both"}, "cas"),
        ({"WF_RECORDS_URL": "sqlite://"}, "records"),  # an in-memory SQLite database
        # SQLite's URI filenames: a named shared-cache database, and the anonymous one
        ({"WF_RECORDS_URL": "sqlite:///file:mem1?mode=memory&cache=shared&uri=true"}, "records"),
        ({"WF_RECORDS_URL": "sqlite:///file::memory:?cache=shared&uri=true"}, "records"),
        ({"WF_TELEMETRY_URL": "memory://telemetry"}, "telemetry"),
    ],
    ids=[
        "cas",
        "records",
        "both",
        "sqlite-memory",
        "sqlite-uri-mode-memory",
        "sqlite-uri-memory",
        "telemetry",
    ],
)
def test_an_in_memory_store_with_an_out_of_process_executor_is_refused(
    tmp_path, monkeypatch, entry, variables, store
):
    monkeypatch.chdir(tmp_path)
    isolated_settings(monkeypatch, tmp_path / "home")
    settings = _settings(tmp_path, WF_EXECUTOR="multiprocess", **variables)
    tree = copy_tree(SAMPLE_REPO, tmp_path / "sample_repo")
    with pytest.raises(ConfigError) as caught:
        _launch(entry, settings, tree)
    assert caught.value.code == CONFIG_STORE_NOT_SHARED
    assert caught.value.details["store"] == store and caught.value.details["executor"] == "multiprocess"
    assert caught.value.details["variable"] in str(caught.value)
    if settings.records_url.startswith("memory://"):
        assert _recorded_threads(settings.records_url) == []  # this process's store: still empty
    else:
        assert not (settings.home / "records.db").exists()
    # The same stores serve the in-process executor.
    check_launch_settings(_settings(tmp_path, **variables))


# --- the same run, one process per step ----------------------------------------------------


@pytest.fixture
def database():
    with fresh_database() as created:
        yield created


def _readmes(out: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("README.md"))}


@pytest.mark.slow
@pytest.mark.postgres
def test_multiprocess_run_on_postgresql_matches_the_in_process_run(tmp_path, monkeypatch, database):
    monkeypatch.chdir(tmp_path)
    # The reference: the embedded default, every step in this process.
    reference_settings = isolated_settings(monkeypatch, tmp_path / "reference")
    reference_tree = copy_tree(SAMPLE_REPO, tmp_path / "reference-tree" / "sample_repo")
    reference = run_workflow(reference_settings, WORKFLOW, reference_tree)
    assert reference.ok

    # Scale-out by configuration only: PostgreSQL instance and records, a CAS every step
    # process shares, and one process per step.
    settings = postgres_settings(
        monkeypatch, tmp_path / "home", database, WF_EXECUTOR="multiprocess", WF_MAX_PROCESSES="2"
    )
    assert settings.executor == "multiprocess" and settings.cas_url.startswith("file://")
    # The settings are values from here on: step processes get them from the run's config,
    # not from an environment this process would have to change.
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    environment_before = dict(os.environ)
    tree = copy_tree(SAMPLE_REPO, tmp_path / "scaled-tree" / "sample_repo")
    summary = run_workflow(settings, WORKFLOW, tree)
    assert dict(os.environ) == environment_before

    assert summary.ok, [(t.path, t.status) for t in summary.threads]
    assert summary.provider_calls == 4 * len(summary.threads) == reference.provider_calls
    assert [t.final_artifact_id for t in summary.threads] == [t.final_artifact_id for t in reference.threads]
    out = Path(summary.out_dir)
    assert _readmes(out) == _readmes(reference_settings.out_dir / tree_key_for(reference_tree))
    assert len(_readmes(out)) == len(summary.threads)

    # Each step ran in a process of its own, none of them this one.
    instance = open_instance(settings)
    runs = instance.get_run_records()
    assert {r.dagster_run.run_id for r in runs} == set(summary.dagster_run_ids)
    assert {r.dagster_run.status for r in runs} == {DagsterRunStatus.SUCCESS}
    step_pids: set[int] = set()
    for run_id in summary.dagster_run_ids:
        starts = instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
        pids = {entry.dagster_event.pid for entry in starts}
        assert len(starts) == 4 and len(pids) == 4, run_id
        step_pids |= pids
        engine_messages = [
            e.user_message for e in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        ]
        assert any("multiprocess executor" in message for message in engine_messages), engine_messages
        runtime_config = instance.get_run_by_id(run_id).run_config["resources"]["wf_runtime"]["config"]
        assert runtime_config["records_schema"] == RECORDS_SCHEMA
    assert os.getpid() not in step_pids
    assert len(step_pids) == 4 * len(summary.dagster_run_ids)

    # The steps recorded their turns in the configured PostgreSQL schema.
    with open_record_store(settings.records_url, schema=RECORDS_SCHEMA) as store:
        threads = store.list_threads(WORKFLOW)
    assert {t.status for t in threads} == {"completed"} and len(threads) == len(summary.threads)
    assert database.scalar(f"SELECT count(*) FROM {RECORDS_SCHEMA}.wf_turns") == 4 * len(threads)
