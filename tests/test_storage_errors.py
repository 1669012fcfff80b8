"""Full disks, I/O errors, file modes and passwords in messages, on real storage.

The full disk is a real tmpfs of a few KiB (see ``tests/fullfs_support.py``), so the
operating system itself answers ENOSPC.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.fullfs_support import run_on_full_fs
from wf_pipeline.cas import open_cas
from wf_pipeline.errors import CasError, masked_url, os_reason

ENOSPC_TEXT = "No space left on device (ENOSPC)"


def test_cas_objects_are_written_owner_only(tmp_path) -> None:
    store = open_cas((tmp_path / "cas").as_uri())
    ref = store.put(b"a prompt with source code")
    hex_digest = ref.artifact_id.split(":", 1)[1]
    path = tmp_path / "cas" / "objects" / hex_digest[:2] / hex_digest[2:]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_full_disk_names_the_reason_in_cas_errors(tmp_path) -> None:
    mount = tmp_path / "full"
    script = f"""
import json
from wf_pipeline.cas import open_cas
from wf_pipeline.errors import CasError
store = open_cas({str(mount / "cas")!r})
store.put(b"small")
try:
    store.put(b"x" * 400_000)
except CasError as exc:
    print(json.dumps({{"code": exc.code, "message": exc.message, "details": exc.details}}))
else:
    print(json.dumps({{"code": None}}))
"""
    result = run_on_full_fs(mount, 64, script)
    assert result["code"] == "CAS_BACKEND_ERROR"
    assert ENOSPC_TEXT in result["message"]
    assert result["details"]["reason"] == ENOSPC_TEXT
    assert len(result["message"].splitlines()) == 1


def test_os_reason_follows_wrapped_causes() -> None:
    try:
        try:
            raise OSError(5, "Input/output error", "/some/file")
        except OSError as inner:
            raise RuntimeError("client failed") from inner
    except RuntimeError as outer:
        assert os_reason(outer) == "Input/output error (EIO)"
    assert os_reason(ValueError("bad\nvalue")) == "ValueError: bad value"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://wf:s3cret@db:5432/records", "postgresql://wf:***@db:5432/records"),
        ("s3://AKIA:s3cret@bucket/cas", "s3://AKIA:***@bucket/cas"),
        ("postgresql://wf@db/records?password=s3cret&sslmode=require", None),
        ("file:///home/wf/cas", "file:///home/wf/cas"),
        ("/plain/path", "/plain/path"),
    ],
)
def test_masked_url_hides_passwords(url, expected) -> None:
    masked = masked_url(url)
    assert "s3cret" not in masked
    if expected is not None:
        assert masked == expected
    else:
        assert "sslmode=require" in masked and "password=***" in masked


def test_cas_messages_never_show_the_password(tmp_path) -> None:
    url = "memory://user:s3cret@host/cas-" + os.urandom(4).hex()
    with pytest.raises(CasError) as caught:
        open_cas("nosuchproto://user:s3cret@host/x")
    assert "s3cret" not in str(caught.value) and "s3cret" not in json.dumps(caught.value.to_dict())
    from wf_pipeline.cas import CasStore

    store = CasStore(url)
    with pytest.raises(CasError) as caught:
        store.get("sha256:" + "0" * 64)
    assert caught.value.code == "CAS_NOT_FOUND" and "s3cret" not in str(caught.value)
    assert "s3cret" not in repr(store)


def test_a_full_disk_under_the_sqlite_record_store_gives_a_record_code_with_the_reason(tmp_path) -> None:
    mount = tmp_path / "full"
    script = f"""
import json
from wf_pipeline.errors import RecordError
from wf_pipeline.metadata.records import ThreadRecord
from wf_pipeline.records import open_record_store
store = open_record_store("sqlite:///{mount / "records.db"}")
try:
    for number in range(200_000):
        store.save_thread(ThreadRecord(thread_id=f"thread:{{number:024x}}", workflow_id="wf" * 200,
                                       target_node_id="node:" + "n" * 400, status="running",
                                       created_at_ms=1, updated_at_ms=1))
except RecordError as exc:
    print(json.dumps({{"code": exc.code, "message": exc.message, "details": exc.details}}))
