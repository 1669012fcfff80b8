"""Which parts of a server's error text may enter our errors, and so the records and logs.

Records, logs and CLI output never carry prompt text, context payload or model output.
A provider error's message becomes the failed turn's ``error_text`` in the record store,
and some servers echo the request (or part of it) in their error message, e.g. an HTTP
400 answering ``bad request: <the request body>``. So a server's free-text message is
kept only when it cannot be carrying request content, and the short machine tokens a
server sends beside it (``error.type``, ``error.code`` on the OpenAI wire) are kept when
they are tokens and nothing more. `server_message` and `server_token` hold the whole
judgement; every provider that quotes a server builds its message from them.
"""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from wf_pipeline.providers.base import ProviderRequest

# A run this long (letters and digits, after folding; see `repeats_request`) shared with the
# request makes a server message an echo. Shorter runs are ordinary words and ids.
ECHO_WINDOW_CHARS = 16
# The most of a server message an error keeps, in characters: enough for a sentence, log-sized.
MAX_SERVER_MESSAGE_CHARS = 300
WITHHELD_NOTE = "(server message withheld: it repeats request content)"
# What a machine token looks like (OpenAI error types and codes: invalid_request_error, ...).
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
# JSON string escapes: a server that echoes the request body as JSON escapes the prompt's
# newlines, quotes and non-ASCII characters, which would otherwise break every shared run.
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|[\"\\/bfnrt])")
# What folding drops: everything but letters and digits (Unicode word characters less "_").
_NOT_WORD = re.compile(r"[\W_]+")
# An echo escaped twice (a JSON body quoted inside a JSON message, or percent-encoded JSON)
# is unescaped twice.
_MAX_UNESCAPE_ROUNDS = 3


def request_texts(request: ProviderRequest) -> tuple[str, ...]:
    """The content a request carries: system prompt, user prompt and every raw input text."""
    return (request.system_prompt, request.user_prompt, *request.inputs.values())


def _unescape(match: re.Match[str]) -> str:
    return json.loads(f'"{match.group(0)}"')


def _decode_once(text: str) -> str:
    """One round of the encodings servers echo input in: JSON string escapes, percent-encoding
    (RFC 3986, ``+`` for space as in form data) and HTML character references."""
    text = _JSON_ESCAPE.sub(_unescape, text)
    return html.unescape(urllib.parse.unquote_plus(text))


def _fold(text: str) -> str:
    """``text`` decoded, case folded, and only letters and digits (word characters) kept.

    Folding makes an echo recognisable after a server re-encoded it (JSON escapes,
    percent-encoding, HTML references, changed whitespace or quoting, changed case); it
    only ever makes `repeats_request` stricter.
    """
    for _ in range(_MAX_UNESCAPE_ROUNDS):
        decoded = _decode_once(text)
        if decoded == text:
            break
        text = decoded
    return _NOT_WORD.sub("", text.casefold())


def repeats_request(text: str, sent: Iterable[str], window: int = ECHO_WINDOW_CHARS) -> bool:
    """True when ``text`` shares a run of ``window`` characters with any of the ``sent`` texts.

    Both sides are folded first (JSON escapes decoded, case folded, only letters and digits
    kept), so a run counts ``window`` letters and digits: an echo re-encoded as JSON, with
    other whitespace or case, is still found. A sent text shorter than ``window`` after
    folding cannot be recognised; the prompts a profile renders are far longer.

    Args:
        text: what the server said.
        sent: the texts of the request that was sent (`request_texts`).
        window: the run length, in folded characters (default `ECHO_WINDOW_CHARS`).

    Returns:
        Whether ``text`` repeats request content. Raises nothing.
    """
    folded = _fold(text)
    if len(folded) < window:
        return False
    runs = {folded[start : start + window] for start in range(len(folded) - window + 1)}
    haystacks = [folded_sent for folded_sent in map(_fold, sent) if len(folded_sent) >= window]
    return any(run in haystack for haystack in haystacks for run in runs)


def server_message(message: Any, request: ProviderRequest) -> str | None:
    """The part of a server's free-text error message an error may carry.

    The message is cut to `MAX_SERVER_MESSAGE_CHARS`; when what is left repeats request
    content (`repeats_request` against `request_texts`) it is replaced by `WITHHELD_NOTE`,
    so a server that echoes the request never puts the prompt into our errors or records.

    Args:
        message: the server's message as parsed from its body (anything; only a non-empty
            string counts).
        request: the request the server answered.

    Returns:
        The message (at most `MAX_SERVER_MESSAGE_CHARS` characters), `WITHHELD_NOTE`, or
        None when the server gave no message. Raises nothing.
    """
    if not isinstance(message, str) or not message.strip():
        return None
    kept = message.strip()[:MAX_SERVER_MESSAGE_CHARS]
    return WITHHELD_NOTE if repeats_request(kept, request_texts(request)) else kept


def server_token(value: Any, request: ProviderRequest) -> str | None:
    """A server's structured error field (``error.type``, ``error.code``) when it is a short token.

    A token is 1 to 64 characters of letters, digits and ``_ . : -`` (an integer code is
    read as its digits); anything else, or a token that repeats request content
    (`repeats_request`), is dropped.

    Args:
        value: the field as parsed from the server's body.
        request: the request the server answered.

    Returns:
        The token, or None. Raises nothing.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        return None
    return None if repeats_request(value, request_texts(request)) else value
