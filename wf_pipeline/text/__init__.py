"""Shared text tools: one Markdown reader (markdown-it-py), one language table, one source decoder."""

from wf_pipeline.text.decoding import decode_source, source_encoding
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
    "decode_source",
    "detect_language",
    "extension_language",
    "read_markdown",
    "shebang_language",
    "source_encoding",
]
