"""Workflow profiles: schema, layered loading, validation with stable codes, prompt rendering."""

from __future__ import annotations

from wf_pipeline.profiles.describe import catalog_rows, describe, describe_resolved, validate_report
from wf_pipeline.profiles.loader import (
    Layer,
    LoadedProfile,
    ProfileCatalog,
    ProfileProblem,
    ShadowedProfile,
    default_layers,
    load_catalog,
    load_profile_file,
)
from wf_pipeline.profiles.render import PromptTemplate, compile_template, render_prompt
from wf_pipeline.profiles.schema import (
    ArtifactPolicy,
    FailurePolicy,
    GateSpec,
    Profile,
    ThreadPolicy,
    TurnSpec,
)
from wf_pipeline.profiles.segments import parallel_segment, turn_segments

__all__ = [
    "ArtifactPolicy",
    "FailurePolicy",
    "GateSpec",
    "Layer",
    "LoadedProfile",
    "Profile",
    "ProfileCatalog",
    "PromptTemplate",
    "ProfileProblem",
    "ShadowedProfile",
    "ThreadPolicy",
    "TurnSpec",
    "compile_template",
    "default_layers",
    "catalog_rows",
    "describe",
    "describe_resolved",
    "load_catalog",
    "load_profile_file",
    "parallel_segment",
    "render_prompt",
    "turn_segments",
    "validate_report",
]
