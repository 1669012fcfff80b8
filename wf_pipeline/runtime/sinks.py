"""Output sinks: where a workflow's final outputs go when a run writes them out.

A profile may declare its outputs (``outputs: [{path, format, placement}]``): then each
completed thread's final artifact is written to every declared path through
`write_declared_output`, under the same rules as any sink (inside the root, never over a
different file without ``--overwrite``, new files with the umask's mode, secret-shaped
values masked). Otherwise a workflow registers one sink per frame type it produces (its
profile's ``target_frame_type``). After a run, the runtime asks the sink of the profile's frame
type to write each completed thread's final artifact for the thread's target
directory; the sink decides the file name and format. The runtime itself names no
workflow and no output.

``write_file_atomically`` is the shared way a sink puts bytes on disk: a temporary file
in the destination's folder, renamed over the destination, so a reader never sees a
half-written file and a crashed writer leaves only a temporary file that the next
write removes (POSIX ``rename(2)`` replaces the destination atomically within one file
system; ``flock(2)`` locks die with their process).
"""

from __future__ import annotations

import fcntl
import glob
import os
import stat
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from wf_pipeline.errors import (
    RUN_NO_OUTPUT_SINK,
    RUN_OUTPUT_OUTSIDE_ROOT,
    RUN_OUTPUT_WRITE_FAILED,
    RUN_SINK_DUPLICATE,
    RunError,
    os_reason,
)
from wf_pipeline.profiles.retention import OUTPUT
from wf_pipeline.registry import Registry
from wf_pipeline.security.redaction import mask_secrets
from wf_pipeline.security.sinks import product_logger

if TYPE_CHECKING:
    from wf_pipeline.runtime.environment import RuntimeEnv

log = product_logger(__name__)


def _warn_once(warning: RunError, warned: set[str] | None) -> None:
    # The final step and the run's summary both write every output
    # (`wf_pipeline.runtime.outputs`): one refused file is one warning per runtime.
    text = str(warning)
    if warned is not None:
        if text in warned:
            return
        warned.add(text)  # set.add is atomic under the GIL: worker threads may share it
    log.warning("%s", text)


class OutputSink(Protocol):
    """Writes one thread's final artifact for one target directory."""

    def write(
        self,
        env: RuntimeEnv,
        artifact_id: str,
        directory: Path,
        *,
        overwrite: bool,
        root: Path | None = None,
    ) -> Path | None:
        """Write the artifact ``artifact_id`` (read from ``env.cas``) for the target ``directory``.

        Args:
            env: the runtime; the artifact's bytes are read from ``env.cas``.
            artifact_id: the thread's final artifact.
            directory: where the target sits in the output tree (the out folder or the
                scanned tree itself); it may not exist yet.
            overwrite: replace an existing, different output.
            root: the folder the write must stay in (the tree written in place, or the
                output folder); None checks nothing. See `write_file_atomically`.

        Returns:
            The path written (or already holding the same bytes), or None when an
            existing output was kept or the destination left ``root``.

        Raises:
            CasError: ``CAS_NOT_FOUND``, ``CAS_DIGEST_MISMATCH`` for the artifact.
            RunError: ``RUN_OUTPUT_WRITE_FAILED`` when the output cannot be written (with
                the operating system's reason); nothing is half-written.
        """
        ...


_SINKS: Registry[str, OutputSink] = Registry(
    "output sink", key="frame type", duplicate=RUN_SINK_DUPLICATE, unknown=RUN_NO_OUTPUT_SINK
)


def register_output_sink(frame_type: str, sink: OutputSink) -> None:
    """Make ``sink`` write the outputs of profiles whose frame type is ``frame_type``.

    Registering the same sink again is a no-op, so a plug-in may register twice.

    Args:
        frame_type: a profile's ``target_frame_type`` (else its final output type).
        sink: the sink for that frame type.

    Raises:
        RunError: ``RUN_SINK_DUPLICATE`` when another sink already serves ``frame_type``.
    """
    _SINKS.register(frame_type, sink)


def output_sink(frame_type: str) -> OutputSink:
    """The sink registered for ``frame_type``.

    Args:
        frame_type: the frame type of the profile whose outputs are written.

    Returns:
        The registered `OutputSink`.

    Raises:
        RunError: ``RUN_NO_OUTPUT_SINK`` (with the known frame types) when no loaded
            workflow registered one.
    """
    return _SINKS.get(frame_type)


def write_declared_output(
    env: RuntimeEnv,
    artifact_id: str,
    destination: Path,
    *,
    overwrite: bool,
    root: Path | None = None,
) -> Path | None:
    """Write one declared output (a profile's ``outputs:`` entry): the artifact's text, masked, atomically.

    Every format (``markdown``, ``json``, ``text``) is the final turn's canonical text as
    stored; the loader checked that the format can hold it. Secret-shaped values are
    replaced by their placeholders (`mask_secrets`, read as a file of the destination's name).

    Args:
        env: the runtime; the artifact is read from ``env.cas`` as an ``output``.
        artifact_id: the thread's final artifact.
        destination: the file: the target's output directory joined with the declared path.
        overwrite: replace an existing, different file.
        root: the folder the write must stay in (`write_file_atomically`).

    Returns:
        As `write_file_atomically`.

    Raises:
        CasError: ``CAS_NOT_FOUND``, ``CAS_DIGEST_MISMATCH``, ``CAS_DECODE_ERROR`` for the artifact.
        RunError: ``RUN_OUTPUT_WRITE_FAILED`` with the operating system's reason.
    """
    text = env.cas.get_text(artifact_id, artifact_class=OUTPUT)
    return write_file_atomically(
        mask_secrets(text, filename=destination.name).encode("utf-8"),
        destination,
        overwrite=overwrite,
        root=root,
        warned=env.warned,
    )


