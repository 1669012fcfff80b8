"""Key files of the home (``<home>/keys/*.key``): published whole, once, readable by the owner only.

A home makes its own key files on first need: the keyring's master key
(`wf_pipeline.crypto.open`) and the audit trail's sealing key
(`wf_pipeline.security.audit_key`). Several processes of one home may need the same key at
the same moment, so `publish_key_file` makes sure they all end up with one key, and that
no reader ever sees a key file empty or half-written.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from wf_pipeline.errors import WfError, os_reason

#: Mode of a key file: read and write for its owner, nothing for anyone else.
KEY_FILE_MODE = 0o600
#: Mode of the folder holding key files, when it is made here.
KEY_FOLDER_MODE = 0o700


def publish_key_file(path: Path, text: str) -> bool:
    """Write ``text`` plus a newline to ``path`` (mode 0600) unless ``path`` already exists.

    The text is written whole under a name of its own (``.<name>.<pid>.<random>`` next to
    ``path``), flushed to disk, then published with link(2), which fails when the final
    name exists: two processes starting at once publish one key, the first to link, and a
    reader never sees the final name empty or half-written (POSIX ``link``; the draft is
    removed either way). The folder is made with mode 0700 when missing.

    Args:
        path: the key file's final name.
        text: its content (ASCII: a key's base64 text), one line.

    Returns:
        True when this call published ``path``; False when another writer (or an earlier
        run) had already made it, and it is left as it was.

    Raises:
        OSError: the folder or the draft cannot be made or written (a read-only or full
            disk, no permission); nothing is published then.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=KEY_FOLDER_MODE)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        with open(fd, "w", encoding="ascii") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with suppress(FileExistsError):
            os.link(draft, path)
            return True
        return False
    finally:
        draft.unlink(missing_ok=True)


def new_key_text(size: int) -> str:
    """A new key as one line of base64: ``size`` bytes from the operating system's CSPRNG."""
    return base64.b64encode(os.urandom(size)).decode("ascii")


def decode_key_text(
    text: str | bytes | None,
    *,
    source: str,
    size: int,
    what: str,
    error: Callable[..., WfError],
) -> bytes:
    """The ``size``-byte key ``text`` holds in base64 (RFC 4648, standard alphabet; whitespace ignored).

    Args:
        text: a variable's or key file's content; None or empty when not set.
        source: where it came from, for the message (``WF_MASTER_KEY``, a file's path).
        size: the key's length in bytes.
        what: the key's name in a message (``a master key``, ``an audit key``).
        error: ``(message, **details) -> WfError``: the caller's code for a bad key.

    Returns:
        The key's bytes.

    Raises:
        WfError: ``error``'s, when the text is empty, not base64, or not ``size`` bytes; the
            message names ``source`` and the length found, never the key.
    """
    raw = text.decode("ascii", "replace") if isinstance(text, bytes) else (text or "")
    compact = "".join(raw.split())
    details: dict[str, Any] = {"source": source}
    if not compact:
        raise error(f"{source} is not set or empty", **details)
    try:
        key = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{source} is not base64", **details) from None
    if len(key) != size:
        raise error(
            f"{source} holds {len(key)} bytes; {what} is {size} bytes (base64 of {size} random bytes)",
            **details,
            bytes=len(key),
        )
    return key


def configured_key_text(
    *,
    variable: str,
    text: str,
    file_variable: str,
    file: Path | None,
    default_file: Path,
    what: str,
    error: Callable[..., WfError],
) -> tuple[str | bytes, str] | None:
    """Where a home's key comes from, in order: a variable, a file a variable names, the home's own file.

    Args:
        variable, text: the key variable's name and its value ("" when unset).
        file_variable, file: the key-file variable's name and its path (None when unset).
        default_file: the home's key file (``<home>/keys/<name>.key``), used only if it exists.
        what: the key's name in a message (``the home's master key file``).
        error: ``(message, **details) -> WfError``: the caller's code for a bad key.

    Returns:
        (the key's text, its source for messages), or None when none is configured and
        the home has made none. The text is not decoded (`decode_key_text`).

    Raises:
        WfError: ``error``'s, when both variables are set or a file cannot be read (figure:
            the source and the operating system's reason).
    """
    if text and file is not None:
        raise error(
            f"both {variable} and {file_variable} are set; set one", source=f"{variable}, {file_variable}"
        )
    if text:
        return text, variable
    path, source = (
        (file, f"{file_variable} ({file})")
        if file is not None
        else (default_file, f"{what} ({default_file})")
    )
    if file is None and not default_file.exists():
        return None
    try:
        return path.read_bytes(), source
    except OSError as exc:
        raise error(f"{source} cannot be read: {os_reason(exc)}", source=source) from exc
