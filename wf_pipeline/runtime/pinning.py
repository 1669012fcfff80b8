"""Version pinning: the profile a thread runs with is the one it started with.

A new thread records its profile's ``version``, its ``code_version`` and the CAS artifact
of its snapshot (`wf_pipeline.profiles.snapshot`; `wf_pipeline.runtime.threads.plan_thread`).
`thread_profile` gives the profile a resume (or a replay) of that thread must use:

- the current profile when its code version is still the thread's: nothing that shapes
  the thread's requests changed, and the current file's operational settings (budgets,
  retention, encryption) apply, so a raised budget lets the thread finish;
- the pinned snapshot when the code version changed since (a template, or a turn's
  ``retry`` block): the thread renders the templates and retries under the policy it was
  recorded with;
- for a thread recorded before pinning (no snapshot), None: its caller keeps the older rule
  (such a thread of a changed profile is stale, ``RUN_THREAD_STALE``).
"""

from __future__ import annotations

from wf_pipeline.metadata.records import ThreadRecord
from wf_pipeline.profiles import LoadedProfile
from wf_pipeline.profiles.retention import class_of_link
from wf_pipeline.profiles.snapshot import SNAPSHOT_ROLE, load_profile_snapshot
from wf_pipeline.runtime.environment import RuntimeEnv


def read_pinned_profile(env: RuntimeEnv, thread: ThreadRecord) -> LoadedProfile | None:
    """The profile ``thread`` pinned, rebuilt from its snapshot; None when it pinned none.

    Args:
        env: the runtime (its CAS is read).
        thread: the thread's record.

    Returns:
        The rebuilt `LoadedProfile` (``snapshot_id`` set), or None for a thread recorded
        before pinning.

    Raises:
        ProfileError: ``PROFILE_SNAPSHOT_INVALID`` when the snapshot does not rebuild the
            thread's recorded code version.
        CasError: ``CAS_NOT_FOUND``, ``CAS_DIGEST_MISMATCH``, ``CAS_BACKEND_ERROR`` reading it.
    """
    if thread.profile_artifact_id is None:
        return None
    data = env.cas.get(thread.profile_artifact_id, artifact_class=class_of_link(SNAPSHOT_ROLE, None))
    return load_profile_snapshot(data, thread.profile_artifact_id, code_version=thread.code_version)


def thread_profile(env: RuntimeEnv, thread: ThreadRecord, current: LoadedProfile) -> LoadedProfile | None:
    """The profile a resume of ``thread`` runs with (see the module docstring).

    Args:
        env: the runtime (its CAS is read when the snapshot is needed).
        thread: the thread's record.
        current: the workflow's profile as the layers load it now.

    Returns:
        ``current`` when the thread's code version is current's; the pinned profile when
        it differs; None for a thread without a snapshot whose version differs (a thread
        recorded before pinning, judged by its ``target_frame_id`` by the caller).

    Raises:
        ProfileError, CasError: as `read_pinned_profile`.
    """
    if thread.code_version is not None and thread.code_version == current.code_version:
        return current
    return read_pinned_profile(env, thread)
