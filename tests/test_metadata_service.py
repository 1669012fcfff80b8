"""The metadata use cases and ``wf metadata``: registry listing, default views, annotations, folding."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conformance.records_suite import make_commit, make_thread
from e2e_support import SAMPLE_REPO, copy_tree, isolated_settings

from wf_pipeline.cas import open_cas
from wf_pipeline.cli.main import main
from wf_pipeline.errors import METADATA_KEY_NOT_OWNED, MetadataError
from wf_pipeline.metadata.boundary import FrameMetadataBoundary
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY, KeyDescriptor, KeyRegistry
from wf_pipeline.records import open_record_store
from wf_pipeline.runtime import RuntimeEnv
from wf_pipeline.service import compact
from wf_pipeline.service.metadata import annotate, list_keys, show_metadata

DAY = 86_400_000
NOTE = "Checked by the storage team; see the migration ticket"
PROMPT_DIGEST = digest_text("a rendered prompt")
CONTEXT_DIGEST = digest_text("a context snapshot")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home whose record store holds one completed thread with one frame, and a CAS with one object."""
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    thread = make_thread("pkg", status="completed")
    commit = make_commit(thread, frame_type="readme")
    metadata = FrameMetadataBoundary().validate(
        {
            "agent": {"agent_id": "agent.docs", "provider": "offline", "model": "offline-v1"},
            "prompt_context": {"prompt_digest": PROMPT_DIGEST},
            "context": {"context_digest": CONTEXT_DIGEST},
            "workflow": {"prompt_link_id": commit.prompt_link.prompt_link_id},
        }
    )
    commit = dataclasses.replace(commit, frame=commit.frame.model_copy(update={"metadata": metadata}))
    with open_record_store(settings.records_url) as records:
        records.commit_turn(commit)
    with open_cas(settings.cas_url) as cas:
        cas.put(b"an object the frame refers to")
    return settings, commit.frame


def _state(settings, frame_id: str) -> tuple:
    """Everything an annotation write could touch: the frame's log, view and record, and the CAS objects."""
    with open_record_store(settings.records_url) as records:
        rows = (
            records.annotation_events(frame_id),
            records.current_annotations(frame_id),
            records.get_frame(frame_id),
            records.head_frames(),
        )
    with open_cas(settings.cas_url) as cas:
        objects = sorted((info.artifact_id, info.size) for info in cas.iter_objects())
    return rows, objects


def test_list_keys_gives_every_registered_key_with_its_policies() -> None:
    keys = list_keys()
    assert [k["name"] for k in keys] == list(FRAME_KEY_REGISTRY.names())
    review_note = next(k for k in keys if k["name"] == "review_note")
    assert review_note == {
        "name": "review_note",
        "owner_domain": "workflow",
        "schema_type": "short_text",
        "mutability": "annotation",
        "hash_impact": False,
        "max_bytes": 256,
        "retention": "keep",
        "redaction": "hash",
        "visibility": "privileged",
        "fold_after": "30d",
    }


def test_annotations_append_to_the_log_and_show_gives_the_default_view(home) -> None:
    settings, frame = home
    events = annotate(settings, frame.frame_id, {"review_status": "draft"}, domain="workflow", at_ms=10)
    assert [(e["key"], e["seq"], e["kind"]) for e in events] == [("review_status", 1, "set")]
    events = annotate(
        settings,
        frame.frame_id,
        {"review_status": "approved", "review_note": NOTE},
        domain="workflow",
        at_ms=20,
    )
    assert [(e["key"], e["seq"]) for e in events] == [("review_note", 1), ("review_status", 2)]
    annotate(settings, frame.frame_id, {"node_label": "storage"}, domain="tree", at_ms=30)

    shown = show_metadata(settings, frame.frame_id)

    assert shown["kind"] == "frame"
    (view,) = shown["frames"]
    assert view["frame_id"] == frame.frame_id and view["artifact_id"] == frame.artifact_id
    assert view["metadata"]["shown"]["model"] == {"value": "offline-v1", "visibility": "public"}
    assert view["metadata"]["shown"]["prompt_digest"] == {"value": PROMPT_DIGEST, "visibility": "internal"}
    assert set(view["metadata"]["shown"]) == set(frame.metadata)
    assert view["annotations"]["shown"] == {
        "node_label": {"value": "storage", "visibility": "internal"},
        "review_note": {"digest": digest_text(NOTE), "visibility": "privileged"},
        "review_status": {"value": "approved", "visibility": "public"},
    }
    # The privileged value appears nowhere in the view, nor in what annotate returned.
    assert NOTE not in json.dumps(shown) and NOTE not in json.dumps(events)
    # By node: the node's head frames.
    by_node = show_metadata(settings, frame.node_id)
    assert by_node["kind"] == "node" and by_node["frames"] == shown["frames"]
    # By thread: the frames the thread produced (the id `wf threads show` prints).
    by_thread = show_metadata(settings, frame.thread_id)
    assert by_thread["kind"] == "thread" and by_thread["frames"] == shown["frames"]


def test_a_privileged_key_without_a_digest_policy_and_an_unregistered_key_are_withheld(home) -> None:
    settings, frame = home
    annotate(settings, frame.frame_id, {"review_note": NOTE}, domain="workflow", at_ms=1)
    # The same stored values under a registry that drops the note and no longer knows the model.
    dropped = dataclasses.replace(FRAME_KEY_REGISTRY.get("review_note"), redaction="drop")
    registry = KeyRegistry(
        [dropped, *(d for d in FRAME_KEY_REGISTRY if d.name not in {"review_note", "model"})]
    )
    (view,) = show_metadata(settings, frame.frame_id, registry=registry)["frames"]
    assert view["annotations"] == {"shown": {}, "withheld": ["review_note"]}
    assert view["metadata"]["withheld"] == ["model"]
    assert "model" not in view["metadata"]["shown"]


