"""The one detector of secret-shaped values, and the masked view every output is built from.

Detection is detect-secrets 1.5's (Yelp): its plugins decide what is secret-shaped, its
heuristic filters (``detect_secrets.filters.heuristic``) what is not. This module adds only
what masking needs and the plugins alone do not give:

- offsets: each plugin's values are located in the text, so they can be replaced;
- a private key's whole block (PEM, RFC 7468: ``-----BEGIN ... PRIVATE KEY-----`` to its
  ``END`` line; SSH2, RFC 4716; a PuTTY key file to its MAC line), where the ``Private Key``
  plugin matches only the header;
- ``.env``-style files (``.env``, ``*.env``, ``.env.*``): the ``Secret Keyword`` plugin reads
  them with its configuration-file patterns (``password=hunter2``, unquoted), as it
  reads ``.ini``, ``.cfg``, ``.yaml``, ``.toml`` and ``.properties`` files;
- a shell-style assignment line (``DB_PASSWORD=hunter2``) is read the same way in any file,
  and a Markdown fenced block tagged ``dotenv``, ``yaml``, ``python``... as a file of that kind
  (a model that quotes a ``.env`` file in a README);
- unquoted values of ``KEY=value`` and ``key: value`` lines of such configuration files are
  judged by the two high-entropy plugins' own entropy measures and limits (the plugins
  themselves only look at quoted strings, as detect-secrets' ad hoc scan would not).

Which plugins: every plugin detect-secrets ships except ``Public IP (ipv4)`` (an address
is not a credential, and documentation names them on purpose). Which filters: the
heuristics of detect-secrets' default settings. The filters that judge a line's shape
(an id, an indirect reference ``x = get_secret()``, a UUID, a lock or swagger file) apply
to the keyword and entropy plugins only: a value of a fixed token format (``AKIA...``,
``ghp_...``) is a credential wherever it stands. A ``pragma: allowlist secret`` comment is
not honoured: it marks a reviewed finding for a scanner's report, and masking errs on the
safe side.

No process-wide state: detect-secrets keeps its configuration in a global
(``detect_secrets.settings.get_settings``; ``transient_settings`` swaps it, which other
threads would see). This module never reads or changes it: it builds its own plugin
instances and calls only their pure parts (``analyze_string``, the entropy measure), never
``analyze_line`` (which consults the global settings and may call a plugin's network
``verify``). So it is safe from several threads at once and sends nothing anywhere.

Cost: linear in the text. Each fixed-format plugin scans the whole text once, or only the
lines that hold a word its patterns need (`_LINE_GATES`: the credential-assignment plugins);
the keyword plugin reads only the lines that name one of its keywords; the entropy plugins
measure only strings long enough to pass their limit.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from detect_secrets.filters import heuristic
from detect_secrets.plugins import keyword as keyword_plugin
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector
from detect_secrets.util.filetype import FileType, determine_file_type

__all__ = [
    "PLACEHOLDER_PATTERN",
    "SecretFinding",
    "find_secrets",
    "mask_secrets",
    "masked_text",
]

# Plugins with a fixed token format, each instance used only through its pure analyze_string.
_FORMAT_PLUGINS: tuple[RegexBasedDetector, ...] = (
    AWSKeyDetector(),
    ArtifactoryDetector(),
    AzureStorageKeyDetector(),
    BasicAuthDetector(),
    CloudantDetector(),
    DiscordBotTokenDetector(),
    GitHubTokenDetector(),
    GitLabTokenDetector(),
    IbmCloudIamDetector(),
    IbmCosHmacDetector(),
    JwtTokenDetector(),
    MailchimpDetector(),
    NpmDetector(),
    OpenAIDetector(),
    PrivateKeyDetector(),
    PypiTokenDetector(),
    SendGridDetector(),
    SlackDetector(),
    SoftlayerDetector(),
    SquareOAuthDetector(),
    StripeDetector(),
    TelegramBotTokenDetector(),
    TwilioKeyDetector(),
)
_KEYWORD = keyword_plugin.KeywordDetector()
_ENTROPY: tuple[HighEntropyStringsPlugin, ...] = (Base64HighEntropyString(), HexHighEntropyString())
_PRIVATE_KEY_KIND = PrivateKeyDetector.secret_type
_JWT_KIND = JwtTokenDetector.secret_type
# The rest of a JSON Web Token (RFC 7519: base64url parts joined by dots) after the plugin's match.
_JWT_TAIL = re.compile(r"[A-Za-z0-9\-_.+/=]*")

# A line can only feed the keyword plugin if it names one of its keywords: the plugin's own list.
_KEYWORD_HINT = re.compile("|".join(keyword_plugin.DENYLIST), re.IGNORECASE)
# Cheap pre-checks per plugin: the fixed text every pattern of the plugin needs, if any.
_HINTS: dict[str, tuple[str, ...]] = {
    AWSKeyDetector.secret_type: ("A3T", "ABIA", "ACCA", "AKIA", "ASIA", "aws", "AWS", "Aws"),
    PrivateKeyDetector.secret_type: ("PRIVATE KEY", "PuTTY"),
    BasicAuthDetector.secret_type: ("://",),
    JwtTokenDetector.secret_type: ("eyJ",),
    SlackDetector.secret_type: ("xox", "XOX", "hooks.slack.com"),
    GitHubTokenDetector.secret_type: ("gh",),
    StripeDetector.secret_type: ("k_live_",),
    OpenAIDetector.secret_type: ("T3BlbkFJ",),
    SendGridDetector.secret_type: ("SG.",),
    SquareOAuthDetector.secret_type: ("sq0csp-",),
    PypiTokenDetector.secret_type: ("pypi-",),
    NpmDetector.secret_type: ("_authToken",),
    AzureStorageKeyDetector.secret_type: ("AccountKey=",),
    MailchimpDetector.secret_type: ("-us",),
}

# What a PEM block's body holds: base64, RFC 1421 headers ("Proc-Type: 4,ENCRYPTED"), line breaks,
# escaped or not (a key quoted in JSON or a log line).
_PEM_BODY = r"[A-Za-z0-9+/=:,.\- \t\r\n]|\\[rn]"
# Plugins whose patterns match within one line and need one of these on it: they run on an
# excerpt of those lines only (their lookbehind-led assignment patterns are the slowest).
# Words are lower case and found in the lower-cased text (the patterns ignore case).
_CREDENTIAL_WORDS = ("key", "pw", "pass", "token", "cloudant", "softlayer")
_LINE_GATES: dict[str, tuple[str, ...]] = {
    CloudantDetector.secret_type: _CREDENTIAL_WORDS,
    IbmCloudIamDetector.secret_type: _CREDENTIAL_WORDS,
    SoftlayerDetector.secret_type: _CREDENTIAL_WORDS,
    IbmCosHmacDetector.secret_type: ("secret",),
    ArtifactoryDetector.secret_type: ("akc", "ap"),
    MailchimpDetector.secret_type: ("-us",),
}
# What every keyword of the keyword plugin's list holds (api_?key, db_?pass, pwd, secret...).
_KEYWORD_WORDS = ("key", "pass", "pwd", "secret", "contrase")
# A private key's whole PEM block (RFC 7468 labels such as "RSA PRIVATE KEY", "PGP PRIVATE KEY
# BLOCK"); escaped line breaks (JSON, logs) are part of it. Unterminated: the header and its body.
_PEM_BLOCK = re.compile(
    rf"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----(?:{_PEM_BODY})*-----END \1-----"
    rf"|-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:{_PEM_BODY})*"
    # RFC 4716 (SSH2) blocks carry quoted headers; PuTTY key files end with their MAC line.
    r"|---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----.{0,65536}?---- END SSH2 ENCRYPTED PRIVATE KEY ----"
    r"|PuTTY-User-Key-File-[0-9]+:.{0,65536}?Private-MAC: *[0-9a-fA-F]+",
    re.DOTALL,
)
# The unquoted value of a KEY=value or key: value line of a configuration file.
_CONFIG_VALUE = re.compile(r"^\s*(?:export\s+)?[\w.\-]+\s*[=:]\s*([^\s'\"#]+)\s*(?:#.*)?$")
# A shell-style assignment, as in .env files, Dockerfiles and scripts: NAME=value, no spaces, the
# name in capitals as environment variables are (a keyword argument on its own line is not one).
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?[A-Z_][A-Z0-9_]*=\S")
_ENV_NAME = re.compile(r"(?:^|[\\/])(?:\.env(?:\.[^\\/]*)?|[^\\/]*\.env)$")
_CONFIG_TYPES = frozenset({FileType.YAML, FileType.CONFIG, FileType.INI, FileType.PROPERTIES, FileType.TOML})
# A keyword's value that is itself a name (``API_KEY_ENV = "OPENAI_API_KEY"``, ``DUCKDB_KEY =
# "telemetry_duckdb"``): an environment variable or resource name, not a secret. Only names of
# words joined by underscores, without digits in lower case, so "hunter2" and "s3cr3t" stay secrets.
_NAME_VALUE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[a-z]+(?:_[a-z]+)+")
# A fenced code block of Markdown (CommonMark: three or more backticks or tildes) and its info string.
_FENCE = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[\w.+-]*)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
# Info strings -> a file name of that kind, so the block is read with that file type's patterns.
_FENCE_FILES = {
    "env": ".env",
    "dotenv": ".env",
    "ini": "settings.ini",
    "cfg": "settings.cfg",
    "toml": "settings.toml",
    "yaml": "settings.yaml",
    "yml": "settings.yaml",
    "properties": "settings.properties",
    "python": "module.py",
    "py": "module.py",
    "javascript": "module.js",
    "js": "module.js",
    "go": "module.go",
    "java": "Module.java",
}
# Shorter hex strings are identifiers (migration revisions, abbreviated commits, colours), not
# keys: detect-secrets' hex limit alone flags every 12-hex alembic revision id.
_MIN_HEX_SECRET = 20
# Plugins whose patterns' groups label the token (its prefix) rather than hold it: the token is the match.
_WHOLE_MATCH_KINDS = frozenset({GitHubTokenDetector.secret_type, GitLabTokenDetector.secret_type})
# Characters a plugin's match may carry around the value (its boundary groups).
_EDGE_CHARS = " \t\r\n\"'`=:,;"

#: A placeholder this module wrote: ``[secret:<kind slug>:<8 hex>]``. Never detected again.
PLACEHOLDER_PATTERN = re.compile(r"\[secret:[a-z0-9-]+:[0-9a-f]{8}\]")
# A masked view is cached per (file name, text): the gate asks for the same few files per claim.
_VIEW_CACHE_SIZE = 64


@dataclass(frozen=True)
class SecretFinding:
    """One secret-shaped value in a text.

    Attributes:
        kind: the detect-secrets plugin type that found it (``AWS Access Key``,
            ``Private Key``, ``Secret Keyword``, ``Base64 High Entropy String``...).
        start: offset of its first character in the text (characters, not bytes).
        end: offset one past its last character.
        digest: ``sha256:<hex>`` of the value's UTF-8 bytes, to tell findings apart without
            the value. A short value (a password) can be guessed back from its digest: log
            `placeholder`, never this, where a reader is not trusted with the value.
    """

    kind: str
    start: int
    end: int
    digest: str

    @property
    def placeholder(self) -> str:
        """``[secret:<kind slug>:<first 8 hex of the digest>]``, what `mask_secrets` writes."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.kind.lower()).strip("-")
        return f"[secret:{slug}:{self.digest.removeprefix('sha256:')[:8]}]"


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def _is_config_file(filename: str | None) -> bool:
    """``.env``-style files and the file types detect-secrets reads with configuration patterns."""
    if not filename:
        return False
    return bool(_ENV_NAME.search(filename)) or determine_file_type(filename) in _CONFIG_TYPES


