"""The delete protocol on every backend combination: trash, restore, permanent delete."""

from __future__ import annotations

from pathlib import Path

import pytest

import lamin_nb as ln
from tests.conftest import set_immutable
from tests.support.crashes import assert_i1_i2_i3, assert_one_latest_per_key, rows_by_status


def deny_deletes(backend) -> None:
    """Object deletes fail for real: a bucket policy on S3, an immutable folder locally."""
    if backend.is_s3:
        managed = backend.storage.removeprefix(f"s3://{backend.bucket}").strip("/")
        backend.s3.deny(backend.bucket, "s3:DeleteObject", f"{managed}/.lamindb/")
    else:
        set_immutable(Path(backend.storage) / ".lamindb", True)


def allow_deletes(backend) -> None:
    backend.allow_writes()


def content(artifact: ln.Artifact) -> bytes:
    return Path(artifact.load()).read_bytes()


def test_trash_hides_keeps_object_and_restore_brings_back(backend, make_file):
    artifact = ln.Artifact(make_file(b"keep me"), key="t/a.txt").save()
    artifact.delete()
    assert ln.Artifact.filter().count() == 0
    with pytest.raises(ln.NotFoundError):
        ln.Artifact.get("t/a.txt")
    assert [a.uid for a in ln.Artifact.filter(is_trashed=True).all()] == [artifact.uid]
    assert backend.object_names() == [f"{artifact.uid}{artifact.suffix}"]
    assert ln.check().is_consistent and ln.check().n_ok == 1
    artifact.restore()
    got = ln.Artifact.get("t/a.txt")
    assert got.uid == artifact.uid and got.is_latest and content(got) == b"keep me"


def test_trashing_the_latest_version_makes_the_previous_latest(backend, make_file):
    v1 = ln.Artifact(make_file(b"one"), key="t/v.txt").save()
    v2 = ln.Artifact(make_file(b"two"), key="t/v.txt").save()
    v2.delete()
    assert ln.Artifact.get("t/v.txt").uid == v1.uid and ln.Artifact.get(v1.uid).is_latest
    v2.restore()
    assert ln.Artifact.get("t/v.txt").uid == v2.uid
    assert ln.Artifact.get(v1.uid).is_latest is False
    assert_one_latest_per_key()


def test_permanent_delete_removes_row_and_object(backend, make_file):
    artifact = ln.Artifact(make_file(b"bye"), key="t/gone.txt").save()
    cached = artifact.cache()  # on S3 this leaves a cached copy, which goes too
    keep = ln.Artifact(make_file(b"stay"), key="t/stay.txt").save()
    artifact.delete(permanent=True)
    assert artifact.status is None
    assert backend.object_names() == [f"{keep.uid}{keep.suffix}"]
    assert [r.uid for r in rows_by_status()["committed"]] == [keep.uid]
    with pytest.raises(ln.NotFoundError):
        ln.Artifact.get(artifact.uid)
    assert not cached.exists()
    with pytest.raises(ln.NotFoundError):
        artifact.delete(permanent=True)  # already gone: says so, changes nothing
    assert_i1_i2_i3()


def test_permanent_delete_of_a_trashed_artifact(backend, make_file):
    artifact = ln.Artifact(make_file(b"trash then delete")).save()
    artifact.delete()
    artifact.delete(permanent=True)
    assert backend.object_names() == []
    assert_i1_i2_i3()


def test_deleting_the_latest_version_makes_the_previous_latest(backend, make_file):
    v1, v2, v3 = (ln.Artifact(make_file(c), key="t/v.csv").save() for c in (b"1", b"2", b"3"))
    v3.delete(permanent=True)
    latest = ln.Artifact.get("t/v.csv")
    assert latest.uid == v2.uid and latest.is_latest and content(latest) == b"2"
    v1.delete(permanent=True)  # an older version: the latest stays
    assert ln.Artifact.get("t/v.csv").uid == v2.uid
    assert [a.uid for a in ln.Artifact.filter(key="t/v.csv").all()] == [v2.uid]
    assert_i1_i2_i3()


