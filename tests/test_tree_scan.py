from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest
from deep_tree_support import DEEP_LEVELS, make_deep_tree, remove_children

from wf_pipeline.errors import TreeError
from wf_pipeline.metadata.records import NodeRecord
from wf_pipeline.tree import TreeScan, dir_node_id, file_node_id, scan_tree
from wf_pipeline.tree import scan as scan_module


def write(root: Path, relative: str, data: bytes | str) -> Path:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    target.write_bytes(data)
    return target


def make_sample(root: Path) -> None:
    write(root, "README.md", "# sample\n")
    write(root, "pkg/__init__.py", "")
    write(root, "pkg/core.py", "def run():\n    return 1\n")
    write(root, "pkg/sub/a.py", "A = 1\n")
    write(root, "pkg/sub/b.py", "B = 2\n")
    write(root, "docs/guide.md", "guide\n")


def paths(scan: TreeScan) -> set[str]:
    return {node.path for node in scan.nodes}


def warning_codes(scan: TreeScan) -> dict[str, str]:
    return {warning.path: warning.code for warning in scan.warnings}


def make_unreadable(monkeypatch: pytest.MonkeyPatch, target: Path, seam: str) -> None:
    """chmod 000; when running as root (which reads anyway) the scanner's filesystem seam
    raises the PermissionError the kernel would raise for anyone else."""
    target.chmod(0)
    if os.geteuid() != 0:
        return
    original = getattr(scan_module, seam)

    def denied(path: str):
        if Path(path) == target:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return original(path)

    monkeypatch.setattr(scan_module, seam, denied)


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- ids -----------------------------------------------------------------------------


def test_ids_follow_the_merkle_formula(tmp_path: Path) -> None:
    make_sample(tmp_path)
    scan = scan_tree(tmp_path)

    def expected_file_id(path: str, data: bytes) -> str:
        payload = json.dumps(["file", path, sha256_of(data)], separators=(",", ":")).encode()
        return "node:" + hashlib.sha256(payload).hexdigest()

    a = scan.node("pkg/sub/a.py")
    assert a.content_digest == sha256_of(b"A = 1\n")
    assert a.node_id == expected_file_id("pkg/sub/a.py", b"A = 1\n")
    b = scan.node("pkg/sub/b.py")
    sub_payload = json.dumps(
        ["dir", "pkg/sub", [["a.py", a.node_id], ["b.py", b.node_id]]], separators=(",", ":")
    ).encode()
    assert scan.node("pkg/sub").node_id == "node:" + hashlib.sha256(sub_payload).hexdigest()
    assert scan.root_id == scan.node(".").node_id
    assert all(node.node_id.startswith("node:") and len(node.node_id) == 69 for node in scan.nodes)


def test_rescan_gives_identical_ids_and_order(tmp_path: Path) -> None:
    make_sample(tmp_path)
    first = scan_tree(tmp_path)
    second = scan_tree(tmp_path)
    assert first.nodes == second.nodes
    assert first.root_id == second.root_id


def test_ids_do_not_depend_on_creation_or_listing_order(tmp_path: Path) -> None:
    names = [f"f{index:03d}.txt" for index in range(60)]
    forward, backward = tmp_path / "forward", tmp_path / "backward"
    for name in names:
        write(forward, f"d/{name}", name)
    for name in reversed(names):
        write(backward, f"d/{name}", name)
    forward_scan, backward_scan = scan_tree(forward), scan_tree(backward)
    assert [(n.path, n.node_id) for n in forward_scan.nodes] == [
        (n.path, n.node_id) for n in backward_scan.nodes
    ]
    assert forward_scan.node("d").children == tuple(f"d/{name}" for name in names)


