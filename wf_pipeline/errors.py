"""One error hierarchy with stable codes, and the catalogue of every code.

Every error the product raises on purpose is a `WfError` carrying a stable `code`
(e.g. ``PROFILE_DUPLICATE_SEQ``). Callers and tests branch on the code, never on
message text. Domain subclasses exist so an ``except`` can be narrow; the code is
what identifies the failure.

The catalogue below names every code once: the class that raises it, whether a
turn attempt that failed with it is worth repeating (``retryable``), and what it
means. Each code is a module-level constant (an `ErrorCode`, a ``str`` equal to its
name), so ``raise ProviderError(PROVIDER_TIMEOUT, ...)`` and ``exc.code ==
"PROVIDER_TIMEOUT"`` both hold, and JSON output shows the plain name.
``tests/test_errors_catalogue.py`` scans the package source and fails when a raised
code is missing here or is raised by another class than the one catalogued.

Gate reason codes (``CLAIM_QUOTE_NOT_FOUND``...) and the turn outcomes
``GATE_FAILED`` and ``RUN_CHILDREN_PENDING`` are verdicts recorded on a turn, not
errors raised, so they are not in this catalogue.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class WfError(Exception):
    """Base of every deliberate wf_pipeline failure.

    Args:
        code: a stable code, one of the catalogue's constants (or its string name).
        message: a human sentence with the figures that explain the failure (sizes in
            bytes, times in ms, limits); never prompt text, context payload or model
            output.
        retryable: accepted for callers that state it; for a catalogued code it must
            agree with the catalogue (a disagreement raises ``ValueError``, a programming
            error). For a code missing from the catalogue it is the only source and
            defaults to False.
        **details: machine-readable figures (ids, sizes, limits) shown by ``to_dict``.

    ``str(exc)`` is ``"CODE: message"``, the form the CLI prints.
    """

    def __init__(self, code: str, message: str, *, retryable: bool | None = None, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        entry = CATALOGUE.get(code)
        if entry is not None and retryable is not None and retryable != entry.retryable:
            raise ValueError(f"{code} is catalogued with retryable={entry.retryable}, not {retryable}")
        # A plain str: records, JSON and pickles carry the name, not the catalogue object.
        self.code = str(code)
        self.message = message
        self.details = details
        self.retryable: bool = entry.retryable if entry is not None else bool(retryable)

    @property
    def entry(self) -> ErrorCode | None:
        """The catalogue entry of this error's code, or None for an uncatalogued code."""
        return CATALOGUE.get(self.code)

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "message", "details"?}``, the shape of the CLI's JSON error output."""
        return {
            "code": self.code,
            "message": self.message,
            **({"details": self.details} if self.details else {}),
        }


class ConfigError(WfError):
    """Bad settings or environment."""


class TreeError(WfError):
    """Workspace scanning and node identity."""


class CasError(WfError):
    """Content-addressed storage."""


class ProfileError(WfError):
    """Loading, validating or rendering workflow profiles."""


class MetadataError(WfError):
    """Record schemas, the frame-metadata boundary and budgets."""


class RecordError(WfError):
    """The durable record store."""


class ProviderError(WfError):
    """Model providers."""


class GateError(WfError):
    """Gate registry and evaluation (a failing gate is an outcome, not this error)."""


class RunError(WfError):
    """Executing turns, threads and runs."""


class RetentionError(WfError):
    """Retention policy, holds, planning and applying deletions."""


class TelemetryError(WfError):
    """Telemetry rows, their Parquet store and the DuckDB views over it."""


class GovernanceError(WfError):
    """Feature specs under ``docs/specs`` and the verification gates (tests, benchmarks) they name."""


class KeysError(WfError):
    """The keyring: master key, key-encryption keys (KEKs), data keys and their lifecycle."""


class SecurityError(WfError):
    """Identities, grants, privileged reads, the audit trail, redaction and log-sink filters."""


class ErrorCode(str):
    """One catalogue entry: a ``str`` equal to the code's name, with its facts as attributes.

    Attributes:
        error_class: the `WfError` subclass that raises this code.
        retryable: True when a turn attempt that failed with this code may succeed if
            repeated unchanged (the turn's retry loop repeats only these).
        meaning: what the code says went wrong, for readers of logs and records.
    """

    error_class: type[WfError]
    retryable: bool
    meaning: str

    def __new__(cls, name: str, error_class: type[WfError], retryable: bool, meaning: str) -> ErrorCode:
        code = super().__new__(cls, name)
        code.error_class = error_class
        code.retryable = retryable
        code.meaning = meaning
        return code

    def __repr__(self) -> str:
        return f"ErrorCode({str(self)!r})"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Unpickles to the catalogue's own entry.
        return (lookup, (str(self),))


_CATALOGUE: dict[str, ErrorCode] = {}
#: Every code by name, read-only.
CATALOGUE: Mapping[str, ErrorCode] = MappingProxyType(_CATALOGUE)


def _code(name: str, error_class: type[WfError], *, retryable: bool = False, meaning: str) -> ErrorCode:
    if name in _CATALOGUE:
        raise ValueError(f"error code {name} is catalogued twice")
    code = ErrorCode(name, error_class, retryable, meaning)
    _CATALOGUE[name] = code
    return code


def lookup(name: str) -> ErrorCode:
    """The catalogue entry named ``name``; ``KeyError`` when no such code is catalogued."""
    return _CATALOGUE[name]


# --- configuration -------------------------------------------------------------------------
CONFIG_BAD_EXECUTOR = _code("CONFIG_BAD_EXECUTOR", ConfigError, meaning="WF_EXECUTOR names no known executor")
CONFIG_BAD_EXECUTOR_CONFIG = _code(
    "CONFIG_BAD_EXECUTOR_CONFIG",
    ConfigError,
    meaning="the executor config cannot be read, is not an execution: config: mapping, does not fit the "
    "executor's config schema, or is given to the in-process executor (which takes none)",
)
CONFIG_BAD_NUMBER = _code(
    "CONFIG_BAD_NUMBER", ConfigError, meaning="a numeric WF_* setting is not a positive whole number"
)
CONFIG_EXECUTOR_UNAVAILABLE = _code(
    "CONFIG_EXECUTOR_UNAVAILABLE",
    ConfigError,
    meaning="the chosen executor needs a package that is not installed",
)
CONFIG_STORE_NOT_SHARED = _code(
    "CONFIG_STORE_NOT_SHARED",
    ConfigError,
    meaning="a store lives in one process's memory, which the steps of an out-of-process executor cannot reach",
)
CONFIG_INSTANCE_ENV_MISSING = _code(
    "CONFIG_INSTANCE_ENV_MISSING",
    ConfigError,
    meaning="the Dagster instance's dagster.yaml reads an environment variable that is not set",
)
CONFIG_INSTANCE_REFUSED = _code(
    "CONFIG_INSTANCE_REFUSED",
    ConfigError,
    meaning="the Dagster instance's PostgreSQL server refused the login or the database",
)
CONFIG_INSTANCE_UNREACHABLE = _code(
    "CONFIG_INSTANCE_UNREACHABLE",
    ConfigError,
    meaning="the Dagster instance's PostgreSQL server cannot be reached",
)
CONFIG_UI_UNAVAILABLE = _code(
    "CONFIG_UI_UNAVAILABLE",
    ConfigError,
    meaning="the dg command that serves the Dagster UI (dagster-dg-cli) is not installed",
)
CONFIG_PROVIDER_MISSING = _code(
    "CONFIG_PROVIDER_MISSING", ConfigError, meaning="no provider is configured for the runtime"
)
CONFIG_BAD_VALUE = _code(
    "CONFIG_BAD_VALUE", ConfigError, meaning="a WF_* setting has a value of the wrong kind (pydantic's check)"
)

