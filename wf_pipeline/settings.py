"""Settings: every ``WF_*`` variable (and ``DAGSTER_HOME``), read once, all rooted in one home folder.

This is the only module of the package that reads the process environment, and it only
reads it: `Settings.from_env` takes a mapping (the environment by default) and returns a
frozen value that callers pass down, so tests can point every store at a temporary
folder. The variables are parsed by pydantic-settings (``env_prefix="WF_"``); bad values
raise `ConfigError` with a stable code and the variable's name and value.

Provider options come from ``WF_<PROVIDER>_<OPTION>`` variables (e.g.
``WF_OPENAI_BASE_URL``) and are kept in `Settings.provider_options`. Secrets are not
settings: a provider option names the variable that holds a key (``api_key_env``), and
`Settings.secrets` looks it up in the environment the settings were read from. Secrets
never appear in the settings' fields, so `Settings.launch_values` (what run config
carries to step processes) holds none.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings.sources import EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from wf_pipeline.builtin import builtin_root
from wf_pipeline.errors import CONFIG_BAD_EXECUTOR, CONFIG_BAD_NUMBER, CONFIG_BAD_VALUE, ConfigError

DEFAULT_HOME = "~/.wf"
# Bytes retention would free past which the ``wf_retention_trigger`` sensor runs retention early.
DEFAULT_RETENTION_TRIGGER_BYTES = 1 << 30  # 1 GiB

# How the steps of a Dagster run execute: all in the launching process (the default), one
# process per step on this machine, one Kubernetes Job per step, or one Celery task per step.
Executor = Literal["in_process", "multiprocess", "k8s", "celery"]
EXECUTORS: tuple[str, ...] = get_args(Executor)

# Every variable `Settings.from_env` reads as a field (provider options and secrets aside).
SETTINGS_VARIABLES = (
    "WF_HOME",
    "WF_CAS_URL",
    "WF_CAS_ENDPOINT_URL",
    "WF_CAS_REGION",
    "WF_CAS_STORAGE_OPTIONS",
    "WF_RECORDS_URL",
    "WF_RECORDS_SCHEMA",
    "DAGSTER_HOME",
    "WF_OUT",
    "WF_PROVIDER",
    "WF_PROVIDER_CONCURRENCY",
    "WF_EXECUTOR",
    "WF_MAX_PROCESSES",
    "WF_EXECUTOR_CONFIG",
    "WF_BUILTIN_ROOT",
    "WF_CONFIG_DIR",
    "WF_FOLLOW_EXTERNAL_LINKS",
    "WF_RETENTION_TRIGGER_BYTES",
    "WF_TELEMETRY",
    "WF_TELEMETRY_URL",
    "WF_COMPACT_GRACE",
    "WF_MASTER_KEY_FILE",
    "WF_AUDIT_KEY_FILE",
    "WF_KEK_PERIOD",
    "WF_KEY_MANAGER",
    "WF_KMS_ENDPOINT_URL",
    "WF_KMS_REGION",
    "WF_KMS_ALIAS_PREFIX",
)

# Fields a step process needs to open the same runtime as the launching process; the
# executor's own settings stay with the launcher (they shape the run config instead).
LAUNCH_FIELDS = (
    "home",
    "cas_url",
    "cas_endpoint_url",
    "cas_region",
    "cas_storage_options",
    "records_url",
    "records_schema",
    "dagster_home",
    "out_dir",
    "provider",
    "provider_concurrency",
    "builtin_root",
    "config_dir",
    "provider_options",
    "follow_external_links",
    "reuse_responses",
    "telemetry",
    "telemetry_url",
    "master_key_file",
    "audit_key_file",
    "kek_period",
    "key_manager",
    "kms_endpoint_url",
    "kms_region",
    "kms_alias_prefix",
)

# URL settings that may embed a password, with their variables: a step reads such a URL
# from its own environment rather than from run config (`Settings.launch_values`).
SECRET_URL_VARIABLES = {
    "records_url": "WF_RECORDS_URL",
    "cas_url": "WF_CAS_URL",
    "cas_endpoint_url": "WF_CAS_ENDPOINT_URL",
    "telemetry_url": "WF_TELEMETRY_URL",
    "kms_endpoint_url": "WF_KMS_ENDPOINT_URL",
}
# Every launch field a step may have to read from its own environment (`Settings.launch_values`
# gives None for it): the URLs above when they embed a password, and the CAS storage options,
# which may hold credentials (``key``, ``secret``, ``token``, ``account_key``) whenever set.
ENVIRONMENT_VARIABLES = {**SECRET_URL_VARIABLES, "cas_storage_options": "WF_CAS_STORAGE_OPTIONS"}

# CAS URL schemes that take an endpoint (WF_CAS_ENDPOINT_URL) and a region (WF_CAS_REGION).
S3_SCHEMES = frozenset({"s3", "s3a"})
GCS_SCHEMES = frozenset({"gs", "gcs"})


class Settings(BaseSettings):
    """The product's settings, one frozen value.

    Fields and their variables: ``home`` (WF_HOME, default ~/.wf), ``cas_url``
    (WF_CAS_URL, default ``<home>/cas`` as a file URI), ``records_url`` (WF_RECORDS_URL,
    default SQLite ``<home>/records.db``), ``records_schema`` (WF_RECORDS_SCHEMA),
    ``dagster_home`` (DAGSTER_HOME, default ``<home>/dagster``), ``out_dir`` (WF_OUT,
    default ``<home>/out``), ``provider`` (WF_PROVIDER, default offline),
    ``provider_concurrency`` (WF_PROVIDER_CONCURRENCY, default 8), ``executor``
    (WF_EXECUTOR), ``max_processes`` (WF_MAX_PROCESSES), ``executor_config``
    (WF_EXECUTOR_CONFIG), ``builtin_root`` (WF_BUILTIN_ROOT, default the wheel's packaged copy, else the source tree),
    ``config_dir`` (WF_CONFIG_DIR, the user profile layer; None: ~/.config/wf),
    ``follow_external_links`` (WF_FOLLOW_EXTERNAL_LINKS, default false: scans skip symlinks
    that resolve outside the tree root; the CLI's ``--follow-external-links`` sets it),
    ``reuse_responses`` (WF_REUSE_RESPONSES, default true: a turn whose request digest was
    answered before takes that recorded response instead of a provider call; the CLI's
    ``--no-reuse-responses`` clears it),
    ``telemetry`` (WF_TELEMETRY, default true: turns record one telemetry row per metadata
    write and artifact put; 0 turns it off at no cost), ``telemetry_url`` (WF_TELEMETRY_URL,
    default ``<home>/telemetry``; any fsspec URL), ``compact_grace`` (WF_COMPACT_GRACE,
    default ``1h``: the least time `wf compact` leaves an unreferenced CAS object or a
    scratch file alone; a duration such as ``12h`` or ``forever``),
    ``cas_endpoint_url`` (WF_CAS_ENDPOINT_URL, an ``http(s)://`` endpoint for an S3-compatible
    (MinIO, Ceph, LocalStack) or GCS-emulating store; ``s3://`` and ``gs://`` CAS URLs only),
    ``cas_region`` (WF_CAS_REGION, the S3 region; ``s3://`` only), ``cas_storage_options``
    (WF_CAS_STORAGE_OPTIONS, a JSON object of extra fsspec options for the CAS filesystem,
    e.g. ``{"anon": false}``; may hold credentials, so it is never shown, see `cas_options`),
    ``retention_trigger_bytes`` (WF_RETENTION_TRIGGER_BYTES, bytes, default 1 GiB: when
    expired artifacts hold more, the Dagster sensor ``wf_retention_trigger`` runs retention
    before its daily schedule), ``master_key_file`` (WF_MASTER_KEY_FILE: a file holding the
    keyring's master key; the key itself may instead be WF_MASTER_KEY, a secret read through
    `secrets`), ``audit_key_file`` (WF_AUDIT_KEY_FILE: a file holding the key that seals the
    audit trail's events; the key itself may instead be WF_AUDIT_KEY, a secret read through
    `secrets`; neither: ``<home>/keys/audit.key``), ``kek_period`` (WF_KEK_PERIOD, default ``1d``: one KEK lineage per artifact
    class per period), ``key_manager`` (WF_KEY_MANAGER, default ``local``: the
    key manager that holds new KEKs, ``local`` or ``aws-kms``), ``kms_endpoint_url``
    (WF_KMS_ENDPOINT_URL, None: AWS's regional endpoint; LocalStack or any KMS-compatible
    service otherwise), ``kms_region`` (WF_KMS_REGION, None: boto3's default chain),
    ``kms_alias_prefix`` (WF_KMS_ALIAS_PREFIX, default ``wf``: KEK aliases are
    ``alias/<prefix>/<kek_id>``) and
    ``provider_options`` (``WF_<PROVIDER>_<OPTION>`` of the chosen provider, option
    names lower-cased). An empty variable counts as unset. Paths are absolute.

    Raises ``CONFIG_BAD_EXECUTOR`` (figure: executor) and ``CONFIG_BAD_NUMBER`` (figure:
    name) when built.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        env_prefix="WF_",
        env_ignore_empty=True,
        # Variable names match in any case, as pydantic-settings does by default.
        case_sensitive=False,
        extra="ignore",
        populate_by_name=True,
    )

    home: Path = Path(DEFAULT_HOME)
    cas_url: str = ""
    # Where an object-store CAS answers (MinIO, Ceph, LocalStack, moto); None: the provider's own.
    cas_endpoint_url: str | None = None
    cas_region: str | None = None
    # Extra fsspec options for the CAS, parsed from JSON here (NoDecode: pydantic-settings' own
    # JSON error would not be a ConfigError). repr=False: the options may carry credentials.
    cas_storage_options: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict, repr=False)
    records_url: str = ""
    # A PostgreSQL schema for the record store's tables (None: the connection's default).
    records_schema: str | None = None
    dagster_home: Path | None = Field(
        default=None, validation_alias=AliasChoices("DAGSTER_HOME", "dagster_home")
    )
    out_dir: Path | None = Field(default=None, validation_alias=AliasChoices("WF_OUT", "out_dir"))
    provider: str = "offline"
    provider_concurrency: int = 8
    executor: Executor = "in_process"
    # Most step processes (or step jobs) at once in one run; None: the executor's default.
    max_processes: int | None = None
    # A run config YAML file holding the executor's ``execution: config:`` mapping.
    executor_config: Path | None = None
    # Where built-in profiles and their assets live (default: `wf_pipeline.builtin.builtin_root`).
    builtin_root: Path | None = None
    # The user layer of profiles (None: ~/.config/wf).
    config_dir: Path | None = None
    # Whether a scan reads symlinks that resolve outside the tree root. A launch value, so
    # every step process and the sensor scan a tree exactly as the launching process did.
    follow_external_links: bool = False
    # Whether a request answered before is answered from its recorded response
    # (`wf_pipeline.runtime.requests`). A launch value: every step decides alike.
    reuse_responses: bool = True
    # Telemetry rows (wf_pipeline.telemetry): on by default; where their Parquet files go.
    telemetry: bool = True
    telemetry_url: str = ""
    # The orphan sweep's least grace period (a duration, parsed where it is used); a run puts
    # CAS objects before their records, and this long is what keeps them safe meanwhile.
    compact_grace: str = "1h"
    # Bytes due for retention past which the Dagster trigger sensor runs it early.
    retention_trigger_bytes: int = DEFAULT_RETENTION_TRIGGER_BYTES
    # The master key of the local keyring: WF_MASTER_KEY (base64, a secret: read through
    # `secrets`, never a field) or this file holding it. Neither: ``<home>/keys/master.key``.
    master_key_file: Path | None = None
    # The key sealing audit events (`wf_pipeline.security.audit_key`): WF_AUDIT_KEY (a
    # secret, through `secrets`) or this file. Neither: ``<home>/keys/audit.key``.
    audit_key_file: Path | None = None
    # The period of a KEK lineage (a duration): one KEK per artifact class per period.
    kek_period: str = "1d"
    # The key manager of new KEKs and, for aws-kms, where KMS is (`key_manager_options`).
    key_manager: str = "local"
    kms_endpoint_url: str | None = None
    kms_region: str | None = None
    kms_alias_prefix: str = "wf"
    provider_options: dict[str, str] = Field(default_factory=dict)

    _environ: Mapping[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("executor", mode="before")
    @classmethod
    def _known_executor(cls, value: Any) -> Any:
        if value in (None, ""):
            return "in_process"
        if value not in EXECUTORS:
            raise ConfigError(
                CONFIG_BAD_EXECUTOR,
                f"WF_EXECUTOR={value!r} is not one of {', '.join(EXECUTORS)}",
                executor=value,
            )
        return value

    @field_validator("provider_concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: Any) -> Any:
        return _positive_int("WF_PROVIDER_CONCURRENCY", value) or 8

    @field_validator("max_processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Any:
        return _positive_int("WF_MAX_PROCESSES", value)

    @field_validator("retention_trigger_bytes", mode="before")
    @classmethod
    def _trigger_bytes(cls, value: Any) -> Any:
        return _positive_int("WF_RETENTION_TRIGGER_BYTES", value) or DEFAULT_RETENTION_TRIGGER_BYTES

    @field_validator("cas_storage_options", mode="before")
    @classmethod
    def _options_object(cls, value: Any) -> Any:
        if value is None or value == "":
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
            # The value itself is never echoed: it may hold a secret key.
            if not isinstance(value, dict):
                raise ConfigError(
                    CONFIG_BAD_VALUE,
                    "WF_CAS_STORAGE_OPTIONS is not a JSON object (e.g. '{\"anon\": false}')",
                    field="cas_storage_options",
                )
        return value

    @field_validator("cas_endpoint_url", mode="before")
    @classmethod
    def _endpoint_url(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                CONFIG_BAD_VALUE,
                "WF_CAS_ENDPOINT_URL is not an http:// or https:// URL with a host",
                field="cas_endpoint_url",
            )
        return value

    @model_validator(mode="after")
    def _cas_options_fit_the_scheme(self) -> Settings:
        # An endpoint or a region the CAS's filesystem would not take is a mistake: say so now
        # rather than let fsspec reject an unknown keyword (or ignore it) at the first write.
        scheme = _scheme(self.cas_url)
        if self.cas_endpoint_url and scheme not in S3_SCHEMES | GCS_SCHEMES:
            raise ConfigError(
                CONFIG_BAD_VALUE,
                f"WF_CAS_ENDPOINT_URL applies to s3:// and gs:// stores, not to a {scheme}:// CAS",
                field="cas_endpoint_url",
            )
        if self.cas_region and scheme not in S3_SCHEMES:
            raise ConfigError(
                CONFIG_BAD_VALUE,
                f"WF_CAS_REGION applies to s3:// stores, not to a {scheme}:// CAS",
                field="cas_region",
            )
        return self

    @field_validator(
        "records_schema",
        "cas_url",
        "cas_region",
        "records_url",
        "telemetry_url",
        "provider",
        "kms_endpoint_url",
        "kms_region",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("key_manager", mode="before")
    @classmethod
    def _default_key_manager(cls, value: Any) -> Any:
        return "local" if value in (None, "") else value

    @field_validator("kms_alias_prefix", mode="before")
    @classmethod
    def _default_alias_prefix(cls, value: Any) -> Any:
        return "wf" if value in (None, "") else value

    @model_validator(mode="before")
    @classmethod
    def _rooted_in_home(cls, data: Any) -> Any:
        """Fill the defaults that derive from the home folder; make every path absolute."""
        if not isinstance(data, dict):
            return data
        values = {key: value for key, value in data.items() if value not in (None, "")}
        home = _path(values.get("home") or DEFAULT_HOME)
        values["home"] = home
        values.setdefault("cas_url", (home / "cas").as_uri())
        values.setdefault("records_url", f"sqlite:///{home / 'records.db'}")
        values.setdefault("telemetry_url", str(home / "telemetry"))
        dagster_home = values.get("DAGSTER_HOME", values.pop("dagster_home", None))
        values["DAGSTER_HOME"] = _path(dagster_home or home / "dagster")
        out_dir = values.get("WF_OUT", values.pop("out_dir", None))
        values["WF_OUT"] = _path(out_dir or home / "out")
        values["builtin_root"] = _path(values.get("builtin_root") or builtin_root())
        for key in ("executor_config", "config_dir", "master_key_file", "audit_key_file"):
            if values.get(key):
                values[key] = _path(values[key])
        values.setdefault("provider", "offline")
        return values

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings read from ``env`` (the process environment when None), once.

        Returns a frozen `Settings`; ``WF_<PROVIDER>_<OPTION>`` variables of the chosen
        provider become ``provider_options``, and ``env`` stays the source of `secrets`.
        Raises ``CONFIG_BAD_EXECUTOR`` or ``CONFIG_BAD_NUMBER`` with the variable's figures.
        """
        environ = dict(os.environ if env is None else env)
        source = _MappingEnvSource(cls, environ)
        settings = _build(cls, (source,), {})
        options = provider_options(settings.provider, environ)
        if options:
            settings = settings.model_copy(update={"provider_options": options})
        settings._environ = MappingProxyType(environ)
        return settings

    @classmethod
    def from_values(cls, values: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
        """Settings from field values (e.g. a run's resource config), the rest from ``env``.

        ``values`` maps field names (those of `launch_values`) to values; a value of None
        takes the variable's value from ``env`` (the process environment when None), which
        also stays the source of `secrets`. Raises as `from_env` does.
        """
        environ = dict(os.environ if env is None else env)
        given = {key: value for key, value in values.items() if value is not None}
        source = _MappingEnvSource(cls, environ)
        settings = _build(cls, (InitSettingsSource(cls, init_kwargs=given), source), given)
        if "provider_options" not in given:
            options = provider_options(settings.provider, environ)
            settings = settings.model_copy(update={"provider_options": options})
        settings._environ = MappingProxyType(environ)
        return settings

    def launch_values(self) -> dict[str, Any]:
        """The fields a step process needs, as plain JSON values (paths as strings).

        This is what run config carries to out-of-process steps, so no secret is among
        them: provider keys stay in the environment, named by ``api_key_env``, and a URL
        that embeds a password (``WF_RECORDS_URL``, ``WF_CAS_URL``, ``WF_CAS_ENDPOINT_URL``)
        is None, which the step reads from its own environment (`SECRET_URL_VARIABLES`), and so
        are the CAS storage options whenever set (``ENVIRONMENT_VARIABLES``). An unset optional
        field is an empty string, so that the step does not fall back to its environment.
        """
        values: dict[str, Any] = {}
        for name in LAUNCH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, Path):
                value = str(value)
            values[name] = "" if value is None else value
        values["provider_options"] = dict(self.provider_options)
        for name in SECRET_URL_VARIABLES:
            if urlsplit(values[name]).password is not None:
                values[name] = None
        # Storage options may hold credentials: a step reads them from WF_CAS_STORAGE_OPTIONS.
        values["cas_storage_options"] = None if self.cas_storage_options else ""
        return values

    def key_manager_options(self) -> dict[str, Any]:
        """The keyword options of `wf_pipeline.crypto.managers.open_key_manager` these settings hold.

        For ``aws-kms``: ``{"endpoint_url", "region_name", "alias_prefix"}`` (None for an
        unset endpoint or region, which boto3 then resolves). Other managers get ``{}``
        here; the local manager's master key is not a setting of this kind. Raises nothing.
        """
        if self.key_manager != "aws-kms":
            return {}
        return {
            "endpoint_url": self.kms_endpoint_url,
            "region_name": self.kms_region,
            "alias_prefix": self.kms_alias_prefix,
        }

    def cas_options(self) -> dict[str, Any]:
        """The fsspec storage options to open the CAS with: ``open_cas(cas_url, **cas_options())``.

        Returns a new dict: WF_CAS_STORAGE_OPTIONS, plus ``endpoint_url`` from
        WF_CAS_ENDPOINT_URL (s3fs and gcsfs take it at the top level) and, for ``s3://``,
        ``client_kwargs["region_name"]`` from WF_CAS_REGION; the dedicated variables win over
        the same keys in WF_CAS_STORAGE_OPTIONS. Credentials are left to each filesystem's own
        lookup (botocore: AWS_* variables, profiles, instance roles; gcsfs:
        GOOGLE_APPLICATION_CREDENTIALS) unless the options name them. The result may hold
        secrets: never log or show it. Raises nothing (the fields were checked when built).
        """
        options = copy.deepcopy(self.cas_storage_options)
        if self.cas_endpoint_url:
            options["endpoint_url"] = self.cas_endpoint_url
        if self.cas_region:
            client_kwargs = dict(options.get("client_kwargs") or {})
            client_kwargs["region_name"] = self.cas_region
            options["client_kwargs"] = client_kwargs
        return options

    @property
    def secrets(self) -> Mapping[str, str]:
        """The environment these settings were read from, for secrets named by an option (read-only)."""
        return self._environ

    def __eq__(self, other: object) -> bool:
        # Equal settings are equal values; the environment kept for secrets is not one of them.
        if not isinstance(other, Settings):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        excluded = {"provider_options", "cas_storage_options"}  # dicts: not hashable
        return hash(tuple(sorted(self.model_dump(mode="json", exclude=excluded).items())))

    @property
    def embedded_records(self) -> bool:
        """Whether the record store is the embedded default (SQLite in the home), not one set by WF_RECORDS_URL."""
        return self.records_url == f"sqlite:///{self.home / 'records.db'}"

    @property
    def default_master_key_file(self) -> Path:
        """Where the embedded default keeps its master key when neither WF_MASTER_KEY nor WF_MASTER_KEY_FILE is set."""
        return self.home / "keys" / "master.key"

    @property
    def default_audit_key_file(self) -> Path:
        """Where the home keeps the audit trail's sealing key when neither WF_AUDIT_KEY nor WF_AUDIT_KEY_FILE is set."""
        return self.home / "keys" / "audit.key"

    def ensure_dirs(self) -> None:
        """Create the home and Dagster home folders (an existing folder is fine)."""
        for path in (self.home, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)


def provider_options(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """Provider options from ``WF_<PROVIDER>_<OPTION>`` variables, e.g. WF_OPENAI_BASE_URL.

    Returns option name (lower-cased) -> raw string; an empty provider name has none.
    """
    if not name:
        return {}
    prefix = f"WF_{name.upper()}_"
    return {key[len(prefix) :].lower(): value for key, value in env.items() if key.startswith(prefix)}


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._mapping = {key: value for key, value in environ.items() if value != ""}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._mapping, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _build(cls: type[Settings], sources: tuple[Any, ...], init_kwargs: dict[str, Any]) -> Settings:
    # Our validators raise ConfigError themselves; anything else pydantic rejects becomes one too.
    try:
        return cls(_build_sources=(sources, init_kwargs))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(CONFIG_BAD_VALUE, f"setting {field}: {first['msg']}", field=field) from None


def _positive_int(name: str, raw: Any) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or isinstance(raw, bool):
        raise ConfigError(CONFIG_BAD_NUMBER, f"{name}={raw!r} is not a positive whole number", name=name)
    return value


def _scheme(url: str) -> str:
    # As `wf_pipeline.cas.url_scheme` does (this module sits below the CAS): a bare path is file.
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def _path(value: Any) -> Path:
    return Path(value).expanduser().resolve()


__all__ = [
    "DEFAULT_HOME",
    "DEFAULT_RETENTION_TRIGGER_BYTES",
    "ENVIRONMENT_VARIABLES",
    "EXECUTORS",
    "GCS_SCHEMES",
    "LAUNCH_FIELDS",
    "S3_SCHEMES",
    "SECRET_URL_VARIABLES",
    "SETTINGS_VARIABLES",
    "Executor",
    "Settings",
    "provider_options",
]
