"""The ``wf`` console script as a user runs it: real processes, an isolated home, a temp cwd."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_support import REPO_ROOT, SAMPLE_REPO, copy_tree, home_store

from wf_pipeline.errors import CONFIG_BAD_EXECUTOR_CONFIG, CONFIG_STORE_NOT_SHARED
from wf_pipeline.runtime.targets import tree_key_for

WF = REPO_ROOT / ".venv" / "bin" / "wf"
WORKFLOW = "docs_writer_thread_v1"
# Every shipped profile, sorted: the ones `wf profiles validate` lists as valid.
BUILTIN_WORKFLOWS = ["architecture_notes_v1", WORKFLOW]
TURNS = ["evidence_gather", "verification", "readme_struct", "style_refine"]
GATES = ["evidence_gate", "verification_gate", "struct_gate", "final_gate"]
THREAD_FIELDS = {"target", "thread_id", "status", "output_path", "final_artifact_id"}
RUN_TIMEOUT_S = 600

pytestmark = pytest.mark.skipif(not WF.exists(), reason=f"console script not installed at {WF}")


# --- running the command -----------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """Where one user's ``wf`` lives: a home, a user config folder and a working directory."""

    cwd: Path
    home: Path
    config_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WF_") and k != "DAGSTER_HOME"}
        env.update(WF_HOME=str(self.home), WF_CONFIG_DIR=str(self.config_dir), **extra)
        return env

    def start(self, *args: str, prefix: Sequence[str] = (), **extra_env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*prefix, str(WF), *args],
            cwd=self.cwd,
            env=self.env(**extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wf(self, *args: str, prefix: Sequence[str] = (), **extra_env: str) -> subprocess.CompletedProcess:
        process = self.start(*args, prefix=prefix, **extra_env)
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def wf_json(self, *args: str, expect_rc: int = 0, **extra_env: str):
        result = self.wf(*args, "--json", **extra_env)
        assert result.returncode == expect_rc, (result.returncode, result.stdout, result.stderr)
        return json.loads(result.stdout)

    def cas_bytes(self, artifact_id: str) -> bytes:
        """The artifact's plaintext, opened with the home's own keyring (objects rest sealed)."""
        with home_store(self.home) as store:
            assert store.read_object(artifact_id).startswith(b"WFE\x01")  # sealed at rest
            return store.get(artifact_id)


def make_sandbox(base: Path) -> Sandbox:
    cwd = base / "cwd"
    cwd.mkdir(parents=True)
    return Sandbox(cwd=cwd, home=base / "wf-home", config_dir=base / "user-config")


@pytest.fixture
def sandbox(tmp_path) -> Sandbox:
    return make_sandbox(tmp_path)


def sha256_id(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def snapshot(root: Path) -> set[str]:
    """Every path under ``root`` (relative), to prove a command wrote nothing."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def readmes_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("README.md"))}


# --- 1. bad input writes nothing ------------------------------------------------------


def _without_file_access_rights() -> tuple[list[str], bool] | None:
    """A command prefix under which permission bits bind, and whether it switches user.

    root ignores permission bits through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so
    ``chmod 000`` alone would not make a tree unreadable. setpriv drops both from the
    bounding set (the interpreter, perhaps under root's home, stays reachable);
    runuser switches to ``nobody``, which then needs a home it can write.
    """
    if os.geteuid() != 0:
        return [], False
    if shutil.which("setpriv"):
        return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", "--"], False
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"], True
    return None


@pytest.fixture
def unreadable_case(tmp_path) -> Iterator[tuple[Sandbox, Path, list[str]]]:
    access = _without_file_access_rights()
    if access is None:
        pytest.skip("running as root without setpriv or runuser: cannot make a tree unreadable")
    prefix, switches_user = access
    if switches_user:
        # tmp_path's parents are private to root; nobody needs a world-writable base.
        base = Path(tempfile.mkdtemp(prefix="wf-cli-unreadable-", dir="/tmp"))
        base.chmod(0o777)
    else:
        base = tmp_path / "unreadable"
        base.mkdir()
    box = make_sandbox(base)
    box.cwd.chmod(0o777)
    tree = base / "locked_tree"
    tree.mkdir()
    (tree / "a.py").write_text("def a():\n    return 1\n")
    tree.chmod(0o000)
    try:
        yield box, tree, prefix
    finally:
        tree.chmod(0o755)
        if switches_user:
            shutil.rmtree(base, ignore_errors=True)


def _bad_input(kind: str, sandbox: Sandbox) -> tuple[list[str], str]:
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "sensors", sandbox.cwd / "sensors")
    if kind == "missing":
        return [WORKFLOW, str(sandbox.cwd / "no-such-tree")], "TREE_PATH_MISSING"
    if kind == "file":
        return [WORKFLOW, str(tree / "base.py")], "TREE_NOT_A_DIRECTORY"
    if kind == "unknown_workflow":
        return ["no_such_workflow_v9", str(tree)], "PROFILE_NOT_FOUND"
    raise AssertionError(kind)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("kind", ["missing", "file", "unknown_workflow"])
def test_run_rejects_bad_input_before_writing_anything(sandbox, kind, as_json):
    args, code = _bad_input(kind, sandbox)
    before = snapshot(sandbox.cwd.parent)

    result = sandbox.wf("run", *args, *(["--json"] if as_json else []))

    assert result.returncode == 1, (result.stdout, result.stderr)
    if as_json:
        assert json.loads(result.stdout)["error"]["code"] == code
    else:
        assert result.stderr.startswith(f"{code}:"), result.stderr
        assert result.stdout == ""
    assert not sandbox.home.exists()
    assert snapshot(sandbox.cwd.parent) == before


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_run_on_an_unreadable_tree_writes_nothing(unreadable_case, as_json):
    box, tree, prefix = unreadable_case
    before = snapshot(box.cwd.parent)

    result = box.wf("run", WORKFLOW, str(tree), *(["--json"] if as_json else []), prefix=prefix)

    assert result.returncode == 1, (result.stdout, result.stderr)
    if as_json:
        assert json.loads(result.stdout)["error"]["code"] == "TREE_UNREADABLE"
    else:
        assert result.stderr.startswith("TREE_UNREADABLE:"), result.stderr
    assert not box.home.exists()
    assert snapshot(box.cwd.parent) == before


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("kind", ["executor_config", "memory_stores"])
def test_run_refuses_executor_settings_no_run_can_use_before_writing_anything(sandbox, kind, as_json):
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "sensors", sandbox.cwd / "sensors")
    if kind == "executor_config":
        config = sandbox.cwd / "executor.yaml"
        config.write_text("execution: {config: {bogus_key: 1}}\n")
        env, code = {"WF_EXECUTOR_CONFIG": str(config)}, CONFIG_BAD_EXECUTOR_CONFIG
    else:
        env, code = {"WF_CAS_URL": "memory://x", "WF_RECORDS_URL": "memory://x"}, CONFIG_STORE_NOT_SHARED
    before = snapshot(sandbox.cwd.parent)

    result = sandbox.wf(
        "run", WORKFLOW, str(tree), *(["--json"] if as_json else []), WF_EXECUTOR="multiprocess", **env
    )

    assert result.returncode == 1, (result.stdout, result.stderr)
    if as_json:
        error = json.loads(result.stdout)["error"]
        assert error["code"] == code and error["details"]["executor"] == "multiprocess"
    else:
        assert result.stderr.startswith(f"{code}:"), result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert not sandbox.home.exists()  # no records, no instance, no CAS
    assert snapshot(sandbox.cwd.parent) == before


@pytest.mark.parametrize(
    "args",
    [
        ["run", WORKFLOW, "{tree}", "--overwrite"],
        ["--json", "run", WORKFLOW, "{tree}", "--overwrite"],
        ["threads", "show"],
        ["threads", "list", "thread:abc"],
        ["threads", "show", "thread:abc", "thread:def"],
        ["profiles", "show"],
        ["profiles", "list", WORKFLOW],
        ["run", WORKFLOW],
        ["run", "--agent", "docs_agent", WORKFLOW, "{tree}"],
        ["run", "--agent", "docs_agent"],
        ["workflows", "draw"],
        ["no-such-command"],
    ],
    ids=[
        "overwrite-alone",
        "overwrite-alone-json",
        "threads-show",
        "threads-list-extra",
        "threads-show-extra",
        "profiles-show",
        "profiles-list-extra",
        "missing-path",
        "agent-and-workflow",
        "agent-without-path",
        "workflows-unknown-action",
        "unknown",
    ],
)
def test_usage_errors_exit_2_with_the_usage_line_and_write_nothing(sandbox, args):
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "sensors", sandbox.cwd / "sensors")
    before = snapshot(sandbox.cwd.parent)

    result = sandbox.wf(*[arg.format(tree=tree) for arg in args])

    assert result.returncode == 2, (result.returncode, result.stderr)  # argparse's status, as documented
    assert result.stderr.startswith("usage: wf"), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert snapshot(sandbox.cwd.parent) == before


# --- 2 and 4. a full run of the sample tree, reruns, thread records ---------------------


@dataclass(frozen=True)
class SampleRun:
    box: Sandbox
    tree: Path
    summary: dict


@pytest.fixture(scope="module")
def sample_runs(tmp_path_factory) -> tuple[SampleRun, SampleRun]:
    """The sample tree documented twice, in two separate homes and tree locations, concurrently."""
    runs = []
    for name in ("first", "second"):
        box = make_sandbox(tmp_path_factory.mktemp(f"sample-{name}"))
        tree = copy_tree(SAMPLE_REPO, box.cwd.parent / "trees" / "sample_repo")
        runs.append((box, tree, box.start("run", WORKFLOW, str(tree), "--json")))
    finished = []
    for box, tree, process in runs:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        assert process.returncode == 0, (stdout, stderr)
        finished.append(SampleRun(box, tree, json.loads(stdout)))
    return finished[0], finished[1]


@pytest.mark.slow
@pytest.mark.xdist_group("cli_sample_runs")
def test_run_json_reports_every_thread_completed_with_its_readme(sample_runs):
    run, _ = sample_runs
    summary = run.summary
    threads = summary["threads"]
    assert summary["workflow_id"] == WORKFLOW
    assert {t["path"] for t in threads} == {
        ".",
        "docs",
        "scripts",
        "stationkit",
        "stationkit/sensors",
        "stationkit/storage",
        "tests",
        "web",
    }
    assert summary["threads_reused"] == 0
    assert summary["provider_calls"] == len(TURNS) * len(threads)
    assert len({t["thread_id"] for t in threads}) == len(threads)
    for thread in threads:
        assert THREAD_FIELDS <= thread.keys()
        assert thread["status"] == "completed", thread
        assert thread["thread_id"].startswith("thread:")
        # Keys and the default output folder name the tree by its base name and root digest.
        key = tree_key_for(run.tree)
        assert key.startswith("sample_repo~")
        assert thread["target"] == (key if thread["path"] == "." else f"{key}/{thread['path']}")
        readme = Path(thread["output_path"])
        # Default output mirrors the tree under $WF_HOME/out/<tree key>.
        assert summary["out_dir"] == str(run.box.home / "out" / key)
        assert readme == run.box.home / "out" / key / thread["path"] / "README.md"
        assert sha256_id(readme.read_bytes()) == thread["final_artifact_id"]
    # The tree itself is left alone.
    assert not list(run.tree.rglob("README.md"))


@pytest.mark.slow
@pytest.mark.xdist_group("cli_sample_runs")
def test_readmes_are_identical_across_homes_and_name_no_absolute_path(sample_runs):
    first, second = sample_runs
    first_readmes = readmes_under(Path(first.summary["out_dir"]))
    second_readmes = readmes_under(Path(second.summary["out_dir"]))
    assert len(first_readmes) == len(first.summary["threads"])
    assert first_readmes == second_readmes
    assert [t["final_artifact_id"] for t in first.summary["threads"]] == [
        t["final_artifact_id"] for t in second.summary["threads"]
    ]
    forbidden = {str(REPO_ROOT), str(Path.home())}
    for run in (first, second):
        forbidden |= {str(run.tree), str(run.box.home), str(run.box.cwd.parent)}
    for name, data in first_readmes.items():
        text = data.decode("utf-8")
        assert text.startswith("# "), name
        assert not [path for path in forbidden if path in text], name


@pytest.mark.slow
@pytest.mark.xdist_group("cli_sample_runs")
def test_second_run_reuses_every_thread_without_provider_calls(sample_runs):
    run, _ = sample_runs
    again = run.box.wf_json("run", WORKFLOW, str(run.tree))
    assert again["provider_calls"] == 0
    assert again["threads_reused"] == len(run.summary["threads"])
    assert again["dagster_run_ids"] == []
    assert all(t["reused"] and t["status"] == "completed" for t in again["threads"])
    assert {t["thread_id"]: t["final_artifact_id"] for t in again["threads"]} == {
        t["thread_id"]: t["final_artifact_id"] for t in run.summary["threads"]
    }


@pytest.mark.slow
@pytest.mark.xdist_group("cli_sample_runs")
def test_threads_list_shows_the_runs_threads(sample_runs):
    run, _ = sample_runs
    listed = run.box.wf_json("threads", "list")
    assert {t["thread_id"]: (t["target"], t["status"]) for t in listed} == {
        t["thread_id"]: (t["target"], "completed") for t in run.summary["threads"]
    }
    assert {t["workflow_id"] for t in listed} == {WORKFLOW}
    assert run.box.wf_json("threads", "list", "--workflow", "no_such_workflow") == []


@pytest.mark.slow
@pytest.mark.xdist_group("cli_sample_runs")
def test_threads_show_lists_turns_with_gates_and_artifacts_in_the_cas(sample_runs):
    run, _ = sample_runs
    for thread in run.summary["threads"]:
        details = run.box.wf_json("threads", "show", thread["thread_id"])
        assert details["thread_id"] == thread["thread_id"]
        assert details["status"] == "completed"
        turns = details["turns"]
        assert [(t["seq"], t["turn_id"], t["attempt"]) for t in turns] == [
            (seq, turn_id, 1) for seq, turn_id in enumerate(TURNS, start=1)
        ]
        assert [(t["gate"]["gate_id"], t["gate"]["outcome"], t["gate"]["reasons"]) for t in turns] == [
            (gate_id, "pass", []) for gate_id in GATES
        ]
        assert turns[-1]["output_artifact_id"] == thread["final_artifact_id"]
        for turn in turns:
            assert turn["status"] == "completed"
            assert turn["input_artifact_ids"], turn
            for artifact_id in [turn["output_artifact_id"], *turn["input_artifact_ids"]]:
                assert sha256_id(run.box.cas_bytes(artifact_id)) == artifact_id


@pytest.mark.parametrize("json_at", ["none", "end", "before-id", "before-action"])
def test_threads_show_unknown_id_is_an_error(sandbox, json_at):
    thread_id = "thread:000000000000000000000000"
    args = {
        "none": ["threads", "show", thread_id],
        "end": ["threads", "show", thread_id, "--json"],
        "before-id": ["threads", "show", "--json", thread_id],
        "before-action": ["threads", "--json", "show", thread_id],
    }[json_at]
    as_json = json_at != "none"
    result = sandbox.wf(*args)
    assert result.returncode == 1
    if as_json:
        assert json.loads(result.stdout)["error"]["code"] == "RUN_UNKNOWN_THREAD"
    else:
        assert result.stderr.startswith("RUN_UNKNOWN_THREAD:")


# --- 3. writing into the tree -----------------------------------------------------------


@pytest.mark.slow
def test_in_place_keeps_existing_readmes_unless_overwrite(sandbox):
    tree = copy_tree(SAMPLE_REPO / "stationkit", sandbox.cwd / "stationkit")
    hand_written = b"# Storage\n\nWritten by hand; keep.\n"
    (tree / "storage" / "README.md").write_bytes(hand_written)

    first = sandbox.wf_json("run", WORKFLOW, str(tree), "--in-place")
    by_path = {t["path"]: t for t in first["threads"]}
    assert set(by_path) == {".", "sensors", "storage"}
    assert all(t["status"] == "completed" for t in first["threads"])
    assert first["out_dir"] == str(tree.resolve()) and first["in_place"] is True
    for path in (".", "sensors"):
        readme = tree / path / "README.md"
        assert by_path[path]["output_path"] == str(readme)
        assert sha256_id(readme.read_bytes()) == by_path[path]["final_artifact_id"]
    assert by_path["storage"]["output_path"] is None
    assert (tree / "storage" / "README.md").read_bytes() == hand_written
    assert not (sandbox.home / "out").exists()

    second = sandbox.wf_json("run", WORKFLOW, str(tree), "--in-place", "--overwrite")
    storage = next(t for t in second["threads"] if t["path"] == "storage")
    assert storage["status"] == "completed"
    assert storage["output_path"] == str(tree / "storage" / "README.md")
    written = (tree / "storage" / "README.md").read_bytes()
    assert written != hand_written
    assert sha256_id(written) == storage["final_artifact_id"]


# --- 5. profiles ------------------------------------------------------------------------


def _copy_shipped_profile(layer_root: Path) -> Path:
    """The shipped profile and its prompts, as a workspace layer at ``layer_root``."""
    (layer_root / "profiles").mkdir(parents=True)
    profile = layer_root / "profiles" / f"{WORKFLOW}.yaml"
    shutil.copy(REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml", profile)
    shutil.copytree(REPO_ROOT / "assets" / "prompts", layer_root / "assets" / "prompts")
    return profile


def _listed(sandbox: Sandbox) -> dict[str, dict]:
    return {row["workflow_id"]: row for row in sandbox.wf_json("profiles", "list")}


def test_profiles_list_shows_the_builtin_layer_from_an_empty_cwd(sandbox):
    row = _listed(sandbox)[WORKFLOW]
    assert row["layer"] == "builtin"
    assert Path(row["source"]) == REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml"


def test_profiles_list_prefers_a_workspace_copy(sandbox):
    copy = _copy_shipped_profile(sandbox.cwd)
    row = _listed(sandbox)[WORKFLOW]
    assert row["layer"] == "workspace"
    assert Path(row["source"]).resolve() == copy.resolve()


def test_profiles_validate_accepts_every_layer(sandbox):
    result = sandbox.wf("profiles", "validate")
    assert result.returncode == 0, result.stderr
    assert WORKFLOW in sandbox.wf_json("profiles", "validate")["valid"]


def _duplicate_seq_profile(path: Path) -> Path:
    text = (REPO_ROOT / "profiles" / f"{WORKFLOW}.yaml").read_text()
    assert "    seq: 2\n" in text
    path.write_text(text.replace("    seq: 2\n", "    seq: 1\n"))
    return path


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_profiles_validate_file_reports_the_profile_error_code(sandbox, as_json):
    broken = _duplicate_seq_profile(sandbox.cwd / "broken.yaml")
    result = sandbox.wf("profiles", "validate", "--file", str(broken), *(["--json"] if as_json else []))
    assert result.returncode == 1
    if as_json:
        report = json.loads(result.stdout)
        assert report["valid"] == []
        assert [(bad["code"], bad["path"]) for bad in report["invalid"]] == [
            ("PROFILE_DUPLICATE_SEQ", str(broken))
        ]
    else:
        assert "PROFILE_DUPLICATE_SEQ: " in result.stdout, result.stdout


def test_profiles_validate_file_accepts_the_shipped_profile(sandbox):
    copy = _copy_shipped_profile(sandbox.cwd)
    assert sandbox.wf_json("profiles", "validate", "--file", str(copy)) == {
        "valid": [WORKFLOW],
        "invalid": [],
    }


def test_profiles_validate_reports_a_broken_workspace_profile(sandbox):
    _copy_shipped_profile(sandbox.cwd)
    broken = _duplicate_seq_profile(sandbox.cwd / "profiles" / f"{WORKFLOW}.yaml")
    result = sandbox.wf("profiles", "validate")
    assert result.returncode == 1
    assert f"PROFILE_DUPLICATE_SEQ: {broken}" in result.stdout, result.stdout
    # The built-in layer's profile of the same id still loads and validates.
    (valid,) = [line for line in result.stdout.splitlines() if line.startswith("valid: ")]
    assert WORKFLOW in valid.removeprefix("valid: ").split(", ")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("workflow_id: [unclosed\n", "PROFILE_PARSE_ERROR"),
        ("workflow_id: x\nturns: 3\n", "PROFILE_SCHEMA_INVALID"),
    ],
    ids=["yaml", "schema"],
)
@pytest.mark.parametrize("layer", ["workspace", "user"])
def test_one_bad_profile_file_blocks_no_command(sandbox, text, code, layer):
    root = sandbox.cwd if layer == "workspace" else sandbox.config_dir
    bad = root / "profiles" / "broken.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text(text)

    listed = sandbox.wf("profiles", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert WORKFLOW in {row["workflow_id"] for row in json.loads(listed.stdout)}
    assert f"{code}: " in listed.stderr and str(bad) in listed.stderr  # a warning naming the file

    report = sandbox.wf_json("profiles", "validate", expect_rc=1)
    assert report["valid"] == BUILTIN_WORKFLOWS
    assert [(b["path"], b["layer"], b["code"]) for b in report["invalid"]] == [(str(bad), layer, code)]

    tree = copy_tree(SAMPLE_REPO / "stationkit" / "sensors", sandbox.cwd / "sensors")
    summary = sandbox.wf_json("run", WORKFLOW, str(tree))
    assert [t["status"] for t in summary["threads"]] == ["completed"]


def test_profiles_validate_lists_each_bad_file_once_naming_the_profile_file(sandbox):
    profile = _copy_shipped_profile(sandbox.cwd)
    prompt = sandbox.cwd / "assets" / "prompts" / "docs_writer" / "verification.md"
    # Loads, then fails when rendered: the error is the template's, in this profile.
    prompt.write_text(
        '{% set ns = namespace(s="a") %}{% for i in range(40) %}{% set ns.s = [ns.s, ns.s]|join %}'
        "{% endfor %}{{ ns.s|length }}\n"
    )
    broken = sandbox.cwd / "profiles" / "broken.yaml"
    broken.write_text("workflow_id: [unclosed\n")

    result = sandbox.wf("profiles", "validate")

    assert result.returncode == 1
    assert result.stdout.count(str(broken)) == 1, result.stdout
    assert result.stdout.count("PROFILE_TEMPLATE_LIMIT") == 1, result.stdout
    assert f"PROFILE_TEMPLATE_LIMIT: {profile}: template " in result.stdout, result.stdout
    # The list is the report: the same problems are not warned about again on stderr.
    assert str(broken) not in result.stderr and "PROFILE_" not in result.stderr, result.stderr


def test_profiles_validate_renders_every_template_against_a_sample_context(sandbox):
    profile = _copy_shipped_profile(sandbox.cwd)
    prompt = sandbox.cwd / "assets" / "prompts" / "docs_writer" / "verification.md"
    # Loads (the names are the turn's), fails on every target: a string has no such attribute.
    prompt.write_text(prompt.read_text() + "\n{{ inputs.context.no_such_attribute }}\n")

    report = sandbox.wf_json("profiles", "validate", expect_rc=1)
    # The built-in layer's profile of the same id is the one that stays valid.
    assert report["valid"] == BUILTIN_WORKFLOWS
    assert [(b["path"], b["code"]) for b in report["invalid"]] == [
        (str(profile), "PROFILE_TEMPLATE_UNDEFINED")
    ]
    assert "verification" in report["invalid"][0]["message"]

    prompt.write_text(
        "{% for a in range(100000) %}{% for b in range(100000) %}{{ inputs.context }}{% endfor %}{% endfor %}\n"
    )
    report = sandbox.wf_json("profiles", "validate", expect_rc=1)
    assert [b["code"] for b in report["invalid"]] == ["PROFILE_TEMPLATE_LIMIT"]


def test_profiles_show_describes_the_four_turns(sandbox):
    shown = sandbox.wf_json("profiles", "show", WORKFLOW)
    assert shown["workflow_id"] == WORKFLOW
    assert [(t["seq"], t["turn_id"], t["gate_id"]) for t in shown["turns"]] == [
        (seq, turn_id, gate_id) for seq, (turn_id, gate_id) in enumerate(zip(TURNS, GATES), start=1)
    ]
    assert [t["output_type"] for t in shown["turns"]] == [
        "evidence_map",
        "verification_report",
        "readme_struct",
        "readme_final",
    ]
    assert all(t["prompt_digest"].startswith("sha256:") for t in shown["turns"])


def test_profiles_show_unknown_workflow(sandbox):
    result = sandbox.wf("profiles", "show", "no_such_workflow_v9")
    assert result.returncode == 1
    assert result.stderr.startswith("PROFILE_NOT_FOUND:")


# --- 6. scan ----------------------------------------------------------------------------


def test_scan_reports_counts_warnings_and_a_root_id_that_tracks_content(sandbox):
    tree = sandbox.cwd / "project"
    (tree / "pkg").mkdir(parents=True)
    (tree / "main.py").write_text("def main():\n    return 0\n")
    (tree / "pkg" / "util.py").write_text("def helper(x):\n    return x + 1\n")
    (tree / "pkg" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    (tree / "dangling").symlink_to(tree / "nowhere")

    first = sandbox.wf_json("scan", str(tree))
    assert first["directories"] == 2
    assert first["files"] == 3
    assert first["omitted"] == {"binary": 1, "oversized": 0, "unreadable": 0}
    assert first["root_id"].startswith("node:") and len(first["root_id"]) == len("node:") + 64
    assert [(w["code"], w["path"]) for w in first["warnings"]] == [("TREE_BROKEN_SYMLINK", "dangling")]

    assert sandbox.wf_json("scan", str(tree))["root_id"] == first["root_id"]
    (tree / "pkg" / "util.py").write_text("def helper(x):\n    return x + 2\n")
    assert sandbox.wf_json("scan", str(tree))["root_id"] != first["root_id"]


def test_scan_of_a_missing_path(sandbox):
    result = sandbox.wf("scan", str(sandbox.cwd / "nothing-here"))
    assert result.returncode == 1
    assert result.stderr.startswith("TREE_PATH_MISSING:")


# --- 7. resume --------------------------------------------------------------------------


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.slow
def test_resume_completes_a_thread_that_failed_to_reach_its_provider(sandbox, refusing_port):
    tree = copy_tree(SAMPLE_REPO / "stationkit" / "sensors", sandbox.cwd / "sensors")
    unreachable = {
        "WF_PROVIDER": "openai",
        "WF_OPENAI_BASE_URL": f"http://127.0.0.1:{refusing_port}/v1",
        "WF_OPENAI_MODEL": "x",
    }

    failed = sandbox.wf_json("run", WORKFLOW, str(tree), expect_rc=1, **unreachable)
    [thread] = failed["threads"]
    assert thread["status"] == "failed"
    assert thread["output_path"] is None and thread["final_artifact_id"] is None
    # retry_limit 1: two attempts of the first turn, each one provider call.
    assert failed["provider_calls"] == 2
    details = sandbox.wf_json("threads", "show", thread["thread_id"])
    assert details["status"] == "failed"
    assert [(t["turn_id"], t["attempt"], t["status"], t["error_code"]) for t in details["turns"]] == [
        ("evidence_gather", 1, "failed", "PROVIDER_CONNECTION_ERROR"),
        ("evidence_gather", 2, "failed", "PROVIDER_CONNECTION_ERROR"),
    ]

    resumed = sandbox.wf_json("resume", thread["thread_id"], WF_PROVIDER="offline")
    [done] = resumed["threads"]
    assert done["thread_id"] == thread["thread_id"]
    assert done["status"] == "completed"
    assert resumed["provider_calls"] == len(TURNS)
    assert sha256_id(Path(done["output_path"]).read_bytes()) == done["final_artifact_id"]

    after = sandbox.wf_json("threads", "show", thread["thread_id"])
    assert after["status"] == "completed"
    assert [(t["seq"], t["turn_id"], t["attempt"], t["status"], t["error_code"]) for t in after["turns"]] == [
        (1, "evidence_gather", 1, "failed", "PROVIDER_CONNECTION_ERROR"),
        (1, "evidence_gather", 2, "failed", "PROVIDER_CONNECTION_ERROR"),
        (1, "evidence_gather", 3, "completed", None),
        (2, "verification", 1, "completed", None),
        (3, "readme_struct", 1, "completed", None),
        (4, "style_refine", 1, "completed", None),
    ]
    assert [t["gate"] for t in after["turns"][:2]] == [None, None]
    assert [t["gate"]["outcome"] for t in after["turns"][2:]] == ["pass"] * len(TURNS)

    # Resuming a completed thread calls nothing.
    again = sandbox.wf_json("resume", thread["thread_id"])
    assert again["provider_calls"] == 0 and again["threads_reused"] == 1


def test_resume_unknown_thread(sandbox):
    result = sandbox.wf("resume", "thread:000000000000000000000000")
    assert result.returncode == 1
    assert result.stderr.startswith("RUN_UNKNOWN_THREAD:")


def test_targets_sync_takes_the_only_loaded_workflow(sandbox):
    tree = copy_tree(SAMPLE_REPO, sandbox.cwd / "sample_repo")
    result = sandbox.wf_json("targets", "sync", str(tree))
    assert result["workflow_id"] == WORKFLOW
    assert result["partitions"] == f"{WORKFLOW}_targets"
    assert result["targets"] and result["levels"] >= 2


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_targets_sync_asks_for_the_workflow_when_several_are_loaded(sandbox, as_json):
    copy = _copy_shipped_profile(sandbox.cwd)
    second = copy.with_name("second_workflow.yaml")
    second.write_text(
        copy.read_text(encoding="utf-8").replace(f"workflow_id: {WORKFLOW}", "workflow_id: second_workflow")
    )
    tree = copy_tree(SAMPLE_REPO, sandbox.cwd / "sample_repo")
    if as_json:
        error = sandbox.wf_json("targets", "sync", str(tree), expect_rc=1)["error"]
        assert error["code"] == "RUN_WORKFLOW_REQUIRED"
        assert sorted(error["details"]["workflows"]) == sorted([WORKFLOW, "second_workflow"])
    else:
        result = sandbox.wf("targets", "sync", str(tree))
        assert result.returncode == 1
        assert result.stderr.startswith("RUN_WORKFLOW_REQUIRED: name the workflow: 2 are loaded")
    assert not (sandbox.home / "records.db").exists()  # refused before anything was recorded
    named = sandbox.wf_json("targets", "sync", str(tree), "--workflow", "second_workflow")
    assert named["workflow_id"] == "second_workflow"
