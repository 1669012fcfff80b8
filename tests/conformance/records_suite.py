"""The RecordStore conformance suite.

A backend is described by `RecordBackend`: how to open the store under test (every
call opens a new handle on the same store). A new implementation adds one backend to
``tests/test_records_conformance.py`` and must pass every check in `CHECKS`. Checks
that look under the API (raw rows, several processes) stay with the SQL store's own
tests in ``tests/test_records_store.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest

from wf_pipeline.errors import RecordError
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.records import (
    ArtifactLinkRecord,
    AuditEventRecord,
    DataKeyRecord,
    FrameRecord,
    GateRecord,
    GrantRecord,
    HoldRecord,
    IdentityRecord,
    KekRecord,
    NodeRecord,
    PromptLinkRecord,
    TargetRecord,
    ThreadRecord,
    TombstoneRecord,
    TurnRecord,
    artifact_link_id_for,
    frame_id_for,
    gate_record_id_for,
    hold_id_for,
    prompt_link_id_for,
    thread_id_for,
    turn_record_id_for,
)
from wf_pipeline.records import RecordStore, TurnCommit


@dataclass
class RecordBackend:
    """One implementation under test; `close_all` closes every handle the checks opened."""

    name: str
    opener: Callable[[], RecordStore]
    opened: list[RecordStore] = field(default_factory=list)

    def open(self) -> RecordStore:
        store = self.opener()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


CHECKS: list[Callable[[RecordBackend], None]] = []


def check(function: Callable[[RecordBackend], None]) -> Callable[[RecordBackend], None]:
    CHECKS.append(function)
    return function


WORKFLOW = "docs_writer_thread_v1"


def art(name: str) -> str:
    return digest_text(name)


def node_id(name: str) -> str:
    return "node:" + art(name)[len("sha256:") :]


def make_thread(
    target: str = "pkg", *, workflow_id: str = WORKFLOW, status: str = "running", path: str | None = None
) -> ThreadRecord:
    target_node = node_id(target)
    return ThreadRecord(
        thread_id=thread_id_for(workflow_id, target_node),
        workflow_id=workflow_id,
        target_node_id=target_node,
        target_path=path if path is not None else target,
        status=status,
        created_at_ms=1_700_000_000_000,
        updated_at_ms=1_700_000_000_500,
        last_turn_seq=1,
    )


def make_commit(
    thread: ThreadRecord,
    turn_id: str = "evidence_gather",
    *,
    seq: int = 1,
    attempt: int = 1,
    status: str = "completed",
    at: int = 1_700_000_001_000,
    frame_type: str | None = None,
    frame_id: str | None = None,
) -> TurnCommit:
    output = art(f"{thread.thread_id}/{turn_id}/{attempt}/output")
    context = art(f"{thread.thread_id}/context")
    turn = TurnRecord(
        turn_record_id=turn_record_id_for(thread.workflow_id, thread.thread_id, turn_id, attempt),
        thread_id=thread.thread_id,
        turn_id=turn_id,
        turn_seq=seq,
        attempt=attempt,
        status=status,
        input_artifact_ids=(context,),
        output_artifact_id=output,
        started_at_ms=at,
        ended_at_ms=at + 10,
        error_code=None if status == "completed" else "GATE_FAILED",
    )
    gate = GateRecord(
        gate_record_id=gate_record_id_for(thread.workflow_id, thread.thread_id, turn_id, attempt),
        thread_id=thread.thread_id,
        turn_id=turn_id,
        gate_id=f"{turn_id}_gate",
        attempt=attempt,
        outcome="pass" if status == "completed" else "fail",
        reasons=() if status == "completed" else ("SECTION_MISSING:usage",),
        evaluated_at_ms=at + 11,
    )
    prompt_link = PromptLinkRecord(
        prompt_link_id=prompt_link_id_for(thread.workflow_id, thread.thread_id, turn_id, attempt),
        thread_id=thread.thread_id,
        turn_id=turn_id,
        node_id=thread.target_node_id,
        system_prompt_artifact_id=art("system"),
        user_prompt_template_artifact_id=art(f"template/{turn_id}"),
        rendered_prompt_artifact_id=art(f"{thread.thread_id}/{turn_id}/{attempt}/rendered"),
        context_artifact_id=context,
        created_at_ms=at + 1,
    )
    links = tuple(
        ArtifactLinkRecord(
            artifact_link_id=artifact_link_id_for(thread.thread_id, turn_id, attempt, role, artifact),
            artifact_id=artifact,
            thread_id=thread.thread_id,
            turn_id=turn_id,
            attempt=attempt,
            role=role,
            size=size,
            created_at_ms=at + 2,
        )
        for role, artifact, size in (("context", context, 300), ("output", output, 120))
    )
    frame = None
    if frame_type is not None:
        frame = FrameRecord(
            frame_id=frame_id or frame_id_for(thread.target_node_id, frame_type, output),
            node_id=thread.target_node_id,
            frame_type=frame_type,
            artifact_id=output,
            thread_id=thread.thread_id,
            metadata={"agent_id": "agent.docs", "prompt_link_id": prompt_link.prompt_link_id},
            created_at_ms=at + 20,
        )
    return TurnCommit(
        thread=thread, turn=turn, gate=gate, prompt_link=prompt_link, artifact_links=links, frame=frame
    )


@check
def check_turn_commit_round_trips_every_record(backend: RecordBackend) -> None:
    store = backend.open()
    assert isinstance(store, RecordStore)  # every method of the protocol is there
    thread = make_thread()
    commit = make_commit(thread, frame_type="readme")

    store.commit_turn(commit)

    assert store.get_thread(thread.thread_id) == thread
    assert store.turns_for_thread(thread.thread_id) == [commit.turn]
    assert store.gates_for_thread(thread.thread_id) == [commit.gate]
    assert store.prompt_links_for_thread(thread.thread_id) == [commit.prompt_link]
    assert store.artifact_links_for_thread(thread.thread_id) == sorted(
        commit.artifact_links, key=lambda link: link.artifact_link_id
    )
    assert store.head_frame(thread.target_node_id, "readme") == commit.frame
    assert isinstance(store.turns_for_thread(thread.thread_id)[0].input_artifact_ids, tuple)


@check
def check_failed_turn_round_trips_reasons_and_error_fields(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread()
    commit = make_commit(thread, status="failed")

    store.commit_turn(commit)

    (turn,) = store.turns_for_thread(thread.thread_id)
    (gate,) = store.gates_for_thread(thread.thread_id)
    assert (turn.status, turn.error_code) == ("failed", "GATE_FAILED")
    assert gate.reasons == ("SECTION_MISSING:usage",)


@check
def check_a_warn_verdict_round_trips_on_a_completed_turn(backend: RecordBackend) -> None:
    # A warn verdict (reasons that do not block) is recorded on a turn that completed.
    store = backend.open()
    thread = make_thread()
    commit = make_commit(thread)
    warned = commit.gate.model_copy(
        update={
            "outcome": "warn",
            "reasons": ("NOTES_NEED_REVIEW",),
            "findings": (
                {
                    "rule_id": "notes.needs_review",
                    "code": "NOTES_NEED_REVIEW",
                    "pointer": "output:3",
                    "hint": "h",
                },
            ),
        }
    )
    store.commit_turn(replace(commit, gate=warned))

    (gate,) = store.gates_for_thread(thread.thread_id)
    assert gate == warned
    assert store.turns_for_thread(thread.thread_id)[0].status == "completed"


@check
def check_failed_thread_keeps_its_error_code_and_text_until_it_completes(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread(status="failed").model_copy(
        update={
            "error_code": "METADATA_BUDGET_EXCEEDED",
            "error_text": "prompt has 1005058 bytes, limit 1048576",
        }
    )
    store.save_thread(thread)

    assert store.get_thread(thread.thread_id) == thread
    assert [t.error_code for t in store.list_threads(status="failed")] == ["METADATA_BUDGET_EXCEEDED"]
    # A thread that completes later carries no error any more.
    store.save_thread(
        thread.model_copy(update={"status": "completed", "error_code": None, "error_text": None})
    )
    again = store.get_thread(thread.thread_id)
    assert (again.status, again.error_code, again.error_text) == ("completed", None, None)


@check
def check_nodes_round_trip_and_upsert_on_node_id_and_path(backend: RecordBackend) -> None:
    store = backend.open()
    root = node_id("root")
    nodes = [
        NodeRecord(node_id=root, root_id=root, path=".", kind="dir", parent_path=None, scanned_at_ms=1),
        NodeRecord(
            node_id=node_id("a.py"),
            root_id=root,
            path="a.py",
            kind="file",
            parent_path=".",
            size=12,
            content_digest=art("a.py bytes"),
            scanned_at_ms=1,
        ),
        NodeRecord(
            node_id=node_id("logo.png"),
            root_id=root,
            path="logo.png",
            kind="file",
            parent_path=".",
            size=9,
            omitted="binary",
            scanned_at_ms=1,
        ),
    ]
    rescanned = nodes[1].model_copy(update={"scanned_at_ms": 2})

    assert store.upsert_nodes(nodes) == 3
    assert store.upsert_nodes([nodes[1], rescanned]) == 1

    assert store.nodes_for_root(root) == [nodes[0], rescanned, nodes[2]]
    assert store.nodes_for_root(node_id("other root")) == []


@check
def check_targets_round_trip_and_latest_registration_wins(backend: RecordBackend) -> None:
    store = backend.open()
    first = TargetRecord(target_key="repo/pkg", root_path="/srv/repo", path="pkg", registered_at_ms=1)
    moved = first.model_copy(update={"root_path": "/srv/repo2", "registered_at_ms": 2})
    other = TargetRecord(target_key="repo", root_path="/srv/repo", path=".", registered_at_ms=1)

    store.save_targets([first, other])
    store.save_targets([moved])

    assert store.get_target("repo/pkg") == moved
    assert store.get_target("missing") is None
    assert store.list_targets() == [other, moved]


@check
def check_data_survives_reopening(backend: RecordBackend) -> None:
    thread = make_thread()
    with backend.open() as store:
        store.commit_turn(make_commit(thread))
    with backend.open() as store:
        assert store.get_thread(thread.thread_id) == thread
        assert len(store.turns_for_thread(thread.thread_id)) == 1


@check
def check_recommit_updates_the_rows_of_the_same_ids(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread()
    running = make_commit(thread, status="failed")
    store.commit_turn(running)
    completed = make_commit(thread.model_copy(update={"status": "completed"}), status="completed")

    store.commit_turn(completed)

    assert store.get_thread(thread.thread_id).status == "completed"
    assert store.turns_for_thread(thread.thread_id) == [completed.turn]
    assert store.gates_for_thread(thread.thread_id) == [completed.gate]


@check
def check_failing_last_insert_rolls_back_the_whole_turn(backend: RecordBackend) -> None:
    store = backend.open()
    # A frame already holds this (node, frame type, artifact) under another id, so the
    # frame insert, the last statement of the commit, violates a unique constraint.
    thread = make_thread()
    commit = make_commit(thread, frame_type="readme")
    squatter = commit.frame.model_copy(update={"frame_id": "frame:squatter", "thread_id": "thread:elsewhere"})
    store.save_frame(squatter)

    with pytest.raises(RecordError) as caught:
        store.commit_turn(commit)

    assert caught.value.code == "RECORD_INTEGRITY"
    assert store.get_thread(thread.thread_id) is None
    assert store.turns_for_thread(thread.thread_id) == []
    assert store.gates_for_thread(thread.thread_id) == []
    assert store.prompt_links_for_thread(thread.thread_id) == []
    assert store.artifact_links_for_thread(thread.thread_id) == []
    assert store.head_frame(thread.target_node_id, "readme") == squatter


@check
def check_second_record_for_the_same_turn_attempt_is_an_integrity_error(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread()
    commit = make_commit(thread)
    store.commit_turn(commit)
    impostor = commit.turn.model_copy(update={"turn_record_id": "turn:impostor"})

    with pytest.raises(RecordError) as caught:
        store.commit_turn(TurnCommit(thread=thread, turn=impostor))

    assert caught.value.code == "RECORD_INTEGRITY"
    assert store.turns_for_thread(thread.thread_id) == [commit.turn]


@check
def check_turns_are_ordered_by_seq_then_attempt_and_latest_picks_the_last_attempt(
    backend: RecordBackend,
) -> None:
    store = backend.open()
    thread = make_thread()
    commits = [
        make_commit(thread, "verification", seq=2, attempt=2, at=5000),
        make_commit(thread, "evidence_gather", seq=1, attempt=1, at=1000),
        make_commit(thread, "verification", seq=2, attempt=1, status="failed", at=3000),
        make_commit(thread, "readme_struct", seq=3, attempt=1, at=6000),
    ]
    for commit in commits:
        store.commit_turn(commit)

    ordered = [(t.turn_seq, t.attempt) for t in store.turns_for_thread(thread.thread_id)]
    latest = store.latest_turns(thread.thread_id)

    assert ordered == [(1, 1), (2, 1), (2, 2), (3, 1)]
    assert list(latest) == ["evidence_gather", "verification", "readme_struct"]
    assert latest["verification"] == commits[0].turn
    assert [g.evaluated_at_ms for g in store.gates_for_thread(thread.thread_id)] == [1011, 3011, 5011, 6011]
    assert [p.created_at_ms for p in store.prompt_links_for_thread(thread.thread_id)] == [
        1001,
        3001,
        5001,
        6001,
    ]
    assert store.latest_turns("thread:none") == {}


@check
def check_list_threads_orders_by_target_path_and_filters(backend: RecordBackend) -> None:
    store = backend.open()
    threads = [
        make_thread("pkg/sub", status="completed"),
        make_thread("pkg", status="running"),
        make_thread(".", status="completed"),
        make_thread("pkg", workflow_id="other_workflow", status="completed"),
    ]
    for thread in threads:
        store.save_thread(thread)

    assert [t.target_path for t in store.list_threads()] == sorted(t.target_path for t in threads)
    everything = store.list_threads()
    assert everything[1:3] == sorted(everything[1:3], key=lambda t: t.thread_id)
    assert [t.target_path for t in store.list_threads(workflow_id=WORKFLOW)] == [".", "pkg", "pkg/sub"]
    assert [t.target_path for t in store.list_threads(workflow_id=WORKFLOW, status="completed")] == [
        ".",
        "pkg/sub",
    ]
    assert [t.workflow_id for t in store.list_threads(status="completed")] == [
        WORKFLOW,
        "other_workflow",
        WORKFLOW,
    ]
    assert store.list_threads(workflow_id="nope") == []


@check
def check_head_frame_is_the_latest_by_created_at_then_frame_id(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread()
    store.save_thread(thread)
    node = thread.target_node_id

    def frame(name: str, created: int, frame_type: str = "readme") -> FrameRecord:
        return FrameRecord(
            frame_id=frame_id_for(node, frame_type, art(name)),
            node_id=node,
            frame_type=frame_type,
            artifact_id=art(name),
            thread_id=thread.thread_id,
            created_at_ms=created,
        )

    old, tie_a, tie_b, summary = frame("v1", 10), frame("v2", 20), frame("v3", 20), frame("s", 99, "summary")
    for record in (tie_a, summary, old, tie_b):
        store.save_frame(record)

    assert store.head_frame(node, "readme") == max(tie_a, tie_b, key=lambda f: f.frame_id)
    assert store.head_frame(node, "summary") == summary
    assert store.head_frame(node, "missing") is None

    newest_again = old.model_copy(update={"created_at_ms": 30})
    store.save_frame(newest_again)
    assert store.head_frame(node, "readme") == newest_again


@check
def check_delete_threads_removes_unchanged_threads_with_their_history(backend: RecordBackend) -> None:
    store = backend.open()
    gone = make_thread("gone", status="completed")
    moved_on = make_thread("moved_on", status="completed")
    kept = make_thread("kept", status="completed")
    for thread in (gone, moved_on, kept):
        store.commit_turn(make_commit(thread, frame_type="readme"))
    store.acquire_lease(gone.thread_id, "holder-1", 60_000)
    assert [f.thread_id for f in store.frames_for_thread(gone.thread_id)] == [gone.thread_id]
    kept_refs = store.referenced_artifact_ids()
    # moved_on was updated after it was read: the delete must leave it whole.
    store.save_thread(moved_on.model_copy(update={"updated_at_ms": moved_on.updated_at_ms + 1}))

    deleted = store.delete_threads(
        {
            gone.thread_id: gone.updated_at_ms,
            moved_on.thread_id: moved_on.updated_at_ms,
            "thread:absent": 1,
        }
    )

    assert deleted == [gone.thread_id]
    assert store.get_thread(gone.thread_id) is None
    assert store.turns_for_thread(gone.thread_id) == []
    assert store.gates_for_thread(gone.thread_id) == []
    assert store.prompt_links_for_thread(gone.thread_id) == []
    assert store.artifact_links_for_thread(gone.thread_id) == []
    assert store.frames_for_thread(gone.thread_id) == []
    assert store.head_frame(gone.target_node_id, "readme") is None
    # Its lease went too: another holder takes it at once.
    assert store.acquire_lease(gone.thread_id, "holder-2", 60_000).holder == "holder-2"
    for thread in (moved_on, kept):
        assert store.get_thread(thread.thread_id) is not None
        assert len(store.turns_for_thread(thread.thread_id)) == 1
        assert len(store.frames_for_thread(thread.thread_id)) == 1
    only_gone = make_commit(gone)
    assert only_gone.turn.output_artifact_id in kept_refs
    assert only_gone.turn.output_artifact_id not in store.referenced_artifact_ids()
    assert store.delete_threads({}) == []
    assert store.delete_threads({gone.thread_id: gone.updated_at_ms}) == []  # idempotent


@check
def check_referenced_artifact_ids_cover_every_reference(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread()
    commit = make_commit(thread, frame_type="readme")
    store.commit_turn(commit)
    root = node_id("root")
    store.upsert_nodes(
        [
            NodeRecord(
                node_id=root,
                root_id=root,
                path="a.py",
                kind="file",
                parent_path=".",
                content_digest=art("file bytes"),
                scanned_at_ms=1,
            )
        ]
    )
    link = commit.prompt_link

    expected = {
        *commit.turn.input_artifact_ids,
        commit.turn.output_artifact_id,
        link.system_prompt_artifact_id,
        link.user_prompt_template_artifact_id,
        link.rendered_prompt_artifact_id,
        link.context_artifact_id,
        *(a.artifact_id for a in commit.artifact_links),
        commit.frame.artifact_id,
    }
    # A scanned file's content digest names bytes in the tree, never a CAS object.
    assert store.referenced_artifact_ids() == expected
    assert art("file bytes") not in store.referenced_artifact_ids()


@check
def check_referenced_artifact_ids_include_turn_inputs_without_links(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread()
    commit = make_commit(thread)
    only_input = art("input referenced by the turn alone")
    turn = commit.turn.model_copy(update={"input_artifact_ids": (only_input,), "output_artifact_id": None})

    store.commit_turn(TurnCommit(thread=thread, turn=turn))

    assert store.referenced_artifact_ids() == {only_input}


@check
def check_invalid_records_are_rejected_before_writing(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread()
    unchecked = ThreadRecord.model_construct(**{**thread.model_dump(), "status": "bogus"})

    with pytest.raises(RecordError) as caught:
        store.save_thread(unchecked)
    assert caught.value.code == "RECORD_INVALID"

    with pytest.raises(RecordError) as wrong_type:
        store.save_thread(make_commit(thread).turn)
    assert wrong_type.value.code == "RECORD_INVALID"
    assert store.list_threads() == []


@check
def check_turn_commit_refuses_records_of_another_turn(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread()
    commit = make_commit(thread)
    other = make_commit(make_thread("elsewhere"))

    for mixed in (
        {"gate": other.gate},
        {"prompt_link": other.prompt_link},
        {"artifact_links": other.artifact_links},
        {"gate": commit.gate.model_copy(update={"attempt": 2})},
        {"frame": make_commit(make_thread("elsewhere"), frame_type="readme").frame},
        {"turn": other.turn},
    ):
        with pytest.raises(RecordError) as caught:
            TurnCommit(thread=thread, **{"turn": commit.turn, **mixed})
        assert caught.value.code == "RECORD_INVALID"
    assert store.list_threads() == []


@check
def check_recommitting_the_same_turn_does_not_duplicate(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread()
    commit = make_commit(thread, frame_type="readme")

    store.commit_turn(commit)
    store.commit_turn(commit)

    assert store.list_threads() == [thread]
    assert store.turns_for_thread(thread.thread_id) == [commit.turn]
    assert store.gates_for_thread(thread.thread_id) == [commit.gate]
    assert store.prompt_links_for_thread(thread.thread_id) == [commit.prompt_link]
    assert len(store.artifact_links_for_thread(thread.thread_id)) == 2
    assert store.frame_artifact_ids("readme") == {commit.frame.artifact_id}
    assert store.frame_artifact_ids("summary") == set()


@check
def check_concurrent_writers_in_threads(backend: RecordBackend) -> None:
    writers, turns = 4, 8
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        store = backend.open()
        thread = make_thread(f"pkg{n}")
        barrier.wait()
        try:
            for seq in range(1, turns + 1):
                store.commit_turn(make_commit(thread, f"t{seq}", seq=seq, at=1000 * seq))
                store.commit_turn(make_commit(thread, f"t{seq}", seq=seq, at=1000 * seq))  # a replay
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    store = backend.open()
    listed = store.list_threads()
    assert [t.target_path for t in listed] == [f"pkg{n}" for n in range(writers)]
    for thread in listed:
        assert [t.turn_seq for t in store.turns_for_thread(thread.thread_id)] == list(range(1, turns + 1))


# --- thread leases ---------------------------------------------------------------------


@check
def check_a_lease_has_one_holder_until_it_expires(backend: RecordBackend) -> None:
    first, second = backend.open(), backend.open()
    thread_id = make_thread().thread_id

    taken = first.acquire_lease(thread_id, "host:1:a", 1_000, at_ms=10_000)
    refused = second.acquire_lease(thread_id, "host:2:b", 1_000, at_ms=10_500)
    renewed = first.acquire_lease(thread_id, "host:1:a", 1_000, at_ms=10_600)  # the holder's own: renewed
    taken_over = second.acquire_lease(thread_id, "host:2:b", 1_000, at_ms=11_600)  # expired at 11_600

    assert (taken.holder, taken.expires_at_ms) == ("host:1:a", 11_000)
    assert (refused.holder, refused.expires_at_ms) == ("host:1:a", 11_000)
    assert (renewed.holder, renewed.expires_at_ms) == ("host:1:a", 11_600)
    assert (taken_over.holder, taken_over.expires_at_ms) == ("host:2:b", 12_600)
    assert first.renew_lease(thread_id, "host:1:a", 1_000, at_ms=11_700) is False  # lost it


@check
def check_renew_and_release_apply_to_the_holder_only(backend: RecordBackend) -> None:
    store = backend.open()
    thread_id = make_thread().thread_id
    store.acquire_lease(thread_id, "host:1:a", 1_000, at_ms=10_000)

    assert store.renew_lease(thread_id, "host:2:b", 5_000, at_ms=10_100) is False
    assert store.release_lease(thread_id, "host:2:b") is False
    assert store.renew_lease(thread_id, "host:1:a", 5_000, at_ms=10_100) is True
    assert (
        store.acquire_lease(thread_id, "host:2:b", 1_000, at_ms=14_000).holder == "host:1:a"
    )  # renewed to 15_100
    assert store.release_lease(thread_id, "host:1:a") is True
    assert store.release_lease(thread_id, "host:1:a") is False
    assert store.acquire_lease(thread_id, "host:2:b", 1_000, at_ms=14_000).holder == "host:2:b"  # free again
    assert store.renew_lease("thread:none", "host:1:a", 1_000) is False


@check
def check_lease_arguments_are_validated(backend: RecordBackend) -> None:
    store = backend.open()
    for thread_id, holder, ttl_ms in (("", "h", 1), ("thread:x", "", 1), ("thread:x", "h", 0)):
        with pytest.raises(RecordError) as caught:
            store.acquire_lease(thread_id, holder, ttl_ms)
        assert caught.value.code == "RECORD_INVALID"


@check
def check_concurrent_acquirers_get_one_lease(backend: RecordBackend) -> None:
    contenders, rounds = 4, 10
    barrier = threading.Barrier(contenders)
    won: dict[int, list[str]] = {n: [] for n in range(rounds)}
    errors: list[BaseException] = []

    def contender(n: int) -> None:
        store = backend.open()
        try:
            for r in range(rounds):
                barrier.wait()
                lease = store.acquire_lease(f"thread:race{r}", f"holder{n}", 60_000)
                if lease.holder == f"holder{n}":
                    won[r].append(lease.holder)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert all(len(winners) == 1 for winners in won.values()), won


@check
def check_add_thread_never_replaces_a_recorded_thread(backend: RecordBackend) -> None:
    store = backend.open()
    moved_on = make_thread(status="running")
    planned_again = moved_on.model_copy(update={"status": "pending", "last_turn_seq": 0})

    assert store.add_thread(moved_on) == moved_on
    assert store.add_thread(planned_again) == moved_on
    assert store.get_thread(moved_on.thread_id) == moved_on
    with pytest.raises(RecordError) as caught:
        store.add_thread(moved_on.model_construct(**{**moved_on.model_dump(), "status": "bogus"}))
    assert caught.value.code == "RECORD_INVALID"


def make_tombstone(name: str, *, at: int = 1_700_000_100_000, **fields) -> TombstoneRecord:
    values = {
        "artifact_id": art(name),
        "artifact_class": "prompt_render",
        "workflow_id": WORKFLOW,
        "policy": "preset:docs_family",
        "window_ms": 7 * 86_400_000,
        "reason": "expired",
        "bytes": 1234,
        "deleted_at_ms": at,
    }
    return TombstoneRecord(**{**values, **fields})


@check
def check_tombstones_round_trip_filter_and_upsert_on_artifact_id(backend: RecordBackend) -> None:
    store = backend.open()
    first = make_tombstone("a", at=30)
    second = make_tombstone("b", at=10, artifact_class="context_payload", window_ms=None)
    orphan = make_tombstone("c", at=20, artifact_class="orphan", workflow_id="", reason="orphan")

    assert store.add_tombstones([first, second, orphan]) == 3
    assert store.get_tombstone(first.artifact_id) == first
    assert store.get_tombstone(art("never deleted")) is None
    assert store.list_tombstones() == [second, orphan, first]
    assert store.list_tombstones(artifact_class="context_payload") == [second]
    assert store.list_tombstones(workflow_id=WORKFLOW) == [second, first]
    assert store.tombstones_for([first.artifact_id, art("never deleted"), orphan.artifact_id]) == {
        first.artifact_id: first,
        orphan.artifact_id: orphan,
    }

    # Deleted again (re-put, expired again): the latest tombstone replaces the first.
    again = first.model_copy(update={"deleted_at_ms": 40, "bytes": 99})
    assert store.add_tombstones([again]) == 1
    assert backend.open().get_tombstone(first.artifact_id) == again
    assert len(store.list_tombstones()) == 3


@check
def check_tombstones_for_many_ids_and_invalid_ones_write_nothing(backend: RecordBackend) -> None:
    store = backend.open()
    many = [make_tombstone(f"bulk-{n}", at=n) for n in range(1_200)]
    assert store.add_tombstones(many) == 1_200
    found = store.tombstones_for([t.artifact_id for t in many] + [art("absent")])
    assert len(found) == 1_200 and found[many[-1].artifact_id] == many[-1]

    bad = make_tombstone("bad").model_construct(**{**make_tombstone("bad").model_dump(), "bytes": -1})
    with pytest.raises(RecordError) as caught:
        store.add_tombstones([make_tombstone("good, but in a bad batch"), bad])
    assert caught.value.code == "RECORD_INVALID"
    assert store.get_tombstone(art("good, but in a bad batch")) is None


@check
def check_holds_are_active_until_released_once(backend: RecordBackend) -> None:
    store = backend.open()
    on_thread = HoldRecord(
        hold_id=hold_id_for("thread", "thread:x", 20), thread_id="thread:x", reason="audit", created_at_ms=20
    )
    on_workflow = HoldRecord(
        hold_id=hold_id_for("workflow", WORKFLOW, 10), workflow_id=WORKFLOW, created_at_ms=10
    )
    store.add_hold(on_thread)
    store.add_hold(on_workflow)

    assert store.active_holds() == [on_workflow, on_thread]
    assert store.get_hold(on_thread.hold_id) == on_thread
    assert store.release_hold(on_workflow.hold_id, at_ms=50) is True
    assert store.release_hold(on_workflow.hold_id, at_ms=60) is False
    assert store.release_hold("hold:unknown") is False
    assert backend.open().active_holds() == [on_thread]
    assert store.get_hold(on_workflow.hold_id).released_at_ms == 50

    with pytest.raises(RecordError) as caught:
        store.add_hold(on_thread.model_construct(**{**on_thread.model_dump(), "workflow_id": WORKFLOW}))
    assert caught.value.code == "RECORD_INVALID"


@check
def check_bulk_listings_cover_every_thread_and_head(backend: RecordBackend) -> None:
    store = backend.open()
    one, two = make_thread("a"), make_thread("b")
    commits = [
        make_commit(one, frame_type="readme"),
        make_commit(two, frame_type="readme", at=1_700_000_002_000),
    ]
    for commit in commits:
        store.commit_turn(commit)
    newer = commits[0].frame.model_copy(
        update={
            "frame_id": frame_id_for(one.target_node_id, "readme", art("newer")),
            "artifact_id": art("newer"),
            "created_at_ms": commits[0].frame.created_at_ms + 5,
        }
    )
    store.save_frame(newer)

    assert store.list_prompt_links() == sorted(
        (c.prompt_link for c in commits), key=lambda p: p.prompt_link_id
    )
    assert store.list_artifact_links() == sorted(
        (link for c in commits for link in c.artifact_links), key=lambda a: a.artifact_link_id
    )
    heads = {(f.node_id, f.frame_type): f for f in store.head_frames()}
    assert heads == {
        (one.target_node_id, "readme"): newer,
        (two.target_node_id, "readme"): commits[1].frame,
    }
    assert [f.node_id for f in store.head_frames()] == sorted(f.node_id for f in heads.values())


@check
def check_commit_turns_writes_many_turns_all_or_nothing(backend: RecordBackend) -> None:
    store = backend.open()
    threads = [make_thread(f"bulk{n}") for n in range(3)]
    commits = [
        make_commit(thread, turn_id, seq=seq) for thread in threads for seq, turn_id in ((1, "a"), (2, "b"))
    ]

    assert store.commit_turns(commits) == 6
    assert [t.turn_id for t in backend.open().turns_for_thread(threads[1].thread_id)] == ["a", "b"]
    assert len(store.list_prompt_links()) == 6

    broken = make_commit(make_thread("never"), "a")
    bad_turn = broken.turn.model_construct(**{**broken.turn.model_dump(), "attempt": 0})
    with pytest.raises(RecordError) as caught:
        store.commit_turns(
            [make_commit(make_thread("fine"), "a"), TurnCommit(thread=broken.thread, turn=bad_turn)]
        )
    assert caught.value.code == "RECORD_INVALID"
    assert store.get_thread(make_thread("fine").thread_id) is None


# --- keyring: KEKs and data keys ---------------------------------------------------------

DAY_MS = 86_400_000
PERIOD_START = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def make_kek(
    artifact_class: str = "provider_response",
    *,
    period_start_ms: int = PERIOD_START,
    generation: int = 1,
    state: str = "primary",
    **fields,
) -> KekRecord:
    day = {PERIOD_START: "20260101", PERIOD_START + 30 * DAY_MS: "20260131"}.get(period_start_ms, "19700101")
    values = {
        "kek_id": f"kek-{artifact_class}-{day}-g{generation}",
        "manager": "local",
        # Key material is opaque bytes: NUL and high bytes must survive the round trip.
        "key_ref": bytes([0, 255, generation]) + b"wrapped-kek",
        "artifact_class": artifact_class,
        "period_start_ms": period_start_ms,
        "period_ms": 30 * DAY_MS,
        "generation": generation,
        "state": state,
        "created_at_ms": period_start_ms + generation,
    }
    return KekRecord(**{**values, **fields})


def make_data_key(name: str, kek_id: str = "kek-provider_response-20260101-g1", **fields) -> DataKeyRecord:
    values = {
        "artifact_id": art(name),
        "artifact_class": "provider_response",
        "kek_id": kek_id,
        "wrapped_key": b"\x00" + f"{kek_id}/{name}".encode() + b"\xff",
        "created_at_ms": 1_767_225_601_000,
    }
    return DataKeyRecord(**{**values, **fields})


def pages_under(store: RecordStore, kek_ids: list[str], limit: int, *, at_most: int = 20):
    """Yield the keyset pages of `RecordStore.data_keys_under` until one is empty (at most ``at_most``)."""
    after = None
    for _ in range(at_most):
        page = store.data_keys_under(kek_ids, after_artifact_id=after, limit=limit)
        if not page:
            return
        yield page
        after = page[-1].artifact_id
    raise AssertionError(f"more than {at_most} pages: the listing does not advance")


def run_in_threads(count: int, work: Callable[[int], object]) -> list[object]:
    """``work(n)`` for n in range(count), each in its own thread started together; results by n."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            results[n] = work(n)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], errors
    return results