def test_failed_object_delete_leaves_artifact_intact(backend, make_file):
    v1 = ln.Artifact(make_file(b"first"), key="t/d.txt").save()
    v2 = ln.Artifact(make_file(b"second"), key="t/d.txt").save()
    deny_deletes(backend)
    try:
        with pytest.raises(ln.StorageError) as error:
            v2.delete(permanent=True)
        assert isinstance(error.value.__cause__, PermissionError)
        assert v2.uid in str(error.value) and "unchanged" in str(error.value)
    finally:
        allow_deletes(backend)
    got = ln.Artifact.get("t/d.txt")
    assert got.uid == v2.uid and got.is_latest and content(got) == b"second"
    assert ln.Artifact.get(v1.uid).is_latest is False
    assert_i1_i2_i3()
    v2.delete(permanent=True)  # later, with permission: it works
    assert ln.Artifact.get("t/d.txt").uid == v1.uid
    assert backend.object_names() == [f"{v1.uid}{v1.suffix}"]
    assert_i1_i2_i3()


def test_delete_arguments_are_checked(backend, make_file):
    unsaved = ln.Artifact(make_file(b"never saved"))
    with pytest.raises(ln.NotFoundError):
        unsaved.delete(permanent=True)
    saved = ln.Artifact(make_file(b"saved")).save()
    with pytest.raises(TypeError):
        saved.delete(permanent="yes")
    assert ln.Artifact.filter().count() == 1


def test_a_uid_never_comes_back_after_deleting_the_latest_version(backend, make_file):
    """Deleting the latest version does not free its version number (nor its uid): the next
    save is version 3, and a stale handle on version 2 says it is gone."""
    old = ln.Artifact(make_file(b"old bytes"), key="r/result.txt").save()
    ln.Artifact(make_file(b"v2 bytes!"), key="r/result.txt").save()
    second = ln.Artifact.get("r/result.txt")
    stale = ln.Artifact.get(second.uid)
    second.cache()
    second.delete(permanent=True)
    third = ln.Artifact(make_file(b"new bytes"), key="r/result.txt").save()
    assert open(ln.Artifact.get("r/result.txt").load(), "rb").read() == b"new bytes"
    assert open(ln.Artifact.get(old.uid).load(), "rb").read() == b"old bytes"
    assert third.version == 3 and third.uid != second.uid
    with pytest.raises(ln.NotFoundError):
        stale.load()


def test_a_deleted_artifact_saved_again_gets_a_new_uid(backend, make_file):
    """Re-running the cell that saved a file (same object, file since changed) after a
    permanent delete: its uid was issued once and must never mean other bytes (found by the
    model-based test)."""
    path = make_file(b"first bytes")
    artifact = ln.Artifact(path)
    artifact.save()
    deleted = artifact.uid
    artifact.delete(permanent=True)
    path.write_bytes(b"other bytes")
    artifact.save()
    assert artifact.uid != deleted
    with pytest.raises(ln.NotFoundError):
        ln.Artifact.get(deleted)
    assert content(ln.Artifact.get(artifact.uid)) == b"other bytes"
    assert_i1_i2_i3()


def test_saving_a_stale_handle_of_a_deleted_artifact_says_it_was_deleted(backend, make_file):
    """Another handle deleted the artifact for good: saving this one fails with a message
    that says so, not with an AssertionError from inside the protocol (found by the
    model-based test)."""
    artifact = ln.Artifact(make_file(b"bytes")).save()
    stale = ln.Artifact.get(artifact.uid)
    artifact.delete(permanent=True)
    with pytest.raises(ln.SaveError, match="deleted permanently") as info:
        stale.save()
    assert "AssertionError" not in str(info.value)
    assert ln.Artifact.filter().count() == 0
    assert_i1_i2_i3()
