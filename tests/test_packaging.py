"""Packaging: the wheel carries the built-in layer, runs installed outside the checkout, knows its version."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree

from wf_pipeline.builtin import PACKAGED_DIR, builtin_root, packaged_root, source_root
from wf_pipeline.profiles import Layer, LoadedProfile, load_catalog
from wf_pipeline.settings import Settings

WORKFLOW = "docs_writer_thread_v1"
DIST = "wf_pipeline"
PACKAGED_PREFIX = f"{DIST}/{PACKAGED_DIR}/"
# The checkout folders the build maps into the package, and nothing else of the checkout's data.
BUILTIN_SOURCES = ("profiles", "agents", "assets/prompts")
TIMEOUT_S = 600


def _project_version() -> str:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would point a child at the checkout."""
    dropped = {"DAGSTER_HOME", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k not in dropped}
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def _builtin_source_files() -> dict[str, bytes]:
    """Every file of the checkout's built-in layer, keyed by its path relative to the layer root."""
    files: dict[str, bytes] = {}
    for folder in BUILTIN_SOURCES:
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(REPO_ROOT).as_posix()] = path.read_bytes()
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from the checkout the way a user builds it (pip, isolated build)."""
    out = tmp_path_factory.mktemp("wheel")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(REPO_ROOT),
        ],
        cwd=out,
        env=_clean_env(),
    )
    (built,) = out.glob(f"{DIST}-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_files(wheel) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def _shipped(root: Path) -> LoadedProfile:
    return load_catalog([Layer("builtin", root)]).get(WORKFLOW)


# --- what the wheel holds -----------------------------------------------------------------


def test_wheel_carries_the_builtin_layer_byte_for_byte(wheel_files):
    packaged = {
        name.removeprefix(PACKAGED_PREFIX): data
        for name, data in wheel_files.items()
        if name.startswith(PACKAGED_PREFIX)
    }
    expected = _builtin_source_files()
    assert f"profiles/{WORKFLOW}.yaml" in expected
    assert any(name.startswith("assets/prompts/docs_writer/") for name in expected)
    assert packaged == expected


def test_wheel_holds_the_package_and_not_the_sample_tree_or_tests(wheel_files):
    version = _project_version()
    assert {name.split("/", 1)[0] for name in wheel_files} == {DIST, f"{DIST}-{version}.dist-info"}
    modules = {name for name in wheel_files if name.endswith(".py")}
    on_disk = {
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / DIST).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert modules == on_disk
    assert not [name for name in wheel_files if "sample_repo" in name or "__pycache__" in name]
    entry_points = wheel_files[f"{DIST}-{version}.dist-info/entry_points.txt"].decode()
    assert "wf = wf_pipeline.cli.main:main" in entry_points


def test_wheel_ships_the_telemetry_views_sql(wheel_files):
    # The views are a plain SQL file anyone may run, so the wheel must carry it byte for byte.
    source = (REPO_ROOT / DIST / "telemetry" / "views.sql").read_bytes()
    assert wheel_files[f"{DIST}/telemetry/views.sql"] == source


def test_wheel_ships_the_key_registry(wheel_files):
    # The key registry is data read at import: without it in the wheel nothing loads.
    source = (REPO_ROOT / DIST / "metadata" / "keys.yaml").read_bytes()
    assert wheel_files[f"{DIST}/metadata/keys.yaml"] == source


def test_packaged_layer_gives_the_code_versions_of_the_source_tree(wheel, tmp_path):
    """Same prompt bytes, same digests: threads made from a checkout are reused by a wheel install."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    packaged = _shipped(tmp_path / DIST / PACKAGED_DIR)
    source = _shipped(REPO_ROOT)
    assert packaged.source_path == tmp_path / DIST / PACKAGED_DIR / "profiles" / f"{WORKFLOW}.yaml"
    assert packaged.code_version == source.code_version
    turn_ids = [turn.turn_id for turn in source.profile.ordered_turns()]
    assert [packaged.turn_code_version(t) for t in turn_ids] == [
        source.turn_code_version(t) for t in turn_ids
    ]
    assert {t: packaged.templates[t].digest for t in turn_ids} == {
        t: source.templates[t].digest for t in turn_ids
    }


