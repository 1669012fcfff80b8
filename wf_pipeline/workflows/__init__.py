"""Workflow plug-ins: one package per workflow, each registering itself in one place.

A workflow package ``wf_pipeline.workflows.<name>`` holds everything specific to that
workflow and exposes ``plugin.register()``; every such sub-package is a built-in
workflow, found by listing this package, so adding one touches no other file. Its
``register()`` declares the workflow's payload schemas, gates, offline turns and
output sink to the generic registries (metadata, gates, providers, runtime).

Generic packages never import this package; the layers above the runtime (the
Dagster definitions, the run entry points, the CLI, tests) call
``load_builtin_workflows()`` before they load a profile or run anything.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading

# Sub-packages of this package, by name: each is a workflow with a ``plugin`` module.
BUILTIN_WORKFLOWS: tuple[str, ...] = tuple(
    sorted(module.name for module in pkgutil.iter_modules(__path__) if module.ispkg)
)

_LOCK = threading.Lock()
_loaded: set[str] = set()


def load_builtin_workflows() -> tuple[str, ...]:
    """Register every built-in workflow once per process; later calls do nothing.

    Returns:
        The names of the built-in workflows (sub-packages of this package), sorted.

    Raises:
        GateError: ``GATE_DUPLICATE_TYPE``, ``GATE_DUPLICATE_SECTION_KEY``.
        MetadataError: ``OUTPUT_TYPE_DUPLICATE``.
        ProviderError: ``PROVIDER_DUPLICATE_OUTPUT``.
        RunError: ``RUN_SINK_DUPLICATE``.
        ImportError: for a sub-package without a ``plugin`` module.

    These are what a plug-in's ``register()`` raises when two workflows claim the same
    name. A plug-in that raised is not marked loaded, so a later call tries it again.
    """
    with _LOCK:
        for name in BUILTIN_WORKFLOWS:
            if name in _loaded:
                continue
            importlib.import_module(f"wf_pipeline.workflows.{name}.plugin").register()
            _loaded.add(name)
    return BUILTIN_WORKFLOWS
