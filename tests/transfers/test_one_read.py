"""One read for large new content (DESIGN §9): hashed while written, deduplicated at the commit.

Reads of the source are counted by wrapping ``open`` (every byte lamin_nb reads from it in
Python; a local kernel copy counts as one read of the whole file); bytes sent are counted by
the TCP proxy between lamin_nb and the server.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import lamin_nb as ln
from tests.transfers.conftest import S3_SIZE, Child, S3Target, wait_all

MiB = 1024 * 1024
LOCAL = 80 * MiB  # above the one-read threshold (64 MiB), small for a shared machine


class _Counted:
    """A file of the source: what is read from it is counted."""

    def __init__(self, fh: Any, counter: dict[str, int]) -> None:
        self._fh, self._counter = fh, counter

    def __enter__(self) -> _Counted:
        self._fh.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        # how far the file was read, however (a kernel copy moves the offset too)
        self._counter["through"] += self._fh.tell()
        return self._fh.__exit__(*exc)

    def readinto(self, buffer: Any) -> int:
        n = self._fh.readinto(buffer)
        self._counter["bytes"] += n or 0
        return int(n or 0)

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._counter["bytes"] += len(data)
        return bytes(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


@pytest.fixture
def source_reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], dict[str, int]]:
    """``watch(path)``: how often ``path`` was opened for reading, the bytes read from it in
    Python and how far each open read it in all (``through``: a kernel copy included)."""
    real_open = builtins.open

    def watch(path: Path) -> dict[str, int]:
        counter = {"opens": 0, "bytes": 0, "through": 0}

        def counting_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            fh = real_open(file, mode, *args, **kwargs)
            if "r" in mode and isinstance(file, (str, Path)) and Path(file) == path:
                counter["opens"] += 1
                return _Counted(fh, counter)
            return fh

        monkeypatch.setattr(builtins, "open", counting_open)
        return counter

    return watch


def _random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        for _ in range(size // MiB):
            out.write(os.urandom(MiB))
    return path


def _pending() -> list[Any]:
    from sqlalchemy import select

    from lamin_nb.core import rows
    from lamin_nb.core.instance import current

    with current().db.read_rows() as session:
        return list(session.execute(select(rows.TABLE).where(rows.TABLE.c.status == "pending")))


def test_new_large_local_file_is_read_once(
    tmp_path: Path, source_reads: Callable[[Path], dict[str, int]]
) -> None:
    ln.init(storage=str(tmp_path / "storage"))
    path = _random_file(tmp_path / "big.bin", LOCAL)
    reads = source_reads(path)
    artifact = ln.Artifact(path, key="big.bin").save()
    # one pass: the kernel copy (the hash comes from the copy's verify pass, not the
    # source); the one byte is the check that the file can be read, before anything else
    assert reads["through"] == LOCAL + 1, reads
    from lamin_nb.core.hashing import hash_file

    assert artifact.hash == hash_file(path)[0]
    # re-running the cell: the same size is stored, so it is hashed first and deduplicated
    before = reads["through"]
    again = ln.Artifact(path, key="big.bin").save()
    assert again.uid == artifact.uid and reads["through"] - before == LOCAL + 1, reads
    assert ln.check(deep=True).is_consistent


def test_new_large_s3_file_is_read_once_and_sent_once(
    s3: S3Target, big_file: Callable[..., Path], source_reads: Callable[[Path], dict[str, int]]
) -> None:
    path = big_file(S3_SIZE)
    reads = source_reads(path)
    s3.proxy.reset()
    artifact = ln.Artifact(path, key="big.bin").save()
    # before: hashed (one read), then sent (another); the byte: the check it can be read
    assert reads["bytes"] == reads["through"] == S3_SIZE + 1, reads
    assert S3_SIZE <= s3.proxy.upstream < S3_SIZE * 1.05
    assert s3.object_bytes(artifact.uid) == path.read_bytes()
    from lamin_nb.core.hashing import hash_file

    assert artifact.hash == hash_file(path)[0]  # (reads counted above: this one is not)
    s3.proxy.reset()
    again = ln.Artifact(path, key="big.bin").save()  # dedup before sending: nothing sent
    assert again.uid == artifact.uid and s3.proxy.upstream < MiB
    report = ln.check(deep=True)
    assert report.is_consistent and report.n_ok == 1, report


def test_two_processes_saving_the_same_new_content_leave_one_artifact(
    s3: S3Target, big_file: Callable[..., Path]
) -> None:
    """Both write it (neither knows its hash yet); the commit dedups the second: one
    artifact, no orphan object, no multipart upload left."""
    path = big_file(S3_SIZE)
    results = wait_all([Child(path, "big.bin") for _ in range(2)])
    uids = {r.get("uid") for r, _ in results}
    assert len(uids) == 1 and None not in uids, results
    uid = str(uids.pop())
    assert ln.Artifact.filter().count() == 1
    listed = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix="team/.lamindb/")
    names = [o["Key"] for o in listed.get("Contents", []) if "/_meta/" not in o["Key"]]
    assert names == [s3.key_of(uid)], names
    assert s3.object_bytes(uid) == path.read_bytes()
    assert s3.uploads() == [] and _pending() == [] and ln.uploads() == []
    report = ln.check(deep=True)
    assert report.is_consistent and report.n_ok == 1, report


class _Rewrites(ln.SaveCallback):
    """Touches the source once its first bytes were written (a writer still at work)."""

    def __init__(self, path: Path) -> None:
        self.path, self.done = path, False

    def advance(self, index: int, nbytes: int) -> None:
        if not self.done:
            self.done = True
            st = self.path.stat()
            os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def _nothing_left(objects: list[str]) -> None:
    assert objects == [], objects
    assert _pending() == [] and ln.uploads() == []
    assert ln.check(deep=True).is_consistent


def test_local_source_changed_while_written_fails_and_leaves_nothing(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    ln.init(storage=str(storage))
    path = _random_file(tmp_path / "big.bin", LOCAL)
    with pytest.raises(ln.SaveError, match="changed while it was being saved"):
        ln.Artifact(path, key="big.bin").save(callback=_Rewrites(path))
    managed = storage / ".lamindb"
    _nothing_left([p.name for p in managed.iterdir() if p.is_file()])
    artifact = ln.Artifact(path, key="big.bin").save()  # then: saved as it is now
    assert (managed / f"{artifact.uid}.bin").read_bytes() == path.read_bytes()


def test_s3_source_changed_while_written_fails_and_leaves_nothing(
    s3: S3Target, big_file: Callable[..., Path]
) -> None:
    path = big_file(S3_SIZE)
    with pytest.raises(ln.SaveError, match="changed while it was being saved"):
        ln.Artifact(path, key="big.bin").save(callback=_Rewrites(path))
    listed = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix="team/.lamindb/")
    _nothing_left([o["Key"] for o in listed.get("Contents", []) if "/_meta/" not in o["Key"]])
    assert s3.uploads() == []


@pytest.fixture
def no_one_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LAMIN_NB_ONE_READ_BYTES", "0")
    yield


def test_one_read_can_be_turned_off(
    tmp_path: Path, no_one_read: None, source_reads: Callable[[Path], dict[str, int]]
) -> None:
    ln.init(storage=str(tmp_path / "storage"))
    path = _random_file(tmp_path / "big.bin", LOCAL)
    reads = source_reads(path)
    ln.Artifact(path, key="big.bin").save()
    assert reads["through"] == 2 * LOCAL + 1, reads  # hashed first, then copied


def test_staged_anndata_is_read_once_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source_reads: Callable[[Path], dict[str, int]]
) -> None:
    """The staging file becomes the object by a hard link; the link's verify pass (needed to
    make it durable) yields the hash: the staging file is never read for a hash of its own."""
    import anndata
    import numpy as np

    from lamin_nb.core.hashing import hash_file

    monkeypatch.setenv("LAMIN_NB_ONE_READ_BYTES", str(MiB))  # a small AnnData will do
    ln.init(storage=str(tmp_path / "storage"))
    rng = np.random.default_rng(0)
    adata = anndata.AnnData(rng.random((600, 600), dtype="float32"))
    artifact = ln.Artifact.from_anndata(adata, key="x.h5ad")
    staged = artifact.source
    assert staged is not None and staged.stat().st_size > MiB
    reads = source_reads(staged)
    artifact.save()
    assert reads["through"] <= 1, reads  # the check that it can be read, nothing more
    stored = tmp_path / "storage" / ".lamindb" / f"{artifact.uid}.h5ad"
    assert artifact.hash == hash_file(stored)[0]
    assert (ln.Artifact.get("x.h5ad").load().X == adata.X).all()
    report = ln.check(deep=True)
    assert report.is_consistent and report.n_ok == 1, report


def test_one_read_on_every_backend(
    backend: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SQLite and PostgreSQL, local and S3: a new file is written once and its hash recorded
    at the commit; a second file of the same size is hashed first (and then written); the
    same content again is deduplicated before anything is written."""
    from lamin_nb.core.hashing import hash_file

    monkeypatch.setenv("LAMIN_NB_ONE_READ_BYTES", str(MiB))  # small files will do
    first = _random_file(tmp_path / "a.bin", 2 * MiB)
    other = _random_file(tmp_path / "b.bin", 2 * MiB)
    a = ln.Artifact(first, key="a.bin").save()
    assert a.hash == hash_file(first)[0] and _pending() == []
    b = ln.Artifact(other, key="b.bin").save()
    assert b.hash == hash_file(other)[0] and b.uid != a.uid
    with pytest.warns(ln.KeyNotSavedWarning):
        again = ln.Artifact(first, key="c.bin").save()
    assert again.uid == a.uid
    assert sorted(backend.object_names()) == sorted([f"{a.uid}.bin", f"{b.uid}.bin"])
    report = ln.check(deep=True)
    assert report.is_consistent and report.n_ok == 2, report


def test_two_processes_on_postgresql_leave_one_artifact(tmp_path: Path, pg_url: str) -> None:
    """The dedup at the commit under PostgreSQL's write lock: two processes write the same new
    content (two files) to a local folder at once; one artifact, no orphan object, no partial
    file."""
    storage = tmp_path / "storage"
    ln.init(storage=str(storage), db=pg_url)
    path = _random_file(tmp_path / "big.bin", LOCAL)
    copy = tmp_path / "copy.bin"  # another file, the same bytes: no journal ties them
    copy.write_bytes(path.read_bytes())
    results = wait_all([Child(p, "big.bin") for p in (path, copy)])
    uids = {r.get("uid") for r, _ in results}
    assert len(uids) == 1 and None not in uids, results
    assert ln.Artifact.filter().count() == 1
    managed = storage / ".lamindb"
    assert sorted(p.name for p in managed.iterdir() if p.is_file()) == [f"{uids.pop()}.bin"]
    assert _pending() == [] and ln.uploads() == []
    report = ln.check(deep=True)
    assert report.is_consistent and report.n_ok == 1, report
