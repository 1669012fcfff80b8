"""Envelope encryption over real stores and a real record store: fail closed, bound to identity, rotation."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from wf_pipeline.cas import ArtifactStore, open_cas
from wf_pipeline.crypto.envelope import OVERHEAD, is_envelope, open_envelope, seal
from wf_pipeline.crypto.keyring import Keyring, check_master_key
from wf_pipeline.crypto.managers import LocalKeyManager, new_master_key_text
from wf_pipeline.crypto.open import master_key, open_keyring
from wf_pipeline.crypto.store import EncryptedArtifactStore
from wf_pipeline.errors import CasError, KeysError, WfError
from wf_pipeline.metadata.canonical import digest
from wf_pipeline.profiles.encryption import EncryptionPolicy, encryption_presets, resolve_encryption
from wf_pipeline.records import RecordStore, open_record_store
from wf_pipeline.settings import Settings

DAY = 86_400_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY  # a UTC midnight
REQUIRED = EncryptionPolicy(levels={"output": "optional"}, default="required", source="test")


class Clock:
    """A settable wall clock in ms."""

    def __init__(self, at_ms: int) -> None:
        self.at_ms = at_ms

    def __call__(self) -> int:
        return self.at_ms


@dataclass
class Home:
    records: RecordStore
    inner: ArtifactStore
    keyring: Keyring
    store: EncryptedArtifactStore
    clock: Clock
    master: bytes


def make_home(records: RecordStore, inner: ArtifactStore, *, policy: EncryptionPolicy = REQUIRED) -> Home:
    master = base64.b64decode(new_master_key_text())
    check_master_key(records, master, source="test")
    clock = Clock(T0 + 3_600_000)
    keyring = Keyring(records, {"local": LocalKeyManager(master)}, default_manager="local", clock=clock)
    return Home(records, inner, keyring, EncryptedArtifactStore(inner, policy, keyring), clock, master)


@pytest.fixture(params=["sqlite", "memory"])
def home(request, tmp_path) -> Iterator[Home]:
    url = f"sqlite:///{tmp_path / 'records.db'}" if request.param == "sqlite" else "memory://"
    records = open_record_store(url)
    inner = open_cas((tmp_path / "cas").as_uri())
    try:
        yield make_home(records, inner)
    finally:
        records.close()


def code_of(call) -> str:
    with pytest.raises(WfError) as caught:
        call()
    return caught.value.code


# --- format and binding --------------------------------------------------------------


def test_put_seals_the_payload_and_keeps_the_plaintext_id(home: Home) -> None:
    canary = b"CANARY-7f3e secret source line"
    ref = home.store.put(canary, artifact_class="context_payload")

    assert ref.artifact_id == digest(canary) and ref.size == len(canary)
    stored = home.inner.read_object(ref.artifact_id)
    assert is_envelope(stored) and canary not in stored and len(stored) == len(canary) + OVERHEAD
    assert home.store.get(ref.artifact_id) == canary
    assert home.store.get_text(ref.artifact_id, artifact_class="context_payload") == canary.decode()
    assert home.store.stat(ref.artifact_id).size == len(canary)
    row = home.records.data_keys_for([ref.artifact_id])[ref.artifact_id]
    assert row.artifact_class == "context_payload" and row.kek_id.startswith("kek-context_payload-")


def test_the_same_plaintext_twice_is_one_object_with_one_data_key(home: Home) -> None:
    first = home.store.put(b"same bytes", artifact_class="prompt_render")
    stored = home.inner.read_object(first.artifact_id)
    again = home.store.put(b"same bytes", artifact_class="prompt_render")

    assert first == again
    assert list(home.inner.iter_artifact_ids()) == [first.artifact_id]
    assert home.inner.read_object(first.artifact_id) == stored  # not sealed again
    assert len(home.records.data_keys_for([first.artifact_id])) == 1


def test_swapped_ciphertexts_are_refused_as_decrypt_failed(home: Home) -> None:
    a = home.store.put(b"artifact A", artifact_class="prompt_render")
    b = home.store.put(b"artifact B", artifact_class="prompt_render")
    blob_a, blob_b = home.inner.read_object(a.artifact_id), home.inner.read_object(b.artifact_id)
    home.inner.write_objects([(a.artifact_id, blob_b), (b.artifact_id, blob_a)])

    assert code_of(lambda: home.store.get(a.artifact_id)) == "CAS_DECRYPT_FAILED"
    assert code_of(lambda: home.store.get(b.artifact_id)) == "CAS_DECRYPT_FAILED"


def test_a_ciphertext_moved_to_another_class_is_refused_as_decrypt_failed(home: Home, tmp_path) -> None:
    ref = home.store.put(b"a rendered prompt", artifact_class="prompt_render")
    row = home.records.data_keys_for([ref.artifact_id])[ref.artifact_id]
    # The payload does not open as another class under its own data key...
    data_key = home.keyring.data_key_for_get(ref.artifact_id)[0]
    with pytest.raises(CasError) as caught:
        open_envelope(data_key, ref.artifact_id, "context_payload", home.inner.read_object(ref.artifact_id))
    assert caught.value.code == "CAS_DECRYPT_FAILED"
    # ...and a data key whose record is moved to another class does not unwrap.
    if not isinstance(home.records.url, str) or not home.records.url.startswith("sqlite"):
        pytest.skip("edits the table behind the store's back")
    engine = sa.create_engine(home.records.url)
    with engine.begin() as conn:
        table = next(name for name in sa.inspect(conn).get_table_names() if name.endswith("data_keys"))
        conn.execute(
            sa.text(f"UPDATE {table} SET artifact_class = 'context_payload' WHERE artifact_id = :a"),
            {"a": row.artifact_id},
        )
    engine.dispose()
    assert code_of(lambda: home.store.get(ref.artifact_id)) == "CAS_DECRYPT_FAILED"


def test_a_flipped_ciphertext_byte_is_refused(home: Home) -> None:
    ref = home.store.put(b"x" * 100, artifact_class="output")
    blob = bytearray(home.inner.read_object(ref.artifact_id))
    blob[-20] ^= 0x01
    home.inner.write_objects([(ref.artifact_id, bytes(blob))])
    assert code_of(lambda: home.store.get(ref.artifact_id)) == "CAS_DECRYPT_FAILED"
    # A put of the plaintext again repairs it.
    home.store.put(b"x" * 100, artifact_class="output")
    assert home.store.get(ref.artifact_id) == b"x" * 100


# --- fail closed ---------------------------------------------------------------------


def test_plaintext_under_a_required_class_is_refused(home: Home) -> None:
    forged = home.inner.put(b"forged plaintext")  # a store-level writer, no envelope

    assert (
        code_of(lambda: home.store.get(forged.artifact_id, artifact_class="prompt_render"))
        == "CAS_NOT_ENCRYPTED"
    )
    # A reader that does not say the class gets the strictest level: refused too.
    assert code_of(lambda: home.store.get(forged.artifact_id)) == "CAS_NOT_ENCRYPTED"
    # Only a class whose policy allows plaintext reads it.
    assert home.store.get(forged.artifact_id, artifact_class="output") == b"forged plaintext"


def test_an_object_sealed_under_another_keyring_is_refused(home: Home, tmp_path) -> None:
    other_records = open_record_store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        other = make_home(other_records, home.inner)
        ref = other.store.put(b"sealed elsewhere", artifact_class="prompt_render")
        assert code_of(lambda: home.store.get(ref.artifact_id)) == "CAS_NOT_ENCRYPTED"
    finally:
        other_records.close()


def test_a_required_class_is_never_written_without_a_keyring(tmp_path) -> None:
    inner = open_cas((tmp_path / "cas").as_uri())
    store = EncryptedArtifactStore(inner, REQUIRED, None)

    assert code_of(lambda: store.put(b"secret", artifact_class="prompt_render")) == "KEYS_MASTER_KEY_INVALID"
    assert list(inner.iter_artifact_ids()) == []
    # An optional class is written in plaintext then, and read back.
    ref = store.put(b"readme", artifact_class="output")
    assert inner.read_object(ref.artifact_id) == b"readme"


def test_a_destroyed_kek_makes_its_artifacts_unreadable_for_good(home: Home) -> None:
    kept = home.store.put(b"other class", artifact_class="output")
    ref = home.store.put(b"to be shredded", artifact_class="prompt_render")
    kek_id = home.records.data_keys_for([ref.artifact_id])[ref.artifact_id].kek_id

    home.keyring.destroy(kek_id)

    assert code_of(lambda: home.store.get(ref.artifact_id)) == "CAS_KEY_DESTROYED"
    assert home.store.get(kept.artifact_id) == b"other class"
    assert home.records.get_kek(kek_id).key_ref is None
    assert [row.artifact_id for row in home.keyring.shredded_keys()] == [ref.artifact_id]
    # Put again, the artifact lives on under a new key of the current lineage.
    home.store.put(b"to be shredded", artifact_class="prompt_render")
    assert home.store.get(ref.artifact_id) == b"to be shredded"


# --- lineages, rotation, rewrap ------------------------------------------------------


def test_each_class_and_period_has_its_own_kek_and_a_put_again_moves_to_the_current_one(home: Home) -> None:
    day1 = home.store.put(b"day one", artifact_class="prompt_render")
    other_class = home.store.put(b"day one context", artifact_class="context_payload")
    home.clock.at_ms += DAY
    day2 = home.store.put(b"day two", artifact_class="prompt_render")
    rows = home.records.data_keys_for([day1.artifact_id, day2.artifact_id, other_class.artifact_id])

    assert len({row.kek_id for row in rows.values()}) == 3
    assert rows[day1.artifact_id].kek_id.endswith("-g1") and "prompt_render" in rows[day1.artifact_id].kek_id

    home.store.put(b"day one", artifact_class="prompt_render")
    moved = home.records.data_keys_for([day1.artifact_id])[day1.artifact_id]
    assert moved.kek_id == rows[day2.artifact_id].kek_id
    assert home.store.get(day1.artifact_id) == b"day one"


def test_rotation_while_four_writers_put_leaves_every_artifact_readable_and_rewrap_drains_the_old_keks(
    home: Home,
) -> None:
    ids: list[str] = []
    lock = threading.Lock()
    started = threading.Barrier(5)

    def writer(number: int) -> None:
        started.wait()
        for index in range(150):
            ref = home.store.put(
                f"writer {number} artifact {index}".encode(), artifact_class="context_payload"
            )
            with lock:
                ids.append(ref.artifact_id)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    while len(ids) < 100:  # rotate while the writers are in full swing
        threading.Event().wait(0.005)
    rotated = home.keyring.rotate()
    for thread in threads:
        thread.join()

    assert rotated and all(kek.state == "primary" and kek.generation == 2 for kek in rotated)
    unreadable = [artifact_id for artifact_id in ids if not _readable(home.store, artifact_id)]
    assert unreadable == []

    progress = home.keyring.rewrap()
    assert progress.remaining == 0 and home.keyring.keys_under_decrypt_only() == 0
    old = [kek.kek_id for kek in home.records.list_keks() if kek.state == "decrypt_only"]
    assert old and all(home.records.count_data_keys().get(kek_id, 0) == 0 for kek_id in old)
    assert all(_readable(home.store, artifact_id) for artifact_id in ids)
    # Nothing depends on the old KEKs now: they retire; the primary does not.
    assert home.keyring.retire(old[0]).state == "retired"
    assert code_of(lambda: home.keyring.retire(rotated[0].kek_id)) == "KEYS_KEK_STATE"


def test_retire_refuses_a_kek_that_data_keys_still_depend_on(home: Home) -> None:
    home.store.put(b"still wrapped by the old KEK", artifact_class="output")
    (old,) = [kek for kek in home.records.list_keks()]
    home.keyring.rotate()
    with pytest.raises(KeysError) as caught:
        home.keyring.retire(old.kek_id)
    assert caught.value.code == "KEYS_KEK_IN_USE" and caught.value.details["data_keys"] == 1


def _readable(store: ArtifactStore, artifact_id: str) -> bool:
    try:
        store.get(artifact_id)
    except WfError:
        return False
    return True


# --- master key ----------------------------------------------------------------------


def settings_for(tmp_path, **env: str) -> Settings:
    return Settings.from_env({"WF_HOME": str(tmp_path / "home"), **env})


def test_a_wrong_master_key_is_refused_before_anything_is_read_or_written(tmp_path) -> None:
    settings = settings_for(tmp_path, WF_MASTER_KEY=new_master_key_text())
    records = open_record_store(settings.records_url)
    try:
        keyring = open_keyring(settings, records, required=True)
        EncryptedArtifactStore(open_cas(settings.cas_url), REQUIRED, keyring).put(
            b"x", artifact_class="output"
        )
        keks = records.list_keks()
        wrong = settings_for(tmp_path, WF_MASTER_KEY=new_master_key_text())
        assert code_of(lambda: open_keyring(wrong, records, required=True)) == "KEYS_MASTER_KEY_INVALID"
        assert records.list_keks() == keks
    finally:
        records.close()


@pytest.mark.parametrize(
    ("value", "why"),
    [("", "empty"), ("not base64!!", "not base64"), (base64.b64encode(b"short").decode(), "5 bytes")],
)
def test_a_malformed_master_key_is_refused_with_its_figures(tmp_path, value, why) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(value)
    settings = settings_for(tmp_path, WF_MASTER_KEY_FILE=str(key_file))
    with pytest.raises(KeysError) as caught:
        master_key(settings)
    assert caught.value.code == "KEYS_MASTER_KEY_INVALID"
    assert value not in str(caught.value) or not value


def test_a_missing_master_key_file_and_two_sources_are_refused(tmp_path) -> None:
    missing = settings_for(tmp_path, WF_MASTER_KEY_FILE=str(tmp_path / "absent.key"))
    assert code_of(lambda: master_key(missing)) == "KEYS_MASTER_KEY_INVALID"
    both = settings_for(tmp_path, WF_MASTER_KEY=new_master_key_text(), WF_MASTER_KEY_FILE=str(tmp_path / "k"))
    assert code_of(lambda: master_key(both)) == "KEYS_MASTER_KEY_INVALID"


def test_a_new_keyring_gets_a_master_key_once_and_a_second_home_must_be_given_it(tmp_path) -> None:
    settings = settings_for(tmp_path, WF_RECORDS_URL=f"sqlite:///{tmp_path / 'shared.db'}")
    records = open_record_store(settings.records_url)
    try:
        assert open_keyring(settings, records, required=False) is None
        assert not settings.default_master_key_file.exists()  # made only when required
        assert open_keyring(settings, records, required=True) is not None
        key_file = settings.default_master_key_file
        assert key_file.stat().st_mode & 0o777 == 0o600
        first = key_file.read_text()
        assert open_keyring(settings, records, required=True) is not None
        assert key_file.read_text() == first
        # Another home on the same record store: its keyring exists, so no key is made for it.
        other = settings_for(tmp_path / "b", WF_RECORDS_URL=settings.records_url)
        assert code_of(lambda: open_keyring(other, records, required=True)) == "KEYS_MASTER_KEY_INVALID"
        assert not other.default_master_key_file.exists()
        given = settings_for(
            tmp_path / "b", WF_RECORDS_URL=settings.records_url, WF_MASTER_KEY_FILE=str(key_file)
        )
        assert open_keyring(given, records, required=True) is not None
    finally:
        records.close()


def test_a_home_master_key_is_never_seen_half_written_by_a_process_starting_beside_it(
    tmp_path, monkeypatch
) -> None:
    """Another process reading the home's key while it is being made finds none, never an empty file."""
    import wf_pipeline.crypto.open as opening

    settings = settings_for(tmp_path)
    seen_mid_write = []
    make_key_text = opening.new_master_key_text

    def key_text_watched() -> str:
        # Called between creating the key and publishing it: what would a second process see now?
        try:
            seen_mid_write.append(master_key(settings))
        except KeysError as exc:
            seen_mid_write.append(exc.code)
        return make_key_text()

    monkeypatch.setattr(opening, "new_master_key_text", key_text_watched)
    records = open_record_store(settings.records_url)
    try:
        assert open_keyring(settings, records, required=True) is not None
    finally:
        records.close()
    assert seen_mid_write == [None]
    assert master_key(settings) is not None
    assert [p.name for p in settings.default_master_key_file.parent.iterdir()] == ["master.key"]