def test_changing_one_file_reids_exactly_it_and_its_ancestors(tmp_path: Path) -> None:
    make_sample(tmp_path)
    before = {node.path: node.node_id for node in scan_tree(tmp_path).nodes}
    write(tmp_path, "pkg/sub/a.py", "A = 2\n")
    after = {node.path: node.node_id for node in scan_tree(tmp_path).nodes}
    assert before.keys() == after.keys()
    changed = {path for path in before if before[path] != after[path]}
    assert changed == {"pkg/sub/a.py", "pkg/sub", "pkg", "."}


def test_node_fields_and_navigation(tmp_path: Path) -> None:
    make_sample(tmp_path)
    scan = scan_tree(tmp_path)
    root = scan.node(".")
    assert (root.kind, root.parent_path, root.depth, root.name) == ("dir", None, 0, tmp_path.name)
    assert root.children == ("README.md", "docs", "pkg")
    core = scan.node("pkg/core.py")
    assert (core.kind, core.parent_path, core.depth, core.size, core.omitted) == ("file", "pkg", 2, 24, None)
    assert scan.node("pkg").size == 0 and scan.node("pkg").content_digest is None
    assert [n.path for n in scan.children_of("pkg")] == ["pkg/__init__.py", "pkg/core.py", "pkg/sub"]
    assert [n.path for n in scan.files_in("pkg")] == ["pkg/__init__.py", "pkg/core.py"]
    assert [n.path for n in scan.directories_bottom_up()] == ["pkg/sub", "docs", "pkg", "."]
    # Pre-order: every directory comes before its contents.
    order = [node.path for node in scan.nodes]
    assert (
        order.index("pkg") < order.index("pkg/core.py") < order.index("pkg/sub") < order.index("pkg/sub/a.py")
    )
    assert scan.root == tmp_path.resolve()


def test_missing_node_is_an_error(tmp_path: Path) -> None:
    make_sample(tmp_path)
    with pytest.raises(TreeError) as caught:
        scan_tree(tmp_path).node("pkg/nope.py")
    assert caught.value.code == "TREE_NODE_NOT_FOUND"


def test_to_records_carry_the_root_id(tmp_path: Path) -> None:
    make_sample(tmp_path)
    scan = scan_tree(tmp_path)
    records = scan.to_records(scanned_at_ms=1234)
    assert len(records) == len(scan.nodes)
    assert all(isinstance(record, NodeRecord) for record in records)
    assert {record.root_id for record in records} == {scan.root_id}
    by_path = {record.path: record for record in records}
    assert by_path["pkg/core.py"].content_digest == scan.node("pkg/core.py").content_digest
    assert by_path["pkg/core.py"].scanned_at_ms == 1234
    assert by_path["."].parent_path is None and by_path["pkg/sub"].parent_path == "pkg"


def test_scanning_writes_nothing(tmp_path: Path) -> None:
    make_sample(tmp_path)
    write(tmp_path, ".gitignore", "*.log\n")

    def snapshot() -> dict[str, tuple[int, int]]:
        return {
            str(path): (path.stat().st_mtime_ns, path.stat().st_size) for path in sorted(tmp_path.rglob("*"))
        }

    before = snapshot()
    scan_tree(tmp_path)
    assert snapshot() == before


# --- ignores -------------------------------------------------------------------------


