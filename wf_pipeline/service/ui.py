"""The Dagster UI on the same instance as the CLI: what ``wf ui`` (and ``make dagster-ui``) starts."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from wf_pipeline.compiler.launch.instance import open_instance
from wf_pipeline.errors import CONFIG_UI_UNAVAILABLE, ConfigError
from wf_pipeline.settings import Settings

# The code location, as workspace.yaml names it: the module, so an installed package serves too.
CODE_LOCATION_MODULE = "wf_pipeline.definitions"


def dagster_ui_command(
    settings: Settings, *, port: int | None = None, host: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that serve the Dagster UI over the settings' instance.

    The instance is opened first, so an empty ``DAGSTER_HOME`` gets the embedded
    dagster.yaml (batched event log, no telemetry, no community modal) and a PostgreSQL
    one is checked (``CONFIG_INSTANCE_*``) before the UI starts. The command is Dagster's
    recommended ``dg dev`` (``dagster dev`` prints a SupersessionWarning naming it) with
    the code location module, so the UI shows the profiles of the working directory's
    layers, as ``wf`` does.

    Args:
        settings: the settings whose ``dagster_home`` the UI serves.
        port: the webserver's port (dg's default, 3000, when None).
        host: the webserver's host (dg's default, 127.0.0.1, when None).

    Returns:
        ``(argv, env)``: ``argv[0]`` is the ``dg`` of this Python environment; ``env`` is
        the environment the settings were read from with ``DAGSTER_HOME`` set to the
        settings' instance folder.

    Raises:
        ConfigError: ``CONFIG_UI_UNAVAILABLE`` (figure: the folder searched) when no ``dg``
            command is installed; ``CONFIG_INSTANCE_*`` for a PostgreSQL instance that
            cannot be opened.
    """
    instance = open_instance(settings)
    instance.dispose()
    beside_python = Path(sys.executable).with_name("dg")
    dg = str(beside_python) if beside_python.exists() else shutil.which("dg")
    if dg is None:
        raise ConfigError(
            CONFIG_UI_UNAVAILABLE,
            f"the dg command (package dagster-dg-cli) is not installed in {beside_python.parent} or on PATH",
            searched=str(beside_python.parent),
        )
    argv = [dg, "dev", "-m", CODE_LOCATION_MODULE]
    if port is not None:
        argv += ["--port", str(port)]
    if host is not None:
        argv += ["--host", host]
    env = {**settings.secrets, "DAGSTER_HOME": str(settings.dagster_home)}
    return argv, env