# --- policy --------------------------------------------------------------------------


def test_policy_presets_levels_and_validation() -> None:
    policy = resolve_encryption({"preset": "docs_family", "output": "required"}, workflow_id="w")
    assert policy.level("prompt_render") == "required" and policy.level("output") == "required"
    assert policy.source == "w@builtin+preset:docs_family"
    assert set(encryption_presets()) >= {"docs_family", "all_required", "plaintext"}
    off = resolve_encryption({"preset": "plaintext", "default": False}, workflow_id="w")  # YAML's bare `off`
    assert off.level("anything") == "off" and not off.needs_keyring
    for block in ({"preset": "nope"}, {"prompt_render": "maybe"}, {"not_a_class": "required"}):
        with pytest.raises(WfError) as caught:
            resolve_encryption(block, workflow_id="w", path="p.yaml")
        assert caught.value.code == "PROFILE_ENCRYPTION_INVALID"


def test_sealed_envelopes_differ_for_the_same_plaintext() -> None:
    key = b"k" * 32
    artifact_id = digest(b"p")
    assert seal(key, artifact_id, "output", b"p") != seal(key, artifact_id, "output", b"p")


# --- periods, damaged keys, defaults ---------------------------------------------------


def test_a_changed_kek_period_makes_its_own_lineage_ids(tmp_path) -> None:
    from wf_pipeline.crypto.keyring import kek_id_for

    day = kek_id_for("output", T0, DAY, 1)
    three_days = kek_id_for("output", T0, 3 * DAY, 1)
    hours = kek_id_for("output", T0 + 3_600_000, 3_600_000, 2)
    assert day == f"kek-output-{_stamp(T0)}-g1"
    assert three_days == f"kek-output-{_stamp(T0)}-3d-g1" and three_days != day
    assert hours.endswith("T010000-1h-g2")


