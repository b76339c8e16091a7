"""The settings folder (``LAMIN_NB_HOME``) lost or replaced under a connected process.

The default SQLite database lives in the settings folder. A connected process keeps the
database file open, so after ``rm -rf`` of the folder its writes would go on into the unlinked
file and vanish when it exits: every write must fail instead, and ``ln.init(storage,
adopt=True)`` must rebuild the committed rows from the objects.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core.instance import current
from tests.support.servers import create_pg_database, drop_pg_database


def storage_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "s3":
        return f"s3://{request.getfixturevalue('s3_bucket')}/team"
    return str(tmp_path / "data")


def object_names() -> list[str]:
    return sorted(info.name for info in current().storage.list_objects())


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_write_fails_once_the_settings_folder_is_deleted(
    tmp_path, lamin_home, make_file, kind, request
):
    ln.init(storage=storage_for(kind, tmp_path, request))
    first = ln.Artifact(make_file(b"first"), key="a/first.txt").save()
    trashed = ln.Artifact(make_file(b"in the trash"), key="a/trashed.txt").save()
    trashed.delete()
    shutil.rmtree(lamin_home)

    second = ln.Artifact(make_file(b"second"), key="a/second.txt")
    with pytest.raises(ln.SaveError, match="deleted or replaced") as error:
        second.save()
    assert isinstance(error.value.__cause__.__cause__, ln.InstanceError)
    assert second.status is None
    assert object_names() == sorted([first.object_name, trashed.object_name])
    with pytest.raises(ln.InstanceError, match="adopt=True"):
        first.delete()
    with pytest.raises(ln.InstanceError, match="deleted or replaced"):
        trashed.restore()


def test_a_write_fails_when_the_database_file_was_replaced(tmp_path, lamin_home, make_file):
    """A backup copied back over the file while connected: another file, not ours to write."""
    ln.init(storage=str(tmp_path / "data"))
    ln.Artifact(make_file(b"before"), key="before.txt").save()
    db_file = lamin_home / "instances" / "data" / "lamin.db"
    backup = tmp_path / "backup.db"
    shutil.copy(db_file, backup)
    db_file.unlink()
    shutil.copy(backup, db_file)
    with pytest.raises(ln.SaveError, match="deleted or replaced"):
        ln.Artifact(make_file(b"after"), key="after.txt").save()
    # connecting again opens the file now at that path, and writes work again
    ln.connect("data")
    assert ln.Artifact(make_file(b"after"), key="after.txt").save().status == "committed"


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_adopt_rebuilds_the_committed_rows_from_the_objects(
    tmp_path, lamin_home, make_file, kind, request
):
    storage = storage_for(kind, tmp_path, request)
    ln.init(storage=storage)
    v1 = ln.Artifact(make_file(b"version 1"), key="runs/x.txt", description="first").save()
    v2 = ln.Artifact(make_file(b"version 2!"), key="runs/x.txt").save()
    table = ln.Artifact.from_df(_frame(), key="tables/t.parquet").save()
    shutil.rmtree(lamin_home)
    if kind == "local":  # a stray file nobody wrote through lamin_nb
        (Path(storage) / ".lamindb" / "notes.txt").write_text("mine")

    with pytest.raises(ln.ValidationError, match="adopt=True"):
        ln.init(storage=storage)  # the storage still names the lost instance
    inst = ln.init(storage=storage, adopt=True)
    report = inst.adopted
    assert report is not None
    assert sorted(report.adopted) == sorted([v1.uid, v2.uid, table.uid])
    assert "keys" in report.summary() and "descriptions" in report.summary()
    if kind == "local":
        assert [name for name, _ in report.skipped] == ["notes.txt"]
    back = {a.uid: a for a in ln.Artifact.filter().all()}
    assert set(back) == {v1.uid, v2.uid, table.uid}
    assert Path(back[v1.uid].load()).read_bytes() == b"version 1"
    assert back[v2.uid].version == 2 and back[v1.uid].version == 1
    assert back[v1.uid].key is None and back[v1.uid].description is None
    assert back[table.uid].load().equals(_frame())
    assert back[v2.uid].hash == v2.hash  # re-hashed from the stored bytes
    report = ln.check(deep=True)
    assert report.n_ok == 3 and not (report.missing or report.mismatched)
    assert [o.name for o in report.orphans] == (["notes.txt"] if kind == "local" else [])

    # the adopted instance works as any other, and a second adopt finds nothing new
    ln.Artifact(make_file(b"new"), key="new.txt").save()
    assert ln.init(storage=storage, adopt=True).adopted.adopted == []
    assert ln.check(deep=True).n_ok == 4


def test_adopt_after_the_postgres_database_is_lost(tmp_path, lamin_home, make_file, pg_url):
    storage = str(tmp_path / "team")
    ln.init(storage=storage, db=pg_url)
    saved = ln.Artifact(make_file(b"shared"), key="s.txt").save()
    ln.disconnect()
    drop_pg_database(pg_url)
    shutil.rmtree(lamin_home)
    fresh = create_pg_database()
    try:
        inst = ln.init(storage=storage, db=fresh, adopt=True)
        assert inst.adopted.adopted == [saved.uid]
        assert Path(ln.Artifact.get(saved.uid).load()).read_bytes() == b"shared"
        assert ln.check(deep=True).is_consistent
    finally:
        ln.disconnect()
        drop_pg_database(fresh)


def test_adopt_refuses_a_database_that_holds_artifacts(tmp_path, make_file, monkeypatch):
    """The old database comes back after its storage was adopted by a new one: taking the
    storage back would merge two instances' rows, so it is refused."""
    storage = str(tmp_path / "data")
    old_db, new_db = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    ln.init(storage=storage, db=old_db)
    ln.Artifact(make_file(b"one"), key="one.txt").save()
    monkeypatch.setenv("LAMIN_NB_HOME", str(tmp_path / "second-home"))
    assert len(ln.init(storage=storage, db=new_db, adopt=True).adopted.adopted) == 1
    monkeypatch.setenv("LAMIN_NB_HOME", str(tmp_path / "third-home"))
    with pytest.raises(ln.ValidationError, match="managed by another instance"):
        ln.init(storage=storage, db=old_db)
    with pytest.raises(ln.ValidationError, match=r"already holds 1 artifact\(s\)"):
        ln.init(storage=storage, db=old_db, adopt=True)


def _frame():
    import pandas as pd

    return pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
