"""Named refs: the one mutable pointer kind in the CAS."""

from __future__ import annotations

import pytest

from wf_pipeline.cas import open_cas
from wf_pipeline.errors import CasError


@pytest.fixture
def cas(tmp_path):
    return open_cas(tmp_path.as_uri())


def test_ref_points_at_latest_artifact(cas):
    first = cas.put(b"first")
    second = cas.put(b"second")
    cas.set_ref("outputs/a/b", first.artifact_id)
    assert cas.get_ref("outputs/a/b") == first.artifact_id
    cas.set_ref("outputs/a/b", second.artifact_id)
    assert cas.get_ref("outputs/a/b") == second.artifact_id
    # Refs are not objects: listing artifacts does not see them.
    assert set(cas.iter_artifact_ids()) == {first.artifact_id, second.artifact_id}


def test_missing_ref(cas):
    with pytest.raises(CasError) as err:
        cas.get_ref("nothing/here")
    assert err.value.code == "CAS_REF_NOT_FOUND"


@pytest.mark.parametrize("name", ["", "../escape", "a//b", "a/./b"])
def test_invalid_ref_names(cas, name):
    ref = cas.put(b"x")
    with pytest.raises(CasError) as err:
        cas.set_ref(name, ref.artifact_id)
    assert err.value.code == "CAS_INVALID_REF"


def test_ref_must_hold_an_artifact_id(cas, tmp_path):
    with pytest.raises(CasError) as err:
        cas.set_ref("r", "not-a-digest")
    assert err.value.code == "CAS_INVALID_ID"
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "broken").write_text("garbage")
    with pytest.raises(CasError) as err:
        cas.get_ref("broken")
    assert err.value.code == "CAS_REF_CORRUPT"
