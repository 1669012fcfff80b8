from __future__ import annotations

import pytest

from wf_pipeline.errors import MetadataError
from wf_pipeline.metadata.boundary import FrameMetadataBoundary
from wf_pipeline.metadata.budgets import Budgets
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY, KeyDescriptor

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


def rejection(
    metadata: object, boundary: FrameMetadataBoundary | None = None, **kwargs: object
) -> MetadataError:
    with pytest.raises(MetadataError) as caught:
        (boundary or FrameMetadataBoundary()).validate(metadata, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_valid_metadata_comes_back_as_a_new_sorted_dict() -> None:
    metadata = good_metadata()

    accepted = FrameMetadataBoundary().validate(metadata, forbidden_texts=[PROMPT, CONTEXT])

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
        KeyDescriptor("trace_span", "runtime", "identifier", "ephemeral", False, 64)
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
    assert boundary.validate({"model": long_path[:32]}, forbidden_texts=[context]) == {
        "model": long_path[:32]
    }
    assert boundary.validate({"model": long_path}) == {"model": long_path}


def test_digest_of_the_context_is_not_raw_text_even_when_the_payload_quotes_it() -> None:
    quoted = digest_text("some file")
    context = f'{{"files":[{{"digest":"{quoted}"}}]}}'
    accepted = FrameMetadataBoundary().validate({"context_digest": quoted}, forbidden_texts=[context])
    assert accepted == {"context_digest": quoted}


def test_short_values_may_occur_in_the_prompt_and_forbidden_texts_may_be_a_generator() -> None:
    prompt = "Model offline-deterministic writes docs for agent.docs_writer."
    accepted = FrameMetadataBoundary().validate(
        good_metadata(), forbidden_texts=(t for t in [prompt, "", "  "])
    )
    assert accepted == dict(sorted(good_metadata().items()))


def test_per_key_budget_override() -> None:
    boundary = FrameMetadataBoundary(budgets=Budgets(per_key_max_bytes={"model": 8}))
    assert boundary.validate({"model": "12345678"}) == {"model": "12345678"}
    error = rejection({"model": "123456789"}, boundary)
    assert error.code == "METADATA_BUDGET_EXCEEDED"
    assert (error.details["scope"], error.details["key"], error.details["limit"]) == ("key", "model", 8)


def test_key_budget_counts_utf8_bytes() -> None:
    registry = FRAME_KEY_REGISTRY.register(
        KeyDescriptor("note", "runtime", "short_text", "annotation", False, 4)
    )
    boundary = FrameMetadataBoundary(registry)
    assert boundary.validate({"note": "abcd"}) == {"note": "abcd"}
    assert boundary.validate({"note": "abé"}) == {"note": "abé"}  # 4 bytes
    assert rejection({"note": "abcé"}, boundary).code == "METADATA_BUDGET_EXCEEDED"  # 4 characters, 5 bytes


def test_frame_budget_counts_keys_and_values() -> None:
    metadata = good_metadata()
    total = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())

    assert FrameMetadataBoundary(budgets=Budgets(per_frame_max_bytes=total)).validate(metadata) == dict(
        sorted(metadata.items())
    )
    error = rejection(metadata, FrameMetadataBoundary(budgets=Budgets(per_frame_max_bytes=total - 1)))
    assert error.code == "METADATA_BUDGET_EXCEEDED"
    assert (error.details["scope"], error.details["size"]) == ("frame", total)


def test_default_frame_budget_is_2048_bytes() -> None:
    registry = FRAME_KEY_REGISTRY.register(
        *(KeyDescriptor(f"label_{i}", "runtime", "identifier", "annotation", False, 128) for i in range(20))
    )
    metadata = {f"label_{i}": "v" * 120 for i in range(20)}
    assert rejection(metadata, FrameMetadataBoundary(registry)).code == "METADATA_BUDGET_EXCEEDED"
    assert FrameMetadataBoundary(registry).validate(dict(list(metadata.items())[:10]))


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
        written.update(FrameMetadataBoundary().validate(metadata))

    assert caught.value.code == code
    assert written == {}
