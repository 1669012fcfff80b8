"""A sample render of every prompt template, so a template that always fails is caught at validation.

The sample context is real: a three-directory synthetic tree (`tree.synthetic`) scanned
and turned into a context payload by the same builder runs use. Earlier turns' outputs,
which only a provider can make, are a small JSON object (``{}``), the least a turn reads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from wf_pipeline.errors import ProfileError
from wf_pipeline.metadata.payloads import CONTEXT_REF
from wf_pipeline.profiles import LoadedProfile, render_prompt
from wf_pipeline.runtime.turn import render_variables
from wf_pipeline.tree import build_context, context_json_text, scan_tree
from wf_pipeline.tree.synthetic import generate_tree

# A parent with two children: the context has files and child entries, as a real one does.
SAMPLE_DIRECTORIES = 3
SAMPLE_FANOUT = 2
SAMPLE_OUTPUT_TEXT = "{}"


def _sample_context_text() -> tuple[str, str]:
    with tempfile.TemporaryDirectory(prefix="wf-sample-") as folder:
        root = Path(folder) / "sample_pkg"
        generate_tree(root, directories=SAMPLE_DIRECTORIES, fanout=SAMPLE_FANOUT)
        scan = scan_tree(root)
        payload = build_context(scan, ".", {})
        return root.name, context_json_text(payload)


def sample_render_errors(loaded: LoadedProfile) -> list[ProfileError]:
    """Render every turn's prompt templates of ``loaded`` against a sample context.

    Args:
        loaded: a profile that loaded (its templates parse and name known variables).

    Returns:
        One `ProfileError` per template that failed to render, in turn order (codes of
        `profiles.render_prompt`: ``PROFILE_TEMPLATE_UNDEFINED``, ``PROFILE_TEMPLATE_SECURITY``,
        ``PROFILE_TEMPLATE_RENDER_FAILED``, ``PROFILE_TEMPLATE_LIMIT``); [] when every one
        renders. Each message names the profile file and the turn.

    Raises:
        TreeError: only if the temporary sample tree cannot be written or scanned (a full
            or read-only temporary folder).
    """
    name, context_text = _sample_context_text()
    errors: list[ProfileError] = []
    for turn in loaded.profile.ordered_turns():
        inputs = {ref: context_text if ref == CONTEXT_REF else SAMPLE_OUTPUT_TEXT for ref in turn.input_refs}
        variables = render_variables(loaded.workflow_id, turn.turn_id, ".", name, inputs)
        for template in (loaded.templates[turn.turn_id], loaded.system_prompts.get(turn.turn_id)):
            if template is None:
                continue
            try:
                render_prompt(template, variables)
            except ProfileError as exc:
                errors.append(
                    ProfileError(
                        exc.code,
                        f"{loaded.source_path}: turn {turn.turn_id} fails on a sample context: {exc.message}",
                        path=str(loaded.source_path),
                        workflow_id=loaded.workflow_id,
                        turn_id=turn.turn_id,
                        **exc.details,
                    )
                )
    return errors
