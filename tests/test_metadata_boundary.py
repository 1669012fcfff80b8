from __future__ import annotations

import pytest

from wf_pipeline.errors import MetadataError
from wf_pipeline.metadata.boundary import FrameMetadataBoundary
from wf_pipeline.metadata.budgets import Budgets
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY, KeyDescriptor, KeyRegistry

PROMPT = "You are a careful technical writer. Document the package below.\nUse only the evidence given."
CONTEXT = '{"schema":"wf.context.v2","files":[{"path":"pkg/a.py","text":"def helper_function_with_a_long_name(): pass"}]}'


def good_metadata() -> dict[str, str]:
    return {
        "provider": "offline",
        "agent_id": "agent.docs_writer",
        "model": "offline-deterministic",
        "provider_type": "offline",
        "prompt_digest": digest_text(PROMPT),
        "context_digest": digest_text(CONTEXT),
        "prompt_link_id": "plink:0123456789abcdef01234567",
    }


def owned(metadata: object, registry: KeyRegistry = FRAME_KEY_REGISTRY) -> object:
    """``metadata`` as one write per owner domain, each key under its owner (unknown keys: workflow)."""
    if not isinstance(metadata, dict):
        return metadata
    writes: dict[str, dict[object, object]] = {}
    for key, value in metadata.items():
        descriptor = registry.get(key) if isinstance(key, str) else None
        writes.setdefault(descriptor.owner_domain if descriptor else "workflow", {})[key] = value
    return writes


def rejection(
    metadata: object, boundary: FrameMetadataBoundary | None = None, **kwargs: object
) -> MetadataError:
    boundary = boundary or FrameMetadataBoundary()
    with pytest.raises(MetadataError) as caught:
        boundary.validate(owned(metadata, boundary.registry), **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_valid_metadata_comes_back_as_a_new_sorted_dict() -> None:
    metadata = good_metadata()

    accepted = FrameMetadataBoundary().validate(owned(metadata), forbidden_texts=[PROMPT, CONTEXT])

    assert accepted == metadata
    assert list(accepted) == sorted(metadata)
    assert accepted is not metadata
    assert list(metadata)[0] == "provider"  # the caller's mapping is untouched


def test_unknown_keys_are_rejected() -> None:
    error = rejection({**good_metadata(), "prompt_text": "hello"})
    assert error.code == "METADATA_UNKNOWN_KEY"
    assert error.details["key"] == "prompt_text"


def test_unknown_key_that_is_raw_text_is_named_by_digest_only() -> None:
    error = rejection({PROMPT: "x"})
    assert error.code == "METADATA_UNKNOWN_KEY"
    assert "careful technical writer" not in str(error)
    assert error.details["key"] == digest_text(PROMPT)


def test_non_string_keys_are_unknown() -> None:
    assert rejection({1: "x", "model": "m"}).code == "METADATA_UNKNOWN_KEY"


def test_ephemeral_keys_are_never_persisted() -> None:
    registry = FRAME_KEY_REGISTRY.register(
        KeyDescriptor("trace_span", "workflow", "identifier", "ephemeral", False, 64)
    )
    error = rejection({**good_metadata(), "trace_span": "span-1"}, FrameMetadataBoundary(registry))
    assert error.code == "METADATA_EPHEMERAL_KEY"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("prompt_digest", "sha256:not-a-digest"),
        ("context_digest", "md5:" + "a" * 32),
        ("agent_id", "agent docs"),
        ("model", ""),
        ("provider", "x" * 129),
    ],
)
def test_values_of_the_wrong_schema_type_are_invalid(key: str, value: str) -> None:
    assert rejection({**good_metadata(), key: value}).code == "METADATA_INVALID_VALUE"


def test_non_string_values_and_non_mappings_are_invalid() -> None:
    assert rejection({**good_metadata(), "model": 3}).code == "METADATA_INVALID_VALUE"
    assert rejection([("model", "m")]).code == "METADATA_INVALID_VALUE"


@pytest.mark.parametrize("key", ["prompt_digest", "model", "agent_id"])
@pytest.mark.parametrize(
    "value", [PROMPT, "two\nlines", "trailing newline\n", "carriage\rreturn", "sep\u2028x"]
)
def test_multi_line_values_are_raw_text(key: str, value: str) -> None:
    error = rejection({**good_metadata(), key: value})
    assert error.code == "METADATA_RAW_TEXT_REJECTED"
    assert value not in str(error)


