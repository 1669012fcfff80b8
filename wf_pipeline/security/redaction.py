"""Secret-shaped values found and masked with detect-secrets' regex detectors.

Interim minimal version: the full detector (presets, ``.env`` and private-key bodies,
passwords in URLs) replaces this module; its two functions keep these signatures.
Only the regex-based plugins are used, instantiated here, so detect-secrets' process-wide
settings are never read or changed.
"""

from __future__ import annotations

from collections.abc import Iterator

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.stripe import StripeDetector

# The detectors whose match is the secret itself (detect-secrets' regex plugins).
_DETECTORS: tuple[RegexBasedDetector, ...] = (
    AWSKeyDetector(),
    BasicAuthDetector(),
    GitHubTokenDetector(),
    GitLabTokenDetector(),
    JwtTokenDetector(),
    OpenAIDetector(),
    PrivateKeyDetector(),
    SlackDetector(),
    StripeDetector(),
)


def find_secrets(text: str, *, filename: str | None = None) -> list[tuple[str, str]]:
    """The secret-shaped values in ``text``.

    Args:
        text: any text (a log line, an error message, a file's content).
        filename: the file the text comes from, if any (unused by the regex detectors).

    Returns:
        ``(secret_type, value)`` pairs, longest value first, each once. Raises nothing.
    """
    found: dict[str, str] = {}
    for line in text.splitlines() or [text]:
        for detector in _DETECTORS:
            for value in _matches(detector, line):
                found.setdefault(value, detector.secret_type)
    return sorted(((kind, value) for value, kind in found.items()), key=lambda p: -len(p[1]))


def _matches(detector: RegexBasedDetector, line: str) -> Iterator[str]:
    for value in detector.analyze_string(line):
        if value:
            yield value


def mask_secrets(text: str, *, filename: str | None = None) -> str:
    """``text`` with every secret-shaped value replaced by ``[REDACTED:<type>]``.

    Args:
        text: any text.
        filename: the file the text comes from, if any.

    Returns:
        The masked text (``text`` itself when nothing was found). Raises nothing.
    """
    for kind, value in find_secrets(text, filename=filename):
        text = text.replace(value, f"[REDACTED:{kind}]")
    return text
