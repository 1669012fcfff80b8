"""The only package that imports dagster: profiles compile to Definitions here, and runs launch (launch/)."""

from wf_pipeline.compiler.assets import targets_partitions, turn_asset_key
from wf_pipeline.compiler.definitions import build_definitions, job_name, resolve_job
from wf_pipeline.compiler.launch.instance import open_instance
from wf_pipeline.compiler.maintenance import MaintenanceCalls

__all__ = [
    "MaintenanceCalls",
    "build_definitions",
    "job_name",
    "open_instance",
    "resolve_job",
    "targets_partitions",
    "turn_asset_key",
]