# --- workspace tree ------------------------------------------------------------------------
TREE_CHANGED_DURING_RUN = _code(
    "TREE_CHANGED_DURING_RUN",
    TreeError,
    meaning="a file of the scanned tree changed or vanished before its context was read",
)
TREE_EXTRACTOR_DUPLICATE = _code(
    "TREE_EXTRACTOR_DUPLICATE", TreeError, meaning="two context extractors are registered for one frame type"
)
TREE_IGNORE_PATTERN_INVALID = _code(
    "TREE_IGNORE_PATTERN_INVALID", TreeError, meaning="an ignore pattern is not valid gitignore syntax"
)
TREE_INVALID_OPTION = _code("TREE_INVALID_OPTION", TreeError, meaning="a scan option is out of range")
TREE_NODE_NOT_FOUND = _code("TREE_NODE_NOT_FOUND", TreeError, meaning="no node at that path in the scan")
TREE_NOT_A_DIRECTORY = _code("TREE_NOT_A_DIRECTORY", TreeError, meaning="the path is not a directory")
TREE_PATH_MISSING = _code("TREE_PATH_MISSING", TreeError, meaning="the path to scan does not exist")
TREE_UNREADABLE = _code("TREE_UNREADABLE", TreeError, meaning="the scan root cannot be read or listed")
# Scan warnings: the scan skips the entry (an unreadable file is kept without text) and goes
# on; each is a TreeError value in `TreeScan.warnings`, never raised.
TREE_BROKEN_SYMLINK = _code("TREE_BROKEN_SYMLINK", TreeError, meaning="a symlink's target does not exist")
TREE_BUILD_OUTPUT_SKIPPED = _code(
    "TREE_BUILD_OUTPUT_SKIPPED",
    TreeError,
    meaning="a directory named build or dist that is not a Python package is skipped as build output",
)
TREE_LINK_OUTSIDE_ROOT = _code(
    "TREE_LINK_OUTSIDE_ROOT",
    TreeError,
    meaning="a symlink resolves outside the tree root and is not followed (opt in: --follow-external-links)",
)
TREE_NON_UTF8_NAME = _code("TREE_NON_UTF8_NAME", TreeError, meaning="a file or directory name is not UTF-8")
TREE_SPECIAL_FILE = _code(
    "TREE_SPECIAL_FILE",
    TreeError,
    meaning="an entry is neither a regular file nor a directory (fifo, socket...)",
)
TREE_SYMLINK_LOOP = _code(
    "TREE_SYMLINK_LOOP", TreeError, meaning="a symlink chain loops, or a directory link points at an ancestor"
)
TREE_UNREADABLE_DIR = _code(
    "TREE_UNREADABLE_DIR", TreeError, meaning="a directory of the tree cannot be listed"
)
TREE_UNREADABLE_FILE = _code(
    "TREE_UNREADABLE_FILE", TreeError, meaning="a file of the tree cannot be read or inspected"
)

# --- content-addressed storage -------------------------------------------------------------
CAS_ARTIFACT_EXPIRED = _code(
    "CAS_ARTIFACT_EXPIRED",
    CasError,
    meaning="the artifact was deleted by retention; its tombstone says when, under which policy and why",
)
CAS_BACKEND_ERROR = _code(
    "CAS_BACKEND_ERROR", CasError, meaning="the storage backend failed to read or write an object"
)
CAS_DECRYPT_FAILED = _code(
    "CAS_DECRYPT_FAILED",
    CasError,
    meaning="an encrypted artifact's data key or payload does not authenticate under its artifact id, class "
    "and KEK id (a swapped, moved or tampered ciphertext); nothing is returned",
)
CAS_DECODE_ERROR = _code("CAS_DECODE_ERROR", CasError, meaning="an artifact read as text is not UTF-8")
CAS_DIGEST_MISMATCH = _code(
    "CAS_DIGEST_MISMATCH", CasError, meaning="stored bytes no longer hash to their artifact id (corruption)"
)
CAS_INVALID_ID = _code("CAS_INVALID_ID", CasError, meaning="not an artifact id of the form sha256:<hex>")
CAS_INVALID_JSON = _code("CAS_INVALID_JSON", CasError, meaning="an artifact read as JSON is not JSON")
CAS_INVALID_REF = _code("CAS_INVALID_REF", CasError, meaning="a ref name has characters refs may not use")
CAS_INVALID_URL = _code("CAS_INVALID_URL", CasError, meaning="the CAS URL names no usable storage")
CAS_KEY_DESTROYED = _code(
    "CAS_KEY_DESTROYED",
    CasError,
    meaning="the artifact's KEK was destroyed (crypto-shredded); its payload is unreadable for good, its records stay",
)
CAS_NOT_ENCRYPTED = _code(
    "CAS_NOT_ENCRYPTED",
    CasError,
    meaning="an artifact of a class whose policy requires encryption is stored in plaintext or under a key "
    "this keyring does not hold; it is refused, never returned",
)
CAS_NOT_FOUND = _code("CAS_NOT_FOUND", CasError, meaning="no artifact with that id is stored")
CAS_REF_CORRUPT = _code("CAS_REF_CORRUPT", CasError, meaning="a ref does not hold an artifact id")
CAS_REF_NOT_FOUND = _code("CAS_REF_NOT_FOUND", CasError, meaning="no ref with that name is stored")