def test_an_unpacked_wheel_finds_its_packaged_layer_first(wheel, tmp_path):
    """The wheel's own package on the import path: builtin_root() is its _builtin copy, not the checkout."""
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    probe = (
        "import json, wf_pipeline\n"
        "from wf_pipeline.settings import Settings\n"
        "from wf_pipeline.builtin import builtin_root\n"
        "print(json.dumps({'file': wf_pipeline.__file__, 'root': str(builtin_root()),\n"
        "                  'settings': str(Settings.from_env({'WF_HOME': 'unused'}).builtin_root)}))\n"
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # PYTHONPATH comes before site-packages, where the checkout's editable install points.
    result = _run([sys.executable, "-c", probe], cwd=cwd, env=_clean_env(PYTHONPATH=str(unpacked)))
    found = json.loads(result.stdout)
    assert Path(found["file"]) == unpacked / DIST / "__init__.py"
    assert Path(found["root"]) == unpacked / DIST / PACKAGED_DIR
    assert Path(found["settings"]) == unpacked / DIST / PACKAGED_DIR


def test_a_checkout_finds_its_builtin_layer_in_the_source_tree(tmp_path):
    # A checkout (or an editable install of one) has no packaged copy.
    assert not packaged_root().exists()
    assert source_root() == REPO_ROOT
    assert builtin_root() == REPO_ROOT
    assert Settings.from_env({"WF_HOME": str(tmp_path)}).builtin_root == REPO_ROOT
    # WF_BUILTIN_ROOT still wins over either.
    override = Settings.from_env({"WF_HOME": str(tmp_path), "WF_BUILTIN_ROOT": str(tmp_path / "b")})
    assert override.builtin_root == (tmp_path / "b").resolve()


# --- wf --version -------------------------------------------------------------------------


def test_version_flag_prints_the_installed_distribution_version(tmp_path):
    result = _run([sys.executable, "-m", "wf_pipeline.cli.main", "--version"], cwd=tmp_path, env=_clean_env())
    assert result.stdout == f"wf {_project_version()}\n"
    assert importlib.metadata.version(DIST) == _project_version()


# --- an installed wheel, outside the checkout ---------------------------------------------


@pytest.mark.slow
def test_wheel_installed_outside_the_checkout_runs_the_docs_writer(wheel, tmp_path):
    """``pip install`` of the built wheel into a fresh venv in a temp dir runs the docs writer from there.

    Installing every dependency from the registry into a fresh venv takes minutes, so the wheel goes
    in with ``--no-deps`` and the dependencies come from the project's own .venv: a ``.pth`` file in
    the fresh venv appends that venv's site-packages to ``sys.path``. A path line in a ``.pth`` file
    does not process the ``.pth`` files of the folder it names, so the checkout's editable install
    (itself a ``.pth`` file there) never reaches the fresh venv's ``sys.path``; and the fresh venv's
    own site-packages comes first anyway. The test checks both: ``wf_pipeline`` and the built-in
    profile come from the wheel, and the checkout is not importable. The run then must write the
    same READMEs, under the same thread ids, as the checkout's own ``wf`` on the same tree.
    """
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=_clean_env())
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)],
        cwd=tmp_path,
        env=_clean_env(),
    )
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            tmp_path,
            _clean_env(),
        ).stdout.strip()
    )
    (purelib / "wf-project-dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8"
    )

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    assert not cwd.is_relative_to(REPO_ROOT) and not venv.is_relative_to(REPO_ROOT)
    tree = copy_tree(SAMPLE_REPO, tmp_path / "trees" / "sample_repo")
    env = _clean_env(WF_HOME=str(tmp_path / "wf-home"), WF_CONFIG_DIR=str(tmp_path / "user-config"))

    probe = (
        "import json, sys, wf_pipeline; print(json.dumps({'file': wf_pipeline.__file__, 'path': sys.path}))"
    )
    imported = json.loads(_run([str(python), "-c", probe], cwd, env).stdout)
    assert Path(imported["file"]) == purelib / DIST / "__init__.py"
    checkout_entries = [p for p in imported["path"] if p and Path(p).resolve().is_relative_to(REPO_ROOT)]
    assert all(Path(p).resolve().is_relative_to(REPO_ROOT / ".venv") for p in checkout_entries), (
        checkout_entries
    )

    wf = str(venv / "bin" / "wf")
    assert _run([wf, "--version"], cwd, env).stdout == f"wf {_project_version()}\n"
    shown = json.loads(_run([wf, "profiles", "show", WORKFLOW, "--json"], cwd, env).stdout)
    assert shown["layer"] == "builtin"
    assert Path(shown["source"]) == purelib / DIST / PACKAGED_DIR / "profiles" / f"{WORKFLOW}.yaml"
    assert shown["code_version"] == _shipped(REPO_ROOT).code_version

    summary = json.loads(_run([wf, "run", WORKFLOW, str(tree), "--json"], cwd, env).stdout)
    assert summary["threads"] and all(t["status"] == "completed" for t in summary["threads"]), summary
    out = Path(summary["out_dir"])  # <WF_OUT>/<tree key>: the base name and the root's digest
    assert out.parent == tmp_path / "wf-home" / "out" and out.name.startswith("sample_repo~")
    readmes = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("README.md"))}
    assert set(readmes) == {f"{t['path']}/README.md".removeprefix("./") for t in summary["threads"]}

    # The checkout's own wf on the same tree, in another home: same threads, same bytes.
    checkout_env = _clean_env(
        WF_HOME=str(tmp_path / "checkout-home"), WF_CONFIG_DIR=str(tmp_path / "user-config")
    )
    checkout_run = [sys.executable, "-m", "wf_pipeline.cli.main", "run", WORKFLOW, str(tree), "--json"]
    checkout_summary = json.loads(_run(checkout_run, cwd, checkout_env).stdout)
    assert {t["path"]: t["thread_id"] for t in checkout_summary["threads"]} == {
        t["path"]: t["thread_id"] for t in summary["threads"]
    }
    checkout_out = Path(checkout_summary["out_dir"])
    assert {
        p.relative_to(checkout_out).as_posix(): p.read_bytes()
        for p in sorted(checkout_out.rglob("README.md"))
    } == readmes
