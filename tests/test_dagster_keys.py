"""The ``wf_keys_rewrap`` Dagster job: registered in the code location, run on a real instance, it moves
every data key off decrypt-only KEKs and reports counts and elapsed ms only."""

from __future__ import annotations

import pytest
from keys_support import artifact_ids, keyed_home, opened

from wf_pipeline.compiler import open_instance
from wf_pipeline.compiler.maintenance import KEYS_REWRAP_JOB
from wf_pipeline.service import code_location


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with keyed_home(request.param, monkeypatch, tmp_path / "home") as keyed:
        yield keyed


def _step_metadata(result, step: str) -> dict[str, object]:
    (event,) = [e for e in result.all_events if e.step_key == step and e.event_type_value == "STEP_OUTPUT"]
    return {name: value.value for name, value in event.event_specific_data.metadata.items()}


def test_the_rewrap_job_moves_every_key_and_records_counts(settings, tmp_path):
    ids = artifact_ids(300)
    with opened(settings) as (_, keyring):
        originals = {a: key for a, (key, _) in keyring.data_keys_for_put(ids, "provider_response").items()}
        (new,) = keyring.rotate(["provider_response"])
        assert keyring.keys_under_decrypt_only() == 300

    defs = code_location(settings, tmp_path)
    job = defs.resolve_job_def(KEYS_REWRAP_JOB)
    instance = open_instance(settings)
    result = job.execute_in_process(instance=instance)

    assert result.success
    figures = _step_metadata(result, "rewrap_keys_op")
    assert set(figures) == {"rewrapped", "skipped", "remaining", "elapsed_ms"}
    assert (figures["rewrapped"], figures["skipped"], figures["remaining"]) == (300, 0, 0)
    assert isinstance(figures["elapsed_ms"], int) and figures["elapsed_ms"] >= 0
    with opened(settings) as (_, keyring):
        assert keyring.keys_under_decrypt_only() == 0
        for artifact_id in ids[::37]:
            key, row = keyring.data_key_for_get(artifact_id)
            assert row.kek_id == new.kek_id and key == originals[artifact_id]

    # A second run finds nothing to do.
    again = _step_metadata(job.execute_in_process(instance=instance), "rewrap_keys_op")
    assert (again["rewrapped"], again["remaining"]) == (0, 0)
