"""Read-side views for the CLI: scans, thread lists and thread details (ids and digests only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wf_pipeline.errors import RUN_UNKNOWN_THREAD, RUN_UNKNOWN_TURN, RunError
from wf_pipeline.gates import group_by_rule
from wf_pipeline.metadata.records import (
    ArtifactLinkRecord,
    GateRecord,
    PromptLinkRecord,
    ThreadRecord,
    TurnRecord,
    now_ms,
)
from wf_pipeline.retention.archive import RecordArchive
from wf_pipeline.retention.reads import artifact_states
from wf_pipeline.runtime.branches import decision_view
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.tree import TreeScan


def record_scan(env: RuntimeEnv, scan: TreeScan) -> dict[str, Any]:
    """Persist the node records of a scan and summarise it.

    Args:
        env: the runtime (its record store is written).
        scan: the scan to record.

    Returns:
        ``{"root", "root_id", "directories", "files", "omitted": {"binary",
        "oversized", "unreadable"}, "warnings": [{"code", "path", "message"}]}``, counts
        as ints; no file content.

    Raises:
        RecordError: ``RECORD_INVALID``, ``RECORD_INTEGRITY``, ``RECORD_UNAVAILABLE``.
    """
    env.records.upsert_nodes(scan.to_records(now_ms()))
    files = [n for n in scan.nodes if n.kind == "file"]
    return {
        "root": str(scan.root),
        "root_id": scan.root_id,
        "directories": sum(1 for n in scan.nodes if n.kind == "dir"),
        "files": len(files),
        "omitted": {
            reason: sum(1 for n in files if n.omitted == reason)
            for reason in ("binary", "oversized", "unreadable")
        },
        "warnings": [warning.to_json() for warning in scan.warnings],
    }


def list_threads(env: RuntimeEnv, workflow_id: str | None = None) -> list[dict[str, Any]]:
    """Every recorded thread, optionally of one workflow, in the record store's listing order.

    Args:
        env: the runtime (its record store is read).
        workflow_id: only threads of this workflow; None for all.

    Returns:
        One ``{"thread_id", "workflow_id", "target", "path", "status", "last_turn_seq",
        "error_code", "updated_at_ms"}`` per thread (``updated_at_ms``: Unix epoch, ms;
        ``error_code``: why a failed thread stopped, else None).

    Raises:
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    return [
        {
            "thread_id": t.thread_id,
            "workflow_id": t.workflow_id,
            "target": t.target_key,
            "path": t.target_path,
            "status": t.status,
            "last_turn_seq": t.last_turn_seq,
            "error_code": t.error_code,
            "updated_at_ms": t.updated_at_ms,
        }
        for t in env.records.list_threads(workflow_id=workflow_id)
    ]


def thread_details(env: RuntimeEnv, thread_id: str, archive: RecordArchive | None = None) -> dict[str, Any]:
    """A thread with its turns in seq order (every attempt), gate outcomes and artifact ids.

    A thread that is no longer in the record store but in ``archive`` (moved there by
    ``wf compact``) is shown from its archived rows, marked ``"archived": true`` with its
    ``compaction`` (``{"compaction_id", "archived_at_ms"}``, epoch ms).

    Args:
        env: the runtime (its record store is read, its CAS checked for presence).
        thread_id: the thread to show.
        archive: the record archive to look in when the record store has no such
            thread; None looks only in the record store.

    Returns:
        The thread record's JSON fields (without ``schema_version``), plus ``archived``
        (bool), ``compaction`` (None unless archived), ``prompt_link_ids`` (sorted) and
        ``turns``: one ``{"turn_id", "seq", "attempt",
        "status", "input_artifact_ids", "output_artifact_id", "request_digest",
        "response_artifact_id", "response_source" (``provider``, ``recorded``, ``replay``
        or None: `wf_pipeline.runtime.requests`), "gate": {"gate_id",
        "outcome", "reasons", "findings" ([{"rule_id", "code", "pointer", "hint"}]),
        "rules_digest"} | None, "error_code", "error_text", "decision" (the branch
        decision of a turn that declares ``when:``: ``{"branch"`` (``taken``/``not_taken``),
        ``"expression", "reads", "result", "decision_digest"}``, see
        `wf_pipeline.runtime.branches.decision_view`; None otherwise), "started_at_ms",
        "ended_at_ms"}`` per attempt (times: Unix epoch, ms), and ``artifacts``: one
        ``{"artifact_id", "role", "turn_id", "attempt", "size" (bytes), "state"}`` per
        artifact link, ``state`` ``stored``, ``shredded`` (its KEK was destroyed),
        ``expired`` (deleted by retention; see `wf_pipeline.retention.reads.artifact_states`)
        or ``missing``; the records stay either way. The thread's ``error_code`` and
        ``error_text`` say why a failed thread stopped. Ids, digests and error messages
        with their figures only, never payload text.

    Raises:
        RunError: ``RUN_UNKNOWN_THREAD`` when no thread has that id, live or archived.
        RecordError: ``RECORD_UNAVAILABLE``. RetentionError: ``RETENTION_ARCHIVE_ERROR``
            when an archive file cannot be read.
    """
    thread = env.records.get_thread(thread_id)
    if thread is not None:
        return _details(
            env,
            thread,
            turns=env.records.turns_for_thread(thread_id),
            gates=env.records.gates_for_thread(thread_id),
            prompt_links=env.records.prompt_links_for_thread(thread_id),
            artifact_links=env.records.artifact_links_for_thread(thread_id),
            compaction=None,
        )
    archived = archive.thread_records(thread_id) if archive is not None else None
    if archived is None:
        raise RunError(RUN_UNKNOWN_THREAD, f"no thread {thread_id}")
    return _details(
        env,
        archived.thread,
        turns=archived.turns,
        gates=archived.gates,
        prompt_links=archived.prompt_links,
        artifact_links=archived.artifact_links,
        compaction={"compaction_id": archived.compaction_id, "archived_at_ms": archived.archived_at_ms},
    )


