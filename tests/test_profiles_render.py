"""Sandboxed prompt rendering."""

from __future__ import annotations

import pytest

from wf_pipeline.errors import ProfileError
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.profiles.render import (
    PromptTemplate,
    compile_template,
    referenced_names,
    render_prompt,
    template_from_text,
)

SECRET = "PAYLOAD-THAT-MUST-NOT-LEAK"
VARIABLES = {
    "workflow_id": "docs_writer_thread_v1",
    "turn_id": "evidence_gather",
    "target_path": "pkg/sub",
    "target_name": "sub",
    "inputs": {"context": SECRET},
}


def render_code(text: str) -> str:
    with pytest.raises(ProfileError) as caught:
        render_prompt(text, VARIABLES)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value.details)
    return caught.value.code


def test_renders_variables_without_escaping_and_keeps_trailing_newline() -> None:
    template = template_from_text(
        "t.md",
        "{{ workflow_id }}/{{ turn_id }} at {{ target_path }} <{{ target_name }}> & {{ inputs.context }}\n",
    )
    assert (
        render_prompt(template, VARIABLES)
        == f"docs_writer_thread_v1/evidence_gather at pkg/sub <sub> & {SECRET}\n"
    )


def test_plain_string_templates_render_too() -> None:
    assert render_prompt("{{ inputs['context'] | length }}", VARIABLES) == str(len(SECRET))


def test_template_text_is_normalised_to_lf_and_digested() -> None:
    template = template_from_text("t.md", "a\r\nb\rc\n")
    assert template == PromptTemplate(ref="t.md", text="a\nb\nc\n", digest=digest_text("a\nb\nc\n"))


@pytest.mark.parametrize(
    "text",
    [
        "{{ not_passed }}",
        "{{ inputs.evidence_map }}",
        "{{ inputs['x'] }}",
        "{% for c in missing %}{% endfor %}",
    ],
)
def test_undefined_values_fail(text: str) -> None:
    assert render_code(text) == "PROFILE_TEMPLATE_UNDEFINED"


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ target_path.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ inputs.update({'context': 'replaced'}) }}",
        "{{ inputs.pop('context') }}",
        "{% for i in range(10000000) %}{% endfor %}",
    ],
)
def test_sandbox_escapes_and_mutation_fail(text: str) -> None:
    assert render_code(text) == "PROFILE_TEMPLATE_SECURITY"
    # The caller's variables are untouched whatever the template tried.
    assert VARIABLES["inputs"] == {"context": SECRET}


def test_other_render_errors_have_their_own_code() -> None:
    assert render_code("{{ 1 // 0 }}") == "PROFILE_TEMPLATE_RENDER_FAILED"


def test_syntax_errors_fail_on_render_and_compile() -> None:
    assert render_code("{% if target_path %}never closed") == "PROFILE_TEMPLATE_SYNTAX"
    with pytest.raises(ProfileError) as caught:
        compile_template(template_from_text("bad.md", "line one\n{{ oops( }}\n"))
    assert caught.value.code == "PROFILE_TEMPLATE_SYNTAX"
    assert caught.value.details["line"] == 2


def test_compiled_templates_are_cached_by_digest() -> None:
    first = compile_template(template_from_text("a.md", "cache me {{ target_path }}"))
    same_text_other_ref = compile_template(template_from_text("b.md", "cache me {{ target_path }}"))
    other_text = compile_template(template_from_text("a.md", "cache me too {{ target_path }}"))
    assert first is same_text_other_ref
    assert other_text is not first


def test_referenced_names_finds_top_level_and_input_keys() -> None:
    variables, input_keys = referenced_names(
        "{% set shown = target_name %}{{ shown }} {{ inputs.context }} {{ inputs['evidence_map'] }}"
        "{% for k, v in inputs.items() %}{{ k }}{% endfor %}"
    )
    assert variables == {"target_name", "inputs"}
    assert input_keys == {"context", "evidence_map"}