def _stamp(at_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).strftime("%Y%m%d")


@pytest.mark.parametrize("value", ["forever", "garbage", "0s", "30s", "-1d"])
def test_a_bad_kek_period_is_a_config_error_naming_the_variable(tmp_path, value) -> None:
    settings = settings_for(tmp_path, WF_KEK_PERIOD=value)
    records = open_record_store(settings.records_url)
    try:
        with pytest.raises(WfError) as caught:
            open_keyring(settings, records, required=True)
    finally:
        records.close()
    assert caught.value.code == "CONFIG_BAD_VALUE" and "WF_KEK_PERIOD" in str(caught.value)
    assert not settings.default_master_key_file.exists()  # stopped before any key was made


def test_a_damaged_wrapped_key_is_replaced_when_the_plaintext_is_put_again(home: Home) -> None:
    a = home.store.put(b"artifact with a damaged key", artifact_class="output")
    b = home.store.put(b"another artifact", artifact_class="output")
    rows = home.records.data_keys_for([a.artifact_id, b.artifact_id])
    damaged = rows[a.artifact_id].model_copy(update={"wrapped_key": rows[b.artifact_id].wrapped_key})
    home.records.rewrap_data_keys([damaged], expected_kek_ids={a.artifact_id: damaged.kek_id})
    assert code_of(lambda: home.store.get(a.artifact_id)) == "CAS_DECRYPT_FAILED"

    home.store.put(b"artifact with a damaged key", artifact_class="output")

    assert home.store.get(a.artifact_id) == b"artifact with a damaged key"
    assert home.store.get(b.artifact_id) == b"another artifact"


