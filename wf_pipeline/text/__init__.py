"""Shared text tools: one Markdown reader (markdown-it-py) and one language table."""

from wf_pipeline.text.languages import (
    LANGUAGE_BY_EXTENSION,
    LANGUAGE_BY_INTERPRETER,
    LANGUAGE_BY_NAME,
    canonical_language,
    detect_language,
    extension_language,
    shebang_language,
)
from wf_pipeline.text.markdown import Heading, MarkdownDocument, Section, read_markdown

__all__ = [
    "LANGUAGE_BY_EXTENSION",
    "LANGUAGE_BY_INTERPRETER",
    "LANGUAGE_BY_NAME",
    "Heading",
    "MarkdownDocument",
    "Section",
    "canonical_language",
    "detect_language",
    "extension_language",
    "read_markdown",
    "shebang_language",
]
