"""Read-only views for the JupyterLab extension, on an explicitly given instance."""

from __future__ import annotations

from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core import browse
from lamin_nb.core.errors import NotFoundError
from lamin_nb.core.instance import bound, current, open_instance
from lamin_nb.core.settings import current_name, known_names


def _save(tmp_path: Path, name: str, content: str, key: str) -> ln.Artifact:
    path = tmp_path / name
    path.write_text(content)
    return ln.Artifact(path, key=key).save()


def test_page_is_newest_first_with_total_and_prefix(local_instance, tmp_path):
    for i in range(5):
        _save(tmp_path, f"f{i}.txt", f"content {i}", f"runs/{i}.txt")
    _save(tmp_path, "other.txt", "other", "other/x.txt")
    inst = current()
    total, rows = browse.page(inst, limit=3)
    assert total == 6 and [r["key"] for r in rows] == ["other/x.txt", "runs/4.txt", "runs/3.txt"]
    total, rows = browse.page(inst, key_prefix="runs/", limit=2, offset=3)
    assert total == 5 and [r["key"] for r in rows] == ["runs/1.txt", "runs/0.txt"]
    assert browse.page(inst, key_prefix="runs_")[0] == 0  # '_' is no wildcard


def test_trashed_rows_are_listed_apart_and_counted(local_instance, tmp_path):
    kept = _save(tmp_path, "a.txt", "a", "a.txt")
    gone = _save(tmp_path, "b.txt", "b", "b.txt")
    gone.delete()
    inst = current()
    assert [r["uid"] for r in browse.page(inst)[1]] == [kept.uid]
    assert [r["uid"] for r in browse.page(inst, trashed=True)[1]] == [gone.uid]
    counts = browse.status_counts(inst)
    assert counts["committed"] == 1 and counts["trashed"] == 1
    assert counts["pending"] == counts["deleting"] == counts["expired"] == 0


def test_versions_share_the_uid_stem(local_instance, tmp_path):
    first = _save(tmp_path, "v1.txt", "one", "model.pt")
    second = _save(tmp_path, "v2.txt", "two", "model.pt")
    found = browse.versions(current(), first.uid)
    assert [v["uid"] for v in found] == [second.uid, first.uid]
    assert [v["is_latest"] for v in found] == [True, False]
    with pytest.raises(NotFoundError):
        browse.versions(current(), "Z" * 20)


def test_describe_instance_masks_the_database_password():
    from lamin_nb.core.settings import InstanceSettings

    settings = InstanceSettings("x", "u", "s3://b/p", "postgresql+psycopg://me:s3cret@h/db")
    shown = browse.describe_instance(settings)
    assert "s3cret" not in str(shown) and shown["database_kind"] == "postgresql"
    assert shown["storage_kind"] == "s3"


def test_open_and_bound_leave_the_current_marker_alone(tmp_path):
    ln.init(storage=tmp_path / "one", name="one")
    ln.init(storage=tmp_path / "two", name="two")
    assert known_names() == ["one", "two"] and current_name() == "two"
    one = open_instance("one")
    assert current_name() == "two"
    with bound(one):
        assert current() is one
        _save(tmp_path, "f.txt", "f", "in/one.txt")
    assert current().name == "two" and current_name() == "two"
    assert browse.page(one)[0] == 1 and browse.page(current())[0] == 0
    one.close()