@check
def check_keyring_meta_is_written_once(backend: RecordBackend) -> None:
    store = backend.open()
    assert store.keyring_meta("master_check") is None

    assert store.claim_keyring_meta("master_check", b"\x00first\xff") == b"\x00first\xff"
    assert store.claim_keyring_meta("master_check", b"second") == b"\x00first\xff"
    assert backend.open().keyring_meta("master_check") == b"\x00first\xff"
    assert store.keyring_meta("other") is None
    for name, value in (("", b"x"), ("name", "not bytes")):
        with pytest.raises(RecordError) as caught:
            store.claim_keyring_meta(name, value)
        assert caught.value.code == "RECORD_INVALID"
    assert store.keyring_meta("name") is None


@check
def check_concurrent_keyring_meta_claims_agree(backend: RecordBackend) -> None:
    def claim(n: int) -> bytes:
        return backend.open().claim_keyring_meta("master_check", f"writer {n}".encode())

    results = run_in_threads(4, claim)

    assert len(set(results)) == 1
    assert backend.open().keyring_meta("master_check") == results[0]


@check
def check_keks_round_trip_first_writer_wins_and_list_in_lineage_order(backend: RecordBackend) -> None:
    store = backend.open()
    later_period = PERIOD_START + 30 * DAY_MS
    keks = [
        make_kek(period_start_ms=later_period),
        make_kek(generation=2, state="primary"),
        make_kek("context_payload", key_ref=None),
        make_kek(generation=1, state="decrypt_only", rotated_at_ms=PERIOD_START + 5),
    ]
    for kek in keks:
        assert store.add_kek(kek) == kek

    again = keks[1].model_copy(update={"manager": "aws-kms", "key_ref": b"arn"})
    assert store.add_kek(again) == keks[1]  # first writer wins
    assert backend.open().get_kek(keks[1].kek_id) == keks[1]
    assert store.get_kek("kek-missing") is None
    assert store.get_kek(keks[2].kek_id).key_ref is None
    assert store.list_keks() == [keks[2], keks[3], keks[1], keks[0]]
    assert store.list_keks("provider_response") == [keks[3], keks[1], keks[0]]
    assert store.list_keks("output") == []

    bad = make_kek("output")
    with pytest.raises(RecordError) as caught:
        store.add_kek(KekRecord.model_construct(**{**bad.model_dump(), "generation": 0}))
    assert caught.value.code == "RECORD_INVALID"
    with pytest.raises(RecordError) as wrong_type:
        store.add_kek(make_data_key("a"))
    assert wrong_type.value.code == "RECORD_INVALID"
    assert store.list_keks("output") == []


