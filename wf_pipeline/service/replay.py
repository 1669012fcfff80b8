"""``wf replay``: re-execute recorded threads from their recorded answers and verify them.

One thread (by id) or every documented directory of a tree is replayed in a scratch
namespace (`wf_pipeline.runtime.replay`): the live records, heads, audit trail and
artifacts are left as they are. With ``verify`` each replay is compared with its records,
digest by digest; the report lists every divergence with the first differing input.
A verified tree replay also re-judges the tree's recorded activations of the workflow
(`wf_pipeline.runtime.activation_replay`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wf_pipeline.compiler.launch.executors import load_profiles
from wf_pipeline.errors import REPLAY_NOTHING_RECORDED, RUN_UNKNOWN_THREAD, RunError
from wf_pipeline.metadata.records import ThreadRecord
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.providers import Provider, create_provider
from wf_pipeline.providers.base import close_provider
from wf_pipeline.providers.replay import PROVIDER_NAME
from wf_pipeline.runtime.activation_replay import ActivationReplay, replay_activation, tree_activations
from wf_pipeline.runtime.environment import RuntimeEnv
from wf_pipeline.runtime.replay import ThreadReplay, latest_threads, replay_thread
from wf_pipeline.runtime.targets import Target, planned_directories, resolve_target, target_key_for
from wf_pipeline.runtime.threads import scan_workspace
from wf_pipeline.service.runs import only_workflow
from wf_pipeline.settings import Settings
from wf_pipeline.tree import TreeScan, check_root

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReplayReport:
    """What a ``wf replay`` did: one `ThreadReplay` per thread, in tree order (deepest first).

    Attributes:
        workflow_id: the workflow replayed.
        threads: the replays.
        verified: whether each was compared with its records.
        provider: ``replay`` (recorded answers), or the live provider's name.
        unrecorded: directories of the tree with no finished thread (nothing to replay).
        gone: recorded directories of the tree that are no longer in it, as
            ``{"target_path", "thread_id"}``; with ``verified`` they are divergences.
        activations: with ``verified`` on a tree, the latest recorded activation of each
            edge on the tree the workflow is on (upstream or activated), re-judged; one that
            differs is a divergence of class ``activation``.
    """

    workflow_id: str
    threads: tuple[ThreadReplay, ...]
    verified: bool
    provider: str
    unrecorded: tuple[str, ...] = ()
    gone: tuple[dict[str, str], ...] = ()
    activations: tuple[ActivationReplay, ...] = ()

    @property
    def matched(self) -> bool:
        """Whether every replay matched (verified) or completed (not verified), and, verified, no recorded
        directory is gone and every activation re-judged matched."""
        if not all(thread.matched for thread in self.threads):
            return False
        return not self.verified or (not self.gone and all(a.matched for a in self.activations))

    @property
    def provider_calls(self) -> int:
        """Calls a live provider answered; 0 when replayed from recorded answers."""
        return sum(thread.provider_calls for thread in self.threads)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON: ``counts``, then ``threads`` (each `ThreadReplay.to_json`), ``unrecorded``, ``gone``
        and ``activations`` (each `ActivationReplay.to_json`)."""
        return {
            "workflow_id": self.workflow_id,
            "provider": self.provider,
            "verified": self.verified,
            "matched": self.matched,
            "counts": {
                "threads": len(self.threads),
                "matched": sum(1 for t in self.threads if t.matched),
                "divergent": sum(1 for t in self.threads if t.divergences),
                "unreplayable": sum(1 for t in self.threads if t.unreplayable),
                "divergences": sum(len(t.divergences) for t in self.threads),
                "provider_calls": self.provider_calls,
                "unrecorded": len(self.unrecorded),
                "gone": len(self.gone),
                "activations": len(self.activations),
                "activation_divergences": sum(1 for a in self.activations if not a.matched),
            },
            "threads": [t.to_json() for t in self.threads],
            "unrecorded": list(self.unrecorded),
            "gone": list(self.gone),
            "activations": [a.to_json() for a in self.activations],
        }


