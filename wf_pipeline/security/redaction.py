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
- a credential keyword's value anywhere in a text, not only at a line's start and in any
  file type (`_assignment_spans`: ``password=...`` in prose or a docstring, ``API_TOKEN =
  "..."``, ``apiKey: string = "..."``, ``Password=...;`` in a connection string,
  ``<password>...</password>``, a Markdown table row): detect-secrets' keyword list has no
  ``token`` and its patterns want a quoted value or a line of their own. The value must look
  like a literal (`_is_literal`), not a name, a call or a reference;
- a credential name's value set off by white space (`_spaced_spans`: a Dockerfile's legacy
  ``ENV DB_PASSWORD value``, a flag's ``--password value``, prose's ``the password is
  value``, SQL's ``PASSWORD 'value'``), a credential named in one field of a mapping and
  given in another (`_pair_spans`: Kubernetes and Compose ``env`` lists' ``name`` and
  ``value``, ECS task definitions, CloudFormation's ``ParameterKey``/``ParameterValue``, a
  quoted name and value pair), names ending in a bare ``pass`` (`_is_bare_pass`), and
  settings judged as configuration where they are one (`_assignment_spans`);
- credential files detect-secrets does not read: ``.netrc`` (``machine x login y password
  z``) and ``.pgpass`` (``host:port:db:user:password``) lines;
- the whole of a token longer than its plugin's pattern (`_TOKEN_TAIL`: Stripe's live keys);
- token formats its plugins do not know (`_TOKEN_FORMATS`: fine-grained GitHub tokens,
  Hugging Face, Anthropic and project OpenAI keys, PyPI tokens of any index, age secret
  keys, Discord webhook URLs, ``Authorization: Bearer`` and ``Basic`` values, Google OAuth
  client secrets, Azure SAS signatures, URL passwords without a user, Docker registry
  ``auth`` values, base64-encoded private keys, mysql's ``-p``, curl's ``-u user:password``,
  SQL's ``IDENTIFIED BY``, ``auth=("user", "password")``);
- fewer false positives: a quoted hex string of a digest's length (git's 40-hex SHA-1,
  SHA-256 and longer) on a line that names no credential, and a Subresource Integrity
  value (``sha384-...``), are digests, not keys; a keyword plugin's value that is itself a
  credential word naming a field (``password_field = "password"``) is a name.

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

import base64
import binascii
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
# The rest of a token after a fixed-format plugin's match: letters, digits, ``_`` and ``-``.
_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_\-]*")

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
    "netrc": ".netrc",
    "pgpass": ".pgpass",
}
# Shorter hex strings are identifiers (migration revisions, abbreviated commits, colours), not
# keys: detect-secrets' hex limit alone flags every 12-hex alembic revision id.
_MIN_HEX_SECRET = 20
# Plugins whose patterns' groups label the token (its prefix) rather than hold it: the token is the match.
_WHOLE_MATCH_KINDS = frozenset({GitHubTokenDetector.secret_type, GitLabTokenDetector.secret_type})
# Characters a plugin's match may carry around the value (its boundary groups).
_EDGE_CHARS = " \t\r\n\"'`=:,;"

#: A placeholder this module writes (``[secret:<kind slug>]``), or wrote before placeholders
#: dropped their digest tag (``[secret:<kind slug>:<8 hex>]``). Never detected again.
PLACEHOLDER_PATTERN = re.compile(r"\[secret:[a-z0-9-]+(?::[0-9a-f]{8})?\]")
# A placeholder as a Markdown renderer may have escaped it (``\[secret:...\]``): still one.
_WRITTEN_PLACEHOLDER = re.compile(r"\\?\[secret:[a-z0-9-]+(?::[0-9a-f]{8})?\\?\]")
# A masked view is cached per (file name, text): the gate asks for the same few files per claim.
_VIEW_CACHE_SIZE = 64

# --- complements: credential keywords anywhere, credential files, more token formats ----------

