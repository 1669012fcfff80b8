"""Settings from ``WF_``-prefixed environment variables, all rooted in one home folder.

Nothing here is global: callers build a `Settings` from an environment mapping and
pass it down, so tests can point every store at a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict

from wf_pipeline.errors import ConfigError

DEFAULT_HOME = "~/.wf"

# How the steps of a Dagster run execute: all in the launching process (the default), one
# process per step on this machine, one Kubernetes Job per step, or one Celery task per step.
Executor = Literal["in_process", "multiprocess", "k8s", "celery"]
EXECUTORS: tuple[str, ...] = get_args(Executor)

# Every variable `Settings.from_env` reads.
SETTINGS_VARIABLES = (
    "WF_HOME",
    "WF_CAS_URL",
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
)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path
    cas_url: str
    records_url: str
    # A PostgreSQL schema for the record store's tables (None: the connection's default).
    records_schema: str | None = None
    dagster_home: Path
    out_dir: Path
    provider: str = "offline"
    provider_concurrency: int = 8
    executor: Executor = "in_process"
    # Most step processes (or step jobs) at once in one run; None: the executor's default.
    max_processes: int | None = None
    # A run config YAML file holding the executor's ``execution: config:`` mapping.
    executor_config: Path | None = None
    # Where built-in profiles and their assets live (by default the wheel's packaged copy, else the
    # source tree: see wf_pipeline.profiles.builtin).
    builtin_root: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("WF_HOME") or DEFAULT_HOME).expanduser().resolve()
        executor = env.get("WF_EXECUTOR") or "in_process"
        if executor not in EXECUTORS:
            raise ConfigError(
                "CONFIG_BAD_EXECUTOR",
                f"WF_EXECUTOR={executor!r} is not one of {', '.join(EXECUTORS)}",
                executor=executor,
            )
        executor_config = env.get("WF_EXECUTOR_CONFIG")
        return cls(
            home=home,
            cas_url=env.get("WF_CAS_URL") or (home / "cas").as_uri(),
            records_url=env.get("WF_RECORDS_URL") or f"sqlite:///{home / 'records.db'}",
            records_schema=env.get("WF_RECORDS_SCHEMA") or None,
            dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").expanduser().resolve(),
            out_dir=Path(env.get("WF_OUT") or home / "out").expanduser().resolve(),
            provider=env.get("WF_PROVIDER") or "offline",
            provider_concurrency=_positive_int(env, "WF_PROVIDER_CONCURRENCY") or 8,
            executor=executor,
            max_processes=_positive_int(env, "WF_MAX_PROCESSES"),
            executor_config=Path(executor_config).expanduser().resolve() if executor_config else None,
            builtin_root=Path(env.get("WF_BUILTIN_ROOT") or _default_builtin_root()).expanduser().resolve(),
        )

    def to_env(self) -> dict[str, str]:
        """These settings as the variables `from_env` reads, for processes that must share them.

        Steps on other processes (the multiprocess executor) open their runtime from the
        environment they inherit; ``Settings.from_env(s.to_env()) == s``.
        """
        optional = {
            "WF_RECORDS_SCHEMA": self.records_schema,
            "WF_MAX_PROCESSES": None if self.max_processes is None else str(self.max_processes),
            "WF_EXECUTOR_CONFIG": None if self.executor_config is None else str(self.executor_config),
        }
        return {
            "WF_HOME": str(self.home),
            "WF_CAS_URL": self.cas_url,
            "WF_RECORDS_URL": self.records_url,
            "DAGSTER_HOME": str(self.dagster_home),
            "WF_OUT": str(self.out_dir),
            "WF_PROVIDER": self.provider,
            "WF_PROVIDER_CONCURRENCY": str(self.provider_concurrency),
            "WF_EXECUTOR": self.executor,
            "WF_BUILTIN_ROOT": str(self.builtin_root),
            **{name: value for name, value in optional.items() if value is not None},
        }

    def ensure_dirs(self) -> None:
        for path in (self.home, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError("CONFIG_BAD_NUMBER", f"{name}={raw!r} is not a positive whole number", name=name)
    return value


def _default_builtin_root() -> Path:
    # Imported here, not at the top: wf_pipeline.profiles imports this module through its loader.
    from wf_pipeline.profiles.builtin import builtin_root

    return builtin_root()