def test_value_containing_a_forbidden_text_is_raw_text() -> None:
    one_line_prompt = "summarize-pkg-please"
    error = rejection({"model": f"acme/{one_line_prompt}-v2"}, forbidden_texts=[one_line_prompt])
    assert error.code == "METADATA_RAW_TEXT_REJECTED"
    assert one_line_prompt not in str(error)


def test_value_longer_than_32_chars_found_inside_the_context_is_raw_text() -> None:
    long_path = "pkg/sub/very_long_module_name_for_testing.py"
    context = f'{{"files":[{{"path":"{long_path}","text":"x = 1"}}]}}'
    boundary = FrameMetadataBoundary()

    error = rejection({"model": long_path}, forbidden_texts=[context])

    assert error.code == "METADATA_RAW_TEXT_REJECTED"
    assert boundary.validate(owned({"model": long_path[:32]}), forbidden_texts=[context]) == {
        "model": long_path[:32]
    }
    assert boundary.validate(owned({"model": long_path})) == {"model": long_path}


def test_digest_of_the_context_is_not_raw_text_even_when_the_payload_quotes_it() -> None:
    quoted = digest_text("some file")
    context = f'{{"files":[{{"digest":"{quoted}"}}]}}'
    accepted = FrameMetadataBoundary().validate(owned({"context_digest": quoted}), forbidden_texts=[context])
    assert accepted == {"context_digest": quoted}


def test_short_values_may_occur_in_the_prompt_and_forbidden_texts_may_be_a_generator() -> None:
    prompt = "Model offline-deterministic writes docs for agent.docs_writer."
    accepted = FrameMetadataBoundary().validate(
        owned(good_metadata()), forbidden_texts=(t for t in [prompt, "", "  "])
    )
    assert accepted == dict(sorted(good_metadata().items()))


def test_per_key_budget_override() -> None:
    boundary = FrameMetadataBoundary(budgets=Budgets(per_key_max_bytes={"model": 8}))
    assert boundary.validate(owned({"model": "12345678"})) == {"model": "12345678"}
    error = rejection({"model": "123456789"}, boundary)
    assert error.code == "METADATA_BUDGET_EXCEEDED"
    assert (error.details["scope"], error.details["key"], error.details["limit"]) == ("key", "model", 8)


def test_key_budget_counts_utf8_bytes() -> None:
    registry = FRAME_KEY_REGISTRY.register(
        KeyDescriptor("note", "workflow", "short_text", "annotation", False, 4)
    )
    boundary = FrameMetadataBoundary(registry)
    assert boundary.validate(owned({"note": "abcd"}, registry)) == {"note": "abcd"}
    assert boundary.validate(owned({"note": "abé"}, registry)) == {"note": "abé"}  # 4 bytes
    assert rejection({"note": "abcé"}, boundary).code == "METADATA_BUDGET_EXCEEDED"  # 4 characters, 5 bytes


def test_frame_budget_counts_keys_and_values() -> None:
    metadata = good_metadata()
    total = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())

    assert FrameMetadataBoundary(budgets=Budgets(per_frame_max_bytes=total)).validate(
        owned(metadata)
    ) == dict(sorted(metadata.items()))
    error = rejection(metadata, FrameMetadataBoundary(budgets=Budgets(per_frame_max_bytes=total - 1)))
    assert error.code == "METADATA_BUDGET_EXCEEDED"
    assert (error.details["scope"], error.details["size"]) == ("frame", total)


def test_default_frame_budget_is_2048_bytes() -> None:
    registry = FRAME_KEY_REGISTRY.register(
        *(KeyDescriptor(f"label_{i}", "workflow", "identifier", "annotation", False, 128) for i in range(20))
    )
    metadata = {f"label_{i}": "v" * 120 for i in range(20)}
    assert rejection(metadata, FrameMetadataBoundary(registry)).code == "METADATA_BUDGET_EXCEEDED"
    assert FrameMetadataBoundary(registry).validate(owned(dict(list(metadata.items())[:10]), registry))


