"""The one Markdown reader and the one language table."""

from __future__ import annotations

import pytest

from wf_pipeline.text import detect_language, extension_language, read_markdown, shebang_language
from wf_pipeline.text.languages import canonical_language
from wf_pipeline.text.markdown import Heading, split_lines

LONGER_FENCE = "# Guide\n\n````markdown\n```\n## Not a heading\n```\n````\n\n## Usage\n\nRun it.\n"


def test_a_heading_inside_a_longer_fence_is_code() -> None:
    document = read_markdown(LONGER_FENCE)
    assert document.headings == (Heading(1, "Guide", 0), Heading(2, "Usage", 8))
    (block,) = document.code_blocks
    assert (block.info, block.fenced, block.start_line, block.end_line) == ("markdown", True, 2, 7)
    assert "## Not a heading" in block.content


def test_an_unclosed_fence_runs_to_the_end() -> None:
    assert [h.text for h in read_markdown("# A\n~~~~\n## B\n~~~\n").headings] == ["A"]


def test_setext_headings_are_marked_and_nested_ones_left_out() -> None:
    document = read_markdown("Title\n=====\n\n> ## quoted\n\n- ## listed\n\n### Real ###\n")
    assert document.headings == (Heading(1, "Title", 0, atx=False), Heading(3, "Real", 7))
    assert document.atx_headings() == [Heading(3, "Real", 7)]


def test_line_numbers_follow_commonmark_line_endings() -> None:
    text = "# A\r\n\r\n## B\r## C\n"
    assert split_lines(text) == ["# A", "", "## B", "## C", ""]
    assert [(h.text, h.line) for h in read_markdown(text).headings] == [("A", 0), ("B", 2), ("C", 3)]


def test_sections_list_items_and_paragraphs() -> None:
    text = (
        "# Title\n"  # 0
        "\n"
        "First paragraph\n"  # 2
        "continues here.\n"  # 3
        "\n"
        "## Purpose\n"  # 5
        "\n"
        "- one\n"  # 7
        "  - nested\n"  # 8
        "- two\n"  # 9
        "\n"
        "### Detail\n"  # 11
        "\n"
        "1. three\n"  # 13
        "\n"
        "## Scope\n"  # 15
        "\n"
        "- four\n"  # 17
    )
    document = read_markdown(text)
    purpose, scope = document.sections(2)
    assert (purpose.heading.text, purpose.start_line, purpose.end_line) == ("Purpose", 6, 15)
    assert (scope.start_line, scope.end_line) == (16, len(document.lines))
    assert [(item.line, item.text) for item in document.list_items] == [
        (7, "one"),
        (9, "two"),
        (13, "three"),
        (17, "four"),
    ]
    assert [item.text for item in document.list_items if item.line in purpose] == ["one", "two", "three"]
    assert document.paragraph_lines() == [2, 3]
    assert document.paragraph_lines(after=2) == [3]


@pytest.mark.parametrize(
    ("name", "text", "language"),
    [
        ("a.py", None, "python"),
        ("A.PY", None, "python"),
        ("a.mts", None, "typescript"),
        ("Makefile", None, "makefile"),
        ("notes.txt", "#!/bin/sh\n", "text"),  # a name with an extension is judged by it
        ("script", "#!/usr/bin/env python3.11\n", "python"),
        ("script", "#!/usr/bin/env -S node --no-warnings\n", "javascript"),
        ("script", "#!/bin/dash\n", "shell"),
        ("script", "#!\n", None),
        (".bashrc", "alias x=y\n", None),
        ("script", None, None),
    ],
)
def test_detect_language(name: str, text: str | None, language: str | None) -> None:
    assert detect_language(name, text) == language


def test_table_lookups() -> None:
    assert extension_language("x.tsx") == "typescript"
    assert extension_language("x") is None
    assert shebang_language("#!/usr/local/bin/bash -e\n") == "shell"
    assert shebang_language("echo\n") is None
    assert canonical_language("JS") == "javascript"
    assert canonical_language("Rust") == "rust"
    assert canonical_language(None) is None
