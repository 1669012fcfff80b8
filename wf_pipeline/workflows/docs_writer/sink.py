"""The docs writer's output sink: each completed thread's README.md, written atomically.

The docs writer never publishes a secret: whatever the provider (offline, simulated, an
OpenAI-wire model that copied one from a context opted out of masking), every
secret-shaped value in the final README is replaced by its placeholder
(`wf_pipeline.security.redaction.mask_secrets`) before the file is written. The CAS keeps
the output as produced (it is a payload store, read through privileged reads); a file such
as ``.env`` may be named in a README, its values are not.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wf_pipeline.profiles.retention import OUTPUT
from wf_pipeline.runtime.sinks import write_file_atomically
from wf_pipeline.security.redaction import mask_secrets

if TYPE_CHECKING:
    from wf_pipeline.runtime.environment import RuntimeEnv

README_NAME = "README.md"


def write_readme(
    env: RuntimeEnv, artifact_id: str, destination: Path, *, overwrite: bool, root: Path | None = None
) -> Path | None:
    """Write the artifact's text, secret-shaped values masked, to ``destination`` atomically.

    An existing file is kept unless ``overwrite``. The artifact is UTF-8 markdown (the final
    turn's canonical output); `mask_secrets` reads it as a ``README.md``.

    Returns the path written (or already equal), or None when an existing file was kept
    or the destination leaves ``root`` (through a symbolic link, or outside it: a warning
    ``RUN_OUTPUT_OUTSIDE_ROOT`` names it). A new README gets the umask's mode, a replaced
    one keeps its mode (`write_file_atomically`). Raises CasError when the artifact is
    missing or corrupt, ``RUN_OUTPUT_WRITE_FAILED`` (with the operating system's reason)
    when the file cannot be written (``CAS_DECODE_ERROR`` when the artifact is not UTF-8);
    nothing is half-written under ``destination``.
    """
    text = env.cas.get_text(artifact_id, artifact_class=OUTPUT)
    return write_file_atomically(
        mask_secrets(text, filename=README_NAME).encode("utf-8"),
        destination,
        overwrite=overwrite,
        root=root,
        warned=env.warned,
    )


class ReadmeSink:
    """Writes ``README.md`` into each target directory (see ``wf_pipeline.runtime.sinks``)."""

    def write(
        self, env: RuntimeEnv, artifact_id: str, directory: Path, *, overwrite: bool, root: Path | None = None
    ) -> Path | None:
        """Write the final artifact as ``directory/README.md``, staying inside ``root``; see ``write_readme``."""
        return write_readme(env, artifact_id, directory / README_NAME, overwrite=overwrite, root=root)


README_SINK = ReadmeSink()
