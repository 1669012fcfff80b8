"""Object-store settings for the CAS: endpoint, region, storage options, and how they reach steps."""

from __future__ import annotations

import json

import pytest
from s3_support import MotoServer

from wf_pipeline.cas import FsspecArtifactStore, open_cas
from wf_pipeline.compiler.launch.executors import runtime_run_config
from wf_pipeline.compiler.resources import settings_from_config
from wf_pipeline.errors import ConfigError
from wf_pipeline.settings import Settings

OPTIONS = {"key": "AKIA-not-shown", "secret": "secret-not-shown", "client_kwargs": {"verify": False}}


def _settings(tmp_path, **variables: str) -> Settings:
    return Settings.from_env({"WF_HOME": str(tmp_path / "home"), **variables})


def test_storage_options_endpoint_and_region_make_the_cas_options(tmp_path):
    settings = _settings(
        tmp_path,
        WF_CAS_URL="s3://bucket/cas",
        WF_CAS_ENDPOINT_URL="http://127.0.0.1:9000",
        WF_CAS_REGION="eu-west-1",
        WF_CAS_STORAGE_OPTIONS=json.dumps({**OPTIONS, "endpoint_url": "http://overridden:1"}),
    )
    options = settings.cas_options()
    assert options == {
        "key": "AKIA-not-shown",
        "secret": "secret-not-shown",
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"verify": False, "region_name": "eu-west-1"},
    }
    options["client_kwargs"]["verify"] = True  # a copy: the settings stay as they were
    assert settings.cas_options()["client_kwargs"]["verify"] is False
    assert _settings(tmp_path).cas_options() == {}
    gcs = _settings(tmp_path, WF_CAS_URL="gs://bucket/cas", WF_CAS_ENDPOINT_URL="http://127.0.0.1:4443")
    assert gcs.cas_options() == {"endpoint_url": "http://127.0.0.1:4443"}


@pytest.mark.parametrize(
    "variables",
    [
        {"WF_CAS_STORAGE_OPTIONS": "[1, 2]"},
        {"WF_CAS_STORAGE_OPTIONS": '{"secret": "s3cr3t-value"'},
        {"WF_CAS_URL": "s3://b/cas", "WF_CAS_ENDPOINT_URL": "127.0.0.1:9000"},
        # An endpoint or a region the CAS's filesystem would not take.
        {"WF_CAS_ENDPOINT_URL": "http://127.0.0.1:9000"},
        {"WF_CAS_URL": "gs://b/cas", "WF_CAS_REGION": "eu-west-1"},
        {"WF_CAS_URL": "abfs://container/cas", "WF_CAS_ENDPOINT_URL": "http://127.0.0.1:10000"},
    ],
)
def test_bad_object_store_settings_are_refused_without_echoing_them(tmp_path, variables):
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, **variables)
    assert caught.value.code == "CONFIG_BAD_VALUE"
    assert "s3cr3t" not in str(caught.value) and "s3cr3t" not in repr(caught.value.details)


def test_storage_options_never_enter_run_config_or_repr(tmp_path):
    settings = _settings(
        tmp_path,
        WF_CAS_URL="s3://bucket/cas",
        WF_CAS_ENDPOINT_URL="http://127.0.0.1:9000",
        WF_CAS_STORAGE_OPTIONS=json.dumps(OPTIONS),
    )
    config = runtime_run_config(settings)["resources"]["wf_runtime"]["config"]
    assert config["cas_storage_options"] == {"env": "WF_CAS_STORAGE_OPTIONS"}
    assert config["cas_endpoint_url"] == "http://127.0.0.1:9000"
    for shown in (repr(config), repr(settings), str(settings), repr(settings.launch_values())):
        assert "not-shown" not in shown
    # A step reads them from its own environment (Dagster resolves ``env:`` there).
    step_environ = {"WF_HOME": "/elsewhere", "WF_CAS_STORAGE_OPTIONS": json.dumps(OPTIONS)}
    step = Settings.from_values(settings.launch_values(), step_environ)
    assert step.cas_options() == settings.cas_options() and step.home == settings.home
    # Without options the launch says so (empty), so a step does not pick up stray ones.
    plain = _settings(tmp_path, WF_CAS_URL="s3://bucket/cas")
    step = Settings.from_values(plain.launch_values(), step_environ)
    assert step.cas_options() == {}
    assert settings_from_config(runtime_run_config(plain)["resources"]["wf_runtime"]["config"]) == plain


def test_the_runtime_opens_the_cas_with_the_settings_options(tmp_path, moto_server: MotoServer):
    # The endpoint and credentials travel as options; nothing is read from this process's AWS_* variables.
    bucket = moto_server.create_bucket()
    server_options = moto_server.storage_options()
    settings = _settings(
        tmp_path,
        WF_CAS_URL=f"s3://{bucket}/cas",
        WF_CAS_ENDPOINT_URL=moto_server.endpoint_url,
        WF_CAS_REGION="us-east-1",
        WF_CAS_STORAGE_OPTIONS=json.dumps({"key": server_options["key"], "secret": server_options["secret"]}),
    )
    store = open_cas(settings.cas_url, **settings.cas_options())
    assert isinstance(store, FsspecArtifactStore)
    ref = store.put(b"through the settings")
    keys = moto_server.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    hex_digest = ref.artifact_id.removeprefix("sha256:")
    assert [item["Key"] for item in keys] == [f"cas/objects/{hex_digest[:2]}/{hex_digest[2:]}"]
