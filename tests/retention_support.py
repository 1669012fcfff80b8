"""Shared set-up for retention and key tests: a recorded thread whose turns put real CAS objects."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wf_pipeline.cas import ArtifactStore
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
from wf_pipeline.profiles import Layer, ProfileCatalog, load_catalog
from wf_pipeline.records import RecordStore, TurnCommit
from wf_pipeline.workflows import load_builtin_workflows

ALL_ROLES = ("system_prompt", "rendered_prompt", "context", "output")
# The class each role's object is put under in a home with classes (see the profiles' retention classes).
ROLE_CLASSES = {
    "system_prompt": "prompt_render",
    "rendered_prompt": "prompt_render",
    "context": "context_payload",
    "output": "output",
}
# Payload text per role; formatted with the thread's ``name`` and, per turn, its ``turn`` id.
TEXTS = {
    "system_prompt": "system prompt shared by every thread",
    "rendered_prompt": "prompt for {name}/{turn}",
    "context": "context of {name}",
    "output": "output of {name}/{turn}",
}


@dataclass
class RecordedThread:
    """What `write_recorded_thread` wrote: the thread record and artifact ids (in turn order).

    ``context`` and ``system`` are "" when that role was not stored; ``classes`` maps each
    artifact id put to the class it was put under (None: no class).
    """

    thread: ThreadRecord
    context: str = ""
    system: str = ""
    renders: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    classes: dict[str, str | None] = field(default_factory=dict)


def write_recorded_thread(
    records: RecordStore,
    cas: ArtifactStore,
    *,
    workflow_id: str,
    name: str,
    turn_ids: Sequence[str],
    at: int,
    node: str | None = None,
    target_key: str = "",
    status: str = "completed",
    step_ms: int = 0,
    roles: Sequence[str] = ALL_ROLES,
    classes: Mapping[str, str | None] | None = None,
    texts: Mapping[str, str] | None = None,
    system_cas: ArtifactStore | None = None,
    prompt_link: bool = True,
    frame: bool = True,
) -> RecordedThread:
    """Put a thread's objects in ``cas`` and commit one completed turn record per turn id.

    Arguments:
        records: the record store each turn is committed to (`RecordStore.commit_turn`).
        cas: where the objects are put (``put_text``).
        workflow_id: the thread's workflow; ``name`` is its target path and names its objects.
        turn_ids: the turns, in order (turn_seq 1..n, attempt 1); ``last_turn_seq`` is their count.
        at: creation time of the thread (ms); turn n starts and ends at ``at + n * step_ms``.
        node: the target node id; default ``"node:" + name``.
        target_key: the partition key: threads with the same one supersede each other.
        status: the thread's status (every turn record is ``completed`` whatever it is).
        roles: which artifact links each turn records, among ``ALL_ROLES``; "context" and
            "system_prompt" objects are put once per thread, a render and an output per turn.
        classes: role -> artifact class each object is put under; a role absent (or None) puts
            without a class. Default: none has a class.
        texts: role -> payload text, overriding `TEXTS` (``{name}``, ``{turn}`` are filled in).
        system_cas: where the system prompt is put; default ``cas``.
        prompt_link: record a PromptLinkRecord per turn (needs "system_prompt" and "context").
        frame: record a "readme" FrameRecord of the last turn's output when ``status`` is
            "completed".

    A turn's input is the context when "context" is a role, else its render.

    Returns:
        a `RecordedThread` of the ids written.
    """
    node = f"node:{name}" if node is None else node
    classes = classes or {}
    texts = {**TEXTS, **(texts or {})}
    thread = ThreadRecord(
        thread_id=thread_id_for(workflow_id, node),
        workflow_id=workflow_id,
        target_node_id=node,
        target_key=target_key,
        target_path=name,
        status=status,
        created_at_ms=at,
        updated_at_ms=at,
        last_turn_seq=len(turn_ids),
    )
    written = RecordedThread(thread)

    def put(role: str, store: ArtifactStore, turn: str = ""):
        ref = store.put_text(texts[role].format(name=name, turn=turn), artifact_class=classes.get(role))
        written.classes[ref.artifact_id] = classes.get(role)
        return ref

    shared = {}
    if "context" in roles:
        shared["context"] = put("context", cas)
        written.context = shared["context"].artifact_id
    if "system_prompt" in roles:
        shared["system_prompt"] = put("system_prompt", system_cas if system_cas is not None else cas)
        written.system = shared["system_prompt"].artifact_id
    for seq, turn_id in enumerate(turn_ids, start=1):
        render = put("rendered_prompt", cas, turn_id)
        output = put("output", cas, turn_id)
        written.renders.append(render.artifact_id)
        written.outputs.append(output.artifact_id)
        refs = {**shared, "rendered_prompt": render, "output": output}
        when = at + seq * step_ms
        last_frame = None
        if frame and seq == len(turn_ids) and status == "completed":
            last_frame = FrameRecord(
                frame_id=frame_id_for(node, "readme", output.artifact_id),
                node_id=node,
                frame_type="readme",
                artifact_id=output.artifact_id,
                thread_id=thread.thread_id,
                created_at_ms=when,
            )
        link = None
        if prompt_link:
            link = PromptLinkRecord(
                prompt_link_id=prompt_link_id_for(workflow_id, thread.thread_id, turn_id, 1),
                thread_id=thread.thread_id,
                turn_id=turn_id,
                node_id=node,
                system_prompt_artifact_id=refs["system_prompt"].artifact_id,
                rendered_prompt_artifact_id=render.artifact_id,
                context_artifact_id=refs["context"].artifact_id,
                created_at_ms=when,
            )
        records.commit_turn(
            TurnCommit(
                thread=thread,
                turn=TurnRecord(
                    turn_record_id=turn_record_id_for(workflow_id, thread.thread_id, turn_id, 1),
                    thread_id=thread.thread_id,
                    turn_id=turn_id,
                    turn_seq=seq,
                    attempt=1,
                    status="completed",
                    input_artifact_ids=(refs.get("context", render).artifact_id,),
                    output_artifact_id=output.artifact_id,
                    started_at_ms=when,
                    ended_at_ms=when,
                ),
                prompt_link=link,
                artifact_links=tuple(
                    ArtifactLinkRecord(
                        artifact_link_id=artifact_link_id_for(
                            thread.thread_id, turn_id, 1, role, ref.artifact_id
                        ),
                        artifact_id=ref.artifact_id,
                        thread_id=thread.thread_id,
                        turn_id=turn_id,
                        attempt=1,
                        role=role,
                        size=ref.size,
                        created_at_ms=when,
                    )
                    for role, ref in ((role, refs[role]) for role in ALL_ROLES if role in roles)
                ),
                frame=last_frame,
            )
        )
    return written


REPO_ROOT = Path(__file__).resolve().parent.parent


def catalog_with(retention: dict | None, workflow_id: str = "docs_writer_thread_v1") -> ProfileCatalog:
    """The shipped catalog with ``workflow_id``'s retention block replaced by ``retention``."""
    load_builtin_workflows()
    catalog = load_catalog([Layer("builtin", REPO_ROOT)])
    loaded = catalog.get(workflow_id)
    changed = dataclasses.replace(loaded, profile=loaded.profile.model_copy(update={"retention": retention}))
    return dataclasses.replace(catalog, profiles={**catalog.profiles, workflow_id: changed})