@check
def check_update_kek_is_a_compare_and_set(backend: RecordBackend) -> None:
    store = backend.open()
    kek = store.add_kek(make_kek())

    rotated = store.update_kek(kek.kek_id, expected_state="primary", state="decrypt_only", rotated_at_ms=7)

    assert rotated == kek.model_copy(update={"state": "decrypt_only", "rotated_at_ms": 7})
    assert backend.open().get_kek(kek.kek_id) == rotated
    # A second command that read the KEK as primary loses: nothing changes.
    assert store.update_kek(kek.kek_id, expected_state="primary", state="retired", retired_at_ms=8) is None
    assert store.get_kek(kek.kek_id) == rotated
    assert store.update_kek("kek-missing", expected_state="primary", state="retired") is None

    destroyed = store.update_kek(
        kek.kek_id, expected_state="decrypt_only", state="destroyed", key_ref=None, destroyed_at_ms=9
    )
    assert (destroyed.state, destroyed.key_ref, destroyed.destroyed_at_ms) == ("destroyed", None, 9)
    assert store.get_kek(kek.kek_id) == destroyed

    for expected_state, changes in (
        ("destroyed", {"state": "bogus"}),
        ("destroyed", {"schema_version": 2}),
        ("destroyed", {"no_such_field": 1}),
        ("destroyed", {"generation": 0}),
        ("destroyed", {"key_ref": "not bytes"}),
        ("destroyed", {}),
        ("bogus", {"state": "retired"}),
    ):
        with pytest.raises(RecordError) as caught:
            store.update_kek(kek.kek_id, expected_state=expected_state, **changes)
        assert caught.value.code == "RECORD_INVALID", changes
    assert store.get_kek(kek.kek_id) == destroyed


