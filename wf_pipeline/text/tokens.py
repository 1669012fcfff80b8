"""Token counts of prompt text, for a model's context window (``artifact_policy.max_context_tokens``).

The counts come from OpenAI's byte-level BPE encodings (``o200k_base`` for GPT-4o and
later, ``cl100k_base`` for GPT-4 and GPT-3.5) through the ``bpe-openai`` package, which
ships both vocabularies inside its wheel: counting needs no network (tiktoken, by
contrast, downloads its encodings at first use). Other models' tokenizers differ; a
count from the nearest of these is an estimate for them, and the profile names which
encoding it relies on.

Where no encoding is named, a count is bounded instead: every token of a byte-level BPE
covers at least one byte, so a text of N UTF-8 bytes has at most N tokens
(`max_tokens_of_bytes`).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

TokenEncoding = Literal["o200k_base", "cl100k_base"]
TOKEN_ENCODINGS: tuple[TokenEncoding, ...] = ("o200k_base", "cl100k_base")


@cache
def _encoding(name: TokenEncoding) -> Any:
    # Imported on first use: loading a vocabulary takes about 0.1 s, only turns that count pay it.
    import bpe_openai

    return bpe_openai.get_encoding(name)


def count_tokens(text: str, encoding: TokenEncoding) -> int:
    """The number of tokens ``text`` encodes to in ``encoding``.

    Args:
        text: any text (special-token markers in it count as ordinary text).
        encoding: ``o200k_base`` or ``cl100k_base``.

    Returns:
        The token count.
    """
    return len(_encoding(encoding).encode(text, disallowed_special=()))


def max_tokens_of_bytes(size: int) -> int:
    """The most tokens a text of ``size`` UTF-8 bytes can have in a byte-level BPE: ``size``."""
    return size
