"""`.gitignore` files are read the way git reads them: the scan is compared with git itself.

Each fixture is a tree with tricky patterns; ``git ls-files --others --exclude-standard``
on a fresh repository of that tree lists exactly the files git does not ignore, and the
scan must list the same files. Git runs with no global or system configuration, so a
developer's own excludes never take part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from wf_pipeline.tree import scan_tree
from wf_pipeline.tree.ignore import gitignore_lines

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")

BOM = b"\xef\xbb\xbf"

ROOT_GITIGNORE = BOM + (
    b"first_ignored/\n"  # right after the byte order mark: git still reads it
    b"*.log\n"
    b"!keep.log\n"
    b"/anchored.txt\n"
    b"**/deep_any/\n"
    b"a/**/z.txt\n"
    b"trail.txt   \n"  # unescaped trailing spaces are not part of the pattern
    b"space\\ \n"  # an escaped one is
    b"\\#hash.txt\n"  # an escaped # starts a pattern, not a comment
    b"#comment.txt\n"
    b"\\!bang.txt\n"
    b"dironly/\n"
    b"doc/*.md\n"  # a slash in the middle anchors the pattern
    b"*.tmp\r\n"  # CRLF line ending
    b"nested/**\n"
    b"!nested/again.txt\n"
    b"[ab].cfg\n"
    b"?.ini\n"
    b"   \n"
    b"\\\\back.txt\n"
    b"dd/**/\n"  # directories inside dd, not dd itself
    b"**/cachedir/\n"
    b"gen*/\n"
    b"!generated_keep/\n"  # a later negation re-includes a directory
    b"logs/\n"
    b"!logs/important.txt\n"  # cannot re-include below an excluded directory
    b"mid/**/end\n"
)
NESTED_GITIGNORE = b"!*.log\n/local.txt\n"

FILES = [
    "first_ignored/x.txt",
    "kept.txt",
    "a.log",
    "keep.log",
    "sub/b.log",
    "anchored.txt",
    "sub/anchored.txt",
    "x/deep_any/y.txt",
    "deep_any/top.txt",
    "a/z.txt",
    "a/b/c/z.txt",
    "trail.txt",
    "trail.txt   ",
    "space ",
    "space",
    "#hash.txt",
    "#comment.txt",
    "!bang.txt",
    "sub/dironly",
    "dironly/f.txt",
    "doc/r.md",
    "doc/sub/r.md",
    "f.tmp",
    "nested/o.txt",
    "nested/again.txt",
    "nested/inner/k.txt",
    "a.cfg",
    "c.cfg",
    "q.ini",
    "qq.ini",
    "sub/local.txt",
    "local.txt",
    "\\back.txt",
    "dd/f.txt",
    "dd/sub/g.txt",
    "p/cachedir/c.txt",
    "cachedir/c.txt",
    "gen1/x.txt",
    "generated_keep/x.txt",
    "logs/important.txt",
    "mid/end",
    "mid/a/b/end/x.txt",
    "mid/endless.txt",
]


def git_kept_files(root: Path, home: Path) -> set[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "xdg"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    listed = subprocess.run(
        ["git", "-c", "core.quotePath=false", "ls-files", "--others", "--exclude-standard", "-z"],
        cwd=root,
        check=True,
        env=env,
        capture_output=True,
    ).stdout
    return {name for name in listed.decode("utf-8").split("\0") if name}


def make_tree(root: Path) -> None:
    for relative in FILES:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{relative}\n", encoding="utf-8")
    (root / ".gitignore").write_bytes(ROOT_GITIGNORE)
    (root / "sub" / ".gitignore").write_bytes(NESTED_GITIGNORE)
    # Git does not follow a symlinked .gitignore, even one pointing inside the tree.
    (root / "linked").mkdir()
    (root / "linked" / "hidden.txt").write_text("kept: the linked patterns do not apply\n", encoding="utf-8")
    (root / "patterns.txt").write_text("hidden.txt\n", encoding="utf-8")
    (root / "linked" / ".gitignore").symlink_to(root / "patterns.txt")


def test_the_scan_keeps_exactly_the_files_git_keeps(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    make_tree(root)
    scan = scan_tree(root)
    scanned = {node.path for node in scan.nodes if node.kind == "file"}
    expected = git_kept_files(root, tmp_path / "home")
    assert "first_ignored/x.txt" not in expected  # git honours the pattern after the BOM
    assert {
        "kept.txt",
        "#comment.txt",
        "space",
        "sub/b.log",
        "linked/hidden.txt",
    } <= expected  # the fixture really discriminates
    assert scanned == expected
    assert scan.warnings == ()


def test_gitignore_lines_split_like_git() -> None:
    assert gitignore_lines(BOM + b"a\r\nb\n\nc") == ["a", "b", "", "c"]
    # Only LF ends a line: a form feed or a Unicode separator belongs to the pattern.
    assert gitignore_lines(b"x\x0cy\n" + "p\u2028q".encode()) == ["x\x0cy", "p\u2028q"]
    # A byte order mark anywhere else is kept, as git keeps it.
    assert gitignore_lines(b"a\n" + BOM + b"b") == ["a", "\ufeffb"]