@check
def check_concurrent_kek_updates_have_one_winner(backend: RecordBackend) -> None:
    kek = backend.open().add_kek(make_kek())

    def retire(n: int) -> KekRecord | None:
        return backend.open().update_kek(
            kek.kek_id, expected_state="primary", state="decrypt_only", rotated_at_ms=100 + n
        )

    results = run_in_threads(4, retire)

    winners = [result for result in results if result is not None]
    assert len(winners) == 1
    assert backend.open().get_kek(kek.kek_id) == winners[0]


@check
def check_claim_data_keys_keeps_the_first_key_of_each_artifact(backend: RecordBackend) -> None:
    store = backend.open()
    first_a, first_b = make_data_key("a"), make_data_key("b")

    assert store.claim_data_keys([first_b, first_a]) == {
        first_a.artifact_id: first_a,
        first_b.artifact_id: first_b,
    }
    late_a = make_data_key("a", "kek-provider_response-20260101-g2")
    first_c, late_c = make_data_key("c"), make_data_key("c", wrapped_key=b"late")
    claimed = store.claim_data_keys([late_a, first_c, late_c])

    assert claimed == {first_a.artifact_id: first_a, first_c.artifact_id: first_c}
    assert backend.open().data_keys_for([art("a"), art("b"), art("c"), art("never")]) == {
        first_a.artifact_id: first_a,
        first_b.artifact_id: first_b,
        first_c.artifact_id: first_c,
    }
    assert store.claim_data_keys([]) == {}
    assert store.data_keys_for([]) == {}