def write_file_atomically(
    data: bytes,
    destination: Path,
    *,
    overwrite: bool,
    root: Path | None = None,
    warned: set[str] | None = None,
) -> Path | None:
    """Write ``data`` to ``destination`` atomically; an existing different file is kept unless ``overwrite``.

    Temporary files that earlier writers of ``destination`` abandoned are removed first.
    A new file gets the mode the process's umask gives (``open(2)`` with 0666, as
    ``cp`` and editors create files); a replaced file keeps its own mode.

    Args:
        data: the bytes to write.
        destination: the file; its folder is created when missing.
        overwrite: replace an existing file whose bytes differ from ``data``.
        root: the folder writes must stay in (the tree written in place, or the output
            folder). When given, a destination that resolves outside it, that goes
            through a symbolic link below it (a linked folder), or that is itself a
            link, is not written: a warning ``RUN_OUTPUT_OUTSIDE_ROOT`` names it and None
            is returned (`outside_root`).
        warned: the warnings already given by the caller's runtime (``RuntimeEnv.warned``);
            a refusal in it is not warned about again. None warns every time.

    Returns:
        ``destination`` when it now holds ``data`` (written, or already equal), None when
        an existing file was kept or the destination is refused.

    Raises:
        RunError: ``RUN_OUTPUT_WRITE_FAILED`` with the operating system's reason (full
            disk, I/O error, permissions); the temporary file is removed and
            ``destination`` is left as it was.
    """
    if root is not None:
        refusal = outside_root(destination, root)
        if refusal is not None:
            # A warning, not a failure: the other outputs are still written.
            _warn_once(
                RunError(
                    RUN_OUTPUT_OUTSIDE_ROOT, f"{destination} not written: {refusal}", path=str(destination)
                ),
                warned,
            )
            return None
    try:
        return _write(data, destination, overwrite=overwrite)
    except OSError as exc:
        reason = os_reason(exc)
        raise RunError(
            RUN_OUTPUT_WRITE_FAILED,
            f"cannot write {destination}: {reason}",
            path=str(destination),
            reason=reason,
        ) from exc


def outside_root(destination: Path, root: Path) -> str | None:
    """Why writing ``destination`` would leave ``root``, or None when it stays inside.

    The rule of careful tools (``tar``'s and ``git``'s refusal to write through links):
    no folder between ``root`` and the destination, and not the destination itself, may
    be a symbolic link, and the destination's resolved folder must lie inside the
    resolved root. ``root`` itself may be reached through links.

    Args:
        destination: the file to be written.
        root: the folder writes must stay in.

    Returns:
        A short reason naming the offending path, or None. Raises nothing.
    """
    resolved_root = root.resolve()
    try:
        relative = destination.relative_to(root)
    except ValueError:
        relative = None
    if relative is not None:
        current = root
        for part in relative.parts:
            current = current / part
            if current.is_symlink():
                kind = "file" if current == destination else "folder"
                return f"{current} is a symbolic link ({kind}) to {os.path.realpath(current)}"
    if not destination.parent.resolve().is_relative_to(resolved_root):
        return f"its folder resolves to {destination.parent.resolve()}, outside {resolved_root}"
    return None


def _write(data: bytes, destination: Path, *, overwrite: bool) -> Path | None:
    if destination.parent.is_dir():
        _remove_abandoned_writes(destination)
    existing = destination.stat() if destination.exists() else None
    if existing is not None:
        if destination.read_bytes() == data:
            return destination
        if not overwrite:
            return None
    make_folders(destination.parent)
    tmp_name = str(destination.parent / f"{_temp_prefix(destination)}{uuid.uuid4().hex}.tmp")
    # 0666 under the umask, like any file a user creates (mkstemp would give 0600).
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        # Held until the rename, so a live writer's file is never taken for an abandoned one.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if existing is not None:
            os.fchmod(fd, stat.S_IMODE(existing.st_mode))  # a replaced file keeps its mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return destination


def make_folders(folder: Path) -> None:
    """Create ``folder`` and its missing parents (``mkdir -p``) at any depth.

    ``Path.mkdir(parents=True)`` and ``os.makedirs`` call themselves once per missing level
    and fail with ``RecursionError`` about 1,000 levels down; this walks up to the first
    existing folder and creates the rest top-down in a loop.

    Args:
        folder: the folder to create; an existing folder is fine.

    Raises:
        OSError: a part of the path is a file (``FileExistsError``), permissions, full disk...
    """
    missing: list[Path] = []
    current = folder
    while not current.is_dir() and current.parent != current:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            # Another writer made it in between; a file in the way is still an error.
            if not path.is_dir():
                raise


def _temp_prefix(destination: Path) -> str:
    return f".{destination.name}."


def _remove_abandoned_writes(destination: Path) -> None:
    """Remove temporary files of earlier writes of ``destination`` whose writer died before renaming.

    A killed process leaves its temporary file behind; its lock died with it, so a file
    nobody holds locked is abandoned (in the output folder, or in the tree itself when
    writing in place, where it would otherwise be scanned as a source file).
    """
    for leftover in destination.parent.glob(f"{glob.escape(_temp_prefix(destination))}*.tmp"):
        try:
            fd = os.open(leftover, os.O_RDONLY)
        except FileNotFoundError:
            continue  # renamed or removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # another process is writing it right now
        else:
            leftover.unlink(missing_ok=True)
        finally:
            os.close(fd)
