"""Settings from ``WF_``-prefixed environment variables, all rooted in one home folder.

Nothing here is global: callers build a `Settings` from an environment mapping and
pass it down, so tests can point every store at a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

DEFAULT_HOME = "~/.wf"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path
    cas_url: str
    records_url: str
    dagster_home: Path
    out_dir: Path
    provider: str = "offline"
    provider_concurrency: int = 8
    # Where built-in profiles and their assets live (the repository root by default).
    builtin_root: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("WF_HOME") or DEFAULT_HOME).expanduser().resolve()
        return cls(
            home=home,
            cas_url=env.get("WF_CAS_URL") or (home / "cas").as_uri(),
            records_url=env.get("WF_RECORDS_URL") or f"sqlite:///{home / 'records.db'}",
            dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").expanduser().resolve(),
            out_dir=Path(env.get("WF_OUT") or home / "out").expanduser().resolve(),
            provider=env.get("WF_PROVIDER") or "offline",
            provider_concurrency=int(env.get("WF_PROVIDER_CONCURRENCY") or 8),
            builtin_root=Path(env.get("WF_BUILTIN_ROOT") or _repo_root()).expanduser().resolve(),
        )

    def ensure_dirs(self) -> None:
        for path in (self.home, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)


def _repo_root() -> Path:
    # Built-in profiles/ and assets/ sit beside the package in the source tree.
    return Path(__file__).resolve().parent.parent
