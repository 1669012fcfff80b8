"""The runtime as Dagster resources.

``wf_runtime`` is the `RuntimeEnv` itself. The CLI's in-process runs hand in the env it
already opened, so its runs use the very same stores and provider, and closes it itself. Everywhere else (the
UI's code location, the daemon, out-of-process steps) the resource opens it from its
config: a run launched by the CLI carries the launcher's settings there (run config,
see `wf_pipeline.compiler.launch.executors.runtime_run_config`); a field left unset takes
the WF_ variable of the process that opens the resource, and any field may name a
variable instead of a value (Dagster's ``{env: NAME}`` form). The resource closes what it
opened when the run (or step) tears its resources down.
"""

from __future__ import annotations

from collections.abc import Iterator

from dagster import (
    BoolSource,
    Field,
    InitResourceContext,
    IntSource,
    Map,
    Noneable,
    ResourceDefinition,
    StringSource,
)

from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.settings import LAUNCH_FIELDS, Settings

RUNTIME_KEY = "wf_runtime"


def _optional(kind: object, variable: str) -> Field:
    return Field(Noneable(kind), is_required=False, default_value=None, description=variable)


# One field per `Settings.launch_values` key; None (unset) takes the opening process's variable,
# an empty string the setting's default. No field holds a secret: provider keys stay in the
# environment, named by the provider's ``api_key_env`` option, and the CAS storage options
# (credentials, maybe) are only ever read from the step's own WF_CAS_STORAGE_OPTIONS.
RUNTIME_CONFIG_SCHEMA = {
    "home": _optional(StringSource, "WF_HOME"),
    "cas_url": _optional(StringSource, "WF_CAS_URL"),
    "cas_endpoint_url": _optional(StringSource, "WF_CAS_ENDPOINT_URL"),
    "cas_region": _optional(StringSource, "WF_CAS_REGION"),
    # A JSON object as text; a launch never sets it (it may hold credentials): ``{env: ...}``.
    "cas_storage_options": _optional(StringSource, "WF_CAS_STORAGE_OPTIONS"),
    "records_url": _optional(StringSource, "WF_RECORDS_URL"),
    "records_schema": _optional(StringSource, "WF_RECORDS_SCHEMA"),
    "dagster_home": _optional(StringSource, "DAGSTER_HOME"),
    "out_dir": _optional(StringSource, "WF_OUT"),
    "provider": _optional(StringSource, "WF_PROVIDER"),
    "provider_concurrency": _optional(IntSource, "WF_PROVIDER_CONCURRENCY"),
    "builtin_root": _optional(StringSource, "WF_BUILTIN_ROOT"),
    "config_dir": _optional(StringSource, "WF_CONFIG_DIR"),
    "provider_options": _optional(Map(str, str), "WF_<PROVIDER>_<OPTION>"),
    "follow_external_links": _optional(BoolSource, "WF_FOLLOW_EXTERNAL_LINKS"),
    "reuse_responses": _optional(BoolSource, "WF_REUSE_RESPONSES"),
    "telemetry": _optional(BoolSource, "WF_TELEMETRY"),
    "telemetry_url": _optional(StringSource, "WF_TELEMETRY_URL"),
    "master_key_file": _optional(StringSource, "WF_MASTER_KEY_FILE"),
    "audit_key_file": _optional(StringSource, "WF_AUDIT_KEY_FILE"),
    "kek_period": _optional(StringSource, "WF_KEK_PERIOD"),
    "key_manager": _optional(StringSource, "WF_KEY_MANAGER"),
    "kms_endpoint_url": _optional(StringSource, "WF_KMS_ENDPOINT_URL"),
    "kms_region": _optional(StringSource, "WF_KMS_REGION"),
    "kms_alias_prefix": _optional(StringSource, "WF_KMS_ALIAS_PREFIX"),
}


def settings_from_config(config: dict[str, object]) -> Settings:
    """The settings a ``wf_runtime`` resource config gives, the process's WF_ variables filling unset fields.

    Raises ``CONFIG_BAD_EXECUTOR``, ``CONFIG_BAD_NUMBER`` or ``CONFIG_BAD_VALUE``.
    """
    return Settings.from_values({name: config.get(name) for name in LAUNCH_FIELDS})


def _open_from_config(context: InitResourceContext) -> Iterator[RuntimeEnv]:
    # A generator resource: Dagster runs the code after the yield at teardown.
    with RuntimeEnv.open(settings_from_config(context.resource_config or {})) as env:
        yield env


def runtime_resources(env: RuntimeEnv | None = None) -> dict[str, ResourceDefinition]:
    """The ``wf_runtime`` resource: ``env`` itself when given (in-process CLI runs), else opened from config."""
    runtime = (
        ResourceDefinition.hardcoded_resource(env, "wf_pipeline runtime (stores and provider)")
        if env is not None
        else ResourceDefinition(
            _open_from_config,
            config_schema=RUNTIME_CONFIG_SCHEMA,
            description="wf_pipeline runtime opened from its config (unset fields: WF_ settings)",
        )
    )
    return {RUNTIME_KEY: runtime}