@pytest.mark.parametrize(
    ("domain", "changes", "code"),
    [
        ("tree", {"review_status": "approved"}, METADATA_KEY_NOT_OWNED),
        ("workflow", {"review_status": "approved", "node_label": "storage"}, METADATA_KEY_NOT_OWNED),
        ("agent", {"review_note": NOTE}, METADATA_KEY_NOT_OWNED),
        ("agent", {"model": "another-model"}, "METADATA_KEY_IMMUTABLE"),
        ("workflow", {"prompt_text": "x"}, "METADATA_UNKNOWN_KEY"),
    ],
)
def test_a_refused_annotation_writes_nothing_to_the_records_or_the_cas(home, domain, changes, code) -> None:
    settings, frame = home
    annotate(settings, frame.frame_id, {"review_status": "draft"}, domain="workflow", at_ms=1)
    before = _state(settings, frame.frame_id)

    with pytest.raises(MetadataError) as caught:
        annotate(settings, frame.frame_id, changes, domain=domain, at_ms=2)

    assert caught.value.code == code
    assert _state(settings, frame.frame_id) == before


def test_unknown_targets_are_named_by_code(home) -> None:
    settings, _ = home
    for call in (
        lambda: show_metadata(settings, "frame:none"),
        lambda: show_metadata(settings, "thread:000000000000000000000000"),
        lambda: annotate(settings, "frame:none", {"review_status": "x"}, domain="workflow"),
    ):
        with pytest.raises(MetadataError) as caught:
            call()
        assert caught.value.code == "METADATA_TARGET_NOT_FOUND"


def test_compaction_folds_annotation_events_older_than_their_window_and_the_view_stays(home) -> None:
    settings, frame = home
    start = 1_800_000_000_000
    for day, status in enumerate(("draft", "review", "approved")):
        annotate(
            settings, frame.frame_id, {"review_status": status}, domain="workflow", at_ms=start + day * DAY
        )
    annotate(
        settings, frame.frame_id, {"review_status": "published"}, domain="workflow", at_ms=start + 35 * DAY
    )
    view_before = show_metadata(settings, frame.frame_id)

    # 40 days on, the 30-day window folds the first three events, not the fourth.
    result = compact(settings, now_ms=start + 40 * DAY).to_dict()

    assert result["annotations"]["events_folded"] == 2
    assert set(result["annotations"]["keys"]) == {"node_label", "review_note", "review_status"}
    with open_record_store(settings.records_url) as records:
        events = records.annotation_events(frame.frame_id)
    assert [(e.seq, e.kind, e.value, e.folded) for e in events] == [
        (3, "snapshot", "approved", 3),
        (4, "set", "published", 0),
    ]
    assert show_metadata(settings, frame.frame_id) == view_before
    # Nothing more is old enough: a second compaction folds nothing.
    assert compact(settings, now_ms=start + 40 * DAY).annotations.events_folded == 0


def test_wf_metadata_keys_and_show(home, capsys) -> None:
    settings, frame = home
    annotate(settings, frame.frame_id, {"review_note": NOTE, "review_status": "approved"}, domain="workflow")

    assert main(["metadata", "keys", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"keys": list_keys()}
    assert main(["metadata", "keys"]) == 0
    table = capsys.readouterr().out
    for name in FRAME_KEY_REGISTRY.names():
        assert name in table
    assert "prompt_context" in table and "10 keys registered" in table

    assert main(["metadata", "show", frame.frame_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == show_metadata(settings, frame.frame_id)
    assert main(["metadata", "show", frame.node_id]) == 0
    text = capsys.readouterr().out
    assert "approved" in text and digest_text(NOTE) in text and "offline-v1" in text
    assert NOTE not in text

    assert main(["metadata", "show", "frame:none"]) == 1
    assert capsys.readouterr().err.startswith("METADATA_TARGET_NOT_FOUND: ")
    with pytest.raises(SystemExit) as usage:
        main(["metadata", "nothing"])
    assert usage.value.code == 2


def test_a_run_whose_domain_writes_a_key_it_does_not_own_writes_no_frame(monkeypatch, tmp_path) -> None:
    from wf_pipeline.service import run_workflow

    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "storage", tmp_path / "storage")
    # A registry that gives ``model`` to the workflow domain: the agent domain, which writes
    # it on every frame, no longer owns it.
    moved = KeyDescriptor(
        **{**dataclasses.asdict(FRAME_KEY_REGISTRY.get("model")), "owner_domain": "workflow"}
    )
    registry = KeyRegistry([moved, *(d for d in FRAME_KEY_REGISTRY if d.name != "model")])
    real_open = RuntimeEnv.open.__func__

    def open_with_registry(cls, *args, **kwargs):
        env = real_open(cls, *args, **kwargs)
        object.__setattr__(env, "boundary", FrameMetadataBoundary(registry, env.budgets))
        return env

    monkeypatch.setattr(RuntimeEnv, "open", classmethod(open_with_registry))
    summary = run_workflow(settings, "docs_writer_thread_v1", tree)

    assert not summary.ok
    with open_record_store(settings.records_url) as records:
        # No frame record, and the thread is failed with the code (its earlier turns stay).
        assert records.head_frames() == []
        threads = records.list_threads()
        assert threads
        assert {(t.status, t.error_code) for t in threads} == {("failed", METADATA_KEY_NOT_OWNED)}
        assert all(
            turn.turn_id != "style_refine" or turn.status != "completed"
            for thread in threads
            for turn in records.turns_for_thread(thread.thread_id)
        )
