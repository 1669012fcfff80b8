"""Does cited evidence hold in a context: the evidence rules every workflow shares.

A workflow's claims cite a path of the context payload, and may give a quote and a
symbol. Its offline verifier and its gates ask `cited_evidence` and map the answer to
their own reason codes, so no two checks can disagree (every workflow's verifier
and evidence gate call it).

The rules:

- The cited path must be a file or child directory of the target's context. An
  omitted file (binary, oversized, unreadable, or left out to fit the context budget)
  has no text, so nothing can be shown in it; neither can a child directory without a
  head frame. A file or head frame given as an extract is judged on the extract's text
  (whole lines of the file, so what holds there holds in the file).
- The cited text is always read through the masked view (`wf_pipeline.security.redaction.
  masked_text`), the one the runtime builds context payloads with: a quote (or symbol)
  that holds a secret-shaped value never holds, even when the profile opted its context
  out of masking and the model saw the value; a quote that shows the placeholder does.
- A quote holds when it occurs in the cited text with runs of whitespace (spaces,
  tabs, line breaks) treated as one space, so a line wrapped differently still
  matches; a quote that is only whitespace never holds. It holds too when, both read
  as Markdown (`wf_pipeline.text.docstrings.rst_to_markdown`, the conversion every
  docstring a generated document shows goes through), the quote occurs in the text: a
  quote of a docstring as a document shows it (`` `OpenFile` ``) is grounded by its
  source (``` ``OpenFile`` ```).
- A symbol (surrounding spaces and a trailing ``()`` ignored) that is an identifier or
  a dotted name (``Config.load``) holds when it occurs in the text as a whole name (not
  inside a longer identifier: ``load`` is not in ``download``), or, in Python source,
  when the text defines it: ``Config.load`` holds where class ``Config`` defines
  ``load`` (a method, nested class or class attribute), however the file refers to it.
  Any other symbol (``--verbose``) holds when it occurs verbatim.
"""

from __future__ import annotations

import ast
import functools
import re
import threading
from dataclasses import dataclass
from typing import Literal

from wf_pipeline.metadata.payloads import ContextPayload
from wf_pipeline.security.redaction import masked_text
from wf_pipeline.text.docstrings import rst_to_markdown

PathStatus = Literal["file", "child", "omitted", "missing"]

# CPython 3.11 can fail with "AST constructor recursion depth mismatch" when threads
# parse at the same time; turns of many threads run concurrently, so parsing is serial.
_PARSE_LOCK = threading.Lock()


def parsed_python(text: str) -> ast.Module | None:
    """The syntax tree of Python source ``text``, or None when it does not parse."""
    try:
        with _PARSE_LOCK:
            return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


# A turn checks every claim against the few files it cites: each file's forms are made once.
_FORMS_CACHE_SIZE = 32
_DOTTED_NAME = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*")


@dataclass(frozen=True)
class ClaimEvidence:
    """What the context shows about one claim's evidence.

    ``path``: ``file`` or ``child`` when the cited path is in the target, ``omitted``
    for an omitted file, ``missing`` when the target has no such entry.
    ``quote_found`` / ``symbol_found``: None when the claim gives no quote / symbol or
    the path is omitted or missing, else whether it holds in the cited text.
    """

    path: PathStatus
    quote_found: bool | None = None
    symbol_found: bool | None = None

    @property
    def holds(self) -> bool:
        """The path is in the target and every piece of evidence the claim gives was found."""
        return (
            self.path in ("file", "child")
            and self.quote_found is not False
            and self.symbol_found is not False
        )


def collapse_whitespace(text: str) -> str:
    """``text`` with every run of whitespace as one space, stripped."""
    return " ".join(text.split())


@functools.lru_cache(maxsize=_FORMS_CACHE_SIZE)
def quote_forms(text: str) -> tuple[str, str]:
    """(as written, read as Markdown) of ``text``, whitespace runs collapsed: the forms quotes
    are compared in (`quote_occurs`)."""
    return collapse_whitespace(text), collapse_whitespace(rst_to_markdown(text))


def quote_occurs(quote: str, text: str) -> bool:
    """Whether ``quote`` occurs in ``text``: as written or both read as Markdown, whitespace
    runs in both counted as one space (`quote_forms`)."""
    needle_written, needle_converted = quote_forms(quote)
    if not needle_written:
        return False
    written, converted = quote_forms(text)
    return needle_written in written or (bool(needle_converted) and needle_converted in converted)


def _defines_path(module: ast.Module, parts: list[str]) -> bool:
    """Whether a class somewhere in ``module`` is ``parts[0]`` and defines the rest, level by level."""
    scopes: list[list[ast.stmt]] = [
        node.body for node in ast.walk(module) if isinstance(node, ast.ClassDef) and node.name == parts[0]
    ]
    for part in parts[1:]:
        next_scopes = []
        for body in scopes:
            for statement in body:
                if isinstance(statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    if statement.name == part:
                        next_scopes.append(statement.body)
                elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
                    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                    if any(isinstance(target, ast.Name) and target.id == part for target in targets):
                        next_scopes.append([])
        scopes = next_scopes
    return bool(scopes)


def symbol_occurs(symbol: str, text: str, *, language: str | None = None) -> bool:
    """Whether ``symbol`` holds in ``text`` (see the module docstring for the rule).

    ``language`` is the file's language label; only ``python`` enables the definition
    rule for dotted names.
    """
    name = symbol.strip().removesuffix("()").strip()
    if not name:
        return False
    if not _DOTTED_NAME.fullmatch(name):
        return name in text
    if re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", text) is not None:
        return True
    if "." in name and language == "python":
        module = parsed_python(text)
        return module is not None and _defines_path(module, name.split("."))
    return False


def evidence_view(context: ContextPayload) -> ContextPayload:
    """``context`` as evidence reads it: each file's text and each child's head frame masked.

    The deterministic writers (the offline and simulated providers) read their context
    through this view, so every quote they take is one `claim_evidence` can find and none
    holds a secret-shaped value, even when the profile opted its context out of masking.

    Args:
        context: a turn's context payload, masked or not.

    Returns:
        The payload with every text through `masked_text` (the same object when nothing
        changes: a context the runtime masked already).

    Raises nothing.
    """
    return context.map_texts(lambda name, text: masked_text(text, name))


def cited_evidence(
    context: ContextPayload, path: str, quote: str | None = None, symbol: str | None = None
) -> ClaimEvidence:
    """Check a cited ``path``, ``quote`` and ``symbol`` against the target's ``context``.

    Args:
        context: the target's context payload.
        path: the cited path, relative to the scanned root.
        quote: text the claim says the path holds, or None / empty (not checked).
        symbol: a name the claim says the path defines or mentions, or None / empty.

    Returns:
        The `ClaimEvidence` (see the module docstring for the rules). Raises nothing.
    """
    cited_file = context.file(path)
    if cited_file is not None:
        if cited_file.text is None:
            return ClaimEvidence(path="omitted")
        status: PathStatus = "file"
        language = cited_file.language
    elif context.child(path) is not None:
        status, language = "child", "markdown"
    else:
        return ClaimEvidence(path="missing")
    # A child directory without a head frame has no text any quote or symbol could be in.
    # Masked as the runtime masks contexts (a no-op on a masked one): evidence never holds a secret.
    text = masked_text(context.text_at(path) or "", cited_file.name if cited_file else None)
    return ClaimEvidence(
        path=status,
        quote_found=quote_occurs(quote, text) if quote else None,
        symbol_found=symbol_occurs(symbol, text, language=language) if symbol else None,
    )
