from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from wf_pipeline.errors import MetadataError
from wf_pipeline.metadata.registry import (
    FRAME_KEY_REGISTRY,
    REGISTRY_FILE,
    KeyDescriptor,
    KeyRegistry,
    descriptor_dict,
    load_key_registry,
    matches_schema,
    parse_key_registry,
)


def descriptor(name: str = "summary_lang", **changes: object) -> KeyDescriptor:
    fields = dict(
        name=name,
        owner_domain="tree",
        schema_type="identifier",
        mutability="annotation",
        hash_impact=False,
        max_bytes=16,
    )
    return KeyDescriptor(**{**fields, **changes})


FRAME_KEYS = {
    "agent_id": "agent",
    "provider": "agent",
    "model": "agent",
    "provider_type": "agent",
    "prompt_digest": "prompt_context",
    "context_digest": "context",
    "prompt_link_id": "workflow",
}
ANNOTATION_KEYS = {"review_status": "workflow", "review_note": "workflow", "node_label": "tree"}


def test_frame_registry_holds_every_key_the_product_writes_with_its_owner() -> None:
    assert {d.name: d.owner_domain for d in FRAME_KEY_REGISTRY} == {**FRAME_KEYS, **ANNOTATION_KEYS}
    assert FRAME_KEY_REGISTRY.get("agent_id").mutability == "identity"
    assert FRAME_KEY_REGISTRY.get("agent_id").hash_impact is True
    assert {d.name for d in FRAME_KEY_REGISTRY.select(mutability="attested")} == set(FRAME_KEYS) - {
        "agent_id"
    }
    assert {d.name for d in FRAME_KEY_REGISTRY.select(mutability="annotation")} == set(ANNOTATION_KEYS)
    assert {d.name for d in FRAME_KEY_REGISTRY if d.schema_type == "digest"} == {
        "prompt_digest",
        "context_digest",
    }
    assert all(d.persisted and d.retention == "keep" for d in FRAME_KEY_REGISTRY)
    # Annotation keys, and only they, fold after a window (30 days).
    assert {d.name: d.fold_after_ms for d in FRAME_KEY_REGISTRY if d.fold_after_ms} == dict.fromkeys(
        ANNOTATION_KEYS, 30 * 86_400_000
    )
    assert FRAME_KEY_REGISTRY.get("review_note").visibility == "privileged"
    assert FRAME_KEY_REGISTRY.get("review_note").redaction == "hash"


def test_lookup_and_membership() -> None:
    assert "model" in FRAME_KEY_REGISTRY
    assert "prompt_text" not in FRAME_KEY_REGISTRY
    assert 42 not in FRAME_KEY_REGISTRY
    assert FRAME_KEY_REGISTRY.get("prompt_text") is None
    assert len(FRAME_KEY_REGISTRY) == len(FRAME_KEYS) + len(ANNOTATION_KEYS)


def test_register_returns_a_new_registry_and_leaves_the_old_one_alone() -> None:
    extra = descriptor()
    grown = FRAME_KEY_REGISTRY.register(extra)

    assert grown.get("summary_lang") == extra
    assert "summary_lang" not in FRAME_KEY_REGISTRY
    assert len(grown) == len(FRAME_KEY_REGISTRY) + 1
    assert grown.select(owner_domain="tree") == (*FRAME_KEY_REGISTRY.select(owner_domain="tree"), extra)
    assert grown != FRAME_KEY_REGISTRY
    assert KeyRegistry(reversed(list(grown))) == grown


def test_registering_a_known_name_twice_fails() -> None:
    with pytest.raises(MetadataError) as caught:
        FRAME_KEY_REGISTRY.register(descriptor("model"))
    assert caught.value.code == "METADATA_DUPLICATE_KEY"
    with pytest.raises(MetadataError) as within_one_call:
        KeyRegistry([descriptor(), descriptor()])
    assert within_one_call.value.code == "METADATA_DUPLICATE_KEY"


def test_descriptors_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FRAME_KEY_REGISTRY.get("model").max_bytes = 10_000  # type: ignore[misc]


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "Bad Name"},
        {"owner_domain": ""},
        {"owner_domain": "runtime"},
        {"visibility": "privileged", "redaction": "none"},
        {"fold_after_ms": 0},
        {"fold_after_ms": 1000, "mutability": "attested"},
        {"schema_type": "blob"},
        {"mutability": "sometimes"},
        {"redaction": "shred"},
        {"visibility": "everyone"},
        {"max_bytes": 0},
        {"max_bytes": True},
        {"hash_impact": "yes"},
        {"retention": "keep forever"},
        {"mutability": "identity", "hash_impact": False},
        {"mutability": "ephemeral", "hash_impact": True},
    ],
)
def test_invalid_descriptors_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(MetadataError) as caught:
        descriptor(**changes)
    assert caught.value.code == "METADATA_INVALID_DESCRIPTOR"


