"""Shared set-up for end-to-end tests: an isolated WF_HOME and copies of real trees."""

from __future__ import annotations

import shutil
from pathlib import Path

from wf_pipeline.settings import SETTINGS_VARIABLES, Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_REPO = REPO_ROOT / "assets" / "sample_repo"

# Every variable the product reads, so a developer's exported settings never leak into tests.
WF_VARIABLES = (*SETTINGS_VARIABLES, "WF_CONFIG_DIR", "WF_MASTER_KEY")


def isolated_settings(monkeypatch, home: Path) -> Settings:
    for name in WF_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WF_HOME", str(home))
    monkeypatch.setenv("WF_CONFIG_DIR", str(home / "user-config"))
    return Settings.from_env({"WF_HOME": str(home), "WF_CONFIG_DIR": str(home / "user-config")})


def copy_tree(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return destination
