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
    assert caught.value.details == {"scope": f"{role}_artifact", "size": limit + 1, "limit": limit}


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
