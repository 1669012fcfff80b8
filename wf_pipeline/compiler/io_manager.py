"""IO manager: turn outputs live in the CAS; Dagster keeps only a pointer per partition.

The turn has already written its output bytes to the CAS (CAS before records). What the
asset returns is a `TurnOutput` (ids and verdicts); this manager stores that descriptor
content-addressed too and keeps a ref from (asset key, partition) to it, so a downstream
turn in any process or later run loads the latest descriptor of its upstream.
"""

from __future__ import annotations

from dagster import InputContext, IOManager, OutputContext

from wf_pipeline.cas import CasStore
from wf_pipeline.errors import CasError
from wf_pipeline.metadata.canonical import sha256_hex
from wf_pipeline.runtime import TurnOutput


def _ref_name(asset_path: list[str], partition_key: str) -> str:
    # Partition keys are paths; hash them so refs are flat, safe names.
    return "/".join(["turn-outputs", *asset_path, sha256_hex(partition_key.encode("utf-8"))[:32]])


class CasIOManager(IOManager):
    """Values are ``{partition_key: TurnOutput}``: one entry per target of the step."""

    def __init__(self, cas: CasStore) -> None:
        self._cas = cas

    def handle_output(self, context: OutputContext, obj: dict[str, TurnOutput]) -> None:
        asset_path = list(context.asset_key.path)
        for partition_key, output in obj.items():
            # Written for skipped and failed targets too, so a downstream step never
            # mistakes an older run's output for this one's.
            descriptor = self._cas.put_json(output.to_json())
            self._cas.set_ref(_ref_name(asset_path, partition_key), descriptor.artifact_id)

    def load_input(self, context: InputContext) -> dict[str, TurnOutput]:
        upstream = context.upstream_output
        assert upstream is not None and upstream.asset_key is not None
        asset_path = list(upstream.asset_key.path)
        loaded: dict[str, TurnOutput] = {}
        for partition_key in context.asset_partition_keys:
            try:
                artifact_id = self._cas.get_ref(_ref_name(asset_path, partition_key))
            except CasError as exc:
                if exc.code != "CAS_REF_NOT_FOUND":
                    raise
                continue  # never materialized for this target: the turn will see no upstream
            loaded[partition_key] = TurnOutput.from_json(self._cas.get_json(artifact_id))
        return loaded