else:
    print(json.dumps({{"code": None}}))
"""
    # Room for the migrated schema (its tables, indexes and triggers), not for the threads.
    result = run_on_full_fs(mount, 1024, script)
    assert result["code"] == "RECORD_STORAGE_ERROR", result
    assert "database or disk is full" in result["message"]
    assert result["details"]["reason"]


# --- output files: inside the root, the umask's mode, full disks ------------------------


def _umask() -> int:
    # Read without changing it for good: /proc/self/status has the process's umask (Linux).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    pytest.skip("no Umask line in /proc/self/status")


def test_a_written_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_mode(tmp_path) -> None:
    from wf_pipeline.runtime.sinks import write_file_atomically

    created = write_file_atomically(b"# new\n", tmp_path / "tree" / "README.md", overwrite=False)
    assert stat.S_IMODE(created.stat().st_mode) == 0o666 & ~_umask()

    existing = tmp_path / "tree" / "other" / "README.md"
    existing.parent.mkdir()
    existing.write_bytes(b"# old\n")
    existing.chmod(0o640)
    assert write_file_atomically(b"# replaced\n", existing, overwrite=True) == existing
    assert existing.read_bytes() == b"# replaced\n"
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640


def test_in_place_writes_never_leave_the_root_or_go_through_links(tmp_path, caplog) -> None:
    from wf_pipeline.runtime.sinks import write_file_atomically

    root = tmp_path / "tree"
    (root / "real").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "to_outside").symlink_to(outside, target_is_directory=True)
    (root / "to_inside").symlink_to(root / "real", target_is_directory=True)
    (root / "real" / "README.md").symlink_to(outside / "target.md")

    with caplog.at_level("WARNING", logger="wf_pipeline.runtime.sinks"):
        for destination in (
            root / "to_outside" / "README.md",
            root / "to_inside" / "README.md",
            root / "real" / "README.md",
            root / ".." / "escape" / "README.md",
        ):
            assert write_file_atomically(b"# x\n", destination, overwrite=True, root=root) is None
    assert sorted(p.name for p in outside.iterdir()) == []  # nothing written outside
    assert not (tmp_path / "escape").exists()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4 and all(m.startswith("RUN_OUTPUT_OUTSIDE_ROOT: ") for m in messages)
    assert "to_outside" in messages[0]
    # Inside the root, without links, writing works.
    assert write_file_atomically(b"# ok\n", root / "sub" / "README.md", overwrite=False, root=root)


def test_a_refused_destination_is_warned_about_once(tmp_path, caplog) -> None:
    # The final step and the run's summary both write every output: one refusal, one warning.
    from wf_pipeline.runtime.sinks import write_file_atomically

    root = tmp_path / "tree"
    root.mkdir()
    (root / "README.md").symlink_to(tmp_path / "elsewhere.md")
    warned: set[str] = set()  # a runtime's own (`RuntimeEnv.warned`)
    with caplog.at_level("WARNING", logger="wf_pipeline.runtime.sinks"):
        for _ in range(2):
            written = write_file_atomically(
                b"# x\n", root / "README.md", overwrite=True, root=root, warned=warned
            )
            assert written is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("RUN_OUTPUT_OUTSIDE_ROOT: "), messages


def test_a_full_disk_under_an_output_gives_a_code_with_the_reason(tmp_path) -> None:
    mount = tmp_path / "full"
    script = f"""
import json
from pathlib import Path
from wf_pipeline.errors import WfError
from wf_pipeline.runtime.sinks import write_file_atomically
try:
    write_file_atomically(b"#" * 400_000, Path({str(mount)!r}) / "README.md", overwrite=False)
except WfError as exc:
    print(json.dumps({{"code": exc.code, "message": exc.message,
                       "left": sorted(p.name for p in Path({str(mount)!r}).iterdir())}}))