def test_a_profile_without_an_encryption_block_keeps_prompts_sealed() -> None:
    for block in (None, {}, {"output": "required"}):
        policy = resolve_encryption(block, workflow_id="w")
        assert policy.level("prompt_render") == "required" and policy.level("context_payload") == "required"
        assert policy.source == "w@builtin+preset:standard"
    assert resolve_encryption({"preset": "plaintext"}, workflow_id="w").needs_keyring is False


def test_an_optional_class_read_as_itself_accepts_plaintext_while_an_unknown_reader_does_not(
    tmp_path,
) -> None:
    records = open_record_store(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        policy = resolve_encryption({"preset": "docs_family", "output": "off"}, workflow_id="w")
        h = make_home(records, open_cas((tmp_path / "cas").as_uri()), policy=policy)
        ref = h.store.put(b"# README\n", artifact_class="output")
        assert h.inner.read_object(ref.artifact_id) == b"# README\n"  # off: written in plaintext
        assert h.store.get(ref.artifact_id, artifact_class="output") == b"# README\n"
        assert code_of(lambda: h.store.get(ref.artifact_id)) == "CAS_NOT_ENCRYPTED"
    finally:
        records.close()


def test_verify_counts_shredded_objects_apart_and_never_as_intact(tmp_path, monkeypatch) -> None:
    from e2e_support import isolated_settings

    from wf_pipeline.runtime.environment import RuntimeEnv
    from wf_pipeline.runtime.repair import verify_store

    settings = isolated_settings(monkeypatch, tmp_path / "home")
    with RuntimeEnv.open(settings, workspace_dir=tmp_path) as env:
        kept = env.cas.put(b"kept", artifact_class="output")
        shredded = env.cas.put(b"shredded", artifact_class="prompt_render")
        kek_id = env.records.data_keys_for([shredded.artifact_id])[shredded.artifact_id].kek_id
        assert env.keyring is not None
        env.keyring.destroy(kek_id)
        report = verify_store(env)
    assert report.shredded == (shredded.artifact_id,)
    assert report.checked == 1 and report.bytes_checked == kept.size and report.corrupt == ()