# --- profiles ------------------------------------------------------------------------------
PROFILE_DUPLICATE_GATE_ID = _code(
    "PROFILE_DUPLICATE_GATE_ID", ProfileError, meaning="two gates of one profile share a gate_id"
)
PROFILE_DUPLICATE_OUTPUT_TYPE = _code(
    "PROFILE_DUPLICATE_OUTPUT_TYPE", ProfileError, meaning="two turns of one profile share an output_type"
)
PROFILE_DUPLICATE_SEQ = _code(
    "PROFILE_DUPLICATE_SEQ", ProfileError, meaning="two turns of one profile share a seq"
)
PROFILE_DUPLICATE_TURN_ID = _code(
    "PROFILE_DUPLICATE_TURN_ID", ProfileError, meaning="two turns of one profile share a turn_id"
)
PROFILE_DUPLICATE_WORKFLOW_ID = _code(
    "PROFILE_DUPLICATE_WORKFLOW_ID", ProfileError, meaning="one layer defines a workflow_id twice"
)
PROFILE_NOT_FOUND = _code("PROFILE_NOT_FOUND", ProfileError, meaning="no layer defines that workflow_id")
# --- chained workflows and agents (wf_pipeline/profiles/activations.py, wf_pipeline/agents/) ---------
PROFILE_ACTIVATION_UNKNOWN_WORKFLOW = _code(
    "PROFILE_ACTIVATION_UNKNOWN_WORKFLOW",
    ProfileError,
    meaning="a profile's activates: names a workflow no loaded profile defines",
)
PROFILE_ACTIVATION_UNKNOWN_CONDITION = _code(
    "PROFILE_ACTIVATION_UNKNOWN_CONDITION",
    ProfileError,
    meaning="a profile's activates: gives a when: condition that is not one of the supported conditions",
)
PROFILE_ACTIVATION_BAD_TARGET = _code(
    "PROFILE_ACTIVATION_BAD_TARGET",
    ProfileError,
    meaning="a profile's activates: gives a target other than root",
)
PROFILE_ACTIVATION_DUPLICATE = _code(
    "PROFILE_ACTIVATION_DUPLICATE",
    ProfileError,
    meaning="a profile's activates: names one target workflow twice",
)
PROFILE_ACTIVATION_CYCLE = _code(
    "PROFILE_ACTIVATION_CYCLE",
    ProfileError,
    meaning="the activation graph of the loaded profiles has a cycle (a workflow would start itself again)",
)
AGENT_PARSE_ERROR = _code(
    "AGENT_PARSE_ERROR", ProfileError, meaning="an agent file cannot be read or is not valid YAML"
)
AGENT_SCHEMA_INVALID = _code(
    "AGENT_SCHEMA_INVALID", ProfileError, meaning="an agent file does not match the agent schema"
)
AGENT_DUPLICATE_ID = _code(
    "AGENT_DUPLICATE_ID", ProfileError, meaning="two agent files of one layer declare the same agent id"
)
AGENT_UNKNOWN_WORKFLOW = _code(
    "AGENT_UNKNOWN_WORKFLOW", ProfileError, meaning="an agent binds a workflow no loaded profile defines"
)
AGENT_NO_DEFAULT = _code(
    "AGENT_NO_DEFAULT",
    ProfileError,
    meaning="an agent has no binding marked default: true, or more than one",
)
AGENT_AMBIGUOUS_SELECTION = _code(
    "AGENT_AMBIGUOUS_SELECTION",
    ProfileError,
    meaning="two bindings of an agent have equal priority and can match the same target",
)
AGENT_BAD_GLOB = _code(
    "AGENT_BAD_GLOB",
    ProfileError,
    meaning="a binding's glob is empty, absolute, holds a path separator or an unbalanced bracket",
)
AGENT_UNKNOWN_PROVIDER = _code(
    "AGENT_UNKNOWN_PROVIDER",
    ProfileError,
    meaning="an agent names a provider no provider is registered under",
)
AGENT_NOT_FOUND = _code("AGENT_NOT_FOUND", ProfileError, meaning="no layer declares that agent id")
PROFILE_PARSE_ERROR = _code(
    "PROFILE_PARSE_ERROR", ProfileError, meaning="a profile file cannot be read or is not valid YAML"
)
PROFILE_ENCRYPTION_INVALID = _code(
    "PROFILE_ENCRYPTION_INVALID",
    ProfileError,
    meaning="a profile's encryption block names an unknown preset, class or level",
)
PROFILE_REDACTION_INVALID = _code(
    "PROFILE_REDACTION_INVALID",
    ProfileError,
    meaning="a profile's redaction block names an unknown preset or key, or opts out what it may not",
)
PROFILE_RETENTION_INVALID = _code(
    "PROFILE_RETENTION_INVALID",
    ProfileError,
    meaning="a profile's retention block names an unknown preset or artifact class, or a bad duration",
)
PROFILE_SCHEMA_INVALID = _code(
    "PROFILE_SCHEMA_INVALID", ProfileError, meaning="a profile does not match the profile schema"
)
PROFILE_TEMPLATE_LIMIT = _code(
    "PROFILE_TEMPLATE_LIMIT",
    ProfileError,
    meaning="rendering a prompt template went over its bound in output bytes, value size or time",
)
PROFILE_TEMPLATE_RENDER_FAILED = _code(
    "PROFILE_TEMPLATE_RENDER_FAILED", ProfileError, meaning="a prompt template failed while rendering"
)
PROFILE_TEMPLATE_SECURITY = _code(
    "PROFILE_TEMPLATE_SECURITY",
    ProfileError,
    meaning="a prompt template tried an operation the sandbox forbids",
)
PROFILE_TEMPLATE_SYNTAX = _code(
    "PROFILE_TEMPLATE_SYNTAX", ProfileError, meaning="a prompt template is not valid Jinja syntax"
)
PROFILE_TEMPLATE_UNDEFINED = _code(
    "PROFILE_TEMPLATE_UNDEFINED",
    ProfileError,
    meaning="a prompt template uses a variable the turn does not have",
)
PROFILE_UNDECLARED_GATE = _code(
    "PROFILE_UNDECLARED_GATE", ProfileError, meaning="a turn names a gate the profile does not declare"
)
PROFILE_UNKNOWN_FINAL_ARTIFACT_TYPE = _code(
    "PROFILE_UNKNOWN_FINAL_ARTIFACT_TYPE",
    ProfileError,
    meaning="final_artifact_type names an output no turn produces",
)
PROFILE_GATE_RULE_UNKNOWN = _code(
    "PROFILE_GATE_RULE_UNKNOWN",
    ProfileError,
    meaning="a gate's rules name a rule its gate type does not declare",
)
PROFILE_GATE_RULE_TYPE = _code(
    "PROFILE_GATE_RULE_TYPE",
    ProfileError,
    meaning="a gate rule's value has the wrong type, or a required rule is missing",
)
PROFILE_GATE_RULE_RANGE = _code(
    "PROFILE_GATE_RULE_RANGE",
    ProfileError,
    meaning="a gate rule's value is outside the bounds its gate type declares",
)
PROFILE_UNKNOWN_GATE_TYPE = _code(
    "PROFILE_UNKNOWN_GATE_TYPE", ProfileError, meaning="a gate's gate_type is not registered"
)
PROFILE_UNKNOWN_TURN = _code("PROFILE_UNKNOWN_TURN", ProfileError, meaning="the profile has no such turn")
PROFILE_UNRESOLVED_INPUT_REF = _code(
    "PROFILE_UNRESOLVED_INPUT_REF", ProfileError, meaning="a turn's input_ref is produced by no earlier turn"
)
PROFILE_UNRESOLVED_PROMPT_REF = _code(
    "PROFILE_UNRESOLVED_PROMPT_REF", ProfileError, meaning="a turn's prompt_ref names no readable file"
)
PROFILE_ARTIFACT_POLICY_CONFLICT = _code(
    "PROFILE_ARTIFACT_POLICY_CONFLICT",
    ProfileError,
    meaning="artifact_policy turns off storing an artifact that a later turn, the final output or reuse reads",
)
PROFILE_BUDGET_TOO_SMALL = _code(
    "PROFILE_BUDGET_TOO_SMALL",
    ProfileError,
    meaning="a turn's worst-case prompt (context budget, upstream max_output_bytes, template) is over "
    "artifact_policy.max_prompt_bytes, or max_prompt_bytes is over max_context_tokens",
)
PROFILE_DEDUPE_KEY_INCOMPLETE = _code(
    "PROFILE_DEDUPE_KEY_INCOMPLETE",
    ProfileError,
    meaning="thread_policy.dedupe_key_fields leaves out workflow_id or target_node_id",
)
PROFILE_FAILURE_POLICY_CONFLICT = _code(
    "PROFILE_FAILURE_POLICY_CONFLICT",
    ProfileError,
    meaning="failure_policy.mode contradicts failure_policy.stop_on_gate_fail",
)
PROFILE_UNKNOWN_DEDUPE_FIELD = _code(
    "PROFILE_UNKNOWN_DEDUPE_FIELD",
    ProfileError,
    meaning="thread_policy.dedupe_key_fields names a field a thread key cannot hold",
)