"""
    result = run_on_full_fs(mount, 64, script)
    assert result["code"] == "RUN_OUTPUT_WRITE_FAILED"
    assert ENOSPC_TEXT in result["message"]
    assert result["left"] == []  # nothing half-written, no temporary file left


@pytest.mark.slow
def test_in_place_run_writes_nothing_through_a_linked_folder_and_the_mirror_documents_it(
    tmp_path, monkeypatch, caplog
) -> None:
    from e2e_support import isolated_settings

    from wf_pipeline.service import run_workflow

    monkeypatch.chdir(tmp_path)
    settings = isolated_settings(monkeypatch, tmp_path / "home")
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "core.py").write_text('def run(path):\n    """Run the job at path."""\n    return path\n')
    outside = tmp_path / "outside" / "ext"
    outside.mkdir(parents=True)
    (outside / "helpers.py").write_text(
        'def helper(value):\n    """Double a value."""\n    return 2 * value\n'
    )
    (tree / "ext").symlink_to(outside, target_is_directory=True)

    with caplog.at_level("WARNING", logger="wf_pipeline.runtime.sinks"):
        summary = run_workflow(settings, "docs_writer_thread_v1", tree, in_place=True)
    assert not (outside / "README.md").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["helpers.py"]
    assert (tree / "pkg" / "README.md").exists()
    linked = [t for t in summary.threads if t.path == "ext"]
    if linked:  # the scan documented the linked folder: in place it is refused, by name
        assert linked[0].output_path is None
        assert any(
            r.getMessage().startswith("RUN_OUTPUT_OUTSIDE_ROOT") and "ext" in r.getMessage()
            for r in caplog.records
        )
        mirrored = run_workflow(settings, "docs_writer_thread_v1", tree, out_dir=tmp_path / "mirror")
        (mirror_entry,) = [t for t in mirrored.threads if t.path == "ext"]
        assert mirror_entry.output_path == str(tmp_path / "mirror" / "ext" / "README.md")
        assert not (outside / "README.md").exists()


STORAGE_CODES = {"RUN_INSTANCE_STORAGE_ERROR", "RECORD_STORAGE_ERROR", "CAS_BACKEND_ERROR"}
STORAGE_REASONS = ("database or disk is full", "No space left on device", "disk I/O error")


@pytest.mark.slow
@pytest.mark.parametrize("size_kib", [200, 3072])
def test_wf_run_on_a_full_home_says_code_and_reason_in_text_and_json(tmp_path, size_kib) -> None:
    from e2e_support import SAMPLE_REPO, WF_VARIABLES, copy_tree

    from tests.fullfs_support import run_cli_on_full_fs

    tree = copy_tree(SAMPLE_REPO, tmp_path / "tree")
    mount = tmp_path / "full"
    env = {key: value for key, value in os.environ.items() if key not in WF_VARIABLES}
    env.update(WF_HOME=str(mount / "home"), WF_CONFIG_DIR=str(tmp_path / "config"))
    argv = ["run", "docs_writer_thread_v1", str(tree)]

    status, _, stderr = run_cli_on_full_fs(mount, size_kib, argv, env=env)
    assert status == 1
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    code, _, message = last.partition(": ")
    assert code in STORAGE_CODES, stderr[-2000:]
    assert any(reason in message for reason in STORAGE_REASONS)

    status, stdout, stderr = run_cli_on_full_fs(mount, size_kib, [*argv, "--json"], env=env)
    assert status == 1 and "Traceback" not in stderr
    error = json.loads(stdout)["error"]
    assert error["code"] in STORAGE_CODES
    assert any(reason in error["details"]["reason"] for reason in STORAGE_REASONS)


def test_provider_messages_never_show_a_password_of_the_base_url() -> None:
    from wf_pipeline.errors import WfError
    from wf_pipeline.providers import ProviderRequest, create_provider

    provider = create_provider(
        "openai", {"base_url": "http://user:s3cret@127.0.0.1:9/v1", "model": "m", "max_retries": "0"}, {}
    )
    request = ProviderRequest(
        workflow_id="wf",
        thread_id="thread:1",
        turn_id="t",
        output_type="readme_final",
        output_format="markdown",
        system_prompt="",
        user_prompt="hello",
        inputs={},
        timeout_ms=2000,
    )
    with pytest.raises(WfError) as caught:
        provider.complete(request)
    assert caught.value.code == "PROVIDER_CONNECTION_ERROR"
    assert "s3cret" not in str(caught.value) and "user:***@127.0.0.1" in str(caught.value)