def test_builtin_ignores(tmp_path: Path) -> None:
    write(tmp_path, "keep.py", "x = 1\n")
    write(tmp_path, ".git/HEAD", "ref: refs/heads/main\n")
    write(tmp_path, "sub/.git", "gitdir: ../.git/worktrees/sub\n")
    write(tmp_path, "myenv/pyvenv.cfg", "home = /usr\n")
    write(tmp_path, "myenv/lib/site.py", "")
    write(tmp_path, ".venv/lib/x.py", "")
    write(tmp_path, "venv/lib/x.py", "")
    write(tmp_path, "node_modules/left-pad/index.js", "")
    write(tmp_path, "pkg/__pycache__/a.cpython-311.pyc", b"\x00")
    write(tmp_path, "wf_pipeline.egg-info/PKG-INFO", "")
    for cache in (".tox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".npm/_cacache", "proj/_cacache"):
        write(tmp_path, f"{cache}/x.txt", "")
    write(tmp_path, "proj/.ipynb_checkpoints/f-checkpoint.py", "x = 1\n")
    write(tmp_path, "pkg/build.py", "# a file named like a build step is kept\n")
    scan = scan_tree(tmp_path)
    assert paths(scan) == {".", "keep.py", "sub", "pkg", "pkg/build.py", "proj"}
    assert scan.warnings == ()


def test_build_output_is_skipped_visibly_and_a_package_named_build_is_kept(tmp_path: Path) -> None:
    write(tmp_path, "build/lib/pkg/x.py", "x = 1\n")
    write(tmp_path, "dist/pkg-1.0.tar.gz", b"\x1f\x8b")
    write(tmp_path, "src/pkg/operations/build/__init__.py", "")
    write(tmp_path, "src/pkg/operations/build/wheel.py", '"""Build a wheel."""\n')
    scan = scan_tree(tmp_path)
    assert "src/pkg/operations/build/wheel.py" in paths(scan)
    assert not any(path.startswith(("build", "dist")) for path in paths(scan))
    assert sorted((w.code, w.path) for w in scan.warnings) == [
        ("TREE_BUILD_OUTPUT_SKIPPED", "build"),
        ("TREE_BUILD_OUTPUT_SKIPPED", "dist"),
    ]


def test_gitignore_patterns_nested_and_negated(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "*.log\nout/\n/top.txt\n")
    write(tmp_path, "app.log", "")
    write(tmp_path, "top.txt", "")
    write(tmp_path, "out/result.txt", "")
    write(tmp_path, "lib/out", "a file, so the directory-only pattern leaves it\n")
    write(tmp_path, "lib/top.txt", "anchored pattern only matches at the root\n")
    write(tmp_path, "lib/debug.log", "")
    write(tmp_path, "lib/.gitignore", "!keep.log\n*.tmp\n")
    write(tmp_path, "lib/keep.log", "")
    write(tmp_path, "lib/deep/keep.log", "")
    write(tmp_path, "lib/deep/x.tmp", "")
    write(tmp_path, "keep.log", "")
    write(tmp_path, "other/x.tmp", "nested patterns stay in their subtree\n")
    scan = scan_tree(tmp_path)
    assert paths(scan) == {
        ".",
        ".gitignore",
        "lib",
        "lib/.gitignore",
        "lib/out",
        "lib/top.txt",
        "lib/keep.log",
        "lib/deep",
        "lib/deep/keep.log",
        "other",
        "other/x.tmp",
    }


def test_extra_ignores_are_relative_to_root_and_outrank_gitignore(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "!fixtures/\n")
    write(tmp_path, "fixtures/big.json", "{}")
    write(tmp_path, "src/fixtures/small.json", "{}")
    write(tmp_path, "src/main.py", "")
    scan = scan_tree(tmp_path, extra_ignores=["/fixtures/", "*.json"])
    assert paths(scan) == {".", ".gitignore", "src", "src/fixtures", "src/main.py"}


def test_invalid_extra_ignore_pattern_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TreeError) as caught:
        scan_tree(tmp_path, extra_ignores=["*.log", "!"])
    assert caught.value.code == "TREE_IGNORE_PATTERN_INVALID"


def test_invalid_gitignore_line_is_warned_and_the_rest_applies(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "*.log\n!\nfoo\\\n")
    write(tmp_path, "a.log", "")
    write(tmp_path, "a.py", "")
    scan = scan_tree(tmp_path)
    assert paths(scan) == {".", ".gitignore", "a.py"}
    assert [(w.code, w.path) for w in scan.warnings] == [
        ("TREE_IGNORE_PATTERN_INVALID", ".gitignore"),
        ("TREE_IGNORE_PATTERN_INVALID", ".gitignore"),
    ]