# --- profile inheritance and composition (wf_pipeline/profiles/inheritance.py) -------------
PROFILE_INHERITANCE_CYCLE = _code(
    "PROFILE_INHERITANCE_CYCLE",
    ProfileError,
    meaning="a base extends itself, directly or through other bases (figure: the cycle)",
)
PROFILE_BASE_NOT_FOUND = _code(
    "PROFILE_BASE_NOT_FOUND", ProfileError, meaning="an extends entry names a base no layer holds"
)
PROFILE_FRAGMENT_NOT_FOUND = _code(
    "PROFILE_FRAGMENT_NOT_FOUND", ProfileError, meaning="an include entry names a fragment no layer holds"
)
PROFILE_EXTENDS_NON_BASE = _code(
    "PROFILE_EXTENDS_NON_BASE",
    ProfileError,
    meaning="an extends entry names a profile or a fragment, not a base",
)
PROFILE_BASE_INVALID = _code(
    "PROFILE_BASE_INVALID",
    ProfileError,
    meaning="a base file cannot be read, is not a YAML mapping, or holds a key a base may not hold",
)
PROFILE_FRAGMENT_INVALID = _code(
    "PROFILE_FRAGMENT_INVALID",
    ProfileError,
    meaning="a fragment file cannot be read, is not a YAML mapping, or holds anything but turns and gates",
)
PROFILE_TURN_ID_CONFLICT = _code(
    "PROFILE_TURN_ID_CONFLICT",
    ProfileError,
    meaning="two sources of one resolved profile (bases, fragments, the profile) define one turn_id differently",
)
PROFILE_GATE_ID_CONFLICT = _code(
    "PROFILE_GATE_ID_CONFLICT",
    ProfileError,
    meaning="two sources of one resolved profile (bases, fragments, the profile) define one gate_id differently",
)
PROFILE_FAMILY_MISMATCH = _code(
    "PROFILE_FAMILY_MISMATCH",
    ProfileError,
    meaning="the bases of a profile belong to different families, or the profile names a family none of its "
    "bases belongs to",
)

# --- metadata, budgets and payload schemas -------------------------------------------------
METADATA_BUDGET_EXCEEDED = _code(
    "METADATA_BUDGET_EXCEEDED",
    MetadataError,
    meaning="a metadata value, a frame or a prompt/context artifact is over its byte budget",
)
METADATA_BAD_DURATION = _code(
    "METADATA_BAD_DURATION",
    MetadataError,
    meaning="a duration is not a positive number with a unit (ms, s, m, h, d, w) or 'forever'",
)
METADATA_DUPLICATE_KEY = _code(
    "METADATA_DUPLICATE_KEY", MetadataError, meaning="a key registry declares one key twice"
)
METADATA_EPHEMERAL_KEY = _code(
    "METADATA_EPHEMERAL_KEY", MetadataError, meaning="an ephemeral key was offered for persisted metadata"
)
METADATA_INVALID_BUDGET = _code(
    "METADATA_INVALID_BUDGET", MetadataError, meaning="a budget is not a positive number of bytes"
)
METADATA_INVALID_DESCRIPTOR = _code(
    "METADATA_INVALID_DESCRIPTOR", MetadataError, meaning="a key descriptor is inconsistent"
)
METADATA_INVALID_VALUE = _code(
    "METADATA_INVALID_VALUE", MetadataError, meaning="a metadata value does not match its key's schema type"
)
METADATA_KEY_IMMUTABLE = _code(
    "METADATA_KEY_IMMUTABLE",
    MetadataError,
    meaning="a key that is not of the annotation class was offered as a change to a written frame",
)
METADATA_KEY_NOT_OWNED = _code(
    "METADATA_KEY_NOT_OWNED",
    MetadataError,
    meaning="a domain wrote a metadata key that another domain owns; nothing was written",
)
METADATA_REGISTRY_INVALID = _code(
    "METADATA_REGISTRY_INVALID",
    MetadataError,
    meaning="the key registry file is unreadable, not YAML, or not a version and a list of keys",
)
METADATA_TARGET_NOT_FOUND = _code(
    "METADATA_TARGET_NOT_FOUND",
    MetadataError,
    meaning="no frame and no node with a head frame has that id",
)
METADATA_RAW_TEXT_REJECTED = _code(
    "METADATA_RAW_TEXT_REJECTED",
    MetadataError,
    meaning="a metadata value looks like raw prompt or context text",
)
METADATA_UNKNOWN_ARTIFACT_ROLE = _code(
    "METADATA_UNKNOWN_ARTIFACT_ROLE", MetadataError, meaning="no artifact budget exists for that role"
)
METADATA_UNKNOWN_KEY = _code(
    "METADATA_UNKNOWN_KEY", MetadataError, meaning="a metadata key is not in the key registry"
)
OUTPUT_NOT_JSON = _code("OUTPUT_NOT_JSON", MetadataError, meaning="a structured output is not JSON")
OUTPUT_SCHEMA_VIOLATION = _code(
    "OUTPUT_SCHEMA_VIOLATION", MetadataError, meaning="a structured output does not match its payload schema"
)
METADATA_THREAD_KEY_INCOMPLETE = _code(
    "METADATA_THREAD_KEY_INCOMPLETE",
    MetadataError,
    meaning="a thread key lacks workflow_id or target_node_id",
)
METADATA_UNKNOWN_THREAD_KEY_FIELD = _code(
    "METADATA_UNKNOWN_THREAD_KEY_FIELD", MetadataError, meaning="a thread key names an unknown field"
)
OUTPUT_TYPE_DUPLICATE = _code(
    "OUTPUT_TYPE_DUPLICATE",
    MetadataError,
    meaning="two workflows register a payload model for one output type",
)

# --- record store --------------------------------------------------------------------------
RECORD_BAD_OPTION = _code(
    "RECORD_BAD_OPTION", RecordError, meaning="a record-store option (schema, table prefix) is invalid"
)
RECORD_BAD_URL = _code("RECORD_BAD_URL", RecordError, meaning="the records URL names no supported database")
RECORD_INTEGRITY = _code(
    "RECORD_INTEGRITY", RecordError, meaning="a write would contradict a record already stored"
)
RECORD_INVALID = _code("RECORD_INVALID", RecordError, meaning="a record fails its schema")
RECORD_SCHEMA_MISMATCH = _code(
    "RECORD_SCHEMA_MISMATCH", RecordError, meaning="the database holds another schema version than this code"
)
RECORD_UNAVAILABLE = _code("RECORD_UNAVAILABLE", RecordError, meaning="the record store cannot be reached")
RECORD_STORAGE_ERROR = _code(
    "RECORD_STORAGE_ERROR",
    RecordError,
    meaning="the database's storage failed: its disk is full (SQLite SQLITE_FULL, PostgreSQL 53100) "
    "or an I/O error occurred (SQLITE_IOERR, PostgreSQL 58030); the message gives the reason",
)

