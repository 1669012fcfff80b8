"""Everything one turn needs, opened once from settings and passed down explicitly."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from wf_pipeline.cas import ArtifactStore, open_cas
from wf_pipeline.crypto.keyring import Keyring
from wf_pipeline.crypto.open import artifact_reader, encrypted_store
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.errors import CONFIG_PROVIDER_MISSING, ConfigError
from wf_pipeline.metadata.boundary import FrameMetadataBoundary
from wf_pipeline.metadata.records import KekRecord
from wf_pipeline.metadata.registry import FRAME_KEY_REGISTRY, Budgets
from wf_pipeline.profiles import LoadedProfile, ProfileCatalog, default_layers, load_catalog
from wf_pipeline.profiles.encryption import merged_policy
from wf_pipeline.providers import Provider, create_provider
from wf_pipeline.records import RecordStore, open_record_store
from wf_pipeline.retention.reads import ExpiryAwareStore
from wf_pipeline.settings import Settings
from wf_pipeline.telemetry import DisabledTelemetryRecorder, Recorder, open_recorder
from wf_pipeline.telemetry.recorder import record_kek_event


@dataclass(frozen=True)
class RuntimeEnv:
    """The stores, catalog and provider one process runs turns with.

    Open it with `open` and close it when done, best as a context manager
    (``with RuntimeEnv.open(settings) as env: ...``): `close` releases the record store's
    connections, the artifact store and a provider that `open` created.

    Attributes:
        settings: the settings the env was opened from.
        cas: the artifact store (``settings.cas_url``), wrapped so that artifacts rest
            encrypted per the catalog's encryption policies (`wf_pipeline.crypto.store`,
            the strictest level per class across profiles) and reading an artifact
            retention deleted raises ``CAS_ARTIFACT_EXPIRED`` (`wf_pipeline.retention.reads`).
        records: the record store (``settings.records_url``).
        catalog: the workflow profiles this process can run.
        provider: the model provider turns call.
        boundary: the one write boundary frame metadata passes through.
        budgets: the byte budgets of prompts, contexts and metadata.
        telemetry: where turns record their telemetry rows (`wf_pipeline.telemetry`);
            buffered, written at the end of each step and by `close`. Disabled unless
            `open` made it from settings (``WF_TELEMETRY``).
        owns_provider: whether `close` closes ``provider``.
        sealed: the encrypting layer of ``cas``; `keyring` is its keyring.
        interrupt: set when the run using this env is to stop (a signal reached it):
            waiting provider calls and lease waits give up, threads not started yet
            are skipped with ``RUN_INTERRUPTED``.
        completed_thread_ids: (root, path, node id, frame id, provider) -> the thread id
            of a directory whose thread had completed when its id was computed.
        warned: the text of warnings this runtime has given that are given once.
        provider_calls: thread id -> provider calls turns made through this env (steps of
            an in-process run use the launcher's env, so its summary counts its own calls).
    """

    settings: Settings
    cas: ArtifactStore
    records: RecordStore
    catalog: ProfileCatalog
    provider: Provider
    boundary: FrameMetadataBoundary
    budgets: Budgets
    telemetry: Recorder = field(default_factory=DisabledTelemetryRecorder, repr=False, compare=False)
    # Whether `close` closes the provider: only one that `open` created, not one handed in.
    owns_provider: bool = field(default=False, repr=False, compare=False)
    sealed: EncryptedArtifactStore | None = field(default=None, repr=False, compare=False)
    interrupt: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    # Thread ids of directories whose thread had completed, for this env's lifetime
    # (`wf_pipeline.runtime.threads.ThreadIdentity`): a parent's id then costs its children,
    # not its whole subtree, in every step after theirs.
    completed_thread_ids: dict[tuple[str, ...], str] = field(default_factory=dict, repr=False, compare=False)
    # The profile whose code version names the child threads a context reads
    # (`wf_pipeline.runtime.threads.child_frames`); None: the profile being run. A replay
    # under a changed profile sets the thread's pinned one, so it reads the children the
    # thread read, not the threads a changed profile would have made.
    children_profile: LoadedProfile | None = field(default=None, repr=False, compare=False)
    # Warnings already given once by this runtime (a refused output is met by the final step
    # and again by the run's summary).
    warned: set[str] = field(default_factory=set, repr=False, compare=False)
    provider_calls: Counter[str] = field(default_factory=Counter, init=False, repr=False, compare=False)
    _calls_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    @property
    def keyring(self) -> Keyring | None:
        """The keyring of ``cas`` (`wf_pipeline.crypto.keyring`), opened on first access; None
        when no master key or key manager is configured and no class requires one. Retention
        shreds KEK lineages with it. Raises ``KEYS_MASTER_KEY_INVALID`` as `RuntimeEnv.open`.
        """
        return None if self.sealed is None else self.sealed.keyring

    def note_provider_call(self, thread_id: str) -> None:
        """Count one provider call (one turn attempt) made through this env for ``thread_id``."""
        with self._calls_lock:  # the turn workers of a step run in threads
            self.provider_calls[thread_id] += 1

    def close(self) -> None:
        """Write buffered telemetry, then close the record store, the artifact store and an owned provider; safe to call twice.

        A telemetry failure is logged, never raised (`TelemetryRecorder.flush_safely`).

        Raises:
            BaseException: the first exception a part's ``close`` raised; every part is
                closed even when an earlier one fails.
        """
        self.telemetry.flush_safely()
        closers = [self.records.close, self.cas.close]
        provider_close = getattr(self.provider, "close", None) if self.owns_provider else None
        if callable(provider_close):
            closers.append(provider_close)
        failure: BaseException | None = None
        for close in closers:
            try:
                close()
            except BaseException as exc:  # close the rest before reporting
                failure = failure or exc
        if failure is not None:
            raise failure

    def __enter__(self) -> RuntimeEnv:
        """Returns the env itself."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the env (`close`); an exception of the ``with`` body propagates unchanged."""
        self.close()

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        workspace_dir: Path | None = None,
        catalog: ProfileCatalog | None = None,
        provider: Provider | None = None,
        check_keys: bool = True,
    ) -> RuntimeEnv:
        """Open the stores and the provider that ``settings`` name.

        Args:
            settings: where the stores are and which provider to use.
            workspace_dir: the workspace layer of profiles (default: the current folder).
            check_keys: open and check the keyring now (runs, sweeps: a bad master key
                stops them before anything is read or written); False opens it on first
                need, so commands that read records only never need the key or make one.
            catalog, provider: used as given instead of being loaded or created; a provider
                handed in is not closed by `close`.

        Returns:
            An open env; close it (or use it as a context manager).

        Raises:
            CasError: ``CAS_INVALID_URL`` when no storage serves ``settings.cas_url``.
            ProfileError: the catalog's ``PROFILE_*`` codes (a layer that does not parse
                or validate).
            RecordError: ``RECORD_BAD_URL``, ``RECORD_BAD_OPTION``, ``RECORD_UNAVAILABLE``,
                ``RECORD_SCHEMA_MISMATCH``.
            ConfigError, ProviderError: as `provider_from_settings`.
            TelemetryError: ``TELEMETRY_BAD_URL`` when no filesystem serves
                ``settings.telemetry_url`` (with telemetry on).
            KeysError: ``KEYS_MASTER_KEY_INVALID`` when a profile requires encryption and the
                master key is missing, malformed or not the keyring's (checked before
                anything is read or written), ``KEYS_MANAGER_UNKNOWN``, ``KEYS_MANAGER_ERROR``.
            OSError: when the home folders cannot be created.

        Whatever was opened before a failure is closed again.
        """
        settings.ensure_dirs()
        cas: ArtifactStore = open_cas(settings.cas_url, **settings.cas_options())
        records: RecordStore | None = None
        try:
            if catalog is None:
                catalog = load_catalog(
                    default_layers(settings, workspace_dir or Path.cwd()),
                    artifact_reader=artifact_reader(settings),
                )
            budgets = Budgets()
            records = open_record_store(settings.records_url, schema=settings.records_schema)
            telemetry = open_recorder(settings)

            def key_event(event: str, kek: KekRecord, data_keys: int) -> None:
                # KEKs a put makes for a new lineage, or a retention sweep shreds.
                record_kek_event(telemetry, event, kek, data_keys=data_keys)

            # One CAS holds every workflow's artifacts: each class rests as its strictest profile asks.
            sealed = encrypted_store(
                cas, settings, records, merged_policy(p.encryption for p in catalog.all()), on_event=key_event
            )
            if check_keys:
                sealed.keyring  # noqa: B018 - opens and checks the keyring before anything else
            cas = sealed
            return cls(
                settings=settings,
                # Reads of artifacts retention deleted say so (CAS_ARTIFACT_EXPIRED), for every reader.
                cas=ExpiryAwareStore(cas, records),
                records=records,
                catalog=catalog,
                provider=provider or provider_from_settings(settings),
                boundary=FrameMetadataBoundary(FRAME_KEY_REGISTRY, budgets),
                budgets=budgets,
                telemetry=telemetry,
                owns_provider=provider is None,
                sealed=sealed,
            )
        except BaseException:
            if records is not None:
                records.close()
            cas.close()
            raise


def provider_from_settings(settings: Settings) -> Provider:
    """Create the provider ``settings.provider`` names.

    Args:
        settings: gives the provider's name (``WF_PROVIDER``), its options
            (``settings.provider_options``) and the secrets its options name.

    Returns:
        A new provider; the caller closes it if it has a ``close``.

    Raises:
        ConfigError: ``CONFIG_PROVIDER_MISSING`` when ``WF_PROVIDER`` is empty.
        ProviderError: ``PROVIDER_UNKNOWN``, ``PROVIDER_CONFIG_INVALID``,
            ``PROVIDER_MISSING_KEY`` (`wf_pipeline.providers.create_provider`).
    """
    if not settings.provider:
        raise ConfigError(CONFIG_PROVIDER_MISSING, "WF_PROVIDER is empty")
    return create_provider(settings.provider, settings.provider_options, settings.secrets)
