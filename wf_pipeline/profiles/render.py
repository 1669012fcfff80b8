"""Prompt templates and their sandboxed rendering.

Templates are Jinja2 rendered in an immutable sandbox with strict undefined
variables: a profile may come from any workspace, so a template can read the
variables it is given and nothing else, and a misspelt variable is an error rather
than an empty string. Compiled templates are cached by content digest.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from wf_pipeline.errors import (
    PROFILE_TEMPLATE_RENDER_FAILED,
    PROFILE_TEMPLATE_SECURITY,
    PROFILE_TEMPLATE_SYNTAX,
    PROFILE_TEMPLATE_UNDEFINED,
    ProfileError,
)
from wf_pipeline.metadata.canonical import digest_text

# The variables the runtime passes to every turn's templates.
RENDER_VARIABLES = frozenset({"workflow_id", "turn_id", "target_path", "target_name", "inputs"})
INPUTS_VARIABLE = "inputs"


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt template's reference, its text with LF line endings, and its ``sha256:`` digest."""

    ref: str  # the prompt_ref it was resolved from
    text: str  # LF line endings
    digest: str  # sha256:<hex> of the canonical text; equals the artifact id in CAS


def template_from_text(ref: str, text: str) -> PromptTemplate:
    """A `PromptTemplate` of ``text`` with CRLF and CR normalised to LF.

    Args:
        ref: the prompt_ref it was resolved from (``<inline>`` for text given directly).
        text: the template text.

    Returns:
        The template; its digest equals the CAS artifact id of the normalised text. Raises
        nothing: syntax is checked by `compile_template`.
    """
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    return PromptTemplate(ref=ref, text=normalised, digest=digest_text(normalised))


_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_COMPILED: dict[str, Template] = {}
_COMPILED_LOCK = threading.Lock()


def _as_template(template: PromptTemplate | str) -> PromptTemplate:
    return template if isinstance(template, PromptTemplate) else template_from_text("<inline>", template)


def compile_template(template: PromptTemplate | str) -> Template:
    """The compiled template, from cache when its digest was seen before.

    Raises PROFILE_TEMPLATE_SYNTAX when the text does not parse.
    """
    template = _as_template(template)
    with _COMPILED_LOCK:
        cached = _COMPILED.get(template.digest)
    if cached is not None:
        return cached
    try:
        compiled = _ENVIRONMENT.from_string(template.text)
    except TemplateSyntaxError as exc:
        raise ProfileError(
            PROFILE_TEMPLATE_SYNTAX,
            f"template {template.ref} ({template.digest}) does not parse at line {exc.lineno}",
            ref=template.ref,
            digest=template.digest,
            line=exc.lineno,
        ) from None
    with _COMPILED_LOCK:
        return _COMPILED.setdefault(template.digest, compiled)


def referenced_names(template: PromptTemplate | str) -> tuple[frozenset[str], frozenset[str]]:
    """Top-level variables the template reads, and the literal keys it reads from ``inputs``.

    ``inputs.name`` and ``inputs["name"]`` count as input keys; dict methods such as
    ``inputs.items()`` do not. Raises PROFILE_TEMPLATE_SYNTAX when the text does not parse.
    """
    variables, counts = _input_reads(template)
    return variables, frozenset(counts)


def input_read_counts(template: PromptTemplate | str) -> dict[str, int]:
    """How many places of the template read each literal ``inputs`` key (``inputs.name``,
    ``inputs["name"]``), whatever filters apply to it; a loop's body counts once.

    Raises PROFILE_TEMPLATE_SYNTAX when the text does not parse.
    """
    return _input_reads(template)[1]


def _input_reads(template: PromptTemplate | str) -> tuple[frozenset[str], dict[str, int]]:
    template = _as_template(template)
    compile_template(template)  # reports syntax errors with the template's own code
    tree = _ENVIRONMENT.parse(template.text)
    variables = frozenset(meta.find_undeclared_variables(tree))
    counts: dict[str, int] = {}
    if INPUTS_VARIABLE in variables:
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            if not (isinstance(node.node, nodes.Name) and node.node.name == INPUTS_VARIABLE):
                continue
            key = None
            if isinstance(node, nodes.Getattr) and not hasattr(dict, node.attr):
                key = node.attr
            elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
                if isinstance(node.arg.value, str):
                    key = node.arg.value
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
    return variables, counts


def render_prompt(template: PromptTemplate | str, variables: Mapping[str, Any]) -> str:
    """Render ``template`` with ``variables`` in the sandbox.

    Raises PROFILE_TEMPLATE_SYNTAX, PROFILE_TEMPLATE_UNDEFINED (a variable or key the
    template reads is missing), PROFILE_TEMPLATE_SECURITY (the template reached for
    something the sandbox forbids) or PROFILE_TEMPLATE_RENDER_FAILED (any other error
    raised while rendering). Messages name the template, never the variables' values.
    """
    template = _as_template(template)
    compiled = compile_template(template)
    where = f"template {template.ref} ({template.digest})"
    try:
        return compiled.render(dict(variables))
    except (SecurityError, OverflowError) as exc:
        # The sandbox reports its size limits (e.g. range length) as OverflowError.
        raise ProfileError(
            PROFILE_TEMPLATE_SECURITY,
            f"{where} violates the sandbox: {exc}",
            ref=template.ref,
            digest=template.digest,
        ) from None
    except UndefinedError as exc:
        raise ProfileError(
            PROFILE_TEMPLATE_UNDEFINED,
            f"{where} reads an undefined value: {exc}",
            ref=template.ref,
            digest=template.digest,
        ) from None
    except Exception as exc:  # noqa: BLE001 - any template failure becomes one typed error
        raise ProfileError(
            PROFILE_TEMPLATE_RENDER_FAILED,
            f"{where} failed while rendering ({type(exc).__name__})",
            ref=template.ref,
            digest=template.digest,
            error_type=type(exc).__name__,
        ) from None
