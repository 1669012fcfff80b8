"""The Dagster code location (``workspace.yaml`` points here).

Profiles are loaded from the layers of the working directory, the user config folder and
the built-in profiles; each becomes an asset group with its checks and a job.
"""

from __future__ import annotations

import os
from pathlib import Path

from wf_pipeline.compiler import build_definitions
from wf_pipeline.config import Settings
from wf_pipeline.profiles import default_layers, load_catalog
from wf_pipeline.workflows import load_builtin_workflows

_settings = Settings.from_env(os.environ)
load_builtin_workflows()  # profiles name the workflows' gate types
defs = build_definitions(load_catalog(default_layers(_settings, Path.cwd())))
