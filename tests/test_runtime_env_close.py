"""RuntimeEnv.close and the Dagster resource's teardown release the stores' connections."""

from __future__ import annotations

import pytest
from dagster import build_resources
from e2e_support import isolated_settings

from wf_pipeline.compiler.resources import RUNTIME_KEY, runtime_resources
from wf_pipeline.errors import WfError
from wf_pipeline.metadata.records import ThreadRecord
from wf_pipeline.providers import create_provider
from wf_pipeline.records import MemoryRecordStore, register_record_store
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.settings import Settings


class ClosableProvider:
    """A real offline provider that records whether it was closed."""

    def __init__(self) -> None:
        self._inner = create_provider("offline", {}, {})
        self.closed = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def close(self) -> None:
        self.closed += 1


def pooled_connections(env: RuntimeEnv) -> int:
    return env.records._engine.pool.checkedin()


def touch_records(env: RuntimeEnv) -> None:
    env.records.save_thread(
        ThreadRecord(
            thread_id="thread:t",
            workflow_id="wf",
            target_node_id="node:n",
            status="running",
            created_at_ms=1,
            updated_at_ms=1,
        )
    )


def test_context_manager_closes_the_record_store(tmp_path, monkeypatch):
    settings = isolated_settings(monkeypatch, tmp_path / "home")

    with RuntimeEnv.open(settings, workspace_dir=tmp_path) as env:
        touch_records(env)
        assert pooled_connections(env) == 1

    assert pooled_connections(env) == 0
    env.close()  # closing twice is harmless


def test_a_provider_handed_in_stays_open(tmp_path, monkeypatch):
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    provider = ClosableProvider()

    with RuntimeEnv.open(settings, workspace_dir=tmp_path, provider=provider):
        pass

    assert provider.closed == 0


def test_the_dagster_resource_closes_what_it_opened_at_teardown(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    isolated_settings(monkeypatch, tmp_path / "home")

    with build_resources({RUNTIME_KEY: runtime_resources()[RUNTIME_KEY]}) as resources:
        env = getattr(resources, RUNTIME_KEY)
        touch_records(env)
        assert pooled_connections(env) == 1

    assert pooled_connections(env) == 0


def test_a_hardcoded_env_is_left_to_its_owner(tmp_path, monkeypatch):
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    with RuntimeEnv.open(settings, workspace_dir=tmp_path) as owned:
        with build_resources({RUNTIME_KEY: runtime_resources(owned)[RUNTIME_KEY]}) as resources:
            touch_records(getattr(resources, RUNTIME_KEY))
        assert pooled_connections(owned) == 1
        touch_records(owned)


class CountingRecordStore(MemoryRecordStore):
    """An in-memory record store, plugged in by URL scheme, that counts its closes."""

    closes = 0

    def close(self) -> None:
        CountingRecordStore.closes += 1


def test_a_failing_open_closes_the_stores_it_had_opened(tmp_path, monkeypatch):
    register_record_store("closecount", lambda url, **options: CountingRecordStore())
    home = tmp_path / "home"
    isolated_settings(monkeypatch, home)
    settings = Settings.from_env(
        {"WF_HOME": str(home), "WF_RECORDS_URL": "closecount://records", "WF_PROVIDER": "no_such_provider"}
    )
    CountingRecordStore.closes = 0

    with pytest.raises(WfError) as caught:
        RuntimeEnv.open(settings, workspace_dir=tmp_path)

    assert caught.value.code == "PROVIDER_UNKNOWN"
    assert CountingRecordStore.closes == 1
