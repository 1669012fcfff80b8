"""The load-time check that every turn's prompt fits ``artifact_policy.max_prompt_bytes``.

A turn's prompt is its system and user templates rendered with its inputs. The largest
it can get is known before any run, from figures the profile itself sets:

- each ``context`` input is at most ``max_context_bytes`` (the context builder fits every
  payload into it, `wf_pipeline.tree.context.build_context`);
- each upstream output is at most ``max_output_bytes`` (larger ones fail their own turn);
- ``target_path`` is at most ``PATH_MAX`` (4096) bytes and ``target_name`` at most
  ``NAME_MAX`` (255) bytes, the Linux limits (``<linux/limits.h>``);
- the rest is the templates' own text.

Each input is rendered as a marker, and the marker is counted in the result, so a
template that repeats an input counts it each time; so does each place the template
reads an input (`wf_pipeline.profiles.render.input_read_counts`), which counts an input a
filter transforms past recognition (``upper``, ``truncate``). Filters that grow an
input (``tojson`` escaping) are not bounded here: the run-time check before each call
(``METADATA_BUDGET_EXCEEDED``) stays the guard for such templates; the shipped templates
insert their inputs as they are. When the sum is over
``max_prompt_bytes`` the profile does not load (``PROFILE_BUDGET_TOO_SMALL``), so a run
can never build an over-budget prompt. With ``max_context_tokens`` set, the prompt and the
output together must fit the model's window, counted by the conservative rule that a
byte-level BPE token covers at least one byte, unless the profile names a ``tokenizer``
to count each prompt with at run time (see `wf_pipeline.profiles.schema.ArtifactPolicy`).
"""

from __future__ import annotations

from collections.abc import Mapping

from wf_pipeline.errors import PROFILE_BUDGET_TOO_SMALL, ProfileError
from wf_pipeline.metadata.canonical import canonical_text
from wf_pipeline.profiles.render import PromptTemplate, input_read_counts, render_prompt
from wf_pipeline.profiles.schema import CONTEXT_INPUT, Profile, TurnSpec
from wf_pipeline.text.tokens import max_tokens_of_bytes

# Linux PATH_MAX and NAME_MAX (<linux/limits.h>): the longest target path and name.
PATH_MAX_BYTES = 4096
NAME_MAX_BYTES = 255


def _marker(ref: str) -> str:
    # Letters and digits only, so escaping filters (tojson, e) leave it whole; removed
    # again before measuring.
    return f"WFINPUTMARKER7Q{ref}Q7WFINPUTMARKER"


def input_budgets(profile: Profile, turn: TurnSpec) -> dict[str, int]:
    """The most bytes each input of ``turn`` may carry: input_ref -> bytes.

    Args:
        profile: the turn's profile (its artifact policy).
        turn: the turn.

    Returns:
        ``max_context_bytes`` for ``context``, ``max_output_bytes`` for an upstream output.
    """
    policy = profile.artifact_policy
    return {
        ref: policy.max_context_bytes if ref == CONTEXT_INPUT else policy.max_output_bytes
        for ref in turn.input_refs
    }


def worst_case_prompt_bytes(
    profile: Profile, turn: TurnSpec, template: PromptTemplate, system: PromptTemplate | None
) -> tuple[int, int, dict[str, int]]:
    """The largest prompt ``turn`` can render, in canonical UTF-8 bytes.

    Args:
        profile: the turn's profile.
        turn: the turn.
        template: its user prompt template.
        system: its system prompt template, or None.

    Returns:
        ``(total, template_overhead, per_input)``: the total bytes; the templates' own
        bytes with the longest target path and name; input_ref -> bytes it adds
        (its budget times the times the templates render it).

    Raises:
        ProfileError: the ``PROFILE_TEMPLATE_*`` codes of `render_prompt`.
    """
    budgets = input_budgets(profile, turn)
    variables = {
        "workflow_id": profile.workflow_id,
        "turn_id": turn.turn_id,
        "target_path": "p" * PATH_MAX_BYTES,
        "target_name": "n" * NAME_MAX_BYTES,
        "inputs": {ref: _marker(ref) for ref in budgets},
    }
    rendered = render_prompt(template, variables)
    if system is not None:
        rendered += render_prompt(system, variables)
    per_input: dict[str, int] = {}
    reads = input_read_counts(template)
    for ref, count in (input_read_counts(system) if system is not None else {}).items():
        reads[ref] = reads.get(ref, 0) + count
    for ref, budget in budgets.items():
        # Rendered occurrences count a loop's repeats; the template's own reads count an
        # input a filter transformed past recognition (``upper``).
        count = max(rendered.count(_marker(ref)), reads.get(ref, 0))
        per_input[ref] = count * budget
        rendered = rendered.replace(_marker(ref), "")
    overhead = len(canonical_text(rendered))
    return overhead + sum(per_input.values()), overhead, per_input


