"""Shared set-up for the benchmarks: isolated homes, synthetic trees, timing.

Every measurement gets a fresh WF_HOME (CAS, SQLite records, Dagster instance, outputs)
in a temporary folder, and the environment variables the product reads are set for the
duration of that measurement only.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from wf_pipeline.settings import Settings
from wf_pipeline.tree.synthetic import generate_tree

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_ID = "docs_writer_thread_v1"
TURN_IDS = ("evidence_gather", "verification", "readme_struct", "style_refine")
DIRECTORIES = 300
# Four children per directory: a shallow-and-wide package layout (1, 4, 16, 64, 215 per level).
FANOUT = 4
TREE_NAME = "src"

# Variables the product reads; all of them are replaced for a measurement, none inherited.
_PRODUCT_VARIABLES = ("DAGSTER_HOME", "WF_")

T = TypeVar("T")


@dataclass(frozen=True)
class BenchHome:
    """One isolated installation and the environment that points the product at it."""

    root: Path
    env: Mapping[str, str]

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    @property
    def records_url(self) -> str:
        return self.settings.records_url


def home_environment(
    home: Path, *, latency_ms: int, concurrency: int | None = None, telemetry: bool = True
) -> dict[str, str]:
    env = {
        "WF_TELEMETRY": "1" if telemetry else "0",
        "WF_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "WF_CONFIG_DIR": str(home / "user-config"),
        "WF_PROVIDER": "simulated",
        "WF_SIMULATED_LATENCY_MS": str(latency_ms),
    }
    if concurrency is not None:
        env["WF_PROVIDER_CONCURRENCY"] = str(concurrency)
    return env


def _without_product_variables(env: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if not key.startswith(_PRODUCT_VARIABLES)}


@contextmanager
def bench_home(
    *, latency_ms: int, concurrency: int | None = None, telemetry: bool = True
) -> Iterator[BenchHome]:
    """A fresh temporary home; ``os.environ`` points the product at it until the block ends.

    ``telemetry`` sets ``WF_TELEMETRY`` (on by default, as in the product).
    """
    folder = Path(tempfile.mkdtemp(prefix="wf-bench-"))
    env = home_environment(
        folder / "home", latency_ms=latency_ms, concurrency=concurrency, telemetry=telemetry
    )
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update({**_without_product_variables(saved), **env})
    try:
        yield BenchHome(root=folder, env=dict(os.environ))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(folder, ignore_errors=True)


def subprocess_environment(home: BenchHome) -> dict[str, str]:
    return {**_without_product_variables(os.environ), **home.env}


def make_tree(parent: Path, *, directories: int = DIRECTORIES, fanout: int = FANOUT) -> Path:
    root = parent / TREE_NAME
    generate_tree(root, directories=directories, fanout=fanout)
    return root


def level_sizes_of(tree: Path) -> list[int]:
    """Directories per depth level of a tree on disk (every generated directory is documentable)."""
    depths = Counter(len(Path(dirpath).relative_to(tree).parts) for dirpath, _dirs, _files in os.walk(tree))
    return [depths[depth] for depth in sorted(depths)]


def structural_bound_s(sizes: list[int], *, turns: int, latency_s: float, concurrency: int) -> float:
    """Least wall time with levels run one after another and each turn waiting for the whole level.

    Identical calls on ``concurrency`` workers take ceil(n / concurrency) rounds.
    """
    return sum(math.ceil(n / concurrency) * latency_s for n in sizes) * turns


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def require_simulated_provider() -> None:
    """Stop with a clear message when the product has no `simulated` provider."""
    from wf_pipeline.errors import ProviderError
    from wf_pipeline.providers import create_provider

    try:
        create_provider("simulated", {"latency_ms": "0"})
    except ProviderError as exc:
        raise SystemExit(f"benchmarks need the simulated provider ({exc.code})") from None


_warmed_up = False


def warm_up() -> None:
    """One tiny run first, so lazy imports and first-use set-up are not charged to a measurement.

    Once per process: later measurements in the same process are warm already.
    """
    global _warmed_up
    if _warmed_up:
        return
    from wf_pipeline.service import run_workflow

    with bench_home(latency_ms=0) as home:
        tree = make_tree(home.root, directories=3, fanout=2)
        summary = run_workflow(home.settings, WORKFLOW_ID, tree, workspace_dir=REPO_ROOT)
        if not summary.ok:
            raise SystemExit("warm-up run did not complete")
    _warmed_up = True


def check_complete(summary, threads: int, what: str) -> None:
    """A measurement only counts when every thread completed with one call per turn."""
    expected_calls = threads * len(TURN_IDS)
    if not summary.ok or len(summary.threads) != threads or summary.provider_calls != expected_calls:
        raise SystemExit(
            f"{what}: {sum(t.status == 'completed' for t in summary.threads)}/{threads} threads completed, "
            f"{summary.provider_calls} provider calls (expected {expected_calls})"
        )