# --- providers -----------------------------------------------------------------------------
PROVIDER_BAD_RESPONSE = _code(
    "PROVIDER_BAD_RESPONSE",
    ProviderError,
    retryable=True,
    meaning="the provider answered 2xx with a body that holds no usable completion",
)
PROVIDER_CONFIG_INVALID = _code(
    "PROVIDER_CONFIG_INVALID", ProviderError, meaning="a provider option is missing or malformed"
)
PROVIDER_CONNECTION_ERROR = _code(
    "PROVIDER_CONNECTION_ERROR",
    ProviderError,
    retryable=True,
    meaning="the provider's endpoint could not be reached or dropped the connection",
)
PROVIDER_HTTP_ERROR = _code(
    "PROVIDER_HTTP_ERROR",
    ProviderError,
    meaning="the provider answered a non-2xx status other than 429 and 5xx (a refusal): repeating it gets the same",
)
PROVIDER_INPUT_INVALID = _code(
    "PROVIDER_INPUT_INVALID", ProviderError, meaning="a turn input the provider needs is not valid"
)
PROVIDER_INPUT_MISSING = _code(
    "PROVIDER_INPUT_MISSING", ProviderError, meaning="a turn input the provider needs is absent"
)
PROVIDER_MISSING_KEY = _code(
    "PROVIDER_MISSING_KEY", ProviderError, meaning="the provider requires an API key and none is set"
)
PROVIDER_OUTPUT_TRUNCATED = _code(
    "PROVIDER_OUTPUT_TRUNCATED",
    ProviderError,
    # Not retryable: the same prompt under the same max_tokens stops at the same limit again.
    meaning="the provider stopped the reply at its token limit (finish_reason length): raise max_tokens",
)
PROVIDER_RATE_LIMITED = _code(
    "PROVIDER_RATE_LIMITED",
    ProviderError,
    retryable=True,
    meaning="the provider answered 429 Too Many Requests (its Retry-After is honoured)",
)
PROVIDER_SERVER_ERROR = _code(
    "PROVIDER_SERVER_ERROR",
    ProviderError,
    retryable=True,
    meaning="the provider answered a 5xx status (a 503's Retry-After is honoured)",
)
PROVIDER_SIMULATED_FAILURE = _code(
    "PROVIDER_SIMULATED_FAILURE",
    ProviderError,
    retryable=True,
    meaning="the simulated provider's failure_rate failed this call",
)
PROVIDER_SIMULATED_TARGET_FAILURE = _code(
    "PROVIDER_SIMULATED_TARGET_FAILURE",
    ProviderError,
    meaning="the simulated provider fails every call for this target (fail_targets)",
)
PROVIDER_TIMEOUT = _code(
    "PROVIDER_TIMEOUT",
    ProviderError,
    retryable=True,
    meaning="no answer within the time left before the turn's deadline (timeout_ms)",
)
REPLAY_RESPONSE_MISSING = _code(
    "REPLAY_RESPONSE_MISSING",
    ProviderError,
    meaning="the replay provider has no recorded answer for this request digest (a request never "
    "made, or its response artifact expired): a replay never falls through to a model",
)
REPLAY_NOTHING_RECORDED = _code(
    "REPLAY_NOTHING_RECORDED",
    RunError,
    meaning="wf replay found nothing recorded to replay: no finished thread for the tree it was given, "
    "or (with --pinned) no pinned profile for the thread",
)
PROVIDER_UNKNOWN = _code(
    "PROVIDER_UNKNOWN", ProviderError, meaning="no provider is registered under that name"
)
PROVIDER_UNSUPPORTED_OUTPUT = _code(
    "PROVIDER_UNSUPPORTED_OUTPUT", ProviderError, meaning="the provider cannot produce that output type"
)
PROVIDER_DUPLICATE_OUTPUT = _code(
    "PROVIDER_DUPLICATE_OUTPUT", ProviderError, meaning="two offline turns are registered for one output type"
)

# --- gates ---------------------------------------------------------------------------------
GATE_DUPLICATE_TYPE = _code("GATE_DUPLICATE_TYPE", GateError, meaning="a gate type is registered twice")
PROFILE_OUTPUT_UNKNOWN_FORMAT = _code(
    "PROFILE_OUTPUT_UNKNOWN_FORMAT",
    ProfileError,
    meaning="a declared output's format is not one the output sinks write (markdown, json, text)",
)
PROFILE_OUTPUT_PATH_ABSOLUTE = _code(
    "PROFILE_OUTPUT_PATH_ABSOLUTE",
    ProfileError,
    meaning="a declared output's path is absolute; it must be relative to the target directory",
)
PROFILE_OUTPUT_PATH_ESCAPES = _code(
    "PROFILE_OUTPUT_PATH_ESCAPES",
    ProfileError,
    meaning="a declared output's path is empty, names a folder, or leaves the target directory through '..'",
)
PROFILE_OUTPUT_PATH_INVALID = _code(
    "PROFILE_OUTPUT_PATH_INVALID",
    ProfileError,
    meaning="a declared output's path holds a control character, a name over 255 bytes, or a .git folder",
)
PROFILE_OUTPUT_DUPLICATE_PATH = _code(
    "PROFILE_OUTPUT_DUPLICATE_PATH",
    ProfileError,
    meaning="two declared outputs of one profile have one path (compared case-insensitively)",
)
PROFILE_OUTPUT_FORMAT_MISMATCH = _code(
    "PROFILE_OUTPUT_FORMAT_MISMATCH",
    ProfileError,
    meaning="a declared output's format cannot hold the final turn's output_format (json output as markdown)",
)
PROFILE_RETRY_CONFLICT = _code(
    "PROFILE_RETRY_CONFLICT",
    ProfileError,
    meaning="a turn's retry.attempts contradicts its retry_limit, or is over thread_policy.max_turn_retries",
)
PROFILE_RETRY_INVALID = _code(
    "PROFILE_RETRY_INVALID",
    ProfileError,
    meaning="a turn's retry block has an unknown key, a figure that is not a whole number, attempts below 1 "
    "or a backoff max_ms below initial_ms",
)
PROFILE_RETRY_UNKNOWN_CODE = _code(
    "PROFILE_RETRY_UNKNOWN_CODE",
    ProfileError,
    meaning="a turn's retry.retryable_codes names a code the error catalogue does not hold or marks not retryable",
)
PROFILE_WHEN_SYNTAX = _code(
    "PROFILE_WHEN_SYNTAX",
    ProfileError,
    meaning="a turn's when: expression does not parse (profiles/expressions.py)",
)
PROFILE_WHEN_FORBIDDEN = _code(
    "PROFILE_WHEN_FORBIDDEN",
    ProfileError,
    meaning="a turn's when: expression uses a construct the branch language does not have (a call, a "
    "subscript, arithmetic, a lambda...)",
)
PROFILE_WHEN_NOT_UPSTREAM = _code(
    "PROFILE_WHEN_NOT_UPSTREAM",
    ProfileError,
    meaning="a turn's when: expression reads an output that is not upstream of the turn through its input_refs",
)
PROFILE_WHEN_UNKNOWN_FIELD = _code(
    "PROFILE_WHEN_UNKNOWN_FIELD",
    ProfileError,
    meaning="a turn's when: expression reads a field its output type's registered payload model (or a gate "
    "verdict) does not have",
)
PROFILE_WHEN_UNKNOWN_GATE = _code(
    "PROFILE_WHEN_UNKNOWN_GATE",
    ProfileError,
    meaning="a turn's when: expression reads a gate that no turn upstream of it has",
)
PROFILE_WHEN_TYPE_MISMATCH = _code(
    "PROFILE_WHEN_TYPE_MISMATCH",
    ProfileError,
    meaning="a turn's when: expression compares values of different types, orders non-numbers, reads a "
    "collection, or is not a boolean",
)
PROFILE_WHEN_FINAL_TURN = _code(
    "PROFILE_WHEN_FINAL_TURN",
    ProfileError,
    meaning="the turn that produces the thread's final output declares when:; the final output is always written",
)
PROFILE_SNAPSHOT_INVALID = _code(
    "PROFILE_SNAPSHOT_INVALID",
    ProfileError,
    meaning="a thread's pinned profile snapshot cannot be read, is not a profile snapshot, or does not give "
    "back the code version the thread recorded",
)
GATE_RULES_INVALID = _code("GATE_RULES_INVALID", GateError, meaning="a gate's rules are malformed")
GATE_UNKNOWN_TYPE = _code("GATE_UNKNOWN_TYPE", GateError, meaning="no gate evaluator has that gate_type")
GATE_DUPLICATE_SECTION_KEY = _code(
    "GATE_DUPLICATE_SECTION_KEY", GateError, meaning="two workflows register the same section key"
)

