"""Former module path of the embedded event log, kept because dagster.yaml files name it.

Homes set up by an earlier release name ``wf_pipeline.compiler.event_log`` as their
``event_log_storage`` module; `open_instance` rewrites such a file, and this re-export
keeps any other process (the UI, the daemon) that reads it before then working.
"""

from wf_pipeline.compiler.launch.event_log import BatchedSqliteEventLogStorage, dynamic_partitions_snapshot

__all__ = ["BatchedSqliteEventLogStorage", "dynamic_partitions_snapshot"]