def check_prompt_budgets(
    profile: Profile,
    templates: Mapping[str, PromptTemplate],
    system_prompts: Mapping[str, PromptTemplate | None],
    where: Mapping[str, str],
) -> None:
    """Refuse a profile in which some turn's worst-case prompt is over ``max_prompt_bytes``.

    Args:
        profile: the profile.
        templates: turn id -> user prompt template.
        system_prompts: turn id -> system prompt template or None.
        where: the profile's path and workflow id, for the error.

    Raises:
        ProfileError: ``PROFILE_BUDGET_TOO_SMALL`` with the turn, the worst case, the
            limit and each part's bytes; or when ``max_prompt_bytes`` + ``max_output_bytes``
            is over ``max_context_tokens`` (without a ``tokenizer``; with one, when
            ``max_output_bytes`` leaves no room in it). The ``PROFILE_TEMPLATE_*`` codes of
            a template that cannot render.
    """
    policy = profile.artifact_policy
    window = policy.max_context_tokens
    if window is not None:
        # Without a tokenizer the prompt's tokens are bounded by its bytes, like the output's.
        needed = max_tokens_of_bytes(policy.max_output_bytes) + (
            0 if policy.tokenizer else max_tokens_of_bytes(policy.max_prompt_bytes)
        )
        if needed > window or (policy.tokenizer and needed >= window):
            counted = (
                f"max_output_bytes {policy.max_output_bytes} leaves no room for a prompt"
                if policy.tokenizer
                else f"max_prompt_bytes {policy.max_prompt_bytes} + max_output_bytes "
                f"{policy.max_output_bytes} = {needed} may be up to {needed} tokens (a token covers at "
                "least one byte)"
            )
            raise ProfileError(
                PROFILE_BUDGET_TOO_SMALL,
                f"{where['path']}: {counted}, within max_context_tokens {window}; "
                + (
                    "lower max_output_bytes"
                    if policy.tokenizer
                    else "lower max_prompt_bytes or max_output_bytes, or name a tokenizer to count prompts"
                ),
                **where,
                field="artifact_policy.max_context_tokens",
                size=needed,
                limit=window,
            )
    for turn in profile.ordered_turns():
        total, overhead, per_input = worst_case_prompt_bytes(
            profile, turn, templates[turn.turn_id], system_prompts.get(turn.turn_id)
        )
        if total > policy.max_prompt_bytes:
            parts = ", ".join(f"{ref} {size}" for ref, size in per_input.items())
            raise ProfileError(
                PROFILE_BUDGET_TOO_SMALL,
                f"{where['path']}: turn {turn.turn_id} may render a prompt of {total} bytes "
                f"(template {overhead}, {parts or 'no inputs'}), over max_prompt_bytes "
                f"{policy.max_prompt_bytes}; raise max_prompt_bytes or lower max_context_bytes / "
                "max_output_bytes",
                **where,
                field="artifact_policy.max_prompt_bytes",
                turn_id=turn.turn_id,
                size=total,
                limit=policy.max_prompt_bytes,
                template_bytes=overhead,
                input_bytes=per_input,
            )
