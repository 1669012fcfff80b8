"""Where the built-in profile layer lives: the copy inside the installed package, or the source tree.

The repository keeps the built-in profiles in ``profiles/`` and their prompts in ``assets/prompts/``
at its root. The wheel carries the same files as package data under ``wf_pipeline/_builtin/``
(``pyproject.toml`` maps them there at build time), laid out the same way, so a profile's
``prompt_ref`` such as ``assets/prompts/docs_writer/system.md`` resolves against either root.
The bytes are the same in both, so prompt digests, code versions and thread ids are too.
"""

from __future__ import annotations

from pathlib import Path

# The package data folder inside an installed wheel; the build maps the repository's files here.
PACKAGED_DIR = "_builtin"
# The folder of every layer root that holds its profiles. Defined here, not in the loader: this module
# sits beside the settings (which default to its root) and imports nothing of the package.
PROFILE_DIR = "profiles"

_PACKAGE_DIR = Path(__file__).resolve().parent


def packaged_root() -> Path:
    """The folder an installed wheel keeps its built-in layer in (it may not exist).

    Returns:
        The absolute path ``<wf_pipeline package>/_builtin``; it holds ``profiles/`` and
        ``assets/prompts/`` in a wheel install, and does not exist in a source checkout or an
        editable install. Raises nothing.
    """
    return _PACKAGE_DIR / PACKAGED_DIR


def source_root() -> Path:
    """The repository root of a source checkout: the folder that holds ``wf_pipeline/``.

    Returns:
        The absolute path of the package's parent folder; in a source checkout or an editable
        install it holds ``profiles/`` and ``assets/prompts/``. Raises nothing.
    """
    return _PACKAGE_DIR.parent


def builtin_root() -> Path:
    """The root of the built-in profile layer: the packaged copy when present, else the source tree.

    A wheel install has ``wf_pipeline/_builtin/profiles/``; a source checkout (or an editable
    install of one) has ``profiles/`` beside the package. The packaged copy wins when both
    exist, so an installed wheel never reads a checkout it happens to sit next to.
    ``WF_BUILTIN_ROOT`` overrides this in the settings, not here.

    Returns:
        An absolute path whose ``profiles/*.yaml`` and ``assets/prompts/**`` form the built-in
        layer. When neither root has a ``profiles/`` folder the source root is returned and the
        built-in layer is simply empty (loading a workflow then fails with ``PROFILE_NOT_FOUND``).
        Raises nothing.
    """
    packaged = packaged_root()
    if (packaged / PROFILE_DIR).is_dir():
        return packaged
    return source_root()