# --- file classification ---------------------------------------------------------------


def test_binary_and_oversized_files_are_marked_and_still_hashed(tmp_path: Path) -> None:
    big_text = ("line of text\n" * 2000).encode()
    big_binary = b"\x00" + b"x" * 5000
    write(tmp_path, "text.txt", "plain\n")
    write(tmp_path, "nul.dat", b"abc\x00def")
    write(tmp_path, "latin1.txt", "caf\xe9".encode("latin-1"))
    write(tmp_path, "big.txt", big_text)
    write(tmp_path, "big.bin", big_binary)
    scan = scan_tree(tmp_path, max_file_bytes=1024)
    omitted = {node.name: node.omitted for node in scan.nodes if node.kind == "file"}
    assert omitted == {
        "text.txt": None,
        "nul.dat": "binary",
        "latin1.txt": "binary",
        "big.txt": "oversized",
        "big.bin": "binary",
    }
    big = scan.node("big.txt")
    assert big.size == len(big_text)
    assert big.content_digest == sha256_of(big_text)
    assert scan_tree(tmp_path, max_file_bytes=len(big_text)).node("big.txt").omitted is None


def test_invalid_max_file_bytes_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TreeError) as caught:
        scan_tree(tmp_path, max_file_bytes=-1)
    assert caught.value.code == "TREE_INVALID_OPTION"


def test_streamed_hash_covers_files_larger_than_one_chunk(tmp_path: Path) -> None:
    data = os.urandom(scan_module.HASH_CHUNK_BYTES * 2 + 17)
    write(tmp_path, "blob.bin", data)
    node = scan_tree(tmp_path).node("blob.bin")
    assert node.content_digest == sha256_of(data)
    assert node.size == len(data)


# --- anomalies -----------------------------------------------------------------------


def test_symlinks_inside_followed_outside_skipped_loops_and_dangling_links_warned(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "shared.txt", "shared\n")
    secret = write(tmp_path, "secret.txt", "outside marker\n")
    root = tmp_path / "root"
    write(root, "pkg/real.txt", "real\n")
    (root / "pkg/link.txt").symlink_to(root / "pkg/real.txt")
    (root / "pkg/shared").symlink_to(outside)
    (root / "pkg/secret.txt").symlink_to(secret)
    (root / "pkg/back").symlink_to(root)
    (root / "pkg/self").symlink_to(root / "pkg")
    (root / "pkg/dangling").symlink_to(root / "nowhere")
    (root / "pkg/ring").symlink_to(root / "pkg/ring")
    scan = scan_tree(root)
    assert paths(scan) == {".", "pkg", "pkg/real.txt", "pkg/link.txt"}
    assert scan.node("pkg/link.txt").content_digest == scan.node("pkg/real.txt").content_digest
    assert warning_codes(scan) == {
        "pkg/back": "TREE_SYMLINK_LOOP",
        "pkg/self": "TREE_SYMLINK_LOOP",
        "pkg/ring": "TREE_SYMLINK_LOOP",
        "pkg/dangling": "TREE_BROKEN_SYMLINK",
        "pkg/shared": "TREE_LINK_OUTSIDE_ROOT",
        "pkg/secret.txt": "TREE_LINK_OUTSIDE_ROOT",
    }
    # The warning names the link and where it leads, as one `CODE: message` line can show.
    by_path = {warning.path: warning for warning in scan.warnings}
    assert "pkg/secret.txt" in by_path["pkg/secret.txt"].message
    assert str(secret) in by_path["pkg/secret.txt"].message

    followed = scan_tree(root, follow_external_links=True)
    assert {"pkg/shared", "pkg/shared/shared.txt", "pkg/secret.txt"} <= paths(followed)
    assert "TREE_LINK_OUTSIDE_ROOT" not in warning_codes(followed).values()