# --- running turns, threads and runs -------------------------------------------------------
RUN_BAD_ARGUMENTS = _code(
    "RUN_BAD_ARGUMENTS",
    RunError,
    meaning="the command's options contradict each other (checked before anything runs)",
)
RUN_CONTEXT_MISSING = _code(
    "RUN_CONTEXT_MISSING", RunError, meaning="a thread has no recorded context snapshot"
)
RUN_INPUT_NOT_READY = _code(
    "RUN_INPUT_NOT_READY", RunError, meaning="a turn's input has no completed output upstream"
)
RUN_BRANCH_UNREADABLE = _code(
    "RUN_BRANCH_UNREADABLE",
    RunError,
    meaning="a turn's when: expression reads an output whose recorded bytes do not parse under its payload model",
)
RUN_OUTPUT_SHAPE = _code(
    "RUN_OUTPUT_SHAPE",
    RunError,
    retryable=True,
    meaning="the model's output is empty or not the JSON object the turn needs (a new answer may be; "
    "not retried for a deterministic provider, providers/retry.py)",
)
RUN_OUTPUT_TOO_LARGE = _code(
    "RUN_OUTPUT_TOO_LARGE",
    RunError,
    retryable=True,
    meaning="the model's output is over artifact_policy.max_output_bytes (a new answer may be shorter; "
    "not retried for a deterministic provider, providers/retry.py)",
)
RUN_PROVIDER_NOT_PORTABLE = _code(
    "RUN_PROVIDER_NOT_PORTABLE",
    RunError,
    meaning="a provider object cannot reach the steps of a multi-process executor",
)
RUN_TARGET_CHANGED = _code(
    "RUN_TARGET_CHANGED", RunError, meaning="the target changed since its thread was planned"
)
RUN_THREAD_STALE = _code(
    "RUN_THREAD_STALE",
    RunError,
    meaning="the thread was made by an earlier version of its profile; resuming it would start another",
)
RUN_UNKNOWN_TARGET = _code("RUN_UNKNOWN_TARGET", RunError, meaning="no target is registered under that key")
RUN_UNKNOWN_TREE = _code(
    "RUN_UNKNOWN_TREE", RunError, meaning="no tree is registered under that path or key (run wf targets sync)"
)
RUN_NAME_UNREPRESENTABLE = _code(
    "RUN_NAME_UNREPRESENTABLE",
    RunError,
    meaning="a file name cannot be written as a partition key (not a file system name); the directory is skipped",
)
RUN_UNKNOWN_THREAD = _code("RUN_UNKNOWN_THREAD", RunError, meaning="no thread has that id")
RUN_UNKNOWN_TURN = _code("RUN_UNKNOWN_TURN", RunError, meaning="the workflow has no turn with that id")
RUN_OUTPUT_OUTSIDE_ROOT = _code(
    "RUN_OUTPUT_OUTSIDE_ROOT",
    RunError,
    meaning="an output's destination resolves outside the folder written into, or goes through a "
    "symbolic link (a linked folder or file): it is not written (a warning names it)",
)
RUN_OUTPUT_WRITE_FAILED = _code(
    "RUN_OUTPUT_WRITE_FAILED",
    RunError,
    meaning="an output file could not be written (full disk, I/O error, permissions); the message gives "
    "the operating system's reason, and nothing is half-written",
)
RUN_INSTANCE_STORAGE_ERROR = _code(
    "RUN_INSTANCE_STORAGE_ERROR",
    RunError,
    meaning="the Dagster instance's storage failed (its disk is full, or an I/O error); the message gives "
    "the reason",
)
RUN_NO_OUTPUT_SINK = _code(
    "RUN_NO_OUTPUT_SINK", RunError, meaning="no output sink is registered for the profile's frame type"
)
RUN_SINK_DUPLICATE = _code(
    "RUN_SINK_DUPLICATE", RunError, meaning="two output sinks are registered for one frame type"
)
RUN_TURN_CRASHED = _code(
    "RUN_TURN_CRASHED",
    RunError,
    meaning="a turn stopped on an unexpected error; its thread is marked failed with the error's type",
)
RUN_THREADS_FAILED = _code(
    "RUN_THREADS_FAILED",
    RunError,
    meaning="threads of the run failed; each is recorded failed with its own code and message",
)
RUN_WORKFLOW_REQUIRED = _code(
    "RUN_WORKFLOW_REQUIRED", RunError, meaning="several workflows are loaded: the command must name one"
)
RUN_INTERRUPTED = _code(
    "RUN_INTERRUPTED",
    RunError,
    meaning="the run was stopped by a signal (SIGTERM, SIGINT); its unfinished threads are marked failed",
)
RUN_THREAD_BUSY = _code(
    "RUN_THREAD_BUSY",
    RunError,
    meaning="another live process holds the thread's lease past the wait bound; the thread is in progress there",
)

# --- telemetry -------------------------------------------------------------------------------
TELEMETRY_SCHEMA_INVALID = _code(
    "TELEMETRY_SCHEMA_INVALID",
    TelemetryError,
    meaning="a batch of telemetry rows does not match its table's schema; nothing of it was written",
)
TELEMETRY_QUERY_INVALID = _code(
    "TELEMETRY_QUERY_INVALID",
    TelemetryError,
    meaning="DuckDB rejected a telemetry query (syntax, unknown view or column, type error)",
)
TELEMETRY_WRITE_FAILED = _code(
    "TELEMETRY_WRITE_FAILED",
    TelemetryError,
    retryable=True,
    meaning="the telemetry store could not write, rename or delete a Parquet file (disk full, permissions)",
)
TELEMETRY_FILE_UNREADABLE = _code(
    "TELEMETRY_FILE_UNREADABLE",
    TelemetryError,
    meaning="a Parquet file of the telemetry store cannot be read (damaged, truncated, not Parquet, or of "
    "another schema); the message names the file, which can be moved aside and re-exported",
)
TELEMETRY_BAD_URL = _code(
    "TELEMETRY_BAD_URL",
    TelemetryError,
    meaning="WF_TELEMETRY_URL names no filesystem fsspec can open (unknown protocol, missing package)",
)
TELEMETRY_BAD_ARGUMENTS = _code(
    "TELEMETRY_BAD_ARGUMENTS",
    TelemetryError,
    meaning="a telemetry command got a bad figure (row or day count, date, table name)",
)
TELEMETRY_CHART_WRITE_FAILED = _code(
    "TELEMETRY_CHART_WRITE_FAILED",
    TelemetryError,
    meaning="a report's PNG chart could not be written to the named file (missing folder, permissions, disk full)",
)


