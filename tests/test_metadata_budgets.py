from __future__ import annotations

import pytest

from wf_pipeline.errors import MetadataError
from wf_pipeline.metadata.boundary import check_artifact_budget
from wf_pipeline.metadata.budgets import MIB, Budgets
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY


def test_defaults() -> None:
    budgets = Budgets()
    assert budgets.per_frame_max_bytes == 2048
    assert budgets.prompt_artifact_max_bytes == MIB
    assert budgets.context_artifact_max_bytes == 4 * MIB
    assert budgets.key_limit(FRAME_KEY_REGISTRY.get("prompt_digest")) == len("sha256:") + 64


@pytest.mark.parametrize(("role", "limit"), [("prompt", MIB), ("context", 4 * MIB)])
def test_artifact_budget_allows_up_to_the_limit_and_rejects_beyond(role: str, limit: int) -> None:
    check_artifact_budget(role, limit, Budgets())
    with pytest.raises(MetadataError) as caught:
        check_artifact_budget(role, limit + 1, Budgets())
    assert caught.value.code == "METADATA_BUDGET_EXCEEDED"
    budget = f"{role}_artifact_max_bytes"
    assert caught.value.details == {
        "budget": budget,
        "scope": f"{role}_artifact",
        "size": limit + 1,
        "limit": limit,
    }
    # The message names the budget and both figures.
    assert str(caught.value) == (
        f"METADATA_BUDGET_EXCEEDED: {role} artifact of {limit + 1} bytes exceeds budget {budget} of {limit} bytes"
    )


def test_artifact_budget_follows_configured_limits() -> None:
    budgets = Budgets(prompt_artifact_max_bytes=100, context_artifact_max_bytes=10)
    check_artifact_budget("prompt", 100, budgets)
    with pytest.raises(MetadataError) as caught:
        check_artifact_budget("context", 11, budgets)
    assert caught.value.code == "METADATA_BUDGET_EXCEEDED"


def test_unknown_artifact_role_has_no_budget() -> None:
    with pytest.raises(MetadataError) as caught:
        check_artifact_budget("output", 1, Budgets())  # type: ignore[arg-type]
    assert caught.value.code == "METADATA_UNKNOWN_ARTIFACT_ROLE"


@pytest.mark.parametrize(
    "fields",
    [
        {"per_frame_max_bytes": 0},
        {"prompt_artifact_max_bytes": -1},
        {"context_artifact_max_bytes": 1.5},
        {"per_frame_max_bytes": True},
        {"per_key_max_bytes": {"model": 0}},
    ],
)
def test_budgets_must_be_positive_ints(fields: dict[str, object]) -> None:
    with pytest.raises(MetadataError) as caught:
        Budgets(**fields)  # type: ignore[arg-type]
    assert caught.value.code == "METADATA_INVALID_BUDGET"


def test_per_key_overrides_are_frozen_copies() -> None:
    overrides = {"model": 8}
    budgets = Budgets(per_key_max_bytes=overrides)
    overrides["model"] = 9999

    assert budgets.key_limit(FRAME_KEY_REGISTRY.get("model")) == 8
    with pytest.raises(TypeError):
        budgets.per_key_max_bytes["model"] = 1  # type: ignore[index]


def test_key_and_frame_budget_errors_name_the_budget_and_the_figures() -> None:
    model = FRAME_KEY_REGISTRY.get("model")
    with pytest.raises(MetadataError) as caught:
        Budgets(per_key_max_bytes={"model": 8}).check_key(model, 9)
    assert (
        caught.value.message == "value of model of 9 bytes exceeds budget per_key_max_bytes[model] of 8 bytes"
    )
    assert caught.value.details == {
        "budget": "per_key_max_bytes[model]",
        "scope": "key",
        "size": 9,
        "limit": 8,
        "key": "model",
    }
    with pytest.raises(MetadataError) as caught:
        Budgets().check_key(model, model.max_bytes + 1)
    assert caught.value.details["budget"] == "max_bytes of key model"
    assert f"of {model.max_bytes + 1} bytes" in caught.value.message
    with pytest.raises(MetadataError) as caught:
        Budgets(per_frame_max_bytes=100).check_frame(101)
    assert (
        caught.value.message == "frame metadata of 101 bytes exceeds budget per_frame_max_bytes of 100 bytes"
    )
    Budgets(per_frame_max_bytes=100).check_frame(100)


def test_an_invalid_budget_error_names_the_budget_and_the_value() -> None:
    with pytest.raises(MetadataError) as caught:
        Budgets(per_frame_max_bytes=0)
    assert caught.value.message == "budget per_frame_max_bytes must be a positive int of bytes, got 0"
