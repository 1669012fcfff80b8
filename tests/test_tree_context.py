from __future__ import annotations

import json
from pathlib import Path

import pytest

from wf_pipeline.errors import TreeError
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.payloads import ContextPayload
from wf_pipeline.tree import build_context, context_json_text, detect_language, scan_tree


def write(root: Path, relative: str, data: bytes | str) -> Path:
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return target


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path, "pkg/core.py", "def run():\n    return 1\n")
    write(tmp_path, "pkg/app.ts", "export const x = 1;\n")
    write(tmp_path, "pkg/run", "#!/usr/bin/env bash\necho hi\n")
    write(tmp_path, "pkg/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    write(tmp_path, "pkg/huge.txt", "SECRET-LINE\n" * 500)
    write(tmp_path, "pkg/alpha/a.py", "A = 1\n")
    write(tmp_path, "pkg/beta/b.py", "B = 1\n")
    return tmp_path


def test_context_lists_files_and_children(tree: Path) -> None:
    scan = scan_tree(tree, max_file_bytes=1024)
    payload = build_context(scan, "pkg", {"pkg/alpha": "# alpha\n", "pkg/elsewhere": "ignored"})
    target = scan.node("pkg")
    assert (payload.target.path, payload.target.name, payload.target.node_id) == (
        "pkg",
        "pkg",
        target.node_id,
    )
    assert [f.name for f in payload.files] == ["app.ts", "core.py", "huge.txt", "logo.png", "run"]
    core = payload.file("pkg/core.py")
    assert core is not None
    assert (core.text, core.language, core.size, core.omitted) == (
        "def run():\n    return 1\n",
        "python",
        24,
        None,
    )
    assert payload.file("pkg/app.ts").language == "typescript"
    assert payload.file("pkg/run").language == "shell"
    assert [(c.path, c.node_id, c.head_frame) for c in payload.children] == [
        ("pkg/alpha", scan.node("pkg/alpha").node_id, "# alpha\n"),
        ("pkg/beta", scan.node("pkg/beta").node_id, None),
    ]


def test_omitted_files_never_carry_text(tree: Path) -> None:
    scan = scan_tree(tree, max_file_bytes=1024)
    payload = build_context(scan, "pkg", {})
    assert (payload.file("pkg/logo.png").text, payload.file("pkg/logo.png").omitted) == (None, "binary")
    assert (payload.file("pkg/huge.txt").text, payload.file("pkg/huge.txt").omitted) == (None, "oversized")
    assert "SECRET-LINE" not in context_json_text(payload)


def test_context_json_text_is_canonical_and_round_trips(tree: Path) -> None:
    payload = build_context(scan_tree(tree), "pkg", {"pkg/beta": "# béta\n"})
    text = context_json_text(payload)
    raw = json.loads(text)
    assert text == json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert raw["schema"] == "wf.context.v3"
    assert ContextPayload.model_validate(raw) == payload
    # Same tree, same bytes: the payload's digest is stable.
    assert digest_text(
        context_json_text(build_context(scan_tree(tree), "pkg", {"pkg/beta": "# béta\n"}))
    ) == digest_text(text)


def test_root_context(tree: Path) -> None:
    scan = scan_tree(tree)
    payload = build_context(scan, ".", {})
    assert payload.target.path == "." and payload.target.node_id == scan.root_id
    assert payload.files == ()
    assert [c.path for c in payload.children] == ["pkg"]


@pytest.mark.parametrize(
    "change",
    [
        lambda path: path.write_text("def run():\n    return 2\n"),
        lambda path: path.write_text("def run():\n    return 1\n# grown\n"),
        lambda path: path.unlink(),
    ],
    ids=["edited", "grown", "deleted"],
)
def test_file_changed_after_scan_is_detected(tree: Path, change) -> None:
    scan = scan_tree(tree)
    change(tree / "pkg/core.py")
    with pytest.raises(TreeError) as caught:
        build_context(scan, "pkg", {})
    assert caught.value.code == "TREE_CHANGED_DURING_RUN"


def test_context_of_a_file_or_missing_path(tree: Path) -> None:
    scan = scan_tree(tree)
    with pytest.raises(TreeError) as as_file:
        build_context(scan, "pkg/core.py", {})
    assert as_file.value.code == "TREE_NOT_A_DIRECTORY"
    with pytest.raises(TreeError) as missing:
        build_context(scan, "nope", {})
    assert missing.value.code == "TREE_NODE_NOT_FOUND"


@pytest.mark.parametrize(
    ("name", "text", "language"),
    [
        ("a.py", "", "python"),
        ("a.JS", "", "javascript"),
        ("a.tsx", "", "typescript"),
        ("a.sh", "", "shell"),
        ("README.md", "", "markdown"),
        ("data.json", "", "json"),
        ("conf.yml", "", "yaml"),
        ("pyproject.toml", "", "toml"),
        ("notes.txt", "", "text"),
        ("Makefile", "", "makefile"),
        ("a.unknownext", "#!/bin/sh\n", None),
        ("script", "#!/bin/sh\necho\n", "shell"),
        ("script", "#!/bin/bash\n", "shell"),
        ("script", "#!/usr/bin/env bash\n", "shell"),
        ("script", "#!/usr/bin/env -S python3 -u\n", "python"),
        ("plain", "no shebang\n", None),
        (".bashrc", "alias x=y\n", None),
        ("script", None, None),
    ],
)
def test_detect_language(name: str, text: str | None, language: str | None) -> None:
    assert detect_language(name, text) == language


# --- decoding (PEP 263, byte order marks) ------------------------------------------------


def test_source_text_is_decoded_per_pep_263_once_at_the_context(tmp_path: Path) -> None:
    latin1 = "# -*- coding: latin-1 -*-\n" + 'NAME = "café"\n\n\ndef greet():\n    """Say hé."""\n'
    write(tmp_path, "pkg/latin.py", latin1.encode("latin-1"))
    write(tmp_path, "pkg/bom.py", b"\xef\xbb\xbf" + b'"""Module with a BOM."""\n\n\ndef api():\n    pass\n')
    write(tmp_path, "pkg/bom.md", b"\xef\xbb\xbf# Title\n")
    write(tmp_path, "pkg/tool", "#!/usr/bin/env python3\n# coding: cp1252\nX = '€'\n".encode("cp1252"))
    # Not Python: a coding line means nothing, and Latin-1 bytes are not text.
    write(tmp_path, "pkg/latin.txt", "# coding: latin-1\ncafé\n".encode("latin-1"))
    # Python refuses these itself, so they carry no text either.
    write(tmp_path, "pkg/bad_cookie.py", b"# coding: no-such-codec\nx = 1\n")
    write(tmp_path, "pkg/bom_cookie.py", b"\xef\xbb\xbf# coding: latin-1\nx = 1\n")
    scan = scan_tree(tmp_path)
    payload = build_context(scan, "pkg", {})
    texts = {f.name: f.text for f in payload.files}
    omitted = {f.name: f.omitted for f in payload.files}
    assert texts["latin.py"] == latin1
    assert texts["bom.py"].startswith('"""Module with a BOM."""')
    assert texts["bom.md"] == "# Title\n"
    assert texts["tool"] == "#!/usr/bin/env python3\n# coding: cp1252\nX = '€'\n"
    assert omitted == {
        "bad_cookie.py": "binary",
        "bom.md": None,
        "bom.py": None,
        "bom_cookie.py": "binary",
        "latin.py": None,
        "latin.txt": "binary",
        "tool": None,
    }
    # The stored payload is canonical UTF-8 JSON holding the decoded text.
    stored = {f["name"]: f.get("text") for f in json.loads(context_json_text(payload))["files"]}
    assert stored["latin.py"] == latin1
    assert stored["bom.py"] == texts["bom.py"]


def test_decode_source_is_the_one_rule() -> None:
    from wf_pipeline.text import decode_source, source_encoding

    assert decode_source(b"\xef\xbb\xbfx = 1\n", "m.py") == "x = 1\n"
    assert decode_source(b"x = '\xe9'\n", "m.py") is None  # no declaration: UTF-8, as CPython
    assert decode_source(b"#!/bin/sh\n# vim: set fileencoding=latin-1 :\n\xe9\n", "m.py") == (
        "#!/bin/sh\n# vim: set fileencoding=latin-1 :\né\n"
    )
    # Declarations count on the first two lines only (PEP 263).
    assert decode_source(b"\n\n# coding: latin-1\n\xe9\n", "m.py") is None
    assert decode_source(b"a\x00b", "m.py") is None
    assert decode_source(b"# coding: rot13\nx\n", "m.py") is None  # not a bytes-to-text codec
    assert source_encoding("README.md", b"\xef\xbb\xbf#") == "utf-8-sig"
    assert source_encoding("m.pyi", b"# coding: latin-1\n") == "iso-8859-1"