# --- retention -----------------------------------------------------------------------------
RETENTION_ARCHIVE_ERROR = _code(
    "RETENTION_ARCHIVE_ERROR",
    RetentionError,
    retryable=True,
    meaning="compaction could not read, write or rename a Parquet file of the record archive; no record was deleted",
)
RETENTION_POLICY_UNAVAILABLE = _code(
    "RETENTION_POLICY_UNAVAILABLE",
    RetentionError,
    meaning="a profile file failed to load, so the windows that govern some workflow are unknown; "
    "a destructive sweep (retention apply, compaction) refuses and deletes nothing",
)
RETENTION_HOLD_NOT_FOUND = _code(
    "RETENTION_HOLD_NOT_FOUND",
    RetentionError,
    meaning="no active hold matches the thread, workflow or hold id",
)
RETENTION_SCOPE_UNKNOWN = _code(
    "RETENTION_SCOPE_UNKNOWN",
    RetentionError,
    meaning="a hold names a thread or workflow the record store and profiles do not know",
)


# --- governance trail ----------------------------------------------------------------------
GOVERNANCE_GATE_MISSING = _code(
    "GOVERNANCE_GATE_MISSING",
    GovernanceError,
    meaning="a spec names a verification gate that does not exist: a test file, test class or test "
    "function that is not there, or a benchmark script that is not under bench/",
)
GOVERNANCE_INDEX_INCOMPLETE = _code(
    "GOVERNANCE_INDEX_INCOMPLETE",
    GovernanceError,
    meaning="the spec index (docs/specs/index.md) is missing, leaves a spec unlinked, or links a spec "
    "file that does not exist",
)
GOVERNANCE_SPEC_INVALID = _code(
    "GOVERNANCE_SPEC_INVALID",
    GovernanceError,
    meaning="a spec file is malformed: no front matter, YAML that does not parse, a missing or unknown "
    "field, an id that is not its file name, an owner domain that is no package of wf_pipeline, or a "
    "gate that is neither a test id nor a benchmark script",
)
GOVERNANCE_SPECS_NOT_FOUND = _code(
    "GOVERNANCE_SPECS_NOT_FOUND",
    GovernanceError,
    meaning="no spec to check: no wf_pipeline checkout at or above the current directory, or its spec "
    "folder is missing or holds no spec",
)


# --- keys ----------------------------------------------------------------------------------
KEYS_CLASS_UNKNOWN = _code(
    "KEYS_CLASS_UNKNOWN",
    KeysError,
    meaning="a key command names an artifact class that is neither built in nor registered by a workflow",
)
KEYS_CONFIRMATION_REQUIRED = _code(
    "KEYS_CONFIRMATION_REQUIRED",
    KeysError,
    meaning="destroying a KEK shreds every artifact it wraps, for good; the command needs --yes "
    "(nothing was destroyed)",
)
KEYS_KEK_IN_USE = _code(
    "KEYS_KEK_IN_USE",
    KeysError,
    meaning="a KEK cannot be retired while data keys are still wrapped by it (rewrap first)",
)
KEYS_KEK_NOT_FOUND = _code("KEYS_KEK_NOT_FOUND", KeysError, meaning="no KEK with that id is in the keyring")
KEYS_KEK_STATE = _code(
    "KEYS_KEK_STATE",
    KeysError,
    meaning="the KEK's state does not allow the operation (e.g. retiring the primary, or using a destroyed KEK)",
)
KEYS_MANAGER_ERROR = _code(
    "KEYS_MANAGER_ERROR",
    KeysError,
    retryable=True,
    meaning="the key manager (local keyring or a KMS) failed to create, wrap, unwrap or destroy a key",
)
KEYS_MANAGER_UNKNOWN = _code(
    "KEYS_MANAGER_UNKNOWN", KeysError, meaning="WF_KEY_MANAGER names no registered key manager"
)
KEYS_MASTER_KEY_INVALID = _code(
    "KEYS_MASTER_KEY_INVALID",
    KeysError,
    meaning="the master key (WF_MASTER_KEY, base64 of 32 bytes, or WF_MASTER_KEY_FILE) is missing, malformed "
    "or not the key the keyring was made with; nothing was read or written",
)


