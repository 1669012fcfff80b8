"""Acceptance: real packages and a directory of 1,000 modules are documented whole.

Copies of ``rich``, ``click``, ``fsspec`` and ``jinja2`` from the project's environment,
and a generated package of 1,000 modules, run through `run_workflow` with the offline
provider and the shipped profile's budgets: every directory with readable text gets a
README, no thread fails.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from e2e_support import copy_tree, isolated_settings

from wf_pipeline.runtime.targets import documentable_directories
from wf_pipeline.service import run_workflow
from wf_pipeline.tree import scan_tree

pytestmark = pytest.mark.slow
WORKFLOW = "docs_writer_thread_v1"


def installed_package(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(next(iter(spec.submodule_search_locations)))


def generated_package(root: Path, modules: int = 1000) -> Path:
    package = root / "many"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f'"""A package of {modules} generated modules."""\n', encoding="utf-8"
    )
    for index in range(modules):
        (package / f"mod_{index:04d}.py").write_text(
            f'"""Module {index} of the generated package."""\n\n\n'
            f"def compute_{index}(value: int) -> int:\n"
            f'    """Return value plus {index}."""\n'
            f"    return value + {index}\n\n\n"
            f"class Holder{index}:\n"
            f'    """Holds a value for module {index}."""\n\n'
            "    def get(self) -> int:\n"
            f"        return {index}\n",
            encoding="utf-8",
        )
    return root


def assert_documented_whole(settings, tree: Path) -> float:
    started = time.monotonic()
    summary = run_workflow(settings, WORKFLOW, tree)
    elapsed = time.monotonic() - started
    failed = [(t.target, t.status) for t in summary.threads if t.status != "completed"]
    assert summary.ok and not failed, failed
    expected = set(documentable_directories(scan_tree(tree)))
    assert {t.path for t in summary.threads} == expected
    for thread in summary.threads:
        readme = Path(thread.output_path)
        assert readme.is_file() and readme.read_text(encoding="utf-8").startswith("# ")
    return elapsed


@pytest.mark.parametrize("package", ["rich", "click", "fsspec", "jinja2"])
def test_a_real_package_gets_a_readme_in_every_directory(tmp_path, monkeypatch, package):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = copy_tree(installed_package(package), tmp_path / package)
    elapsed = assert_documented_whole(settings, tree)
    print(f"{package}: {elapsed:.1f} s")


def test_a_directory_of_a_thousand_modules_is_documented_within_the_output_limit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = generated_package(tmp_path / "generated")
    elapsed = assert_documented_whole(settings, tree)
    (out,) = settings.out_dir.glob("generated~*")  # <WF_OUT>/<tree key>
    readme = (out / "many" / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 262_144
    # What did not fit the evidence map is named, not silently dropped.
    listed = sum(f"`mod_{i:04d}.py`" in readme for i in range(1000))
    assert listed == 1000
    print(f"1,000 modules: {elapsed:.1f} s")
