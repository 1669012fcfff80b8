"""The docs writer's output sink: each completed thread's README.md, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wf_pipeline.profiles.retention import OUTPUT
from wf_pipeline.runtime.sinks import write_file_atomically

if TYPE_CHECKING:
    from wf_pipeline.runtime.environment import RuntimeEnv

README_NAME = "README.md"


def write_readme(
    env: RuntimeEnv, artifact_id: str, destination: Path, *, overwrite: bool, root: Path | None = None
) -> Path | None:
    """Write the artifact's bytes to ``destination`` atomically; an existing file is kept unless ``overwrite``.

    Returns the path written (or already equal), or None when an existing file was kept
    or the destination leaves ``root`` (through a symbolic link, or outside it: a warning
    ``RUN_OUTPUT_OUTSIDE_ROOT`` names it). A new README gets the umask's mode, a replaced
    one keeps its mode (`write_file_atomically`). Raises CasError when the artifact is
    missing or corrupt, ``RUN_OUTPUT_WRITE_FAILED`` (with the operating system's reason)
    when the file cannot be written; nothing is half-written under ``destination``.
    """
    return write_file_atomically(
        env.cas.get(artifact_id, artifact_class=OUTPUT),
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