@check
def check_claim_data_keys_in_bulk_returns_the_stored_keys(backend: RecordBackend) -> None:
    store = backend.open()
    stored = [make_data_key(f"bulk-{n}") for n in range(1_200)]
    assert store.claim_data_keys(stored[:700]) == {key.artifact_id: key for key in stored[:700]}

    # 700 taken already, 500 new: every id comes back with its first key.
    retried = [key.model_copy(update={"wrapped_key": b"retry"}) for key in stored]
    claimed = store.claim_data_keys(retried)

    assert claimed == {key.artifact_id: key for key in stored[:700]} | {
        key.artifact_id: key for key in retried[700:]
    }
    assert len(store.data_keys_for(key.artifact_id for key in stored)) == 1_200


@check
def check_concurrent_claims_of_one_artifact_get_the_same_key(backend: RecordBackend) -> None:
    shared = [art(f"shared-{n}") for n in range(50)]

    def claim(n: int) -> dict[str, DataKeyRecord]:
        store = backend.open()
        keys = [make_data_key(f"shared-{m}", wrapped_key=f"writer {n} key {m}".encode()) for m in range(50)]
        return store.claim_data_keys([*keys, make_data_key(f"own-{n}")])

    results = run_in_threads(4, claim)

    stored = backend.open().data_keys_for(shared)
    assert len(stored) == 50
    for result in results:
        assert {artifact_id: result[artifact_id] for artifact_id in shared} == stored
    # Each key is one writer's whole key: no mix of two claims.
    writers = {key.wrapped_key.split(b" key ")[0] for key in stored.values()}
    assert len(writers) >= 1 and all(writer.startswith(b"writer ") for writer in writers)