def _keyword_patterns(filename: str | None) -> dict[re.Pattern[str], int]:
    """The keyword plugin's patterns for ``filename`` (its own table; ``.env`` files read as config)."""
    if filename and _ENV_NAME.search(filename):
        return keyword_plugin.CONFIG_DENYLIST_REGEX_TO_GROUP
    filetype = determine_file_type(filename) if filename else FileType.OTHER
    return keyword_plugin.REGEX_BY_FILETYPE.get(
        filetype, keyword_plugin.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP
    )


class _Lines:
    """Line boundaries of a text, to find the line an offset is on."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._lowered: str | None = None

    def line_at(self, offset: int) -> tuple[int, str]:
        """(start offset, text without its line break) of the line holding ``offset``."""
        index = bisect.bisect_right(self.starts, offset) - 1
        start = self.starts[index]
        end = self.starts[index + 1] - 1 if index + 1 < len(self.starts) else len(self.text)
        return start, self.text[start:end]

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for index, start in enumerate(self.starts):
            end = self.starts[index + 1] - 1 if index + 1 < len(self.starts) else len(self.text)
            yield start, self.text[start:end]

    def starts_with(self, words: tuple[str, ...]) -> list[int]:
        """Start offsets of the lines that hold one of ``words`` (lower case), ignoring case, in order."""
        if self._lowered is None:
            self._lowered = self.text.lower()
        found: set[int] = set()
        for word in words:
            position = self._lowered.find(word)
            while position >= 0:
                index = bisect.bisect_right(self.starts, position) - 1
                found.add(self.starts[index])
                # On to the next line: one hit per line is enough.
                position = self.starts[index + 1] if index + 1 < len(self.starts) else len(self.text)
                position = self._lowered.find(word, position)
        return sorted(found)

    def excerpt(self, words: tuple[str, ...]) -> tuple[str, list[int], list[int]]:
        """The lines that hold one of ``words``, joined by line breaks, with where each came from.

        Returns (excerpt, excerpt offset of each line, text offset of each line).
        """
        starts = self.starts_with(words)
        parts: list[str] = []
        at: list[int] = []
        position = 0
        for start in starts:
            line = self.line_at(start)[1]
            at.append(position)
            parts.append(line)
            position += len(line) + 1
        return "\n".join(parts), at, starts


def _filtered(secret: str, line: str, plugin: BasePlugin, filename: str | None) -> bool:
    """Whether detect-secrets' default heuristics say ``secret`` on ``line`` is no secret."""
    if (
        heuristic.is_templated_secret(secret)
        or heuristic.is_prefixed_with_dollar_sign(secret)
        or heuristic.is_not_alphanumeric_string(secret)
        or heuristic.is_sequential_string(secret)
    ):
        return True
    if isinstance(plugin, RegexBasedDetector):
        return False
    return (
        heuristic.is_potential_uuid(secret)
        or heuristic.is_likely_id_string(secret, line, plugin)
        or heuristic.is_indirect_reference(line)
        or (bool(filename) and (heuristic.is_lock_file(filename) or heuristic.is_swagger_file(filename)))
    )


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _EDGE_CHARS:
        start += 1
    while end > start and text[end - 1] in _EDGE_CHARS:
        end -= 1
    return start, end


