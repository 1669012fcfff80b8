"""The Dagster code location (``workspace.yaml`` points here).

Profiles are loaded from the layers of the working directory, the user config folder and
the built-in profiles; each becomes an asset group with its checks and a job.
"""

from __future__ import annotations

from wf_pipeline.service import code_location
from wf_pipeline.settings import Settings

defs = code_location(Settings.from_env())