@check
def check_invalid_data_keys_are_rejected_before_writing(backend: RecordBackend) -> None:
    store = backend.open()
    good = make_data_key("good, but in a bad batch")
    bad_id = DataKeyRecord.model_construct(
        **{**make_data_key("x").model_dump(), "artifact_id": "sha256:nothex"}
    )

    for batch in ([good, bad_id], [good, make_kek()]):
        with pytest.raises(RecordError) as caught:
            store.claim_data_keys(batch)
        assert caught.value.code == "RECORD_INVALID"
    assert store.data_keys_for([good.artifact_id]) == {}
    assert store.count_data_keys() == {}


@check
def check_data_keys_under_pages_cover_every_key_once(backend: RecordBackend) -> None:
    store = backend.open()
    k1, k2, k3 = (f"kek-provider_response-20260101-g{n}" for n in (1, 2, 3))
    under = {k1: 1_300, k2: 400, k3: 250}
    for kek_id, count in under.items():
        store.claim_data_keys(make_data_key(f"{kek_id}/{n}", kek_id) for n in range(count))

    pages = list(pages_under(store, [k2, k1, k1], 500))

    assert [len(page) for page in pages] == [500, 500, 500, 200]
    listed = [key.artifact_id for page in pages for key in page]
    assert listed == sorted(listed) and len(set(listed)) == 1_700
    assert {key.kek_id for page in pages for key in page} == {k1, k2}
    assert store.count_data_keys() == under
    assert store.data_keys_under([]) == []
    assert store.data_keys_under(["kek-none"]) == []
    assert len(store.data_keys_under([k3])) == 250  # the default limit is 1000
    for limit in (0, -1, True, "10"):
        with pytest.raises(RecordError) as caught:
            store.data_keys_under([k1], limit=limit)
        assert caught.value.code == "RECORD_INVALID"


@check
def check_rewrap_moves_each_key_once_while_paging(backend: RecordBackend) -> None:
    store = backend.open()
    old, new = "kek-provider_response-20260101-g1", "kek-provider_response-20260101-g2"
    originals = [make_data_key(f"r{n}", old) for n in range(2_100)]
    store.claim_data_keys(originals)

    moved = 0
    for page in pages_under(store, [old], 1_000):
        rewrapped = [
            key.model_copy(update={"kek_id": new, "wrapped_key": b"under g2:" + key.wrapped_key})
            for key in page
        ]
        moved += store.rewrap_data_keys(rewrapped, expected_kek_ids={key.artifact_id: old for key in page})

    assert moved == 2_100
    assert store.count_data_keys() == {new: 2_100}
    stored = backend.open().data_keys_for(key.artifact_id for key in originals)
    for original in originals:
        key = stored[original.artifact_id]
        assert (key.kek_id, key.wrapped_key) == (new, b"under g2:" + original.wrapped_key)
        assert (key.artifact_class, key.created_at_ms) == (original.artifact_class, original.created_at_ms)
        assert key.rewrapped_at_ms is not None  # a rewrap always says when


@check
def check_rewrap_leaves_keys_another_writer_moved(backend: RecordBackend) -> None:
    store, other = backend.open(), backend.open()
    g1, g2, g3 = (f"kek-provider_response-20260101-g{n}" for n in (1, 2, 3))
    keys = [make_data_key(f"cas-{n}", g1) for n in range(10)]
    store.claim_data_keys(keys)
    expected = {key.artifact_id: g1 for key in keys}
    # Another writer moves three of them to g3 after this one read them under g1.
    theirs = [
        key.model_copy(update={"kek_id": g3, "wrapped_key": b"theirs", "rewrapped_at_ms": 5})
        for key in keys[:3]
    ]
    assert other.rewrap_data_keys(theirs, expected_kek_ids=expected) == 3

    ours = [
        key.model_copy(update={"kek_id": g2, "wrapped_key": b"ours", "rewrapped_at_ms": 6}) for key in keys
    ]
    assert store.rewrap_data_keys(ours, expected_kek_ids=expected) == 7

    stored = store.data_keys_for(expected)
    assert {aid: (k.kek_id, k.wrapped_key, k.rewrapped_at_ms) for aid, k in stored.items()} == {
        **{key.artifact_id: (g3, b"theirs", 5) for key in keys[:3]},
        **{key.artifact_id: (g2, b"ours", 6) for key in keys[3:]},
    }
    assert store.count_data_keys() == {g2: 7, g3: 3}
    # Replaying the same rewrap changes nothing; an artifact without a key neither.
    assert store.rewrap_data_keys(ours, expected_kek_ids=expected) == 0
    ghost = make_data_key("no key stored", g2)
    assert store.rewrap_data_keys([ghost], expected_kek_ids={ghost.artifact_id: g1}) == 0
    assert store.rewrap_data_keys([], expected_kek_ids={}) == 0


@check
def check_invalid_rewraps_write_nothing(backend: RecordBackend) -> None:
    store = backend.open()
    g1, g2 = "kek-provider_response-20260101-g1", "kek-provider_response-20260101-g2"
    key, other = make_data_key("a", g1), make_data_key("b", g1)
    store.claim_data_keys([key, other])
    move = key.model_copy(update={"kek_id": g2})
    bad_id = DataKeyRecord.model_construct(
        **{**other.model_dump(), "artifact_id": "sha256:bad", "kek_id": g2}
    )

    for batch, expected in (
        ([move, other.model_copy(update={"kek_id": g2})], {key.artifact_id: g1}),  # b has no expected kek
        ([move, bad_id], {key.artifact_id: g1, "sha256:bad": g1}),
        ([move, move], {key.artifact_id: g1}),  # one artifact twice
        ([move], {key.artifact_id: ""}),
    ):
        with pytest.raises(RecordError) as caught:
            store.rewrap_data_keys(batch, expected_kek_ids=expected)
        assert caught.value.code == "RECORD_INVALID"
    assert store.count_data_keys() == {g1: 2}


