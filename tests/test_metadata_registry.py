from __future__ import annotations

import dataclasses

import pytest

from wf_pipeline.errors import MetadataError
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY, KeyDescriptor, KeyRegistry, matches_schema


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


def test_frame_registry_holds_the_workflow_frame_keys() -> None:
    assert set(FRAME_KEY_REGISTRY.names()) == {
        "agent_id",
        "provider",
        "model",
        "provider_type",
        "prompt_digest",
        "context_digest",
        "prompt_link_id",
    }
    assert FRAME_KEY_REGISTRY.get("agent_id").mutability == "identity"
    assert FRAME_KEY_REGISTRY.get("agent_id").hash_impact is True
    assert {d.name for d in FRAME_KEY_REGISTRY.select(mutability="attested")} == set(
        FRAME_KEY_REGISTRY.names()
    ) - {"agent_id"}
    assert {d.name for d in FRAME_KEY_REGISTRY if d.schema_type == "digest"} == {
        "prompt_digest",
        "context_digest",
    }
    assert all(d.persisted and d.retention == "keep" for d in FRAME_KEY_REGISTRY)


def test_lookup_and_membership() -> None:
    assert "model" in FRAME_KEY_REGISTRY
    assert "prompt_text" not in FRAME_KEY_REGISTRY
    assert 42 not in FRAME_KEY_REGISTRY
    assert FRAME_KEY_REGISTRY.get("prompt_text") is None
    assert len(FRAME_KEY_REGISTRY) == 7


def test_register_returns_a_new_registry_and_leaves_the_old_one_alone() -> None:
    extra = descriptor()
    grown = FRAME_KEY_REGISTRY.register(extra)

    assert grown.get("summary_lang") == extra
    assert "summary_lang" not in FRAME_KEY_REGISTRY
    assert len(grown) == len(FRAME_KEY_REGISTRY) + 1
    assert grown.select(owner_domain="tree") == (extra,)
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