def _value_span(match: re.Match[str], kind: str) -> tuple[int, int]:
    """The span of the value in a plugin pattern's match: its longest group, or the whole match.

    A group holds the value in assignment and URL patterns (``://user:(password)@``); the
    token plugins whose groups are labels of the token (``(ghp|gho)_...``,
    ``glcbt-(ab_)?...``, `_WHOLE_MATCH_KINDS`) give the whole match.
    """
    groups = [i for i in range(1, (match.re.groups or 0) + 1) if match.group(i)]
    if not groups or kind in _WHOLE_MATCH_KINDS:
        return match.span()
    return match.span(max(groups, key=lambda i: match.end(i) - match.start(i)))


def _format_spans(text: str, lines: _Lines, filename: str | None) -> Iterator[tuple[str, int, int]]:
    """Where a fixed-format plugin's patterns match and the plugin itself accepts the value.

    Positions come from the plugin's own patterns (`_value_span`, trimmed of the boundary
    characters a pattern may take); the verdict from the plugin's ``analyze_string`` on the
    match (the JWT plugin, for one, checks the token's form there).
    """
    excerpts: dict[tuple[str, ...], tuple[str, list[int], list[int]]] = {}
    for plugin in _FORMAT_PLUGINS:
        hints = _HINTS.get(plugin.secret_type)
        if hints is not None and not any(hint in text for hint in hints):
            continue
        gate = _LINE_GATES.get(plugin.secret_type)
        if gate is None:
            scanned, at, starts = text, [0], [0]
        else:
            if gate not in excerpts:
                excerpts[gate] = lines.excerpt(gate)
            scanned, at, starts = excerpts[gate]
        for pattern in plugin.denylist:
            for match in pattern.finditer(scanned):
                accepted = [value.strip(_EDGE_CHARS) for value in plugin.analyze_string(match.group(0))]
                start, end = _trimmed(scanned, *_value_span(match, plugin.secret_type))
                value = scanned[start:end]
                if not value or not any(part and part in value for part in accepted):
                    continue
                # Back to the text's offsets: the excerpt's line holding the value, moved.
                index = bisect.bisect_right(at, start) - 1
                start, end = start - at[index] + starts[index], end - at[index] + starts[index]
                _, line = lines.line_at(start)
                if _filtered(value, line, plugin, filename):
                    continue
                if plugin.secret_type == _JWT_KIND:
                    # The plugin's pattern ends lazily, before the signature: mask it too.
                    end = _JWT_TAIL.match(text, end).end()
                yield plugin.secret_type, start, end
    if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
        for match in _PEM_BLOCK.finditer(text):
            yield _PRIVATE_KEY_KIND, match.start(), match.end()


