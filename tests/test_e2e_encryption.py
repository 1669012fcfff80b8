"""Encryption end to end: a tree full of canaries, documented with every class required, leaves none in the home.

Two homes document the same tree through Dagster with the offline provider: one with
``encryption: {preset: all_required}``, one with ``encryption: {preset: plaintext}``. The
READMEs must be byte-identical, and a byte scan of the encrypted home (CAS, records,
Dagster instance, telemetry) must find none of the canary strings the tree's files hold,
while the plaintext home's CAS holds them (so the scan can see them).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT, isolated_settings

from wf_pipeline.cas import open_cas
from wf_pipeline.errors import WfError
from wf_pipeline.records import open_record_store
from wf_pipeline.service import run_workflow

pytestmark = pytest.mark.slow

WORKFLOW = "docs_writer_thread_v1"


def canary_tree(root: Path) -> tuple[Path, list[bytes]]:
    """A small package tree whose every file holds a canary string of its own."""
    canaries: list[bytes] = []
    layout = {
        "": ["__init__.py", "core.py"],
        "storage": ["__init__.py", "backend.py", "cache.py"],
        "storage/drivers": ["__init__.py", "disk.py"],
        "api": ["__init__.py", "routes.py"],
    }
    for folder, files in layout.items():
        directory = root / folder
        directory.mkdir(parents=True, exist_ok=True)
        for name in files:
            canary = f"CANARY_{uuid.uuid4().hex}"
            canaries.append(canary.encode())
            stem = name.removesuffix(".py")
            (directory / name).write_text(
                f'"""Module {stem}: keeps {canary} in its docstring."""\n\n'
                f'SECRET_{stem.upper()} = "{canary}"\n\n\n'
                f"def {stem}_entry(value: int) -> int:\n"
                f'    """Return value plus one; see {canary}."""\n'
                "    return value + 1\n",
                encoding="utf-8",
            )
    return root, canaries


def workspace_with(tmp_path: Path, preset: str) -> Path:
    """A workspace whose copy of the docs family base uses ``preset``: every member of the
    family (the docs writer and the architecture notes, whose classes share the home's CAS)
    takes it, as a family's defaults do."""
    workspace = tmp_path / f"workspace-{preset}"
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    base = REPO_ROOT / "profiles" / "bases" / "docs_family.yaml"
    document = yaml.safe_load(base.read_text(encoding="utf-8"))
    document["encryption"] = {"preset": preset}
    (workspace / "profiles" / "bases").mkdir(parents=True)
    (workspace / "profiles" / "bases" / base.name).write_text(yaml.safe_dump(document), encoding="utf-8")
    return workspace


def readmes(out_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out_dir)): path.read_bytes() for path in sorted(out_dir.rglob("README.md"))}


def found_in(root: Path, canaries: list[bytes]) -> dict[str, list[str]]:
    """Canary -> files under ``root`` whose bytes hold it."""
    hits: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for canary in canaries:
                if canary in data:
                    hits.setdefault(canary.decode(), []).append(str(path.relative_to(root)))
    return hits


def test_every_class_required_leaves_no_canary_in_the_home_and_the_same_readmes(
    tmp_path, monkeypatch
) -> None:
    tree, canaries = canary_tree(tmp_path / "pkg")
    monkeypatch.chdir(tmp_path)
    plain_settings = isolated_settings(monkeypatch, tmp_path / "plain-home")
    run_workflow(
        plain_settings,
        WORKFLOW,
        tree,
        workspace_dir=workspace_with(tmp_path, "plaintext"),
        out_dir=tmp_path / "plain-out",
    )
    sealed_settings = isolated_settings(monkeypatch, tmp_path / "sealed-home")
    summary = run_workflow(
        sealed_settings,
        WORKFLOW,
        tree,
        workspace_dir=workspace_with(tmp_path, "all_required"),
        out_dir=tmp_path / "sealed-out",
    )

    assert all(thread.status == "completed" for thread in summary.threads)
    plain, sealed = readmes(tmp_path / "plain-out"), readmes(tmp_path / "sealed-out")
    assert len(sealed) == 4 and sealed == plain
    # The plaintext home's CAS holds the canaries, so the scan below could see them...
    assert found_in(plain_settings.home / "cas", canaries)
    # ...and the encrypted home holds none, anywhere: objects, records, Dagster, telemetry.
    assert found_in(sealed_settings.home, canaries) == {}
    # Every stored object is sealed, and the records know its data key.
    cas = open_cas(sealed_settings.cas_url)
    records = open_record_store(sealed_settings.records_url)
    try:
        ids = list(cas.iter_artifact_ids())
        assert ids and all(cas.read_object(artifact_id).startswith(b"WFE\x01") for artifact_id in ids)
        assert set(records.data_keys_for(ids)) == set(ids)
    finally:
        records.close()


def test_a_wrong_master_key_stops_a_run_before_anything_is_written(tmp_path, monkeypatch) -> None:
    tree, _ = canary_tree(tmp_path / "pkg")
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    workspace = workspace_with(tmp_path, "all_required")
    run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, out_dir=tmp_path / "out")
    objects_before = sorted(path.name for path in (settings.home / "cas").rglob("*") if path.is_file())
    key_file = settings.default_master_key_file
    key_file.write_text("AAAA" * 11 + "AAA=\n")  # 32 zero bytes: well formed, not this keyring's key
    (tree / "api" / "routes.py").write_text('"""Changed."""\n', encoding="utf-8")

    with pytest.raises(WfError) as caught:
        run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, out_dir=tmp_path / "out")

    assert caught.value.code == "KEYS_MASTER_KEY_INVALID"
    assert (
        sorted(path.name for path in (settings.home / "cas").rglob("*") if path.is_file()) == objects_before
    )


def test_outputs_off_still_writes_every_readme_once_and_verify_finds_them_intact(
    tmp_path, monkeypatch
) -> None:
    from wf_pipeline.service import verify_cas

    tree, _ = canary_tree(tmp_path / "pkg")
    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    workspace = tmp_path / "ws-off"
    shutil.copytree(REPO_ROOT / "assets" / "prompts", workspace / "assets" / "prompts")
    document = yaml.safe_load((REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text(encoding="utf-8"))
    document["encryption"] = {"preset": "docs_family", "output": "off"}
    (workspace / "profiles").mkdir()
    (workspace / "profiles" / f"{WORKFLOW}.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")

    summary = run_workflow(settings, WORKFLOW, tree, workspace_dir=workspace, out_dir=tmp_path / "out")

    assert all(thread.status == "completed" for thread in summary.threads)
    assert summary.provider_calls == 4 * len(summary.threads)  # nothing refused and run again
    assert len(readmes(tmp_path / "out")) == 4
    assert not (settings.home / "cas" / "quarantine").exists()
    report = verify_cas(settings, workspace_dir=workspace)
    assert report["corrupt"] == [] and report["missing"] == []
