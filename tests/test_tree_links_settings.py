"""The opt-in to follow links outside the tree is one setting, seen the same way by every process
that scans: the launcher, out-of-process steps (through the run config) and the sensor."""

from __future__ import annotations

from pathlib import Path

from e2e_support import isolated_settings

from wf_pipeline.cli.main import build_parser
from wf_pipeline.compiler.launch.executors import runtime_run_config
from wf_pipeline.compiler.resources import RUNTIME_KEY, settings_from_config
from wf_pipeline.runtime import RuntimeEnv, scan_workspace
from wf_pipeline.settings import Settings

WORKFLOW = "docs_writer_thread_v1"


def linked_tree(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "notes.md").write_text("# outside\n", encoding="utf-8")
    root = tmp_path / "tree"
    root.mkdir()
    (root / "core.py").write_text("X = 1\n", encoding="utf-8")
    (root / "notes.md").symlink_to(tmp_path / "outside" / "notes.md")
    return root


def test_the_setting_defaults_off_and_reads_its_variable() -> None:
    assert Settings.from_env({}).follow_external_links is False
    assert Settings.from_env({"WF_FOLLOW_EXTERNAL_LINKS": "1"}).follow_external_links is True
    assert Settings.from_env({"WF_FOLLOW_EXTERNAL_LINKS": "false"}).follow_external_links is False


def test_step_processes_get_the_launcher_s_choice_through_the_run_config(tmp_path: Path) -> None:
    launcher = Settings.from_env({"WF_HOME": str(tmp_path)}).model_copy(
        update={"follow_external_links": True}
    )
    config = runtime_run_config(launcher)["resources"][RUNTIME_KEY]["config"]
    assert config["follow_external_links"] is True
    # A step process whose own environment says nothing still follows them.
    assert settings_from_config(config).follow_external_links is True


def test_every_scan_of_a_run_honours_the_setting(tmp_path: Path, monkeypatch) -> None:
    root = linked_tree(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    for follow, expected in ((False, {".", "core.py"}), (True, {".", "core.py", "notes.md"})):
        chosen = settings.model_copy(update={"follow_external_links": follow})
        with RuntimeEnv.open(chosen, workspace_dir=tmp_path) as env:
            scan = scan_workspace(env, env.catalog.get(WORKFLOW), root)
        assert {node.path for node in scan.nodes} == expected
        assert [w.code for w in scan.warnings] == ([] if follow else ["TREE_LINK_OUTSIDE_ROOT"])


def test_the_commands_that_scan_take_the_switch() -> None:
    parser = build_parser()
    for argv in (
        ["scan", "T"],
        ["run", WORKFLOW, "T"],
        ["backfill", WORKFLOW, "T"],
        ["targets", "sync", "T"],
    ):
        assert parser.parse_args(argv).follow_external_links is False
        assert parser.parse_args([*argv, "--follow-external-links"]).follow_external_links is True