@check
def check_data_keys_and_keks_outlive_deleted_threads(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread("encrypted", status="completed")
    commit = make_commit(thread, frame_type="readme")
    store.commit_turn(commit)
    kek = store.add_kek(make_kek())
    key = make_data_key("output", kek.kek_id, artifact_id=commit.turn.output_artifact_id)
    store.claim_data_keys([key])

    assert store.delete_threads({thread.thread_id: thread.updated_at_ms}) == [thread.thread_id]

    assert store.get_thread(thread.thread_id) is None
    assert store.data_keys_for([key.artifact_id]) == {key.artifact_id: key}
    assert store.get_kek(kek.kek_id) == kek
    assert store.count_data_keys() == {kek.kek_id: 1}
    # A data key is no reference: an artifact only the keyring names is still an orphan.
    assert key.artifact_id not in store.referenced_artifact_ids()


@check
def check_drop_data_keys_removes_only_the_named_keys(backend: RecordBackend) -> None:
    store = backend.open()
    kept, dropped = make_data_key("kept"), make_data_key("dropped")
    store.claim_data_keys([kept, dropped])
    assert store.drop_data_keys([dropped.artifact_id, make_data_key("never").artifact_id]) == 1
    assert set(store.data_keys_for([kept.artifact_id, dropped.artifact_id])) == {kept.artifact_id}
    assert store.drop_data_keys([dropped.artifact_id]) == 0
    assert store.drop_data_keys([]) == 0
    assert store.count_data_keys() == {kept.kek_id: 1}


# --- audit trail -------------------------------------------------------------------------


def audit_builder(name: str, *, at: int = 1_700_000_200_000, grant_id: str | None = "grant-1", **fields):
    """An `AuditBuilder` whose event links to the head it is given; its hash is a stand-in digest."""

    def build(seq: int, head_hash: str | None) -> AuditEventRecord:
        prev = head_hash or "sha256:" + "0" * 64
        values = {
            "seq": seq,
            "event_id": f"aud-{name}",
            "at_ms": at,
            "requester": "id-reader",
            "grant_id": grant_id,
            "reason_code": "incident",
            "scope": {"workflow_id": WORKFLOW, "turns": [1, 3]},
            "artifact_ids": (art(name),),
            "outcome": "allow",
            "code": None,
            "bytes": 12,
            "policy_version": "1",
            "prev_hash": prev,
            "event_hash": digest_text(f"{seq}|{prev}|{name}"),
            **fields,
        }
        return AuditEventRecord(**values)

    return build


@check
def check_audit_records_append_at_the_head_and_list_by_seq(backend: RecordBackend) -> None:
    store = backend.open()
    first = store.append_audit_record(audit_builder("a", at=100))
    second = store.append_audit_record(audit_builder("b", at=200, grant_id=None))
    seal = "hmac-sha256:" + "ab" * 32
    third = backend.open().append_audit_record(
        audit_builder("c", at=300, seal=seal, seal_key_id="0123456789abcdef")
    )

    assert [e.seq for e in (first, second, third)] == [1, 2, 3]
    # The seal and its key id are kept as given; an event without them reads back without.
    assert (third.seal, third.seal_key_id) == (seal, "0123456789abcdef")
    assert (first.seal, first.seal_key_id) == (None, None)
    assert first.prev_hash == "sha256:" + "0" * 64
    assert second.prev_hash == first.event_hash and third.prev_hash == second.event_hash
    assert store.audit_records() == [first, second, third]
    assert store.audit_records()[0].scope == {"workflow_id": WORKFLOW, "turns": [1, 3]}
    assert store.audit_records(after_seq=1) == [second, third]
    assert store.audit_records(limit=2) == [first, second]
    assert store.audit_records(after_seq=1, limit=1) == [second]
    assert store.audit_records(since_ms=200) == [second, third]
    assert store.audit_records(grant_id="grant-1") == [first, third]
    assert store.audit_records_with_hashes([third.event_hash, first.event_hash, "sha256:none"]) == [
        first,
        third,
    ]
    for bad in ({"after_seq": -1}, {"limit": 0}, {"after_seq": "1"}):
        with pytest.raises(RecordError) as caught:
            store.audit_records(**bad)
        assert caught.value.code == "RECORD_INVALID"


@check
def check_audit_appends_off_the_head_write_nothing(backend: RecordBackend) -> None:
    store = backend.open()
    head = store.append_audit_record(audit_builder("a"))
    good = audit_builder("b")

    def wrong_seq(seq, head_hash):
        return good(seq, head_hash).model_copy(update={"seq": seq + 1})

    def wrong_link(seq, head_hash):
        return good(seq, head_hash).model_copy(update={"prev_hash": "sha256:" + "1" * 64})

    def invalid(seq, head_hash):
        return AuditEventRecord.model_construct(**{**good(seq, head_hash).model_dump(), "requester": ""})

    for build in (wrong_seq, wrong_link, invalid):
        with pytest.raises(RecordError) as caught:
            store.append_audit_record(build)
        assert caught.value.code == "RECORD_INVALID"
    with pytest.raises(RecordError) as caught:
        store.append_audit_record(audit_builder("a"))  # event_id taken
    assert caught.value.code == "RECORD_INTEGRITY"

    def fails(seq, head_hash):
        raise ValueError("the builder gave up")

    with pytest.raises(ValueError):
        store.append_audit_record(fails)
    assert store.audit_records() == [head]
    assert store.append_audit_record(good).seq == 2


@check
def check_concurrent_audit_appends_never_fork_the_chain(backend: RecordBackend) -> None:
    writers, events = 4, 10
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        store = backend.open()
        try:
            barrier.wait()
            for i in range(events):
                store.append_audit_record(audit_builder(f"w{n}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    trail = backend.open().audit_records()
    assert [e.seq for e in trail] == list(range(1, writers * events + 1))
    assert all(later.prev_hash == earlier.event_hash for earlier, later in zip(trail, trail[1:]))


@check
def check_audit_records_outlive_deleted_threads(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread("audited", status="completed")
    store.commit_turn(make_commit(thread))
    event = store.append_audit_record(audit_builder("read"))

    assert store.delete_threads({thread.thread_id: thread.updated_at_ms}) == [thread.thread_id]

    assert store.audit_records() == [event]


# --- identities and grants -----------------------------------------------------------------


def make_identity(name: str, *, role: str = "reader", key: bytes | None = None) -> IdentityRecord:
    return IdentityRecord(
        name=name, public_key=key or name.encode().ljust(32, b"\x00")[:32], role=role, created_at_ms=1
    )


def make_grant(grant_id: str, **fields) -> GrantRecord:
    values = {
        "grant_id": grant_id,
        "grant_digest": "sha256:" + "a" * 64,
        "issuer": "admin",
        "grantee": "reader",
        "capability": "prompt_payload_read",
        "workflow_id": "wf",
        "reasons": ("incident_response",),
        "issued_at_ms": 1_000,
        "not_before_ms": 1_000,
        "expires_at_ms": 10_000_000,
        "max_bytes": 100,
        "rate_reads": 3,
        "rate_window_ms": 60_000,
        **fields,
    }
    return GrantRecord(**values)


@check
def check_identities_first_writer_wins_and_list_by_name(backend: RecordBackend) -> None:
    store = backend.open()
    first = make_identity("zed", role="admin")
    assert store.add_identity(first) == first
    assert store.add_identity(make_identity("zed", key=b"\x01" * 32)) == first
    store.add_identity(make_identity("amy"))
    assert [i.name for i in backend.open().list_identities()] == ["amy", "zed"]
    assert store.get_identity("zed") == first and store.get_identity("nobody") is None
    # An admin's approval (approver's name, 64-byte signature) reads back as written; others have none.
    approved = make_identity("ann", role="admin").model_copy(
        update={"approved_by": "zed", "approval": b"\x07" * 64}
    )
    store.add_identity(approved)
    assert backend.open().get_identity("ann") == approved
    assert (first.approved_by, first.approval) == (None, None)
    with pytest.raises(RecordError) as caught:
        store.add_identity(IdentityRecord.model_construct(name="short", public_key=b"x", role="reader"))
    assert caught.value.code == "RECORD_INVALID"
    assert store.get_identity("short") is None


@check
def check_grants_round_trip_revoke_once_and_list_by_issue_time(backend: RecordBackend) -> None:
    store = backend.open()
    late, early = make_grant("g-late", issued_at_ms=2_000), make_grant("g-early", issued_at_ms=1_000)
    assert store.add_grant(late) == late
    store.add_grant(early)
    assert store.add_grant(make_grant("g-late", max_bytes=1)) == late
    assert [g.grant_id for g in backend.open().list_grants()] == ["g-early", "g-late"]

    assert store.revoke_grant("g-late", at_ms=5_000) is True
    assert store.revoke_grant("g-late", at_ms=6_000) is False
    assert store.revoke_grant("g-unknown") is False
    assert backend.open().get_grant("g-late").revoked_at_ms == 5_000
    assert store.use_grant("g-late", size=1, at_ms=7_000) == "revoked"
    assert store.use_grant("g-unknown", size=1, at_ms=7_000) == "unknown"


@check
def check_use_grant_counts_within_budget_and_rate_windows(backend: RecordBackend) -> None:
    store = backend.open()
    store.add_grant(make_grant("g", max_bytes=100, rate_reads=2, rate_window_ms=1_000))

    assert store.use_grant("g", size=40, at_ms=10_000) == "ok"
    assert store.use_grant("g", size=40, at_ms=10_500) == "ok"
    assert store.use_grant("g", size=1, at_ms=10_999) == "rate"  # two reads in this window
    assert store.use_grant("g", size=30, at_ms=11_000) == "budget"  # a new window, but 110 > 100 bytes
    assert store.use_grant("g", size=20, at_ms=11_000) == "ok"
    used = backend.open().get_grant("g")
    assert (used.bytes_used, used.reads, used.window_start_ms, used.window_reads) == (100, 3, 11_000, 1)
    for size, at in ((-1, 1), (1, -1), (True, 1)):
        with pytest.raises(RecordError) as caught:
            store.use_grant("g", size=size, at_ms=at)
        assert caught.value.code == "RECORD_INVALID"
    assert backend.open().get_grant("g") == used


@check
def check_concurrent_grant_uses_never_pass_the_budget(backend: RecordBackend) -> None:
    backend.open().add_grant(make_grant("g", max_bytes=50, rate_reads=1_000))

    results = run_in_threads(8, lambda n: backend.open().use_grant("g", size=10, at_ms=5_000 + n))

    assert sorted(results) == ["budget"] * 3 + ["ok"] * 5
    assert backend.open().get_grant("g").bytes_used == 50


@check
def check_prompt_links_for_artifact_find_renders_and_shared_contexts(backend: RecordBackend) -> None:
    store = backend.open()
    one, two = make_thread("linked-one"), make_thread("linked-two")
    store.commit_turns([make_commit(one), make_commit(one, "verification", seq=2), make_commit(two)])
    rendered = art(f"{one.thread_id}/verification/1/rendered")
    context = art(f"{one.thread_id}/context")

    [found] = backend.open().prompt_links_for_artifact(rendered)
    assert (found.thread_id, found.turn_id) == (one.thread_id, "verification")
    by_context = store.prompt_links_for_artifact(context)
    assert [link.turn_id for link in by_context] == sorted(
        ["evidence_gather", "verification"],
        key=lambda turn: prompt_link_id_for(one.workflow_id, one.thread_id, turn, 1),
    )
    assert store.prompt_links_for_artifact(art("system")) == []  # system prompts are not payloads
    assert store.prompt_links_for_artifact(art("nowhere")) == []


# --- annotations: append-only log and materialized view ------------------------------


def _view_of(store: RecordStore, frame_id: str) -> dict[str, tuple[str, int]]:
    return {key: (row.value, row.seq) for key, row in store.current_annotations(frame_id).items()}


@check
def check_annotations_append_events_and_keep_the_view_current(backend: RecordBackend) -> None:
    store = backend.open()
    frame = "frame:annotated"
    first = store.append_annotations(
        frame, {"review_status": "draft", "node_label": "core"}, domain="d", at_ms=10
    )
    assert [(e.key, e.seq, e.kind) for e in first] == [("node_label", 1, "set"), ("review_status", 1, "set")]
    store.append_annotations(frame, {"review_status": "approved"}, domain="d", at_ms=20)
    store.append_annotations(frame, {"node_label": None}, domain="d", at_ms=30)

    events = backend.open().annotation_events(frame)
    assert [(e.key, e.seq, e.kind, e.value) for e in events] == [
        ("node_label", 1, "set", "core"),
        ("node_label", 2, "clear", None),
        ("review_status", 1, "set", "draft"),
        ("review_status", 2, "set", "approved"),
    ]
    assert [e.seq for e in store.annotation_events(frame, "review_status")] == [1, 2]
    # The view is the log replayed: the cleared key has no row.
    assert _view_of(store, frame) == {"review_status": ("approved", 2)}
    assert store.current_annotations(frame)["review_status"].updated_at_ms == 20
    assert store.current_annotations("frame:other") == {}
    assert store.annotation_events("frame:other") == []


@check
def check_invalid_annotation_appends_write_nothing(backend: RecordBackend) -> None:
    store = backend.open()
    frame = "frame:invalid"
    store.append_annotations(frame, {"review_status": "draft"}, domain="d", at_ms=1)
    for changes, domain in (({}, "d"), ({"review_status": 3}, "d"), ({"note": "x"}, "")):
        with pytest.raises(RecordError) as caught:
            store.append_annotations(frame, changes, domain=domain, at_ms=2)  # type: ignore[arg-type]
        assert caught.value.code == "RECORD_INVALID"
    assert [e.seq for e in store.annotation_events(frame)] == [1]
    assert _view_of(store, frame) == {"review_status": ("draft", 1)}


@check
def check_folding_annotation_events_keeps_the_view(backend: RecordBackend) -> None:
    store = backend.open()
    frames = ("frame:fold-a", "frame:fold-b")
    for frame in frames:
        for at, value in ((10, "draft"), (20, None), (30, "review"), (40, "approved")):
            store.append_annotations(frame, {"review_status": value}, domain="d", at_ms=at)
        store.append_annotations(frame, {"node_label": "x"}, domain="d", at_ms=15)
    views = {frame: _view_of(store, frame) for frame in frames}

    # Events before 35 of review_status fold: three per frame become one snapshot; node_label
    # has no cutoff and keeps its log.
    assert store.fold_annotation_events({"review_status": 35}) == 4
    for frame in frames:
        events = store.annotation_events(frame, "review_status")
        assert [(e.seq, e.kind, e.value, e.folded) for e in events] == [
            (3, "snapshot", "review", 3),
            (4, "set", "approved", 0),
        ]
        assert len(store.annotation_events(frame, "node_label")) == 1
        assert _view_of(backend.open(), frame) == views[frame]
    # Folding again folds the snapshot with what followed; the next append continues the seqs.
    assert store.fold_annotation_events({"review_status": 35}) == 0
    assert store.fold_annotation_events({"review_status": 1_000}) == 2
    store.append_annotations(frames[0], {"review_status": "done"}, domain="d", at_ms=50)
    assert [(e.seq, e.kind, e.folded) for e in store.annotation_events(frames[0], "review_status")] == [
        (4, "snapshot", 4),
        (5, "set", 0),
    ]
    assert _view_of(store, frames[0]) == {"node_label": ("x", 1), "review_status": ("done", 5)}
    # Only a run that starts the log folds: an old event after a newer one (a clock set
    # back) stays, and so does everything after it.
    skewed = "frame:fold-skewed"
    for at in (100, 5, 6):
        store.append_annotations(skewed, {"node_label": f"v{at}"}, domain="d", at_ms=at)
    assert store.fold_annotation_events({"node_label": 50}) == 0
    assert [(e.seq, e.kind) for e in store.annotation_events(skewed)] == [(1, "set"), (2, "set"), (3, "set")]
    with pytest.raises(RecordError) as caught:
        store.fold_annotation_events({"review_status": "soon"})  # type: ignore[dict-item]
    assert caught.value.code == "RECORD_INVALID"


@check
def check_annotations_outlive_deleted_threads(backend: RecordBackend) -> None:
    store = backend.open()
    thread = make_thread("annotated", status="completed")
    commit = make_commit(thread, frame_type="readme")
    store.commit_turn(commit)
    frame_id = commit.frame.frame_id
    store.append_annotations(frame_id, {"review_status": "approved"}, domain="d", at_ms=1)
    assert backend.open().get_frame(frame_id) == commit.frame
    assert store.get_frame("frame:none") is None
    assert store.delete_threads({thread.thread_id: thread.updated_at_ms}) == [thread.thread_id]
    assert store.get_frame(frame_id) is None
    assert _view_of(store, frame_id) == {"review_status": ("approved", 1)}