def test_registry_accepts_only_descriptors() -> None:
    with pytest.raises(MetadataError) as caught:
        KeyRegistry([{"name": "model"}])  # type: ignore[list-item]
    assert caught.value.code == "METADATA_INVALID_DESCRIPTOR"


def test_named_retention_policy_is_accepted() -> None:
    assert descriptor(retention="thirty_days").retention == "thirty_days"


@pytest.mark.parametrize(
    ("schema_type", "value", "ok"),
    [
        ("digest", "sha256:" + "a" * 64, True),
        ("digest", "sha256:" + "A" * 64, False),
        ("digest", "sha256:" + "a" * 63, False),
        ("identifier", "Qwen/Qwen2.5-7B-Instruct", True),
        ("identifier", "llama3.1:8b@q4", True),
        ("identifier", "-leading-dash", False),
        ("identifier", "has space", False),
        ("identifier", "x" * 128, True),
        ("identifier", "x" * 129, False),
        ("short_text", "A short note, with punctuation!", True),
        ("short_text", "tab\tinside", False),
        ("short_text", "", False),
    ],
)
def test_schema_types(schema_type: str, value: str, ok: bool) -> None:
    assert matches_schema(schema_type, value) is ok


# --- the registry as data -------------------------------------------------------------

ENTRY = """
  - name: review_status
    owner_domain: workflow
    schema_type: identifier
    mutability: annotation
    hash_impact: false
    max_bytes: 64
    fold_after: 7d
"""


def test_the_packaged_file_loads_as_the_frame_registry_and_round_trips(tmp_path: Path) -> None:
    assert load_key_registry() == FRAME_KEY_REGISTRY
    entries = [
        {field: value for field, value in descriptor_dict(d).items() if value is not None}
        for d in FRAME_KEY_REGISTRY
    ]
    copy = tmp_path / REGISTRY_FILE
    copy.write_text(yaml.safe_dump({"version": 1, "keys": entries}), encoding="utf-8")
    assert load_key_registry(copy) == FRAME_KEY_REGISTRY


def test_a_minimal_entry_takes_the_defaults() -> None:
    registry = parse_key_registry("version: 1\nkeys:" + ENTRY)
    descriptor = registry.get("review_status")
    assert (descriptor.retention, descriptor.redaction, descriptor.visibility) == ("keep", "none", "internal")
    assert descriptor.fold_after_ms == 7 * 86_400_000


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("version: 1\nkeys: [unclosed", "METADATA_REGISTRY_INVALID"),
        ("- just a list", "METADATA_REGISTRY_INVALID"),
        ("version: 2\nkeys:" + ENTRY, "METADATA_REGISTRY_INVALID"),
        ("keys:" + ENTRY, "METADATA_REGISTRY_INVALID"),
        ("version: 1\nkeys: []", "METADATA_REGISTRY_INVALID"),
        ("version: 1\nextra: 1\nkeys:" + ENTRY, "METADATA_REGISTRY_INVALID"),
        ("version: 1\nkeys:" + ENTRY + "    max_bytes: 32\n", "METADATA_REGISTRY_INVALID"),
        ("version: 1\nkeys:\n  - review_status", "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY.replace("    max_bytes: 64\n", ""), "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY + "    colour: blue\n", "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY.replace("workflow", "runtime"), "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY.replace("annotation", "sometimes"), "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY.replace("64", "'64'"), "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY.replace("7d", "soon"), "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY.replace("7d", "forever"), "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY.replace("7d", "7"), "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY.replace("annotation", "attested"), "METADATA_INVALID_DESCRIPTOR"),
        ("version: 1\nkeys:" + ENTRY + ENTRY, "METADATA_DUPLICATE_KEY"),
    ],
)
def test_invalid_registry_files_are_rejected_with_stable_codes(text: str, code: str) -> None:
    with pytest.raises(MetadataError) as caught:
        parse_key_registry(text, "test.yaml")
    assert caught.value.code == code


def test_an_unreadable_registry_file_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as caught:
        load_key_registry(tmp_path / "missing.yaml")
    assert caught.value.code == "METADATA_REGISTRY_INVALID"
