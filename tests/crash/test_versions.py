"""A failed save of a new version never harms the previous one (every backend combination).

The crash tests cover a killed writer; here the failure is a denied upload or an error at a
fault point, in a single and in a bulk save.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core import faults
from tests.support.crashes import assert_i1_i2_i3

KEY = "results/summary.csv"


def _assert_v1_intact(v1: ln.Artifact) -> None:
    latest = ln.Artifact.get(KEY)
    assert latest.uid == v1.uid and latest.is_latest and latest.version == 1
    assert Path(latest.load()).read_bytes() == b"v1 content"
    assert ln.Artifact.filter(key=KEY).count() == 1
    assert_i1_i2_i3()


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_denied_upload_of_new_version(backend, make_file, bulk):
    v1 = ln.Artifact(make_file(b"v1 content"), key=KEY).save()
    v2 = ln.Artifact(make_file(b"v2 content"), key=KEY)
    backend.deny_writes()
    try:
        with pytest.raises(ln.SaveError):
            if bulk:
                ln.save([v2, ln.Artifact(make_file(b"another"), key="results/other.csv")])
            else:
                v2.save()
    finally:
        backend.allow_writes()
    _assert_v1_intact(v1)
    assert v2.save().version == 2  # the retry works and only now takes over
    assert ln.Artifact.get(KEY).uid == v2.uid and ln.Artifact.get(v1.uid).is_latest is False


@pytest.mark.parametrize("point", ["after_upload", "before_commit"])
def test_fault_during_new_version(backend, make_file, point):
    v1 = ln.Artifact(make_file(b"v1 content"), key=KEY).save()
    faults.configure(f"{point}:raise")
    with pytest.raises(ln.SaveError, match="injected fault"):
        ln.save([ln.Artifact(make_file(b"v2 content"), key=KEY)], atomic=True)
    faults.configure(None)
    _assert_v1_intact(v1)


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_a_key_without_a_family_row_keeps_its_stem_and_versions(backend, make_file, bulk):
    """Rows written before families were recorded (or rebuilt from objects) have no family
    row: the look-up reads their versions in the same statement, and a new version still
    takes the family's stem, the next number and the visible version's description."""
    from sqlalchemy import text

    from lamin_nb.core.instance import current

    v1 = ln.Artifact(make_file(b"v1 content"), key=KEY, description="first").save()
    v2 = ln.Artifact(make_file(b"v2 content"), key=KEY).save()
    with current().db.engine.begin() as conn:
        conn.execute(text("DELETE FROM lamin_family"))
    v3 = ln.Artifact(make_file(b"v3 content"), key=KEY)
    assert v3.uid[:16] == v1.uid[:16]  # predicted at construction
    if bulk:
        ln.save([v3, ln.Artifact(make_file(b"another"), key="results/other.csv")])
    else:
        v3.save()
    assert v3.uid[:16] == v1.uid[:16] and v3.version == 3 and v3.is_latest
    assert v3.description == v2.description == "first"
    assert not ln.Artifact.get(v2.uid).is_latest
    assert_i1_i2_i3()