def test_a_gitignore_linked_from_outside_is_not_read(tmp_path: Path) -> None:
    outside = write(tmp_path, "elsewhere/.gitignore", "*.py\n")
    root = tmp_path / "root"
    write(root, "a.py", "A = 1\n")
    (root / ".gitignore").symlink_to(outside)
    scan = scan_tree(root)
    assert paths(scan) == {".", "a.py"}
    assert warning_codes(scan) == {".gitignore": "TREE_LINK_OUTSIDE_ROOT"}


def test_links_through_an_inside_link_to_the_outside_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "outside/marker.md", "# outside heading\n")
    root = tmp_path / "root"
    (root / "pkg").mkdir(parents=True)
    (root / "hop").symlink_to(tmp_path / "outside")
    (root / "pkg/via").symlink_to(root / "hop")  # inside at first sight, outside once resolved
    scan = scan_tree(root)
    assert paths(scan) == {".", "pkg"}
    assert warning_codes(scan) == {"hop": "TREE_LINK_OUTSIDE_ROOT", "pkg/via": "TREE_LINK_OUTSIDE_ROOT"}


def test_symlink_to_a_sibling_directory_is_not_a_loop(tmp_path: Path) -> None:
    write(tmp_path, "a/x.txt", "x\n")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    scan = scan_tree(tmp_path)
    assert paths(scan) == {".", "a", "a/x.txt", "b", "b/x.txt"}
    assert scan.warnings == ()


def test_unreadable_file_is_recorded_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "ok.txt", "ok\n")
    locked = write(tmp_path, "locked.txt", "secret\n")
    make_unreadable(monkeypatch, locked, "_open_for_read")
    try:
        scan = scan_tree(tmp_path)
    finally:
        locked.chmod(0o644)
    node = scan.node("locked.txt")
    assert (node.omitted, node.content_digest, node.size) == ("unreadable", None, 7)
    assert node.node_id == file_node_id("locked.txt", None)
    assert warning_codes(scan) == {"locked.txt": "TREE_UNREADABLE_FILE"}
    assert scan.node("ok.txt").omitted is None


def test_unreadable_directory_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "ok.txt", "ok\n")
    write(tmp_path, "locked/inside.txt", "x\n")
    locked = tmp_path / "locked"
    make_unreadable(monkeypatch, locked, "_list_directory")
    try:
        scan = scan_tree(tmp_path)
    finally:
        locked.chmod(0o755)
    assert paths(scan) == {".", "ok.txt"}
    assert warning_codes(scan) == {"locked": "TREE_UNREADABLE_DIR"}


def test_non_utf8_names_are_skipped_with_a_warning(tmp_path: Path) -> None:
    root = bytes(tmp_path)
    with open(os.path.join(root, b"bad\xff.txt"), "wb") as handle:
        handle.write(b"x")
    os.mkdir(os.path.join(root, b"dir\xfe"))
    write(tmp_path, "good.txt", "fine\n")
    scan = scan_tree(tmp_path)
    assert paths(scan) == {".", "good.txt"}
    assert warning_codes(scan) == {"bad\\xff.txt": "TREE_NON_UTF8_NAME", "dir\\xfe": "TREE_NON_UTF8_NAME"}
    assert scan.node(".").node_id == dir_node_id(".", [("good.txt", scan.node("good.txt").node_id)])


def test_special_files_are_skipped_without_blocking(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "a\n")
    os.mkfifo(tmp_path / "pipe")
    scan = scan_tree(tmp_path)
    assert paths(scan) == {".", "a.txt"}
    assert warning_codes(scan) == {"pipe": "TREE_SPECIAL_FILE"}


# --- root errors ---------------------------------------------------------------------


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(TreeError) as caught:
        scan_tree(tmp_path / "absent")
    assert caught.value.code == "TREE_PATH_MISSING"


def test_root_that_is_a_file(tmp_path: Path) -> None:
    target = write(tmp_path, "file.txt", "x")
    with pytest.raises(TreeError) as caught:
        scan_tree(target)
    assert caught.value.code == "TREE_NOT_A_DIRECTORY"


