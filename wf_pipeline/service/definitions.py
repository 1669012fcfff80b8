"""The Dagster code location's use case: the Definitions of every loaded profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wf_pipeline.compiler import build_definitions
from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.service.maintenance import maintenance_calls
from wf_pipeline.settings import Settings


def code_location(settings: Settings, workspace_dir: Path | None = None) -> Any:
    """The Dagster ``Definitions`` of every profile in the layers of ``settings`` and ``workspace_dir``.

    One asset group, checks, a job and a bottom-up sensor per profile, and the
    ``wf_retention`` job with its daily schedule and trigger sensor (`maintenance_calls`);
    each run opens its runtime from the ``wf_runtime`` resource's config (unset fields: the
    code location's WF_ variables). ``workspace_dir`` defaults to the working directory. Raises the
    loader's ``PROFILE_*`` errors.
    """
    return build_definitions(
        load_profiles(settings, workspace_dir or Path.cwd()), maintenance=maintenance_calls()
    )