# --- identities, grants and privileged reads ---------------------------------------------
# Every denial of a privileged read has its own code, so an audit event says why exactly.
IDENTITY_EXISTS = _code(
    "IDENTITY_EXISTS",
    SecurityError,
    meaning="an identity of that name is already registered (nothing written)",
)
IDENTITY_INVALID = _code(
    "IDENTITY_INVALID",
    SecurityError,
    meaning="an identity name is malformed, or a key file is missing, unreadable or not an Ed25519 "
    "private key (PEM, PKCS8)",
)
IDENTITY_UNKNOWN = _code("IDENTITY_UNKNOWN", SecurityError, meaning="no identity of that name is registered")
IDENTITY_NOT_ADMIN = _code(
    "IDENTITY_NOT_ADMIN",
    SecurityError,
    meaning="the key given to sign a grant, revoke one or approve an admin is not the registered key of an "
    "admin identity whose approval verifies (nothing issued, revoked or registered)",
)
GRANT_MALFORMED = _code(
    "GRANT_MALFORMED",
    SecurityError,
    meaning="a grant file is not a signed grant document: unreadable, not JSON, or a field is missing or "
    "of the wrong type; or grant options (duration, rate, turn range, budget) are invalid",
)
GRANT_SIGNATURE_INVALID = _code(
    "GRANT_SIGNATURE_INVALID",
    SecurityError,
    meaning="the grant's Ed25519 signature does not verify against its issuer's registered public key",
)
GRANT_ISSUER_UNKNOWN = _code(
    "GRANT_ISSUER_UNKNOWN", SecurityError, meaning="the grant's issuer is not a registered identity"
)
GRANT_ISSUER_NOT_ADMIN = _code(
    "GRANT_ISSUER_NOT_ADMIN",
    SecurityError,
    meaning="the grant's issuer is registered, but not as an admin, or as an admin whose approval does not "
    "verify (neither the store's first admin nor approved by an admin)",
)
GRANT_UNKNOWN = _code(
    "GRANT_UNKNOWN",
    SecurityError,
    meaning="the grant verifies but this record store never recorded its issue (its use cannot be metered)",
)
GRANT_GRANTEE_UNKNOWN = _code(
    "GRANT_GRANTEE_UNKNOWN", SecurityError, meaning="the grant's grantee is not a registered identity"
)
GRANT_GRANTEE_MISMATCH = _code(
    "GRANT_GRANTEE_MISMATCH",
    SecurityError,
    meaning="the requester's key is not the registered key of the grant's grantee",
)
GRANT_NOT_YET_VALID = _code(
    "GRANT_NOT_YET_VALID", SecurityError, meaning="the grant's not_before_ms is still in the future"
)
GRANT_EXPIRED = _code("GRANT_EXPIRED", SecurityError, meaning="the grant's expires_at_ms has passed")
GRANT_REVOKED = _code("GRANT_REVOKED", SecurityError, meaning="the grant was revoked (wf grants revoke)")
GRANT_REASON_NOT_ALLOWED = _code(
    "GRANT_REASON_NOT_ALLOWED",
    SecurityError,
    meaning="the read's reason code is not in the fixed list of reason codes, or not among the grant's",
)
GRANT_CAPABILITY_MISMATCH = _code(
    "GRANT_CAPABILITY_MISMATCH",
    SecurityError,
    meaning="the grant's capability does not cover the artifact's class (prompt_payload_read reads "
    "prompt_render artifacts, context_payload_read context_payload artifacts)",
)
GRANT_SCOPE_WORKFLOW = _code(
    "GRANT_SCOPE_WORKFLOW",
    SecurityError,
    meaning="the artifact belongs to a thread of another workflow (recorded in the audit trail; "
    "the requester is told PRIVILEGED_ARTIFACT_UNKNOWN)",
)
GRANT_SCOPE_THREAD = _code(
    "GRANT_SCOPE_THREAD",
    SecurityError,
    meaning="the artifact belongs to another thread than the grant's (recorded in the audit trail; "
    "the requester is told PRIVILEGED_ARTIFACT_UNKNOWN)",
)
GRANT_SCOPE_NODE = _code(
    "GRANT_SCOPE_NODE",
    SecurityError,
    meaning="the artifact was used on another node than the grant's (recorded in the audit trail; "
    "the requester is told PRIVILEGED_ARTIFACT_UNKNOWN)",
)
GRANT_SCOPE_TURN = _code(
    "GRANT_SCOPE_TURN",
    SecurityError,
    meaning="the artifact's turn seq is outside the grant's turn range (recorded in the audit trail; "
    "the requester is told PRIVILEGED_ARTIFACT_UNKNOWN)",
)
GRANT_BUDGET_EXCEEDED = _code(
    "GRANT_BUDGET_EXCEEDED",
    SecurityError,
    meaning="the read would take the grant's payload bytes past its byte budget (nothing returned)",
)
GRANT_RATE_LIMITED = _code(
    "GRANT_RATE_LIMITED",
    SecurityError,
    meaning="the grant's reads in the current rate window are used up; retry in the next window",
)
PRIVILEGED_ARTIFACT_UNKNOWN = _code(
    "PRIVILEGED_ARTIFACT_UNKNOWN",
    SecurityError,
    meaning="no prompt link names the artifact as a rendered prompt or a context payload within the "
    "grant's scope (an artifact outside the scope is told so too; the audit trail names the scope check)",
)
PRIVILEGED_ARTIFACT_ID_INVALID = _code(
    "PRIVILEGED_ARTIFACT_ID_INVALID",
    SecurityError,
    meaning="the artifact id is not sha256: and 64 lower-case hex digits (the audit event records a "
    "bounded form: its first characters and the digest of the whole)",
)
PRIVILEGED_OUT_INVALID = _code(
    "PRIVILEGED_OUT_INVALID",
    SecurityError,
    meaning="the output file of a privileged read or a grant cannot be written (its folder is missing or "
    "not writable, the path is a folder or too long, or it lies in the home or a store of the product: "
    "records, CAS, telemetry, key files); checked before the decision, so nothing is charged or issued",
)
IDENTITY_RESERVED = _code(
    "IDENTITY_RESERVED",
    SecurityError,
    meaning="the identity name is reserved: the audit trail uses it for a requester whose key file "
    "could not be loaded (nothing registered)",
)
PRIVILEGED_ARTIFACT_GONE = _code(
    "PRIVILEGED_ARTIFACT_GONE",
    SecurityError,
    meaning="the artifact was deleted by retention or compaction (it has a tombstone), or its object is "
    "no longer in the CAS; nothing to read, nothing charged",
)
PRIVILEGED_ARTIFACT_SHREDDED = _code(
    "PRIVILEGED_ARTIFACT_SHREDDED",
    SecurityError,
    meaning="the artifact was crypto-shredded: the KEK that wraps its data key was destroyed (wf keys "
    "destroy), so its payload is unreadable for good; nothing charged",
)
IDENTITY_ADMIN_APPROVAL_REQUIRED = _code(
    "IDENTITY_ADMIN_APPROVAL_REQUIRED",
    SecurityError,
    meaning="an admin is registered already, so a new admin needs an existing admin's approval "
    "(wf identity create NAME --admin --approved-by KEYFILE); nothing registered",
)
GRANT_SELF_ISSUED = _code(
    "GRANT_SELF_ISSUED",
    SecurityError,
    meaning="the grant's grantee is its issuer: an admin may not grant reads to itself (two-person rule); "
    "refused at issue, denied at read",
)
GRANT_SCOPE_INVALID = _code(
    "GRANT_SCOPE_INVALID",
    SecurityError,
    meaning="a grant's scope could never match (a thread id that is not thread: + 24 hex, a node id that is "
    "not node: + 64 hex, a workflow neither the profile catalogue nor the record store knows); nothing issued",
)


# --- security: the audit trail ----------------------------------------------------------------
AUDIT_CHAIN_BROKEN = _code(
    "AUDIT_CHAIN_BROKEN",
    SecurityError,
    meaning="the audit trail's hash chain does not verify: an event was deleted, altered or reordered "
    "(the message lists the positions)",
)
AUDIT_UNAVAILABLE = _code(
    "AUDIT_UNAVAILABLE",
    SecurityError,
    meaning="the audit event could not be written (store down, table missing, read-only...); the request "
    "it records fails and returns nothing",
)
AUDIT_KEY_INVALID = _code(
    "AUDIT_KEY_INVALID",
    SecurityError,
    meaning="the audit key that seals events (WF_AUDIT_KEY, base64 of 32 bytes, WF_AUDIT_KEY_FILE or "
    "<home>/keys/audit.key) is set twice, malformed, or cannot be read or made; an append then fails "
    "with AUDIT_UNAVAILABLE",
)

# --- figures for messages ------------------------------------------------------------------
# Every message that names a URL or an operating-system failure builds it with these two
# functions, so a password never reaches a message or a log, and a full disk always says so.

_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "key")


def masked_url(url: str) -> str:
    """``url`` with its password, and query values that name a secret, replaced by ``***``.

    Covers the userinfo of RFC 3986 (``scheme://user:password@host``, as in PostgreSQL,
    S3 or HTTP URLs) and query parameters whose name contains ``password``, ``secret``,
    ``token`` or ``key`` (libpq's ``?password=``, presigned tokens). Text that is not a
    URL comes back unchanged.

    Args:
        url: a URL or a bare path.

    Returns:
        The URL, safe for messages and logs. Raises nothing.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_key(name) for name, _ in pairs):
            query = urlencode(
                [(name, "***" if _secret_key(name) else value) for name, value in pairs], safe="*"
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secret_key(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_QUERY_KEYS)


def os_reason(exc: BaseException) -> str:
    """The operating system's reason for a failure, e.g. ``No space left on device (ENOSPC)``.

    Follows the chain of causes (libraries wrap ``OSError`` in their own exceptions) and
    returns the first ``OSError``'s ``strerror`` with its errno name (POSIX ``errno.h``),
    without the file name. SQLite reports a full disk as "database or disk is full"
    (``SQLITE_FULL``) and a failed read or write as "disk I/O error" (``SQLITE_IOERR``);
    those texts are kept as the driver says them. Anything else gives
    ``<type>: <message>`` on one line.

    Args:
        exc: the failure.

    Returns:
        One line, at most 300 characters. Raises nothing.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            name = errno.errorcode.get(current.errno, f"errno {current.errno}")
            return f"{current.strerror or os.strerror(current.errno)} ({name})"[:300]
        current = current.__cause__ or current.__context__
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
