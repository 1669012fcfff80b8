"""Built-in gate evaluators; importing this module registers them.

Generic checks live in ``generic``; the docs_writer_thread_v1 checks, which reuse them,
live in ``docs_writer``.
"""

from __future__ import annotations

from wf_pipeline.gates import docs_writer, generic

__all__ = ["docs_writer", "generic"]