def test_unlistable_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    write(root, "a.txt", "a")
    make_unreadable(monkeypatch, root, "_list_directory")
    try:
        with pytest.raises(TreeError) as caught:
            scan_tree(root)
    finally:
        root.chmod(0o755)
    assert caught.value.code == "TREE_UNREADABLE"


def test_root_given_through_a_symlink_is_resolved(tmp_path: Path) -> None:
    write(tmp_path, "real/a.txt", "a")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    via_link, direct = scan_tree(tmp_path / "alias"), scan_tree(tmp_path / "real")
    assert via_link.root == (tmp_path / "real").resolve()
    assert via_link.root_id == direct.root_id


def test_skip_contents_leaves_out_files_by_digest_as_if_ignored(tmp_path):
    from wf_pipeline.metadata.canonical import digest

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    before = scan_tree(tmp_path)
    generated = b"# pkg\n\nGenerated.\n"
    (tmp_path / "pkg" / "README.md").write_bytes(generated)
    assert scan_tree(tmp_path).root_id != before.root_id

    skipped = scan_tree(tmp_path, skip_contents={digest(generated)})
    assert skipped.root_id == before.root_id
    assert [n.path for n in skipped.nodes] == [n.path for n in before.nodes]
    # Different bytes under the same name are real content again.
    (tmp_path / "pkg" / "README.md").write_bytes(generated + b"Edited by hand.\n")
    assert scan_tree(tmp_path, skip_contents={digest(generated)}).root_id != before.root_id


def test_check_root_validates_without_walking(tmp_path):
    from wf_pipeline.tree import check_root

    assert check_root(tmp_path) == tmp_path.resolve()
    for target, code in (
        (tmp_path / "missing", "TREE_PATH_MISSING"),
        (_file(tmp_path), "TREE_NOT_A_DIRECTORY"),
    ):
        with pytest.raises(TreeError) as err:
            check_root(target)
        assert err.value.code == code


def _file(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("x")
    return path


def test_caches_and_installed_packages_are_skipped(tmp_path: Path) -> None:
    """A home folder's caches (`wf run ~`) and a tree's installed packages are not documentation."""
    write(tmp_path, "notes.md", "# notes\n")
    write(tmp_path, ".cache/pip/http/a/b/c/entry", b"cached wheel")
    write(tmp_path, ".cache/pip/selfcheck/x.json", "{}")
    write(tmp_path, "lib/python3.11/site-packages/rich/__init__.py", "")
    for name in (".venv", ".venv311", ".venv-docs", ".tox", ".mypy_cache", ".pytest_cache", "__pycache__"):
        write(tmp_path, f"proj/{name}/x.py", "")
    write(tmp_path, ".cache.py", "# a file named like a cache is kept\n")
    scan = scan_tree(tmp_path)
    assert paths(scan) == {".", "notes.md", ".cache.py", "lib", "lib/python3.11", "proj"}
    assert scan.warnings == ()


def test_a_tree_a_thousand_levels_deep_scans_without_recursion(tmp_path: Path) -> None:
    try:
        _scan_a_thousand_levels(tmp_path)
    finally:
        remove_children(tmp_path)


def _scan_a_thousand_levels(tmp_path: Path) -> None:
    deepest = make_deep_tree(tmp_path)
    scan = scan_tree(tmp_path)
    assert len([n for n in scan.nodes if n.kind == "dir"]) == DEEP_LEVELS + 1
    assert scan.node(f"{deepest}/m{DEEP_LEVELS}.py").depth == DEEP_LEVELS + 1
    order = scan.directories_bottom_up()
    assert order[0].path == deepest and order[-1].path == "."
    # The same tree gives the same ids (the Merkle chain is computed without recursion too).
    assert scan_tree(tmp_path).root_id == scan.root_id
