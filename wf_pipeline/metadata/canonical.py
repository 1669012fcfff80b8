"""Canonical bytes and digests.

Digests hash canonical bytes: UTF-8 text with LF line endings, and JSON with sorted
keys and no insignificant whitespace. Every artifact id, node id and record id in the
product is derived through these functions so the same content always gets the same id.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

DIGEST_PREFIX = "sha256:"
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def canonical_text(text: str) -> bytes:
    """UTF-8 bytes of ``text`` with CRLF and CR normalised to LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys, no insignificant whitespace, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` for documents from outside (model output, stored artifacts), at any depth.

    Python's JSON parser recurses once per nesting level and raises a raw ``RecursionError``
    past the interpreter's limit (about 1,000 levels); such a document is reported the way
    any other unreadable JSON is.

    Args:
        text: the JSON text (str, or UTF-8 bytes).

    Returns:
        The parsed value.

    Raises:
        json.JSONDecodeError: (a ``ValueError``) malformed JSON, or nesting deeper than the
            parser can follow (message "nested too deeply").
    """
    try:
        return json.loads(text)
    except RecursionError:
        doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise json.JSONDecodeError("nested too deeply", doc, 0) from None


def sha256_hex(data: bytes) -> str:
    """The lowercase hex SHA-256 of ``data`` (64 characters), without the ``sha256:`` prefix."""
    return hashlib.sha256(data).hexdigest()


def digest(data: bytes) -> str:
    """``sha256:<hex>`` of bytes that are already canonical."""
    return DIGEST_PREFIX + sha256_hex(data)


def digest_json(value: Any) -> str:
    """``sha256:<hex>`` of ``value``'s canonical JSON.

    Args:
        value: a JSON-serialisable value.

    Returns:
        The digest string, 71 characters.

    Raises:
        TypeError: ``value`` holds something JSON cannot encode (the json module's error).
        ValueError: ``value`` holds NaN or an infinity (``allow_nan=False``).
    """
    return digest(canonical_json(value))


def digest_text(text: str) -> str:
    """``sha256:<hex>`` of ``text``'s canonical bytes (UTF-8, line endings normalised to LF)."""
    return digest(canonical_text(text))


def is_digest(value: object) -> bool:
    """Whether ``value`` is a string of the form ``sha256:<64 lowercase hex>``."""
    return isinstance(value, str) and DIGEST_RE.fullmatch(value) is not None


def derived_id(prefix: str, *parts: str) -> str:
    """Deterministic id ``<prefix>:<hex24>`` from ordered string parts.

    Parts are hashed as a canonical JSON list, so ("a", "bc") and ("ab", "c") differ.
    """
    return f"{prefix}:{sha256_hex(canonical_json(list(parts)))[:24]}"
