"""An artifact keeps the instance it was saved in (or loaded from) when another becomes current.

``load``, ``cache``, ``delete``, ``restore`` and ``save`` act on that instance, or say clearly
that it cannot be reached; never a path in the wrong storage or a "not saved".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core.instance import current


def storage_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> str:
    if kind == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/{name}"
    return str(tmp_path / name)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_an_artifact_acts_on_its_own_instance_after_a_switch(tmp_path, make_file, kind, request):
    first = ln.init(storage=storage_for(kind, tmp_path, request, "first"))
    saved = ln.Artifact(make_file(b"in the first instance"), key="k.txt").save()
    queried = ln.Artifact.get("k.txt")
    frame = ln.Artifact.from_df(_frame(), key="t.parquet").save()
    second = ln.init(storage=storage_for(kind, tmp_path, request, "second"))
    assert current() is second
    ln.Artifact(make_file(b"in the second instance"), key="k.txt").save()

    for artifact in (saved, queried):
        assert Path(artifact.load()).read_bytes() == b"in the first instance"
    assert frame.load().equals(_frame())
    assert saved.save() is saved and saved.status == "committed"  # already saved, in first
    report = ln.save([saved, ln.Artifact(make_file(b"new"), key="n.txt")])
    assert report.already_saved == [saved] and len(report.saved) == 1
    assert [a.key for a in ln.Artifact.filter().all()] == ["k.txt", "n.txt"]  # second's rows

    queried.delete()  # trash, in the first instance
    assert ln.Artifact.filter(key="k.txt").count() == 1  # the second's own k.txt is untouched
    queried.restore()
    saved.delete(permanent=True)
    assert saved.status is None
    ln.connect(first.name)
    assert [a.key for a in ln.Artifact.filter().all()] == ["t.parquet"]
    assert ln.check().is_consistent


def test_an_unreachable_instance_is_named(tmp_path, make_file):
    db = tmp_path / "first.db"
    ln.init(storage=str(tmp_path / "first"), db=f"sqlite:///{db}")
    saved = ln.Artifact(make_file(b"x"), key="k.txt").save()
    ln.init(storage=str(tmp_path / "second"))
    os.remove(db)
    with pytest.raises(ln.InstanceError, match="first.db was deleted or replaced"):
        saved.delete()


def test_an_unsaved_artifact_is_saved_in_the_current_instance(tmp_path, make_file):
    ln.init(storage=str(tmp_path / "first"))
    artifact = ln.Artifact(make_file(b"built while first was current"), key="k.txt")
    ln.init(storage=str(tmp_path / "second"))
    artifact.save()
    assert ln.Artifact.get("k.txt").uid == artifact.uid
    assert Path(artifact.load()).is_relative_to(tmp_path / "second")


def _frame():
    import pandas as pd

    return pd.DataFrame({"a": [1, 2]})