def _keyword_spans(text: str, lines: _Lines, filename: str | None) -> Iterator[tuple[str, int, int]]:
    """Values the keyword plugin finds on lines that name one of its keywords.

    Its patterns are those for the file's type; a shell-style assignment line (`_ENV_LINE`)
    takes the configuration patterns in any file (a ``.env`` line quoted in a README).
    """
    file_patterns = _keyword_patterns(filename)
    for line_start in lines.starts_with(_KEYWORD_WORDS):
        _, line = lines.line_at(line_start)
        if not _KEYWORD_HINT.search(line):
            continue
        # A shell-style assignment (NAME=value) reads as configuration in any file.
        patterns = keyword_plugin.CONFIG_DENYLIST_REGEX_TO_GROUP if _ENV_LINE.match(line) else file_patterns
        # The plugin's analyze_string stops at its first pattern that matches; so does this.
        for pattern, group in patterns.items():
            match = pattern.search(line)
            if match is None:
                continue
            start, end = _trimmed(line, *match.span(group))
            value = line[start:end]
            if value and not _NAME_VALUE.fullmatch(value) and not _filtered(value, line, _KEYWORD, filename):
                yield _KEYWORD.secret_type, line_start + start, line_start + end


def _entropic(plugin: HighEntropyStringsPlugin, value: str) -> bool:
    """Over the plugin's entropy limit; a hex value also at least `_MIN_HEX_SECRET` long."""
    if isinstance(plugin, HexHighEntropyString) and len(value) < _MIN_HEX_SECRET:
        return False
    # n characters carry at most log2(n) bits each: shorter values cannot pass, so skip the measure.
    if len(value) <= 2**plugin.entropy_limit:
        return False
    return plugin.calculate_shannon_entropy(value) > plugin.entropy_limit


