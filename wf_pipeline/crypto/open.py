"""Opening the keyring and the encrypting store from settings, in one place.

The master key comes from ``WF_MASTER_KEY`` (base64 of 32 bytes; a secret, read from the
environment the settings were read from) or ``WF_MASTER_KEY_FILE``. With neither, the home
keeps one in ``<home>/keys/master.key``, made (mode 0600) only when a policy requires
encryption and the keyring is new (no key was ever checked against it): the first home of
a record store makes it, and every other home sharing that store must be given it (it gets
``KEYS_MASTER_KEY_INVALID`` until then). The key is checked against the keyring before
anything is read or written with it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from wf_pipeline.cas.protocol import ArtifactStore
from wf_pipeline.cas.registry import open_cas
from wf_pipeline.crypto.keyfiles import configured_key_text, publish_key_file
from wf_pipeline.crypto.keyring import MASTER_CHECK, MIN_PERIOD_MS, Keyring, check_master_key
from wf_pipeline.crypto.managers import (
    LOCAL,
    KeyManager,
    LocalKeyManager,
    new_master_key_text,
    open_key_manager,
    parse_master_key,
)
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.errors import (
    CONFIG_BAD_VALUE,
    KEYS_MASTER_KEY_INVALID,
    ConfigError,
    KeysError,
    MetadataError,
)
from wf_pipeline.metadata.durations import parse_duration_ms
from wf_pipeline.metadata.records import KekRecord
from wf_pipeline.profiles.encryption import EncryptionPolicy
from wf_pipeline.records.protocol import RecordStore
from wf_pipeline.records.registry import open_record_store
from wf_pipeline.settings import Settings

MASTER_KEY_VARIABLE = "WF_MASTER_KEY"


def master_key(settings: Settings) -> tuple[bytes, str] | None:
    """The configured master key and where it came from, or None when none is configured.

    Looks at ``WF_MASTER_KEY``, then ``WF_MASTER_KEY_FILE``, then the embedded default's
    ``<home>/keys/master.key`` (only if that file exists). Raises ``KEYS_MASTER_KEY_INVALID``
    when both variables are set, the file cannot be read, or the key is malformed; the
    message names the source, never the key.
    """
    found = configured_key_text(
        variable=MASTER_KEY_VARIABLE,
        text=settings.secrets.get(MASTER_KEY_VARIABLE, ""),
        file_variable="WF_MASTER_KEY_FILE",
        file=settings.master_key_file,
        default_file=settings.default_master_key_file,
        what="the home's master key file",
        error=lambda message, **details: KeysError(KEYS_MASTER_KEY_INVALID, message, **details),
    )
    if found is None:
        return None
    text, source = found
    return parse_master_key(text, source=source), source


def _create_default_key(path: Path) -> None:
    # Published whole, once, even when several processes make it at the same moment.
    publish_key_file(path, new_master_key_text())


def kek_period_ms(settings: Settings) -> int:
    """``WF_KEK_PERIOD`` in ms: a finite duration of at least `MIN_PERIOD_MS` (one minute).

    Raises ``CONFIG_BAD_VALUE`` naming the variable and its value otherwise.
    """
    text = settings.kek_period
    try:
        period_ms = parse_duration_ms(text)
    except MetadataError as exc:
        raise ConfigError(
            CONFIG_BAD_VALUE,
            f"WF_KEK_PERIOD={text!r}: {exc.message}",
            field="kek_period",
            value=str(text)[:40],
        ) from None
    if period_ms is None or period_ms < MIN_PERIOD_MS:
        raise ConfigError(
            CONFIG_BAD_VALUE,
            f"WF_KEK_PERIOD={text!r} must be a finite duration of at least 1m (one KEK lineage per class per period)",
            field="kek_period",
            value=str(text)[:40],
        )
    return period_ms


def open_keyring(
    settings: Settings,
    records: RecordStore,
    *,
    required: bool,
    on_event: Callable[[str, KekRecord, int], None] | None = None,
) -> Keyring | None:
    """The keyring ``settings`` configure over ``records``, or None when none is configured and none is required.

    Args:
        settings: the master key sources, ``key_manager`` and ``kek_period``.
        records: where KEK records and data keys live.
        required: whether some class requires encryption (`EncryptionPolicy.needs_keyring`):
            then a missing key is an error, except for a new keyring, whose home makes one.
        on_event: the keyring's lifecycle callback (`Keyring`), e.g. telemetry.

    Raises ``KEYS_MASTER_KEY_INVALID`` (missing when required, malformed, or not this
    keyring's), ``CONFIG_BAD_VALUE`` (``WF_KEK_PERIOD``), ``KEYS_MANAGER_UNKNOWN``,
    ``KEYS_MANAGER_ERROR``, ``RECORD_UNAVAILABLE``.
    Nothing is read or written with a key that fails the check.
    """
    period_ms = kek_period_ms(settings)  # a bad setting stops here, before any key is made
    managers: dict[str, KeyManager] = {}
    found = master_key(settings)
    wants_local = settings.key_manager == LOCAL
    if found is None and required and wants_local and records.keyring_meta(MASTER_CHECK) is None:
        _create_default_key(settings.default_master_key_file)
        found = master_key(settings)
    if found is not None:
        key, source = found
        check_master_key(records, key, source=source)
        managers[LOCAL] = LocalKeyManager(key)
    if not wants_local:
        managers[settings.key_manager] = open_key_manager(
            settings.key_manager, **settings.key_manager_options()
        )
    if settings.key_manager not in managers:
        if not required:
            return None  # sealed objects then read as KEYS_MASTER_KEY_INVALID, one by one
        raise KeysError(
            KEYS_MASTER_KEY_INVALID,
            "encryption is required (or the keyring exists) but no master key is configured: "
            "set WF_MASTER_KEY (base64 of 32 bytes) or WF_MASTER_KEY_FILE",
            source="WF_MASTER_KEY, WF_MASTER_KEY_FILE",
        )
    return Keyring(
        records, managers, default_manager=settings.key_manager, period_ms=period_ms, on_event=on_event
    )


def encrypted_store(
    inner: ArtifactStore,
    settings: Settings,
    records: RecordStore,
    policy: EncryptionPolicy,
    *,
    on_event: Callable[[str, KekRecord, int], None] | None = None,
) -> EncryptedArtifactStore:
    """``inner`` wrapped so that artifacts rest per ``policy``, with the keyring ``settings`` configure.

    ``on_event`` is the keyring's lifecycle callback. The keyring is opened on first need
    (`EncryptedArtifactStore.keyring`); that access raises as `open_keyring` (with
    ``required`` from the policy). Raises nothing itself.
    """
    return EncryptedArtifactStore(
        inner,
        policy,
        open_keyring=lambda: open_keyring(
            settings, records, required=policy.needs_keyring, on_event=on_event
        ),
    )


def reading_store(settings: Settings, records: RecordStore) -> EncryptedArtifactStore:
    """The home's CAS for reading: sealed objects opened with the keyring, plain ones as they are.

    The policy decides writes only, so a reader needs none; the keyring is opened when a
    master key (or the configured key manager) is at hand, and a sealed object without one
    reads as ``KEYS_MASTER_KEY_INVALID``. Close it (a context manager) after use. Raises as
    `open_keyring` with ``required=False``.
    """
    return EncryptedArtifactStore(
        open_cas(settings.cas_url, **settings.cas_options()),
        EncryptionPolicy(),
        open_keyring(settings, records, required=False),
    )


def artifact_reader(settings: Settings) -> Callable[..., bytes]:
    """A reader of artifacts by id for profile loading (prompt_refs given as artifact ids).

    Sealed prompt artifacts are opened with the keyring when a master key is configured;
    the record store and keyring are opened only when a profile names an artifact, and
    closed after each read. Raises what `EncryptedArtifactStore.get` raises.
    """

    def read(artifact_id: str, **options: Any) -> bytes:
        records = open_record_store(settings.records_url, schema=settings.records_schema)
        try:
            with reading_store(settings, records) as store:
                return store.get(artifact_id, **options)
        finally:
            records.close()

    return read