# A credential keyword that ends a name (``password``, ``DB_PASSWORD``, ``apiKey``, ``API_TOKEN``,
# ``aws_secret_access_key``, ``client_secret``), any case: a name that goes on (``password_field``,
# ``tokenizer``) names something else. detect-secrets' keyword list, plus ``token`` and ``credential``.
_CREDENTIAL_NAME = re.compile(
    r"(?:pass(?:word|wd|phrase)|pwd|secret|token|credentials?|(?<=[_.\-])pass|requirepass"
    r"|(?:api|access|secret|private|auth|client|account|service|signing|encryption|master)[_\- ]?key)"
    r"(?![A-Za-z0-9_\-])",
    re.IGNORECASE,
)
# The same, found fast (a regex alternation tries every position): each keyword's last word is
# found with str.find in the lower-cased text, then checked at that place.
_CREDENTIAL_STEMS = ("pass", "pwd", "secret", "token", "credential", "key")
# What sets a key right after its name: ``:`` or ``=`` (a bare ``pass`` names a credential only so).
_SET_AFTER = re.compile(r"[ \t]*[:=]")
_CREDENTIAL_AT = re.compile(r"(?:pass(?:word|wd|phrase)|pwd|secret|token|credentials?)(?![a-z0-9_\-])")
_KEY_PREFIXES = (
    "api",
    "access",
    "secret",
    "private",
    "auth",
    "client",
    "account",
    "service",
    "signing",
    "encryption",
    "master",
)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
# What may follow such a name up to its value: a closing quote or backtick (a JSON key, inline
# code), then ``=``, ``:``, ``:=`` (Go), ``==``, ``=>`` (PHP, Ruby), a type annotation before ``=``
# (``apiKey: string =``, ``API_TOKEN: str =``), a Markdown table's ``|``, or an XML element's ``>``.
_ASSIGNED = re.compile(
    r"""\\?["'`]?[ \t]*(?:
        (?P<sep>(?::[ \t]*[A-Za-z_][\w.\[\]<>|]*[ \t]*)?(?::=|==|=>|=)|:|\|)[ \t]*
            (?:\\?(?P<quote>["'`])(?P<quoted>[^\n]{0,512}?)\\?(?P=quote)
              |(?P<bare>[^\s'"`,;()<>\[\]{}|]{1,512})(?P<after>[(\[]?))
        |>(?P<xml>[^<\n]{1,512})</
    )""",
    re.VERBOSE,
)
# Values that are no literal: nothing set, a boolean, a null of some language.
_NO_VALUES = frozenset({"none", "null", "nil", "true", "false", "undefined", "empty"})
# A reference to a value held elsewhere: an attribute path from a lower-case object or module,
# as Python and JavaScript name them (``self.token``, ``settings.api_key``,
# ``rust_openssl.hpke.X25519PrivateKey``).
_REFERENCE = re.compile(r"[a-z_][a-z0-9_]*(?:\.[A-Za-z_]\w*)+")
# A type annotation (``private_key: PKCS7PrivateKeyTypes,``): a CamelCase name ending in a word,
# after ``:`` and before what ends a parameter or a field.
_TYPE_NAME = re.compile(r"[A-Z]\w*[A-Z][a-z]{2,}")
_TYPE_END = re.compile(r"[ \t]*(?:[,)=\]|]|$)", re.MULTILINE)
# A Markdown table cell's end, after a value in the cell that follows a credential name's cell.
_CELL_END = re.compile(r"[ \t]*\|")
# A bare (unquoted) value in snake case, digits allowed (``pw_value2``): a variable in code.
_VARIABLE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
# How a file's path starts (absolute, home, relative).
_PATH_STARTS = ("/", "~/", "./", "../")
# What a path's segment holds: name characters only (a base64 secret's "+" or "=" is none).
_PATH_SEGMENT = re.compile(r"[\w.@~-]+")
# A word of a path segment (split at "-", "_", "."): a name in any case or CamelCase, maybe a
# version number after it (``python311``, ``MyProject``, ``x86``, ``2024``).
_PATH_WORD = re.compile(r"[A-Za-z][a-z]*(?:[A-Z][a-z]*)*\d{0,4}|[A-Z]+\d{0,4}|\d{1,8}")
# Words at least this long that read as no name make a segment random: a secret, not a folder.
_PATH_WORD_RANDOM = 8
# Shortest literal credential: eight characters, as NIST SP 800-63B's minimum for a memorized secret.
_MIN_LITERAL = 8
# A credential word a keyword plugin's value may be when it names a field, not a secret.
_FIELD_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "passphrase"})
_FIELD_NAME = (
    r"{word}[_\-]?(?:field|name|label|param|column|attr|input|id|type|prompt|placeholder|header|var|env)"
)
# .netrc (inetutils, curl): ``machine HOST login USER password SECRET``, one line or several.
# A line that assigns a name made of a credential word and a field's role (its label, prompt, header).
_FIELD_ASSIGNED = re.compile(
    r"[ \t]*(?:export[ \t]+)?[\w.]*?(?:pass(?:word|wd|phrase)|pwd|secret|token|api[_\-]?key)[_\-]?"
    r"(?:field|label|param|column|attr|input|prompt|placeholder|header|var|env)s?[\"']?[ \t]*(?::[^=\n]*)?[:=]",
    re.IGNORECASE,
)
_NETRC_NAMES = frozenset({".netrc", "_netrc"})
_NETRC_PASSWORD = re.compile(r"(?<!\S)(?:password|passwd)[ \t]+(\S+)")
_NETRC_LINE = re.compile(r"^[ \t]*machine[ \t]+\S+.*?(?<!\S)(?:password|passwd)[ \t]+(\S+)", re.MULTILINE)
# .pgpass (PostgreSQL libpq): ``hostname:port:database:username:password``, ``\:`` escapes a colon.
_PGPASS_NAMES = frozenset({".pgpass", "pgpass.conf"})
_PGPASS_FIELD = r"(?:[^:\\\n]|\\.)*"
_PGPASS_ANY = re.compile(
    rf"^[ \t]*(?!#){_PGPASS_FIELD}:{_PGPASS_FIELD}:{_PGPASS_FIELD}:{_PGPASS_FIELD}:(\S.*?)[ \t]*$",
    re.MULTILINE,
)
# Outside a .pgpass file, only a line (or inline code) of its exact shape: a host, a port (or *),
# names, a value.
_PGPASS_PORT = re.compile(r":(?:\d{1,5}|\*):")
_PGPASS_SHAPE = re.compile(
    r"(?:^[ \t]*|`)[\w.\-*]+:(?:\d{1,5}|\*):[\w.\-*]+:[\w.\-*@]+:([^\s`]+)(?:[ \t]*$|`)", re.MULTILINE
)
# Command-line and code shapes of a credential. Each starts with a literal, which the regex
# engine finds fast; what must come before it is checked after the match (`_token_spans`).
# mysql's -pPASSWORD (attached: "-p PASSWORD" asks for one).
_MYSQL_PASSWORD = re.compile(r"(?:mysql|mariadb)[\w]*[ \t][^\n]*?[ \t]-p([^\s'\"\-][^\s'\"]{3,})")
# curl's and others' -u/--user USER:PASSWORD.
_CURL_USER = re.compile(r"-(?:-user|u)[ \t=]+['\"]?[^\s:'\"$]+:([^\s'\"@$]{4,})")
# SQL's IDENTIFIED BY [PASSWORD] password, in a CREATE or ALTER of a user, role or login.
_SQL_IDENTIFIED = re.compile(
    r"(?i:identified)[ \t]+(?i:by)[ \t]+(?:(?i:password)[ \t]+)?['\"]?([^\s;'\"]{4,256})"
)
_SQL_USER_STATEMENT = re.compile(r"(?i)\b(?:create|alter)[ \t]+(?:user|role|login)\b")
# Python requests' auth=("user", "password").
_AUTH_PAIR = re.compile(
    r"auth[ \t]*=[ \t]*[(\[][ \t]*['\"][^'\"\n]*['\"][ \t]*,[ \t]*['\"]([^'\"\n]{4,256})['\"]"
)
# Token formats detect-secrets' plugins do not know: (kind, pattern, group of the secret, hint).
_TOKEN_FORMATS: tuple[tuple[str, re.Pattern[str], int, tuple[str, ...]], ...] = (
    # GitHub fine-grained personal access tokens (2022): github_pat_<22>_<59>.
    ("GitHub Token", re.compile(r"github_pat_[A-Za-z0-9_]{40,}"), 0, ("github_pat_",)),
    # Hugging Face user access tokens: hf_ and 34 letters.
    # (The pattern starts with its literal, which the regex engine finds fast; the word boundary
    # before it is checked after the match.)
    ("Hugging Face Token", re.compile(r"hf_[A-Za-z0-9]{30,}"), 0, ("hf_",)),
    # Anthropic API keys (sk-ant-api03-...), OpenAI project, service-account and admin keys.
    ("Anthropic API Key", re.compile(r"sk-ant-[A-Za-z0-9_\-]{20,}"), 0, ("sk-ant-",)),
    ("OpenAI Token", re.compile(r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}"), 0, ("sk-",)),
    # PyPI API tokens of any index: a macaroon, base64url of "\x02\x01\x08..." that starts AgE.
    ("PyPI Token", re.compile(r"pypi-AgE[A-Za-z0-9_\-]{50,}"), 0, ("pypi-",)),
    # age (age-encryption.org) identities: Bech32, upper case.
    (
        "Age Secret Key",
        re.compile(r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
        0,
        ("AGE-SECRET-KEY-",),
    ),
    # Discord webhook URLs: the id is public, the token after it is the credential.
    (
        "Discord Webhook",
        re.compile(r"discord(?:app)?\.com/api/webhooks/\d+/([A-Za-z0-9_\-]{20,})"),
        1,
        ("/api/webhooks/",),
    ),
    # An HTTP Authorization value (RFC 6750 b64token for Bearer; Basic, Token schemes). Basic
    # credentials are base64 of "user:password" (RFC 7617): short ones too.
    ("Bearer Token", re.compile(r"Bearer[ \t]+([A-Za-z0-9\-._~+/]{16,}=*)"), 1, ("Bearer",)),
    (
        "Bearer Token",
        re.compile(
            r"Authorization:[ \t]*(?:Basic[ \t]+([A-Za-z0-9+/]{8,}=*)|Token[ \t]+([A-Za-z0-9\-._~+/]{16,}=*))"
        ),
        -1,
        ("Authorization",),
    ),
    # Stripe webhook signing secrets.
    ("Stripe Webhook Secret", re.compile(r"whsec_[A-Za-z0-9]{16,}"), 0, ("whsec_",)),
    # A DSN's key in a URL's user part (Sentry: https://<hex key>@o1.ingest.sentry.io/1).
    ("DSN Key", re.compile(r"[a-z][a-z0-9+.\-]*://([0-9a-f]{16,64})(?::[0-9a-f]{16,64})?@"), 1, ("://",)),
    # Password hashes of an htpasswd file line (Apache MD5, bcrypt, crypt's SHA, {SHA}).
    (
        "Password Hash",
        re.compile(r"^[^:\s#]+:((?:\$(?:apr1|2[aby]|1|5|6)\$|\{SHA\})[^\s:]{8,})", re.MULTILINE),
        1,
        ("$apr1$", "$2y$", "$2a$", "$2b$", "$1$", "$5$", "$6$", "{SHA}"),
    ),
    # Google OAuth client secrets (2021 format).
    ("Google OAuth Client Secret", re.compile(r"GOCSPX-[A-Za-z0-9_\-]{20,}"), 0, ("GOCSPX-",)),
    # An Azure shared access signature: the sig parameter of a SAS URL or connection string.
    ("Azure SAS Signature", re.compile(r"[?&;]sig=([A-Za-z0-9%+/=]{16,})"), 1, ("sig=",)),
    # A URL's password without a user name (redis://:password@host): the basic-auth plugin
    # wants a user.
    ("Basic Auth Credentials", re.compile(r"[a-z][a-z0-9+.\-]*://:([^\s/@:'\"`]{1,256})@"), 1, ("://:",)),
    # A Docker registry credential in config.json: base64 of "user:password".
    (
        "Docker Registry Auth",
        re.compile(r"\"auth\"[ \t]*:[ \t]*\"([A-Za-z0-9+/]{8,}={0,2})\""),
        1,
        ('"auth"',),
    ),
    # A private key's PEM text encoded in base64 again, as Kubernetes Secrets' data holds it:
    # "-----BEGIN" is "LS0tLS1CRUdJTi" (checked to name a private key after the match).
    (
        "Private Key",
        re.compile(
            r"LS0tLS1CRUdJTi[A-Za-z0-9+/]{8,}(?:\r?\n[ \t]*[A-Za-z0-9+/]{16,}(?=={0,2}[ \t]*(?:\r?\n|$)))*={0,2}"
        ),
        0,
        ("LS0tLS1CRUdJTi",),
    ),
    # Credentials given on a command line or in code (each checked further in `_token_spans`).
    ("Secret Keyword", _MYSQL_PASSWORD, 1, ("mysql", "mariadb")),
    ("Secret Keyword", _CURL_USER, 1, ("-u", "--user")),
    ("Secret Keyword", _SQL_IDENTIFIED, 1, ("IDENTIFIED", "identified", "Identified")),
    ("Secret Keyword", _AUTH_PAIR, 1, ("auth",)),
)
# The header a base64 private key block decodes to (checked on "Private Key" token matches).
_PEM_PRIVATE = b"PRIVATE KEY"
# A quoted digest: git's SHA-1 (40 hex), SHA-224/256/384/512 (56, 64, 96, 128 hex).
_DIGEST_HEX_LENGTHS = frozenset({40, 56, 64, 96, 128})
# A Subresource Integrity value (W3C SRI: ``sha384-<base64>``, several separated by spaces).
_SRI = re.compile(r"sha(?:256|384|512)-[A-Za-z0-9+/]+={0,2}")


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
        """``[secret:<kind slug>]``, what `mask_secrets` writes.

        No part of the value's digest: a published tag of an unkeyed hash would let anyone
        confirm a guessed password offline (``hunter2`` against its 8 hex).
        """
        slug = re.sub(r"[^a-z0-9]+", "-", self.kind.lower()).strip("-")
        return f"[secret:{slug}]"


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
        self._name_ends: list[int] | None = None

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

    @property
    def name_ends(self) -> list[int]:
        """`_credential_name_ends` of the text (computed once: three readers ask)."""
        if self._name_ends is None:
            self._name_ends = list(_credential_name_ends(self.text, self.lowered))
        return self._name_ends

    @property
    def lowered(self) -> str:
        """The text lower-cased, offset for offset (computed once; `_lower_in_place`)."""
        if self._lowered is None:
            self._lowered = _lower_in_place(self.text)
        return self._lowered

    def starts_with(self, words: tuple[str, ...]) -> list[int]:
        """Start offsets of the lines that hold one of ``words`` (lower case), ignoring case, in order."""
        lowered = self.lowered
        found: set[int] = set()
        for word in words:
            position = lowered.find(word)
            while position >= 0:
                index = bisect.bisect_right(self.starts, position) - 1
                found.add(self.starts[index])
                # On to the next line: one hit per line is enough.
                position = self.starts[index + 1] if index + 1 < len(self.starts) else len(self.text)
                position = lowered.find(word, position)
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
                elif plugin.secret_type != _PRIVATE_KEY_KIND:
                    # A token longer than the plugin's pattern allows (Stripe's live keys
                    # outgrew it): the rest of the token is masked with it.
                    end = _TOKEN_TAIL.match(text, end).end()
                yield plugin.secret_type, start, end
    if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
        for match in _PEM_BLOCK.finditer(text):
            yield _PRIVATE_KEY_KIND, match.start(), match.end()


def _names_a_field(value: str, line: str) -> bool:
    """Whether a keyword plugin's ``value`` names a field rather than holds a credential: a
    credential word naming a field on ``line`` (``password_field = "password"``, ``TOKEN_HEADER =
    "token"``, not ``password = "password"``), or any value of a name that is a credential
    word and a field's role (``API_KEY_HEADER = 'X-Api-Key'``, ``password_prompt = 'Enter
    password'``): such a name holds a label, not the credential."""
    if _FIELD_ASSIGNED.match(line):
        return True
    word = value.lower()
    return word in _FIELD_WORDS and bool(
        re.search(_FIELD_NAME.format(word=re.escape(word)), line, re.IGNORECASE)
    )


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
            if _names_a_field(value, line):
                continue
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


def _is_digest(value: str, line: str, plugin: HighEntropyStringsPlugin) -> bool:
    """A quoted digest the entropy plugins would flag: a Subresource Integrity value, or a hex
    string of a digest's length (`_DIGEST_HEX_LENGTHS`) on a line that names no credential
    (``secret_key = "<64 hex>"`` stays a secret: the line names one)."""
    if isinstance(plugin, HexHighEntropyString):
        return (
            len(value) in _DIGEST_HEX_LENGTHS
            and not _CREDENTIAL_NAME.search(line)
            and not _KEYWORD_HINT.search(line)
        )
    return bool(_SRI.fullmatch(value))


def _entropy_spans(text: str, lines: _Lines, filename: str | None) -> Iterator[tuple[str, int, int]]:
    """Quoted strings, and unquoted values of configuration files and shell-style assignment
    lines (`_ENV_LINE`), over an entropy plugin's limit."""
    for plugin in _ENTROPY:
        for match in plugin.regex.finditer(text):
            value = match.group(2)
            if _entropic(plugin, value):
                _, line = lines.line_at(match.start())
                if _is_digest(value, line, plugin):
                    continue
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


def _is_literal(value: str) -> bool:
    """Whether a credential keyword's value (`_assignment_spans`) is a literal credential.

    The rule: at least `_MIN_LITERAL` characters, no white space, letters and digits both
    (``Qm7vLx2pRt9sKw4z``, a 32-character token); and none of what a value that only names
    one is: nothing set (`_NO_VALUES`), a template or an environment reference (detect-secrets'
    heuristics: ``${X}``, ``{{ x }}``, ``$X``, ``<password>``), a name of words joined by
    underscores (``OPENAI_API_KEY``), an attribute path from a lower-case name
    (``settings.api_key``), a placeholder this module wrote. A bare value followed by ``(`` or
    ``[`` is a call or a subscript (``get_token()``), a CamelCase name after ``:`` or ``|``
    that ends a parameter or a line is a type (``private_key: PKCS7PrivateKeyTypes,``), and
    a bare lower-case snake-case name is a variable (``login(password=pw_value2)``); the
    caller checks those. Quoted or not, the rule is the same (a quoted value of letters only
    in source and configuration files is still the keyword plugin's to find).
    """
    if len(value) < _MIN_LITERAL or any(c.isspace() for c in value):
        return False
    if _names_a_path(value):
        return False  # a file's path ("private key: /home/ops/keys/ops.pem"), not its content
    if not (any(c.isalpha() for c in value) and any(c.isdigit() for c in value)):
        return False
    return not (
        value.lower() in _NO_VALUES
        or heuristic.is_templated_secret(value)
        or heuristic.is_prefixed_with_dollar_sign(value)
        or (value.startswith("<") and value.endswith(">"))
        or _NAME_VALUE.fullmatch(value)
        or _REFERENCE.fullmatch(value)
        or PLACEHOLDER_PATTERN.fullmatch(value)
    )


def _names_a_path(value: str) -> bool:
    """Whether ``value`` is a file's path rather than a secret that starts with ``/``.

    It starts like a path (`_PATH_STARTS`) and every segment reads as names: name characters
    only (`_PATH_SEGMENT`), and no word of eight or more characters that is no name
    (`_PATH_WORD`). ``/home/ops/keys/ops.pem`` and ``/usr/lib/x86_64-linux-gnu`` are
    paths; ``/uBFIpI0k+hwsujv60n0t9Ap`` (an AWS secret key may start with ``/``) and
    ``/abcDEF12ghi/JKL34mno`` are not.
    """
    if not value.startswith(_PATH_STARTS):
        return False
    for segment in value.split("/"):
        if segment in ("", ".", "..", "~"):
            continue
        if not _PATH_SEGMENT.fullmatch(segment):
            return False
        for word in re.split(r"[-_.]", segment):
            if len(word) >= _PATH_WORD_RANDOM and not _PATH_WORD.fullmatch(word):
                return False
    return True


def _lower_in_place(text: str) -> str:
    """``text`` lower-cased with every offset kept: the few characters whose lower case is
    longer (``İ``) stay as they are, so an offset in one is an offset in the other."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(low if len(low := char.lower()) == 1 else char for char in text)


def _credential_name_ends(text: str, lowered: str) -> Iterator[int]:
    """Offsets just past each credential keyword that ends a name (`_CREDENTIAL_NAME`), in order.

    ``lowered`` is ``text`` lower-cased offset for offset (`_lower_in_place`).
    """
    ends: set[int] = set()
    for stem in _CREDENTIAL_STEMS:
        position = lowered.find(stem)
        while position >= 0:
            end = position + len(stem)
            if stem == "key":
                before = lowered[max(0, position - 12) : position]
                if before.endswith(("_", "-", " ")):
                    before = before[:-1]  # api_key, api-key, and prose's "access key"
                if before.endswith(_KEY_PREFIXES) and (
                    end == len(lowered) or lowered[end] not in _NAME_CHARS
                ):
                    ends.add(end)
            else:
                match = _CREDENTIAL_AT.match(lowered, position)
                if match is not None:
                    ends.add(match.end())
                elif stem == "pass" and _is_bare_pass(lowered, position):
                    ends.add(end)
            position = lowered.find(stem, position + 1)
    yield from sorted(ends)


def _is_bare_pass(lowered: str, position: int) -> bool:
    """Whether the ``pass`` at ``position`` ends a credential's name on its own: the last word of
    a compound name (``DB_PASS``, ``db.pass``, ``smtp-pass``), Redis's ``requirepass``, or a
    key set with ``:`` or ``=`` (``pass: ...``); not ``bypass``, ``compass``, ``passport`` nor
    Python's ``pass`` statement."""
    end = position + 4
    if end < len(lowered) and lowered[end] in _NAME_CHARS:
        return False
    before = lowered[position - 1] if position else ""
    if before in ("_", ".", "-") or lowered.endswith("require", 0, position):
        return True
    return not before.isalnum() and bool(_SET_AFTER.match(lowered, end))


def _assignment_spans(
    text: str, lines: _Lines, filename: str | None = None
) -> Iterator[tuple[str, int, int]]:
    """A credential keyword's literal value wherever it stands, in any kind of text.

    A name ending in a credential keyword (`_CREDENTIAL_NAME`), then what assigns it a value
    (`_ASSIGNED`), then a value `_is_literal` accepts: ``password=...`` inside prose or a
    docstring, ``"api_key": "..."``, ``const apiToken = "..."``, ``ENV API_KEY=...``,
    ``Password=...;`` in a connection string, ``<password>...</password>``, ``| DB_PASSWORD |
    `...` |``. A bare value ends at white space, a quote or one of ``,;()<>[]{}|``, and
    loses a sentence's closing ``.`` or ``:``.

    Where the assignment is a setting, the value is judged as the keyword plugin judges a
    configuration file's (`_is_setting_value`: letters only too): in a configuration file
    (`_is_config_file`, for a password's or secret's name: ``db.pass=...`` in ``.properties``,
    ``pass: ...`` in YAML), an XML
    element (``<password>...</password>``) and a connection string's ``Pwd=...;``.
    Elsewhere it must be a literal (`_is_literal`).
    """
    config = _is_config_file(filename)
    for name_end in lines.name_ends:
        if _WRITTEN_PLACEHOLDER.match(text, name_end - len("[secret")):
            continue  # the word of a placeholder
        match = _ASSIGNED.match(text, name_end)
        if match is None:
            continue
        group = next(g for g in ("quoted", "bare", "xml") if match.group(g) is not None)
        start, end = match.span(group)
        value = text[start:end]
        if group == "bare":
            if match.group("after"):
                continue  # a call or a subscript: get_token(), os.environ["X"]
            if (
                match.group("sep") in (":", "|")
                and _TYPE_NAME.fullmatch(value)
                and _TYPE_END.match(text, end)
            ):
                continue  # a type annotation or a union of types
            if match.group("sep") == "|" and not _CELL_END.match(text, end):
                continue  # a pipe, not a Markdown table's cell
            if _VARIABLE.fullmatch(value) or value.startswith(":"):
                continue  # a variable (login(password=pw_value2)); "::", a scope, not a value
            stripped = value.rstrip(".:")
            end -= len(value) - len(stripped)
            value = stripped
        elif group == "xml":
            start, end = _trimmed(text, start, end)
            value = text[start:end]
        # Settings by a password's name only: "id-token: write" in a workflow file is a permission.
        setting = (config and lines.lowered.endswith(_PASSWORD_WORDS, 0, name_end)) or (
            group == "xml" or _in_connection_string(text, lines, end)
        )
        if _is_setting_value(value) if setting else _is_literal(value):
            yield _KEYWORD.secret_type, start, end


def _in_connection_string(text: str, lines: _Lines, end: int) -> bool:
    """Whether a value ending at ``end`` is one field of a connection string (``Server=db;Pwd=x;``):
    followed by ``;`` on a line that holds two ``key=value;`` fields or more."""
    if end >= len(text) or text[end] != ";":
        return False
    return len(_CONNECTION_FIELD.findall(lines.line_at(end)[1])) >= 2


# After a credential name, a value set off by white space rather than ``=`` or ``:``: a Dockerfile's
# ``ENV NAME value`` (the rest of the line, its legacy form), a command-line flag's ``--password
# value``, and prose's ``the password is value``.
_DOCKER_ENV = re.compile(r"[ \t]*ENV[ \t]+[\w.\-]*$")
_SPACED_VALUE = re.compile(
    r"""[ \t]+(?P<verb>(?:is|was)[ \t]+)?(?:(?P<quote>["'`])(?P<quoted>[^\n"'`]{1,512})(?P=quote)|(?P<bare>[^\s'"`]{1,512}))"""
)
# A value set off by white space that holds an assignment of its own (base64's closing ``=`` aside).
_ASSIGNMENT_INSIDE = re.compile(r"[=:](?!=*$)")
_DOCKER_VALUE = re.compile(r"[ \t]+(?P<value>[^\n]{1,512}?)[ \t]*(?:\\)?$", re.MULTILINE)
# A mapping that names a setting and gives its value in two fields, as Kubernetes and Compose
# ``env`` lists, ECS task definitions and CloudFormation parameters do (``- name: DB_PASSWORD``
# then ``value: ...``; ``{"name": "API_KEY", "value": "..."}``; ``ParameterKey``/``ParameterValue``).
_PAIR_KEY_BEFORE = re.compile(r"""(?i)(?:name|key|parameterkey|parametername)["']?[ \t]*[:=][ \t]*["']?$""")
_PAIR_VALUE = re.compile(
    r"""(?i)["']?\b(?:value|parametervalue)["']?[ \t]*[:=][ \t]*"""
    r"""(?:(?P<quote>["'])(?P<quoted>[^\n]{1,512}?)(?P=quote)|(?P<bare>[^\s'",}\]()]{1,512}+)(?![(\[]))"""
)
# A YAML key with a block scalar (``key: >-`` or ``key: |``) and its more-indented lines.
_BLOCK_SCALAR = re.compile(
    r"^(?P<indent>[ \t]*)(?:-[ \t]+)?[\"']?(?P<name>[\w.\-]+)[\"']?[ \t]*:[ \t]*[>|][-+0-9]*[ \t]*(?:#[^\n]*)?\r?\n"
    r"(?P<body>(?:(?P=indent)[ \t]+[^\n]*(?:\n|$)|[ \t]*\r?\n)+)",
    re.MULTILINE,
)
# After a quoted name: its closing quote, a comma, a quoted value (an argument pair), not a key.
_QUOTED_PAIR_REST = re.compile(r"""["'][ \t]*,[ \t]*(?P<q>["'])(?P<value>[^"'\n]{1,512})(?P=q)(?![ \t]*:)""")
# The fields of one such mapping lie close together: the value is looked for this far after the
# name (characters), and not past the end of the mapping (``}``) or the next list item.
_PAIR_REACH = 256
_PAIR_END = re.compile(r"[}{]|\n[ \t]*-[ \t]")
# Shortest value of a configuration setting that is masked whole: shorter ones are flags and units.
_MIN_SETTING = 4
# One ``key=value;`` field of a connection string (ADO.NET, ODBC, JDBC properties).
_CONNECTION_FIELD = re.compile(r"[A-Za-z][\w ]*=[^;=\n]*;")
# The last words of a password's name (a setting of configuration is judged as one by these only).
_PASSWORD_WORDS = ("pass", "password", "passwd", "pwd", "passphrase", "secret")
# A name in code, with an underscore (``XXH3_kSecret``, ``_insecure_credentials``): not a value.
_CODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]*")
# What a bare value set off by white space may be: a run of token characters starting with a
# letter or digit (not ``(64-byte``, ``\u2013value``, ``XXH_NAME2(X,``).
_BARE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9!@#$%^&*+=~.\-/]*")
# Shortest bare value said to be a credential (``the password is hunter2``).
_MIN_STATED = 6


def _is_setting_value(value: str) -> bool:
    """Whether the value a configuration names a credential with is one (`_spaced_spans`, `_pair_spans`).

    As the keyword plugin reads configuration files: any value, letters only included
    (``changeme``), of at least `_MIN_SETTING` characters, but none that only names one
    (`_NO_VALUES`, a template or an environment reference, an environment variable's name,
    a placeholder this module wrote).
    """
    return not (
        len(value) < _MIN_SETTING
        or value.lower() in _NO_VALUES
        or heuristic.is_templated_secret(value)
        or heuristic.is_prefixed_with_dollar_sign(value)
        or (value.startswith("<") and value.endswith(">"))
        or _NAME_VALUE.fullmatch(value)
        or PLACEHOLDER_PATTERN.fullmatch(value)
    )


def _is_stated(value: str) -> bool:
    """Whether a bare value said to be a credential (``the password is hunter2``) is one.

    Letters and digits both (``hunter2``, ``Passw0rd!``), at least `_MIN_STATED` characters,
    and nothing that only names one (`_is_setting_value`) or is a variable (``_name``,
    ``snake_case``). Letters only (``the password is required``) is a word.
    """
    return (
        len(value) >= _MIN_STATED
        and any(c.isalpha() for c in value)
        and any(c.isdigit() for c in value)
        and _is_setting_value(value)
        and not value.startswith("_")  # Python's "credentials is _insecure_credentials"
        and not _VARIABLE.fullmatch(value)
    )


def _spaced_spans(text: str, lines: _Lines) -> Iterator[tuple[str, int, int]]:
    """A credential name's value set off by white space (`_SPACED_VALUE`).

    A Dockerfile ``ENV DB_PASSWORD value`` line (Docker's legacy form: the value is the rest
    of the line; `_is_setting_value`). Elsewhere (a flag ``--password value``, prose ``the
    password is value``, ``log in with password value``, SQL's ``PASSWORD 'value'``, a
    directive ``requirepass value``), what follows is judged by how it is written: a quoted
    or back-quoted value as a setting (`_is_setting_value`, no white space in it); a bare one
    after ``is`` or ``was`` as a stated credential (`_is_stated`), and otherwise only as a
    literal (`_is_literal`), so ``--token TOKEN``, ``the token is valid`` and ``pass
    readings on`` stay.
    """
    for name_end in lines.name_ends:
        start, line = lines.line_at(name_end)
        before = line[: name_end - start]
        if _DOCKER_ENV.match(before):
            docker = _DOCKER_VALUE.match(text, name_end)
            if docker is not None:
                value_start, value_end = docker.span("value")
                value = docker.group("value")
                if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'":
                    value_start, value_end, value = value_start + 1, value_end - 1, value[1:-1]
                if _is_setting_value(value):
                    yield _KEYWORD.secret_type, value_start, value_end
            continue
        match = _SPACED_VALUE.match(text, name_end)
        if match is None:
            continue
        group = "quoted" if match.group("quoted") is not None else "bare"
        value_start, value_end = match.span(group)
        value = match.group(group)
        if group == "bare":
            stripped = value.rstrip(".,;:)")
            value_end -= len(value) - len(stripped)
            value = stripped
        if _ASSIGNMENT_INSIDE.search(value):
            continue  # ``password is ``password=...````: the assignment inside is found on its own
        if group == "quoted":
            accepted = _is_setting_value(value) and not any(c.isspace() for c in value)
        elif not _BARE_TOKEN.fullmatch(value):
            accepted = False
        elif match.group("verb") is not None:
            accepted = _is_stated(value)
        elif _CODE_NAME.fullmatch(value):
            accepted = False  # "#define kSecret XXH3_kSecret": a name after a name
        else:
            accepted = _is_literal(value)
        if accepted:
            yield _KEYWORD.secret_type, value_start, value_end


def _pair_spans(text: str, lines: _Lines) -> Iterator[tuple[str, int, int]]:
    """The value of a name/value mapping whose name is a credential's (`_PAIR_KEY_BEFORE`, `_PAIR_VALUE`).

    ``- name: DB_PASSWORD`` then ``value: changeme`` in a Kubernetes or Compose ``env`` list,
    ``{"name": "API_KEY", "value": "..."}`` in an ECS task definition, CloudFormation's
    ``ParameterKey``/``ParameterValue``: the value, within `_PAIR_REACH` characters and the
    same mapping, is masked when `_is_setting_value` accepts it. So is a quoted value right
    after a quoted credential name and a comma (`_QUOTED_PAIR_REST`: PHP's ``define('DB_PASSWORD',
    '...')``, ``os.environ.setdefault("API_KEY", "...")``), when it is a literal (`_is_literal`:
    a list of names, ``("token", "position")``, is not).
    """
    has_value = "value" in lines.lowered
    for name_end in lines.name_ends:
        name_start = name_end
        while name_start and (text[name_start - 1].isalnum() or text[name_start - 1] in "_.-"):
            name_start -= 1
        if name_end - name_start < 2 or (name_end < len(text) and text[name_end] not in "\"' \t\r\n,}"):
            continue  # the keyword does not end the name here
        paired = _QUOTED_PAIR_REST.match(text, name_end)
        if paired is not None and name_start and text[name_start - 1] == text[name_end]:
            if _is_literal(paired.group("value")):
                yield _KEYWORD.secret_type, *paired.span("value")
            continue
        if not has_value or not _PAIR_KEY_BEFORE.search(text, max(0, name_start - 40), name_start):
            continue
        reach = text[name_end : name_end + _PAIR_REACH]
        stop = _PAIR_END.search(reach)
        window_end = name_end + (stop.start() if stop else len(reach))
        valued = _PAIR_VALUE.search(text, name_end, window_end)
        if valued is None:
            continue
        group = "quoted" if valued.group("quoted") is not None else "bare"
        if _is_setting_value(valued.group(group)):
            yield _KEYWORD.secret_type, *valued.span(group)


def _block_scalar_spans(text: str, lines: _Lines) -> Iterator[tuple[str, int, int]]:
    """The lines of a YAML block scalar (``password: >`` or ``|``, YAML 1.2 section 8.1) a
    credential's name introduces: each line's text, as a setting's value (`_is_setting_value`)."""
    if ">" not in text and "|" not in text:
        return
    for match in _BLOCK_SCALAR.finditer(text):
        name = match.group("name")
        if not any(end == len(name) for end in _credential_name_ends(name, _lower_in_place(name))):
            continue
        for line in re.finditer(r"[^\s][^\n]*?(?=[ \t]*(?:\r?\n|$))", match.group("body")):
            if _is_setting_value(line.group(0)):
                yield (
                    _KEYWORD.secret_type,
                    match.start("body") + line.start(),
                    match.start("body") + line.end(),
                )


def _credential_file_spans(text: str, filename: str | None) -> Iterator[tuple[str, int, int]]:
    """Passwords of ``.netrc`` and ``.pgpass`` files, which detect-secrets does not read.

    In a file of that name, every value; in any other text, only a line of the file's whole
    shape (``machine HOST ... password X`` on one line; ``HOST:PORT:DB:USER:X`` with a
    numeric port).
    """
    name = (filename or "").lower()
    if name in _NETRC_NAMES:
        for match in _NETRC_PASSWORD.finditer(text):
            yield _KEYWORD.secret_type, *match.span(1)
    elif "machine" in text:
        for match in _NETRC_LINE.finditer(text):
            yield _KEYWORD.secret_type, *match.span(1)
    if name in _PGPASS_NAMES:
        for match in _PGPASS_ANY.finditer(text):
            yield _KEYWORD.secret_type, *match.span(1)
    elif _PGPASS_PORT.search(text):
        for match in _PGPASS_SHAPE.finditer(text):
            yield _KEYWORD.secret_type, *match.span(1)


def _token_spans(text: str) -> Iterator[tuple[str, int, int]]:
    """Values of the token formats detect-secrets' plugins do not know (`_TOKEN_FORMATS`)."""
    for kind, pattern, group, hints in _TOKEN_FORMATS:
        if not any(hint in text for hint in hints):
            continue
        for match in pattern.finditer(text):
            if match.start() and text[match.start()].isalnum() and text[match.start() - 1].isalnum():
                continue  # inside a longer word: "Bearer" of "NoBearer", "hf_" of "buf_"
            # Group -1: whichever alternative matched.
            chosen = group if group >= 0 else next(i for i in range(1, pattern.groups + 1) if match.group(i))
            start, end = match.span(chosen)
            value = text[start:end]
            if (
                pattern is _CURL_USER
                and match.start()
                and (text[match.start() - 1].isalnum() or text[match.start() - 1] in "_-")
            ):
                continue  # "-u" inside a word or a longer flag (re-use, --user-agent's tail)
            if pattern is _SQL_IDENTIFIED and not _SQL_USER_STATEMENT.search(
                text, text.rfind("\n", 0, match.start()) + 1, match.start()
            ):
                continue  # "the object identified by name": prose, not SQL
            if kind == "Private Key" and not _encodes_private_key(value):
                continue  # a certificate or a public key, encoded the same way
            if kind == "Basic Auth Credentials" and (not _is_setting_value(value) or value.isupper()):
                continue  # gist://:TOKEN@id: a placeholder in documentation
            if match.group(0).startswith("Bearer") and not (
                any(c.isalpha() for c in value) and any(c.isdigit() for c in value)
            ):
                continue  # "Bearer authentication_scheme": prose, not a token
            yield kind, start, end


def _encodes_private_key(value: str) -> bool:
    # The first line decoded: "-----BEGIN ... PRIVATE KEY-----".
    head = value[: 64 - 64 % 4]
    try:
        return _PEM_PRIVATE in base64.b64decode(head + "=" * (-len(head) % 4))
    except (binascii.Error, ValueError):
        return False


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
        *_assignment_spans(text, lines, filename),
        *_spaced_spans(text, lines),
        *_pair_spans(text, lines),
        *_block_scalar_spans(text, lines),
        *_credential_file_spans(text, filename),
        *_token_spans(text),
    ]
    if not spans:
        return []
    # Only a whole placeholder (or a part of one) is no secret: a value that merely starts or
    # ends with a placeholder-shaped string (``[secret:x:12345678]RealPw...``) is masked whole.
    placeholders = [match.span() for match in _WRITTEN_PLACEHOLDER.finditer(text)]
    spans = [
        span
        for span in spans
        if span[1] < span[2] and not any(start <= span[1] and span[2] <= end for start, end in placeholders)
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
        ``text`` where each `find_secrets` finding reads ``[secret:<kind>]``
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
