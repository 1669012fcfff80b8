"""Built-in generic gate evaluators; importing this module registers them.

Workflow-specific gates are registered by their workflow's plug-in
(``wf_pipeline.workflows``), never from here.
"""

from __future__ import annotations

from wf_pipeline.gates import generic

__all__ = ["generic"]
