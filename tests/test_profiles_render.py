"""Sandboxed prompt rendering."""

from __future__ import annotations

import sys
import time

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


# --- bounds: output bytes, value sizes, time --------------------------------------------

# Each of these would need more than 10 GB (or hours) if rendered without bounds.
UNBOUNDED_TEMPLATES = {
    "nested-loops-output": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endfor %}"
    ),
    "repeat": "{{ 'x' * 10**10 }}",
    "power": "{{ 2 ** 100000000000 }}",
    "doubling-concat": (
        "{% set ns = namespace(s='ab') %}{% for i in range(80) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s|length }}"
    ),
    "doubling-plus": (
        "{% set ns = namespace(s=[1]) %}{% for i in range(80) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"
        "{{ ns.s|length }}"
    ),
    "center": "{{ 'x'|center(10000000000) }}",
    "printf-width": "{{ '%10000000000s' % 'x' }}",
    "format-filter": "{{ '%10000000000s'|format('x') }}",
    "str-format": "{{ '{:>10000000000}'.format('x') }}",
}


@pytest.mark.parametrize("text", list(UNBOUNDED_TEMPLATES.values()), ids=list(UNBOUNDED_TEMPLATES))
def test_a_template_asking_for_too_much_gives_the_limit_code_quickly(text: str) -> None:
    started = time.monotonic()
    assert render_code(text) == "PROFILE_TEMPLATE_LIMIT"
    assert time.monotonic() - started < 5


def test_the_output_bound_counts_utf8_bytes() -> None:
    assert render_prompt("{{ 'é' * 5 }}", VARIABLES, max_bytes=10) == "é" * 5
    with pytest.raises(ProfileError) as caught:
        render_prompt("{% for i in range(6) %}é{% endfor %}", VARIABLES, max_bytes=10)
    assert caught.value.code == "PROFILE_TEMPLATE_LIMIT"
    assert caught.value.details["limit_bytes"] == 10 and caught.value.details["size"] == 12


def test_loops_that_print_nothing_are_bounded_in_time() -> None:
    text = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(ProfileError) as caught:
        render_prompt(text, VARIABLES, timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert caught.value.code == "PROFILE_TEMPLATE_LIMIT"
    assert caught.value.details["limit_s"] == 0.5
    assert elapsed < 3


def test_bounds_leave_ordinary_templates_and_the_callers_tracer_alone() -> None:
    previous = sys.gettrace()
    text = "{{ target_name ~ '/' ~ target_path }} {{ 3 * 4 }} {{ [1] + [2] }} {{ '%3s'|format('x') }} {{ '{:>3}'.format('y') }}"
    assert render_prompt(text, VARIABLES) == "sub/pkg/sub 12 [1, 2]   x   y"
    assert sys.gettrace() is previous


# Values made by filters, methods and calls: each doubles a string 20 times (a million
# characters) while printing only its length, so only a bound on the values themselves,
# whatever callable makes them, refuses it.
AMPLIFYING_CALLS = {
    "join-filter": "{% set ns.s = [ns.s, ns.s]|join %}",
    "replace-filter": "{% set ns.s = ns.s|replace('a', 'aa') %}",
    "replace-method": "{% set ns.s = ns.s.replace('a', 'aa') %}",
    "join-method": "{% set ns.s = ''.join([ns.s, ns.s]) %}",
    "ljust-method": "{% set ns.s = ns.s.ljust(ns.s|length * 2) %}",
}


@pytest.mark.parametrize("step", list(AMPLIFYING_CALLS.values()), ids=list(AMPLIFYING_CALLS))
def test_values_made_by_any_filter_or_method_are_bounded(step: str) -> None:
    text = "{% set ns = namespace(s='a') %}{% for i in range(20) %}" + step + "{% endfor %}{{ ns.s|length }}"
    with pytest.raises(ProfileError) as caught:
        render_prompt(text, VARIABLES, max_bytes=1000)
    assert caught.value.code == "PROFILE_TEMPLATE_LIMIT"
    assert caught.value.details["limit_bytes"] == 1000


def test_one_replace_asking_for_gigabytes_is_refused_before_it_runs() -> None:
    # Without an estimate made first, this one C-level call takes seconds and gigabytes.
    text = "{% set s = 'a' * 10000000 %}{{ s|replace('a', 'a' * 400)|length }}{{ s.replace('a', 'a' * 400)|length }}"
    started = time.monotonic()
    assert render_code(text) == "PROFILE_TEMPLATE_LIMIT"
    assert time.monotonic() - started < 2


def test_filters_and_methods_still_work_within_the_bounds() -> None:
    text = "{{ ['a', 'b']|join(', ') }} {{ 'abc'|replace('b', 'x') }} {{ 'x'.ljust(3) }}|{{ '-'.join(['1', '2']) }}"
    assert render_prompt(text, VARIABLES) == "a, b axc x  |1-2"