def replay(
    settings: Settings,
    *,
    thread_id: str | None = None,
    tree: Path | None = None,
    workflow_id: str | None = None,
    verify: bool = False,
    pinned: bool = False,
    provider_name: str | None = None,
    provider: Provider | None = None,
    workspace_dir: Path | None = None,
    on_progress: Progress | None = None,
) -> ReplayReport:
    """Replay one thread, or the current thread of every directory of a tree.

    Args:
        settings: where the records, CAS and profiles are.
        thread_id: the thread to replay (exclusive with ``tree``).
        tree: a tree whose directories' latest threads are replayed.
        workflow_id: the workflow of the tree's threads (default: the only one loaded).
        verify: compare every replay with its records; on a tree, re-judge its recorded
            activations too (`ReplayReport.activations`).
        pinned: replay each thread with the profile it pinned when it started (its
            templates, thresholds and retry policies), not the profile loaded now.
        provider_name: a registered provider to ask instead of the recorded answers
            (its options from the settings when it is ``settings.provider``).
        provider: a provider object to ask instead (tests, embedding); wins over the name.
        workspace_dir: where the workspace profile layer is (default: the working directory).
        on_progress: called with (threads done, threads in all).

    Returns:
        The `ReplayReport`.

    Raises:
        RunError: ``RUN_UNKNOWN_THREAD``; ``REPLAY_NOTHING_RECORDED`` when the tree has no
            recorded thread of the workflow; ``RUN_WORKFLOW_REQUIRED`` as `wf run`.
        TreeError: ``TREE_PATH_MISSING``, ``TREE_NOT_A_DIRECTORY`` for a bad tree.
        ProfileError: ``PROFILE_UNKNOWN_WORKFLOW``.
        ProviderError: ``PROVIDER_UNKNOWN``, ``PROVIDER_CONFIG_INVALID`` for ``provider_name``.
        RecordError, CasError: reading the live stores.
    """
    catalog = load_profiles(settings, workspace_dir or Path.cwd())
    if provider_name == PROVIDER_NAME:
        provider_name = None  # the default: recorded answers
    live = provider
    if live is None and provider_name:
        options = settings.provider_options if provider_name == settings.provider else {}
        live = create_provider(provider_name, options, settings.secrets)
    try:
        with RuntimeEnv.open(settings, catalog=catalog) as env:
            if thread_id is not None:
                thread = env.records.get_thread(thread_id)
                if thread is None:
                    raise RunError(RUN_UNKNOWN_THREAD, f"no thread {thread_id}")
                loaded = catalog.get(thread.workflow_id)
                target = resolve_target(env.records, thread.target_key)
                work = [(thread, target)]
                scans = {target.root: scan_workspace(env, loaded, target.root)}
                unrecorded: tuple[str, ...] = ()
                gone: tuple[dict[str, str], ...] = ()
                activations: tuple[ActivationReplay, ...] = ()
            else:
                root = check_root(Path(str(tree))).resolve()
                loaded = catalog.get(workflow_id or only_workflow(catalog))
                scan = scan_workspace(env, loaded, root)
                work, unrecorded, gone = _tree_threads(env, loaded, scan)
                scans = {root: scan}
                activations = ()
                if verify:
                    activations = tuple(
                        replay_activation(env, record, superseded=superseded)
                        for record, superseded in tree_activations(env, loaded.workflow_id, root)
                    )
            replays = []
            for done, (thread, target) in enumerate(work, start=1):
                replays.append(
                    replay_thread(
                        env,
                        loaded,
                        thread,
                        target,
                        scans[target.root],
                        provider=live,
                        verify=verify,
                        pinned=pinned,
                    )
                )
                if on_progress is not None:
                    on_progress(done, len(work))
    finally:
        if live is not None and provider is None:
            close_provider(live)
    return ReplayReport(
        workflow_id=loaded.workflow_id,
        threads=tuple(replays),
        verified=verify,
        provider=provider_name or (live.provider_type if live is not None else "replay"),
        unrecorded=unrecorded,
        gone=gone,
        activations=activations,
    )


def _tree_threads(
    env: RuntimeEnv, loaded: LoadedProfile, scan: TreeScan
) -> tuple[list[tuple[ThreadRecord, Target]], tuple[str, ...], tuple[dict[str, str], ...]]:
    """Each documented directory's latest finished thread, deepest first; the directories without
    one; and the recorded directories of this tree that are gone from it."""
    latest = latest_threads(env, loaded.workflow_id)
    work: list[tuple[ThreadRecord, Target]] = []
    unrecorded: list[str] = []
    present: set[str] = set()
    for path in planned_directories(scan, loaded.profile.target_kind):
        key = target_key_for(scan.root, path)
        present.add(key)
        thread = latest.get(key)
        if thread is None:
            unrecorded.append(path)
            continue
        work.append((thread, Target(key=key, root=scan.root, path=path)))
    tree_key = target_key_for(scan.root, ".")
    gone = tuple(
        {"target_path": thread.target_path, "thread_id": thread.thread_id}
        for key, thread in sorted(latest.items())
        if (key == tree_key or key.startswith(tree_key + "/")) and key not in present
    )
    if not work:
        raise RunError(
            REPLAY_NOTHING_RECORDED,
            f"no recorded thread of {loaded.workflow_id} for any of the {len(unrecorded)} directories "
            f"of {scan.root}: run it first (wf run)",
            directories=len(unrecorded),
        )
    return work, tuple(unrecorded), gone