def _entropy_spans(text: str, lines: _Lines, filename: str | None) -> Iterator[tuple[str, int, int]]:
    """Quoted strings, and unquoted values of configuration files and shell-style assignment
    lines (`_ENV_LINE`), over an entropy plugin's limit."""
    for plugin in _ENTROPY:
        for match in plugin.regex.finditer(text):
            value = match.group(2)
            if _entropic(plugin, value):
                _, line = lines.line_at(match.start())
                if not _filtered(value, line, plugin, filename):
                    yield plugin.secret_type, match.start(2), match.end(2)
    config_file = _is_config_file(filename)
    for line_start, line in lines:
        match = _CONFIG_VALUE.match(line) if config_file or _ENV_LINE.match(line) else None
        if match is None:
            continue
        value = match.group(1)
        for plugin in _ENTROPY:
            if (
                set(value) <= set(plugin.charset)
                and _entropic(plugin, value)
                and not _filtered(value, line, plugin, filename)
            ):
                yield plugin.secret_type, line_start + match.start(1), line_start + match.end(1)
                break


def _fenced_spans(text: str, filename: str | None) -> Iterator[tuple[str, int, int]]:
    """In Markdown, each fenced code block whose info string names a configuration or source
    language is read as a file of that language (a ``.env`` or ``settings.yaml`` quoted in a README).

    A text without a file name (a frame, a log line, a payload) may be Markdown too.
    """
    if filename and not filename.lower().endswith((".md", ".markdown")):
        return
    if "```" not in text and "~~~" not in text:
        return
    for block in _FENCE.finditer(text):
        name = _FENCE_FILES.get(block.group("info").lower())
        if name is None:
            continue
        offset = block.start("body")
        for finding in find_secrets(block.group("body"), filename=name):
            yield finding.kind, offset + finding.start, offset + finding.end