def _details(
    env: RuntimeEnv,
    thread: ThreadRecord,
    *,
    turns: Sequence[TurnRecord],
    gates: Sequence[GateRecord],
    prompt_links: Sequence[PromptLinkRecord],
    artifact_links: Sequence[ArtifactLinkRecord],
    compaction: dict[str, Any] | None,
) -> dict[str, Any]:
    # One shape for live and archived threads (see thread_details).
    by_attempt = {(g.turn_id, g.attempt): g for g in gates}
    links = {(p.turn_id, p.prompt_link_id) for p in prompt_links}
    shown_turns = []
    for turn in turns:
        gate = by_attempt.get((turn.turn_id, turn.attempt))
        shown_turns.append(
            {
                "turn_id": turn.turn_id,
                "seq": turn.turn_seq,
                "attempt": turn.attempt,
                "status": turn.status,
                "input_artifact_ids": list(turn.input_artifact_ids),
                "output_artifact_id": turn.output_artifact_id,
                "request_digest": turn.request_digest,
                "response_artifact_id": turn.response_artifact_id,
                "response_source": turn.response_source,
                "gate": {
                    "gate_id": gate.gate_id,
                    "outcome": gate.outcome,
                    "reasons": list(gate.reasons),
                    "findings": [dict(finding) for finding in gate.findings],
                    "rules_digest": gate.rules_digest,
                }
                if gate
                else None,
                "error_code": turn.error_code,
                "error_text": turn.error_text,
                "decision": decision_view(turn.branch),
                "started_at_ms": turn.started_at_ms,
                "ended_at_ms": turn.ended_at_ms,
            }
        )
    states = artifact_states(env.records, env.cas, (link.artifact_id for link in artifact_links))
    return {
        **thread.model_dump(mode="json", exclude={"schema_version"}),
        "archived": compaction is not None,
        "compaction": compaction,
        "prompt_link_ids": sorted(link_id for _, link_id in links),
        "turns": shown_turns,
        "artifacts": [
            {
                "artifact_id": link.artifact_id,
                "role": link.role,
                "turn_id": link.turn_id,
                "attempt": link.attempt,
                "size": link.size,
                "state": states[link.artifact_id],
            }
            for link in artifact_links
        ],
    }


def gate_findings(env: RuntimeEnv, thread_id: str, turn_id: str | None = None) -> dict[str, Any]:
    """The findings of each turn's latest gate verdict in a thread, grouped by rule id.

    Args:
        env: the runtime (its record store is read).
        thread_id: the thread.
        turn_id: only this turn; None for every turn that has a gate verdict.

    Returns:
        ``{"thread_id", "workflow_id", "turns": [{"turn_id", "attempt", "gate_id",
        "outcome", "rules_digest", "rules": {rule_id: [{"code", "pointer", "hint"}]}}]}``,
        turns in seq order, each the latest attempt that has a verdict; rules sorted, each
        group as the verdict lists it. Ids, codes and pointers only, never payload text.

    Raises:
        RunError: ``RUN_UNKNOWN_THREAD`` when no thread has that id; ``RUN_UNKNOWN_TURN``
            (figures: thread_id, turn_id, known) when the thread's workflow has no such turn.
        RecordError: ``RECORD_UNAVAILABLE``.
    """
    thread = env.records.get_thread(thread_id)
    if thread is None:
        raise RunError(RUN_UNKNOWN_THREAD, f"no thread {thread_id}")
    turns = env.records.turns_for_thread(thread_id)
    seq_of = {turn.turn_id: turn.turn_seq for turn in turns}
    known = _workflow_turns(env, thread.workflow_id) or sorted(seq_of, key=seq_of.__getitem__)
    if turn_id is not None and turn_id not in known:
        raise RunError(
            RUN_UNKNOWN_TURN,
            f"thread {thread_id} ({thread.workflow_id}) has no turn {turn_id!r} (known: {', '.join(known)})",
            thread_id=thread_id,
            turn_id=turn_id,
            known=known,
        )
    latest: dict[str, GateRecord] = {}
    for gate in env.records.gates_for_thread(thread_id):
        if turn_id is not None and gate.turn_id != turn_id:
            continue
        if gate.turn_id not in latest or gate.attempt > latest[gate.turn_id].attempt:
            latest[gate.turn_id] = gate
    ordered = sorted(latest.values(), key=lambda g: (seq_of.get(g.turn_id, 0), g.turn_id))
    return {
        "thread_id": thread_id,
        "workflow_id": thread.workflow_id,
        "turns": [
            {
                "turn_id": gate.turn_id,
                "attempt": gate.attempt,
                "gate_id": gate.gate_id,
                "outcome": gate.outcome,
                "rules_digest": gate.rules_digest,
                "rules": group_by_rule(gate.findings),
            }
            for gate in ordered
        ],
    }


def _workflow_turns(env: RuntimeEnv, workflow_id: str) -> list[str]:
    # The turns of the thread's workflow in seq order, when its profile is loaded; else [].
    loaded = env.catalog.profiles.get(workflow_id)
    return [turn.turn_id for turn in loaded.profile.ordered_turns()] if loaded is not None else []
