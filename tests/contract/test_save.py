"""The single-artifact save protocol on every backend combination (issue: save core)."""

from __future__ import annotations

import pytest

import lamin_nb as ln
from lamin_nb.core import faults


def test_save_file_roundtrip(backend, make_file):
    path = make_file(b"hello world", name="hello.txt")
    artifact = ln.Artifact(path, key="greetings/hello.txt", description="a greeting")
    uid = artifact.uid
    assert artifact.save() is artifact
    assert artifact.uid == uid and artifact.status == "committed" and artifact.is_latest
    assert artifact.hash_type == "blake3" and artifact.size == 11
    assert backend.object_names() == [f"{uid}.txt"]
    got = ln.Artifact.get("greetings/hello.txt")
    assert got.uid == uid and got.description == "a greeting"
    assert open(got.load(), "rb").read() == b"hello world"
    assert ln.check().is_consistent


def test_anndata_and_dataframe_roundtrip(backend):
    import anndata
    import numpy as np
    import pandas as pd

    adata = anndata.AnnData(np.arange(12, dtype="float32").reshape(4, 3))
    a = ln.Artifact.from_anndata(adata, key="x.h5ad", description="mouse").save()
    df = pd.DataFrame({"gene": ["a", "b"], "count": [1, 2]})
    d = ln.Artifact.from_df(df, key="t.parquet").save()
    assert a.otype == "AnnData" and a.suffix == ".h5ad"
    assert d.otype == "DataFrame" and d.suffix == ".parquet"
    assert (ln.Artifact.get("x.h5ad").load().X == adata.X).all()
    pd.testing.assert_frame_equal(ln.Artifact.get("t.parquet").load(), df)
    assert ln.Artifact.filter().count() == 2
    assert list(ln.Artifact.filter(otype="AnnData").df()["key"]) == ["x.h5ad"]


def test_same_content_is_deduplicated(backend, make_file):
    content = b"same bytes"
    first = ln.Artifact(make_file(content), key="a.bin").save()
    second = ln.Artifact(make_file(content), key="b.bin").save()
    assert second.uid == first.uid
    assert ln.Artifact.filter().count() == 1
    assert len(backend.object_names()) == 1


def test_new_content_under_same_key_is_new_version(backend, make_file):
    v1 = ln.Artifact(make_file(b"one"), key="run/result.csv").save()
    v2 = ln.Artifact(make_file(b"two"), key="run/result.csv").save()
    assert (v1.version, v2.version) == (1, 2)
    assert v2.uid[:16] == v1.uid[:16] and v2.uid != v1.uid
    latest = ln.Artifact.filter(key="run/result.csv", is_latest=True).all()
    assert [a.uid for a in latest] == [v2.uid]
    assert ln.Artifact.get("run/result.csv").uid == v2.uid
    assert ln.Artifact.get(v1.uid).is_latest is False


def test_denied_upload_leaves_nothing(backend, make_file):
    """The seed's first scenario: no permission on the storage -> SaveError, no row, no object."""
    backend.deny_writes()
    artifact = ln.Artifact(make_file(b"x" * 4096), description="Mouse Lymph Node scRNA-seq")
    uid = artifact.uid
    with pytest.raises(RuntimeError) as error:
        artifact.save()
    assert isinstance(error.value, ln.SaveError)
    assert "Access Denied" in str(error.value)
    assert isinstance(error.value.__cause__, ln.StorageError)
    assert isinstance(error.value.__cause__.__cause__, PermissionError)
    assert len(ln.Artifact.filter().all()) == 0
    backend.allow_writes()
    assert backend.object_names() == []
    report = ln.check()
    assert report.is_consistent and not report.pending
    assert artifact.uid == uid  # kept for the retry
    assert artifact.save().status == "committed" and artifact.uid == uid


def test_denied_upload_with_deletes_denied_too_leaves_nothing(backend, make_file):
    """A bucket policy that denies deletes as well as writes: the undo's delete is refused,
    but nothing was uploaded, so no pending row may stay behind for repair (found by the
    model-based test: check said "NOT consistent" after a plain failed save)."""
    import json

    if backend.is_s3:
        statement = {
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": f"arn:aws:s3:::{backend.bucket}/team/.lamindb/*",
        }
        policy = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        backend.s3.client().put_bucket_policy(Bucket=backend.bucket, Policy=policy)
    else:
        backend.deny_writes()  # an immutable folder: no new entry, none removed
    artifact = ln.Artifact(make_file(b"x" * 4096), key="denied.bin")
    with pytest.raises(ln.SaveError, match="Access Denied|Operation not permitted"):
        artifact.save()
    report = ln.check()
    assert report.is_consistent and not report.pending, repr(report)
    backend.allow_writes()
    assert backend.object_names() == []
    assert artifact.save().status == "committed"


@pytest.mark.parametrize("point", ["before_commit", "after_reserve", "after_upload"])
def test_failure_before_commit_leaves_nothing(backend, make_file, point):
    faults.configure(f"{point}:raise")
    artifact = ln.Artifact(make_file(), key="k.bin")
    with pytest.raises(ln.SaveError, match="injected fault"):
        artifact.save()
    faults.configure(None)
    assert ln.Artifact.filter().count() == 0
    assert backend.object_names() == []
    assert not ln.check().pending


def test_closed_database_connection_at_commit(backend, make_file):
    """The commit's connection dies: no row, no object, and the next save works."""
    from sqlalchemy import event

    from lamin_nb.core.instance import current

    engine = current().db.engine
    calls = {"n": 0}

    def kill_on_commit(conn, cursor, statement, parameters, context, executemany):
        if "UPDATE lamin_artifact SET status" in statement and calls["n"] == 0:
            calls["n"] += 1
            conn.connection.dbapi_connection.close()

    event.listen(engine, "before_cursor_execute", kill_on_commit)
    try:
        with pytest.raises(ln.SaveError):
            ln.Artifact(make_file(), key="k.bin").save()
    finally:
        event.remove(engine, "before_cursor_execute", kill_on_commit)
    assert ln.Artifact.filter().count() == 0
    assert backend.object_names() == []
    assert ln.Artifact(make_file(), key="k.bin").save().status == "committed"


def test_only_committed_rows_are_visible(backend, make_file):
    from sqlalchemy import select

    from lamin_nb.core.instance import current
    from lamin_nb.core.models import ArtifactRow

    faults.configure("after_upload:raise")
    with pytest.raises(ln.SaveError):
        ln.Artifact(make_file(), key="k.bin").save()
    faults.configure(None)
    with current().db.read() as session:
        assert session.scalars(select(ArtifactRow)).all() == []
    assert ln.Artifact.filter().count() == 0
    with pytest.raises(ln.NotFoundError):
        ln.Artifact.get("k.bin")


def test_artifact_without_key_is_its_own_latest(backend, make_file):
    artifact = ln.Artifact(make_file(), description="no key").save()
    assert artifact.is_latest is True
    assert ln.Artifact.get(artifact.uid).is_latest is True
