"""Model output as servers really send it: the wrapping removed before the output is judged.

Chat models often answer inside a wrapper that is not part of the answer:

- a reasoning block first, ``<think>...</think>`` (DeepSeek-R1, Qwen3 and QwQ through
  Ollama, vLLM and llama.cpp) or ``<thinking>...</thinking>``; when the chat template
  opens the block inside the prompt, the reply carries only its end (``...</think>``);
- a Markdown code fence around the whole answer (```` ```json ````, ```` ``` ````,
  ``~~~``), as CommonMark defines fences (spec 0.31, section 4.5): the closing fence uses
  the opening's character, at least as many times; a fence the model never closed runs
  to the end of the text.

`unwrap_model_output` is the one place this is judged; the turn calls it before the
shape check for JSON and Markdown outputs alike, so the output artifact, the gates and
everything downstream see the answer itself.
"""

from __future__ import annotations

import re

from wf_pipeline.text.markdown import read_markdown

# A leading reasoning block: <think> or <thinking>, any case, up to its matching close tag.
_LEADING_THINK = re.compile(r"\A\s*<(?P<tag>think|thinking)>.*?</(?P=tag)>", re.DOTALL | re.IGNORECASE)
# A reply whose opening tag was in the prompt (the chat template's) starts in the block.
_THINK_CLOSE = re.compile(r"</(?:think|thinking)>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(?:think|thinking)>", re.IGNORECASE)
# Info strings of a fence that wraps a whole answer: none, or the output's own format.
WRAPPING_FENCE_INFOS = frozenset({"", "json", "jsonc", "markdown", "md"})
_FENCE_MARKER = re.compile(r"^[ ]{0,3}(?P<run>`{3,}|~{3,})")


def strip_reasoning(text: str) -> str:
    """``text`` without a leading ``<think>``/``<thinking>`` block (or several).

    A text with a closing tag but no opening tag before it starts inside a reasoning block
    whose opening tag the chat template sent; everything up to that tag goes.

    Args:
        text: the model's reply.

    Returns:
        The reply after its reasoning, without the whitespace that separated them; a reply
        without reasoning comes back unchanged. Raises nothing.
    """
    found_any = False
    while found := _LEADING_THINK.match(text):
        text, found_any = text[found.end() :], True
    close = _THINK_CLOSE.search(text)
    if close is not None and _THINK_OPEN.search(text, 0, close.start()) is None:
        text, found_any = text[close.end() :], True
    return text.lstrip() if found_any else text


def strip_wrapping_fence(text: str) -> str:
    """The content of a code fence that is the whole of ``text``, else ``text`` unchanged.

    The fence counts only when every non-blank line of ``text`` belongs to it (so a
    Markdown document that starts and ends with code blocks is left whole) and its info string is
    empty or names an output format (`WRAPPING_FENCE_INFOS`, any case).

    Args:
        text: the model's reply.

    Returns:
        The fenced content (its lines, each ending with a line break), or ``text``
        unchanged. Raises nothing.
    """
    document = read_markdown(text)
    if len(document.code_blocks) != 1:
        return text
    block = document.code_blocks[0]
    info = block.info.split(maxsplit=1)[0].lower() if block.info else ""
    outside = [*document.lines[: block.start_line], *document.lines[block.end_line :]]
    if not block.fenced or info not in WRAPPING_FENCE_INFOS or any(line.strip() for line in outside):
        return text
    content = block.content
    # A model that closes the fence at the end of its last line leaves CommonMark's fence
    # unclosed (a closing fence is a line of its own); that trailing marker is the wrapper's too.
    marker = _FENCE_MARKER.match(document.lines[block.start_line])
    tail = content.rstrip()
    if marker and tail.endswith(marker["run"]) and not _closes(document.lines, block.end_line, marker["run"]):
        content = tail[: -len(marker["run"])].rstrip() + "\n"
    return content


def _closes(lines: tuple[str, ...], end_line: int, run: str) -> bool:
    """Whether the block's last line is a closing fence of its own (the fence was closed)."""
    last = lines[end_line - 1].strip() if 0 < end_line <= len(lines) else ""
    return bool(last) and set(last) == {run[0]} and len(last) >= len(run)


def unwrap_model_output(text: str) -> str:
    """The answer inside a model's reply: reasoning block, then a wrapping fence, removed.

    Args:
        text: the reply as the provider returned it.

    Returns:
        The unwrapped answer; a reply without either wrapper comes back unchanged, byte for
        byte. Raises nothing.
    """
    return strip_wrapping_fence(strip_reasoning(text))
