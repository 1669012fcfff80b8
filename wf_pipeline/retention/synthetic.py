"""Synthetic retention workloads: many completed threads with real records and CAS objects, written fast.

For benchmarks (``bench/p6_retention.py``) and crash tests: records go in through
`RecordStore.commit_turns` (one transaction per chunk of threads) and objects through
`ArtifactStore.put_many` (one durability barrier per chunk), instead of running turns.
Each thread looks like one of a four-turn workflow: one context snapshot, per turn a
rendered prompt and an output (all linked), a system prompt shared by every thread, and
a head frame on its final output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wf_pipeline.cas import ArtifactStore
from wf_pipeline.metadata.canonical import digest
from wf_pipeline.metadata.records import (
    ArtifactLinkRecord,
    FrameRecord,
    PromptLinkRecord,
    ThreadRecord,
    TurnRecord,
    artifact_link_id_for,
    frame_id_for,
    prompt_link_id_for,
    thread_id_for,
    turn_record_id_for,
)
from wf_pipeline.records import RecordStore, TurnCommit

DEFAULT_TURNS = ("evidence_gather", "verification", "readme_struct", "style_refine")
# Threads per transaction and objects per put_many: big enough to amortise commits and fsyncs.
CHUNK_THREADS = 500


@dataclass(frozen=True)
class SyntheticWorkload:
    """What `write_workload` wrote.

    Attributes:
        thread_ids: the threads, in the order written.
        contexts, renders, outputs: artifact ids by class (renders include none of the
            shared system prompt).
        system_prompt: the one system prompt every turn links.
        heads: the final output of every thread (behind its head frame).
    """

    thread_ids: tuple[str, ...]
    contexts: tuple[str, ...]
    renders: tuple[str, ...]
    outputs: tuple[str, ...]
    system_prompt: str
    heads: tuple[str, ...]


def write_workload(
    records: RecordStore,
    cas: ArtifactStore,
    *,
    workflow_id: str,
    threads: int,
    created_at_ms: int,
    turns: tuple[str, ...] = DEFAULT_TURNS,
    payload_bytes: int = 256,
    frame_type: str = "readme",
    write_objects: Callable[[list[bytes]], object] | None = None,
) -> SyntheticWorkload:
    """Write ``threads`` completed threads of ``workflow_id``, every record dated ``created_at_ms``.

    Args:
        records, cas: where to write.
        workflow_id: the threads' workflow (its profile's retention applies to them).
        threads: how many threads; each adds 1 context, ``len(turns)`` renders and outputs.
        created_at_ms: the time of every record (Unix epoch ms); old enough and they expire.
        turns: the turn ids of each thread.
        payload_bytes: the size of each object, in bytes (about).
        frame_type: the head frames' type.
        write_objects: stores a chunk of objects; default ``cas.put_many``. A benchmark may
            pass a writer that skips the store's per-object durability, which is not what
            it measures.

    Returns:
        The `SyntheticWorkload` (ids only).

    Raises:
        RecordError, CasError: the stores' codes.
    """
    pad = b"." * max(0, payload_bytes - 48)
    system = cas.put(b"synthetic system prompt\n" + pad)
    thread_ids: list[str] = []
    contexts: list[str] = []
    renders: list[str] = []
    outputs: list[str] = []
    heads: list[str] = []
    for start in range(0, threads, CHUNK_THREADS):
        objects: list[bytes] = []
        commits: list[TurnCommit] = []
        for number in range(start, min(threads, start + CHUNK_THREADS)):
            node = "node:" + digest(f"synthetic node {number}".encode())[7:31]
            thread = ThreadRecord(
                thread_id=thread_id_for(workflow_id, node),
                workflow_id=workflow_id,
                target_node_id=node,
                target_key=f"t{number}",
                target_path=f"d{number}",
                status="completed",
                created_at_ms=created_at_ms,
                updated_at_ms=created_at_ms,
                last_turn_seq=len(turns),
            )
            thread_ids.append(thread.thread_id)
            context = f"context {number}\n".encode() + pad
            objects.append(context)
            context_id = digest(context)
            contexts.append(context_id)
            for seq, turn_id in enumerate(turns, start=1):
                render = f"render {number} {turn_id}\n".encode() + pad
                output = f"output {number} {turn_id}\n".encode() + pad
                objects += [render, output]
                render_id, output_id = digest(render), digest(output)
                renders.append(render_id)
                outputs.append(output_id)
                final = seq == len(turns)
                if final:
                    heads.append(output_id)
                commits.append(
                    _commit(
                        thread,
                        turn_id,
                        seq,
                        created_at_ms,
                        system=(system.artifact_id, system.size),
                        context=(context_id, len(context)),
                        render=(render_id, len(render)),
                        output=(output_id, len(output)),
                        frame_type=frame_type if final else None,
                    )
                )
        (write_objects or cas.put_many)(objects)
        records.commit_turns(commits)
    return SyntheticWorkload(
        thread_ids=tuple(thread_ids),
        contexts=tuple(contexts),
        renders=tuple(renders),
        outputs=tuple(outputs),
        system_prompt=system.artifact_id,
        heads=tuple(heads),
    )


def _commit(
    thread: ThreadRecord,
    turn_id: str,
    seq: int,
    at_ms: int,
    *,
    system: tuple[str, int],
    context: tuple[str, int],
    render: tuple[str, int],
    output: tuple[str, int],
    frame_type: str | None,
) -> TurnCommit:
    workflow_id, thread_id = thread.workflow_id, thread.thread_id
    roles = (("system_prompt", system), ("context", context), ("rendered_prompt", render), ("output", output))
    frame = None
    if frame_type is not None:
        frame = FrameRecord(
            frame_id=frame_id_for(thread.target_node_id, frame_type, output[0]),
            node_id=thread.target_node_id,
            frame_type=frame_type,
            artifact_id=output[0],
            thread_id=thread_id,
            created_at_ms=at_ms,
        )
    return TurnCommit(
        thread=thread,
        turn=TurnRecord(
            turn_record_id=turn_record_id_for(workflow_id, thread_id, turn_id, 1),
            thread_id=thread_id,
            turn_id=turn_id,
            turn_seq=seq,
            attempt=1,
            status="completed",
            input_artifact_ids=(context[0],),
            output_artifact_id=output[0],
            started_at_ms=at_ms,
            ended_at_ms=at_ms,
        ),
        prompt_link=PromptLinkRecord(
            prompt_link_id=prompt_link_id_for(workflow_id, thread_id, turn_id, 1),
            thread_id=thread_id,
            turn_id=turn_id,
            node_id=thread.target_node_id,
            system_prompt_artifact_id=system[0],
            rendered_prompt_artifact_id=render[0],
            context_artifact_id=context[0],
            created_at_ms=at_ms,
        ),
        artifact_links=tuple(
            ArtifactLinkRecord(
                artifact_link_id=artifact_link_id_for(thread_id, turn_id, 1, role, artifact_id),
                artifact_id=artifact_id,
                thread_id=thread_id,
                turn_id=turn_id,
                attempt=1,
                role=role,
                size=size,
                created_at_ms=at_ms,
            )
            for role, (artifact_id, size) in roles
        ),
        frame=frame,
    )
