"""The runtime as Dagster resources.

``wf_runtime`` is the `RuntimeEnv` itself. Code locations (UI, daemon, multiprocess
steps) open it from WF_ settings when a run starts and close it when the run (or step)
tears its resources down; the CLI hands in the env it already opened, so its runs use
the very same stores and provider, and closes it itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from dagster import InitResourceContext, ResourceDefinition

from wf_pipeline.config import Settings
from wf_pipeline.runtime import RuntimeEnv

RUNTIME_KEY = "wf_runtime"


def _open_from_environment(_: InitResourceContext) -> Iterator[RuntimeEnv]:
    # A generator resource: Dagster runs the code after the yield at teardown.
    with RuntimeEnv.open(Settings.from_env(os.environ)) as env:
        yield env


def runtime_resources(env: RuntimeEnv | None = None) -> dict[str, ResourceDefinition]:
    runtime = (
        ResourceDefinition.hardcoded_resource(env, "wf_pipeline runtime (stores and provider)")
        if env is not None
        else ResourceDefinition(
            _open_from_environment, description="wf_pipeline runtime opened from WF_ settings"
        )
    )
    return {RUNTIME_KEY: runtime}