# When spans of different plugins cover the same characters, the most specific name wins.
_GENERIC_KINDS = (_KEYWORD.secret_type, *(plugin.secret_type for plugin in _ENTROPY))


def _rank(kind: str) -> int:
    return 1 if kind in _GENERIC_KINDS else 0


def find_secrets(text: str, *, filename: str | None = None) -> list[SecretFinding]:
    """The secret-shaped values in ``text``, as detect-secrets' plugins judge them.

    Args:
        text: any text (a file, a payload, a log line, a README).
        filename: the file ``text`` comes from, if any (a name or a path; only its name and
            extension are used): it selects the keyword plugin's patterns (configuration
            files and ``.env`` files take unquoted values) and the file-level filters.

    Returns:
        Findings sorted by ``start``, never overlapping: spans of several plugins over the
        same characters are merged into one, named after the most specific plugin (a
        token format over ``Secret Keyword`` and the entropy plugins). Placeholders a
        masking already wrote (`PLACEHOLDER_PATTERN`) are never found again, so masking
        twice changes nothing. Empty for a text without any.

    Raises nothing: a text is data, never refused.
    """
    if not text:
        return []
    lines = _Lines(text)
    spans = [
        *_format_spans(text, lines, filename),
        *_keyword_spans(text, lines, filename),
        *_entropy_spans(text, lines, filename),
        *_fenced_spans(text, filename),
    ]
    if not spans:
        return []
    placeholders = [match.span() for match in PLACEHOLDER_PATTERN.finditer(text)]
    spans = [
        span
        for span in spans
        if span[1] < span[2] and not any(start < span[2] and span[1] < end for start, end in placeholders)
    ]
    merged: list[tuple[str, int, int]] = []
    for kind, start, end in sorted(spans, key=lambda s: (s[1], -s[2], _rank(s[0]))):
        if merged and start < merged[-1][2]:
            last_kind, last_start, last_end = merged[-1]
            better = kind if _rank(kind) < _rank(last_kind) else last_kind
            merged[-1] = (better, last_start, max(last_end, end))
        else:
            merged.append((kind, start, end))
    return [SecretFinding(kind, start, end, _digest(text[start:end])) for kind, start, end in merged]


def mask_secrets(text: str, *, filename: str | None = None) -> str:
    """``text`` with every secret-shaped value replaced by its placeholder.

    Args:
        text: any text.
        filename: as `find_secrets`.

    Returns:
        ``text`` where each `find_secrets` finding reads ``[secret:<kind>:<8 hex>]``
        (`SecretFinding.placeholder`; the same value always gives the same placeholder, so
        a masked text stays deterministic); ``text`` itself when it holds none. Idempotent.

    Raises nothing.
    """
    return replace_findings(text, find_secrets(text, filename=filename))


def replace_findings(text: str, findings: Sequence[SecretFinding]) -> str:
    """``text`` with each of ``findings`` (sorted, not overlapping, as `find_secrets` gives
    them, possibly fewer) replaced by its placeholder; ``text`` itself when there is none.

    Raises nothing.
    """
    if not findings:
        return text
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts += [text[position : finding.start], finding.placeholder]
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


@functools.lru_cache(maxsize=_VIEW_CACHE_SIZE)
def masked_text(text: str, name: str | None = None) -> str:
    """The masked view of a file's (or a frame's) text: the one view a model and a gate see.

    The context payload of a turn is built from this view of each file
    (`wf_pipeline.runtime.threads.context_snapshot`, unless the profile's redaction policy
    opts the ``context_payload`` class out), and evidence is checked against this same
    view (the docs writer's `claim_evidence`), so a quote that holds a secret's value never
    verifies, whatever the model saw.

    Args:
        text: the file's decoded text (or a head frame's).
        name: the file's name or path (None for a frame), as `find_secrets`'s ``filename``.

    Returns:
        `mask_secrets` of ``text``; the last few views are cached per (text, name).

    Raises nothing.
    """
    return mask_secrets(text, filename=os.path.basename(name) if name else None)