@pytest.mark.parametrize(
    ("bad_key", "bad_value", "code"),
    [
        ("zz_unknown", "v", "METADATA_UNKNOWN_KEY"),
        ("prompt_link_id", "line\nbreak", "METADATA_RAW_TEXT_REJECTED"),
        ("provider_type", "not valid!", "METADATA_INVALID_VALUE"),
    ],
)
def test_a_rejected_mapping_yields_nothing_to_write(bad_key: str, bad_value: str, code: str) -> None:
    # A caller writes whatever validate returns; on rejection it must have nothing, even
    # when every other key (including those sorting before the bad one) is fine.
    written: dict[str, str] = {}
    metadata = {**good_metadata(), bad_key: bad_value}

    with pytest.raises(MetadataError) as caught:
        written.update(FrameMetadataBoundary().validate(owned(metadata)))

    assert caught.value.code == code
    assert written == {}


# --- ownership: a domain writes only the keys it owns ----------------------------------


def test_the_shipped_frame_keys_come_from_four_domains() -> None:
    writes = owned(good_metadata())
    assert sorted(writes) == ["agent", "context", "prompt_context", "workflow"]  # type: ignore[arg-type]
    assert FrameMetadataBoundary().validate(writes) == dict(sorted(good_metadata().items()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("domain", "key", "owner"),
    [
        ("workflow", "model", "agent"),
        ("agent", "prompt_digest", "prompt_context"),
        ("prompt_context", "context_digest", "context"),
        ("tree", "agent_id", "agent"),
        ("context", "prompt_link_id", "workflow"),
        ("no_such_domain", "provider", "agent"),
    ],
)
def test_a_key_written_by_another_domain_refuses_the_whole_write(domain: str, key: str, owner: str) -> None:
    writes = owned(good_metadata())
    value = writes[owner].pop(key)  # type: ignore[index]
    writes.setdefault(domain, {})[key] = value  # type: ignore[union-attr]
    written: dict[str, str] = {}

    with pytest.raises(MetadataError) as caught:
        written.update(FrameMetadataBoundary().validate(writes))  # type: ignore[arg-type]

    assert caught.value.code == "METADATA_KEY_NOT_OWNED"
    assert (caught.value.details["key"], caught.value.details["domain"], caught.value.details["owner"]) == (
        key,
        domain,
        owner,
    )
    assert written == {}


def test_ownership_is_checked_before_values() -> None:
    # A badly shaped value under a foreign domain is reported as not owned: the domain
    # had no business writing the key at all.
    with pytest.raises(MetadataError) as caught:
        FrameMetadataBoundary().validate({"workflow": {"model": "line\nbreak"}})
    assert caught.value.code == "METADATA_KEY_NOT_OWNED"


def test_writes_must_map_domains_to_mappings() -> None:
    with pytest.raises(MetadataError) as caught:
        FrameMetadataBoundary().validate({"agent": "model"})  # type: ignore[dict-item]
    assert caught.value.code == "METADATA_INVALID_VALUE"


# --- annotation changes ---------------------------------------------------------------


def test_annotation_changes_pass_for_the_owner_and_may_clear_a_key() -> None:
    boundary = FrameMetadataBoundary()
    assert boundary.validate_annotations("workflow", {"review_status": "approved", "review_note": None}) == {
        "review_note": None,
        "review_status": "approved",
    }


@pytest.mark.parametrize(
    ("domain", "changes", "code"),
    [
        ("tree", {"review_status": "approved"}, "METADATA_KEY_NOT_OWNED"),
        ("workflow", {"review_status": "ok", "node_label": "x"}, "METADATA_KEY_NOT_OWNED"),
        ("agent", {"model": "other-model"}, "METADATA_KEY_IMMUTABLE"),
        ("workflow", {"prompt_link_id": None}, "METADATA_KEY_IMMUTABLE"),
        ("workflow", {"no_such_key": "x"}, "METADATA_UNKNOWN_KEY"),
        ("workflow", {"review_status": "not valid!"}, "METADATA_INVALID_VALUE"),
        ("workflow", {"review_note": "two\nlines"}, "METADATA_RAW_TEXT_REJECTED"),
        ("workflow", {"review_status": "x" * 65}, "METADATA_BUDGET_EXCEEDED"),
    ],
)
def test_annotation_changes_are_refused_whole(domain: str, changes: dict, code: str) -> None:
    with pytest.raises(MetadataError) as caught:
        FrameMetadataBoundary().validate_annotations(domain, changes)
    assert caught.value.code == code
