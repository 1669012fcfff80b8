"""P2: our cost per thread over LangGraph's, on the same four-turn chain and provider.

LangGraph side: a StateGraph of four nodes (evidence_gather -> verification ->
readme_struct -> style_refine) compiled with the SQLite checkpointer (a file database in
the temporary folder), one LangGraph thread per directory. It scans the tree once, and
for every directory bottom-up builds the same context payload our turns get (the
children's READMEs included), then invokes the graph. Each node renders the profile's
prompt templates and calls the same zero-latency simulated provider with the same
inputs; the checkpointer stores the state after every node. The READMEs are written to
an output folder. No gates, no content-addressed artifacts, no per-turn records.

Ours: P1's `run_workflow` measurement (scan, plan, one Dagster run per depth level, CAS
artifacts, turn/gate/link/frame records, gate evaluation, Dagster events, READMEs).

Both must produce byte-identical READMEs, or the comparison is void. Prints
`P2 ratio=<ours per thread / LangGraph per thread> ours_ms=... langgraph_ms=... threads=...`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from p1_overhead import Measurement, check_same_readmes, measure_ours
from support import (
    DIRECTORIES,
    FANOUT,
    REPO_ROOT,
    TURN_IDS,
    WORKFLOW_ID,
    make_tree,
    require_simulated_provider,
    timed,
    warm_up,
)

from wf_pipeline.metadata.payloads import CONTEXT_REF
from wf_pipeline.profiles import LoadedProfile, default_layers, load_catalog, render_prompt
from wf_pipeline.providers import Provider, ProviderRequest, create_provider
from wf_pipeline.runtime.targets import target_key_for
from wf_pipeline.settings import Settings
from wf_pipeline.tree import TreeScan, build_context, context_json_text, scan_tree
from wf_pipeline.workflows import load_builtin_workflows
from wf_pipeline.workflows.docs_writer.sink import README_NAME


class DocsState(TypedDict, total=False):
    target_path: str
    target_name: str
    context: str
    evidence_map: str
    verification_report: str
    readme_struct: str
    readme_final: str


def turn_node(loaded: LoadedProfile, turn: Any, provider: Provider) -> Callable[[DocsState], dict[str, str]]:
    """A graph node doing what one of our turns asks of the provider: render, then call."""
    profile = loaded.profile
    template = loaded.templates[turn.turn_id]
    system_template = loaded.system_prompts.get(turn.turn_id)

    def node(state: DocsState) -> dict[str, str]:
        inputs = {ref: state[ref] for ref in turn.input_refs}
        variables = {
            "workflow_id": profile.workflow_id,
            "turn_id": turn.turn_id,
            "target_path": state["target_path"],
            "target_name": state["target_name"],
            "inputs": inputs,
        }
        request = ProviderRequest(
            workflow_id=profile.workflow_id,
            thread_id=state["target_path"],
            turn_id=turn.turn_id,
            output_type=turn.output_type,
            output_format=turn.output_format,
            system_prompt=render_prompt(system_template, variables) if system_template else "",
            user_prompt=render_prompt(template, variables),
            inputs=inputs,
            timeout_ms=turn.timeout_ms,
        )
        return {turn.output_type: provider.complete(request).text}

    return node


def build_graph(loaded: LoadedProfile, provider: Provider, checkpointer: SqliteSaver):
    turns = loaded.profile.ordered_turns()
    if tuple(turn.turn_id for turn in turns) != TURN_IDS:
        raise SystemExit(f"{WORKFLOW_ID} no longer has the turns {TURN_IDS}")
    graph = StateGraph(DocsState)
    previous = START
    for turn in turns:
        graph.add_node(turn.turn_id, turn_node(loaded, turn, provider))
        graph.add_edge(previous, turn.turn_id)
        previous = turn.turn_id
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=checkpointer)


def document_tree(graph, scan: TreeScan, out_dir: Path) -> dict[str, str]:
    """Every directory bottom-up, one LangGraph thread each; returns path -> README text."""
    readmes: dict[str, str] = {}
    for directory in scan.directories_bottom_up():
        children = {child.path: readmes.get(child.path) for child in scan.dirs_in(directory.path)}
        context = context_json_text(build_context(scan, directory.path, children))
        config = {"configurable": {"thread_id": target_key_for(scan.root, directory.path)}}
        state = graph.invoke(
            {"target_path": directory.path, "target_name": directory.name, CONTEXT_REF: context}, config
        )
        readmes[directory.path] = state["readme_final"]
    for path, text in readmes.items():
        destination = out_dir if path == "." else out_dir / path
        destination.mkdir(parents=True, exist_ok=True)
        (destination / README_NAME).write_text(text)
    return readmes


def measure_langgraph(directories: int = DIRECTORIES, fanout: int = FANOUT) -> Measurement:
    load_builtin_workflows()  # the simulated provider answers with the docs writer's offline turns
    provider = create_provider("simulated", {"latency_ms": "0"})
    with tempfile.TemporaryDirectory(prefix="wf-bench-langgraph-") as folder:
        # The profile as ours loads it: built-in and workspace layers, an empty user layer.
        layers_env = {"WF_CONFIG_DIR": str(Path(folder) / "user-config")}
        layers = default_layers(Settings.from_env(layers_env), REPO_ROOT, layers_env)
        loaded = load_catalog(layers).get(WORKFLOW_ID)
        tree = make_tree(Path(folder), directories=directories, fanout=fanout)

        def run() -> dict[str, str]:
            with SqliteSaver.from_conn_string(str(Path(folder) / "checkpoints.db")) as checkpointer:
                graph = build_graph(loaded, provider, checkpointer)
                return document_tree(graph, scan_tree(tree), Path(folder) / "out")

        readmes, seconds = timed(run)
    if len(readmes) != directories:
        raise SystemExit(f"LangGraph documented {len(readmes)} of {directories} directories")
    return Measurement(seconds, len(readmes), readmes=readmes)


def report(ours: Measurement, langgraph: Measurement) -> str:
    return (
        f"P2 ratio={ours.per_thread_s / langgraph.per_thread_s:.2f} "
        f"ours_ms={ours.per_thread_s * 1000:.1f} langgraph_ms={langgraph.per_thread_s * 1000:.1f} "
        f"ours_s={ours.seconds:.2f} langgraph_s={langgraph.seconds:.2f} threads={ours.threads}"
    )


def main(ours: Measurement | None = None) -> None:
    require_simulated_provider()
    measure_langgraph(directories=3, fanout=2)  # warm-up, as for ours
    langgraph = measure_langgraph()
    if ours is None:
        warm_up()
        ours = measure_ours()
    check_same_readmes(ours, langgraph, "P2")
    print(report(ours, langgraph), flush=True)


if __name__ == "__main__":
    main()
