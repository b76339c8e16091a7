"""What you store is what you load, on every backend pair (issues: edge reliability 1 and 2)."""

from __future__ import annotations

import base64
import os
import zlib
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core import s3upload
from lamin_nb.core.callbacks import ItemState
from tests.conftest import Backend, make_backend

PART = 5 * 1024 * 1024  # the smallest part S3 accepts


class RewriteWhileUploading(ln.SaveCallback):
    """Another program rewrites the file (same size) as its upload starts (``start``), or once
    its first bytes were sent (``mid``)."""

    def __init__(self, path: Path, content: bytes, when: str) -> None:
        self.path, self.content, self.when = path, content, when
        self.uploading = False
        self.done = False

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        self.uploading = state == ItemState.UPLOADING
        if self.uploading and self.when == "start":
            self.rewrite()

    def advance(self, index: int, nbytes: int) -> None:
        if self.uploading and self.when == "mid":
            self.rewrite()

    def rewrite(self) -> None:
        if not self.done:
            self.done = True
            self.path.write_bytes(self.content)


@pytest.mark.parametrize("when", ["start", "mid"])
def test_file_rewritten_during_upload_never_stores_wrong_bytes(
    backend, make_file, monkeypatch, when
):
    # one part in flight: the next part is read only after the first one was sent
    monkeypatch.setattr(s3upload, "PART_SIZE", PART)
    monkeypatch.setattr(s3upload, "PARTS_IN_FLIGHT", 1)
    old, new = os.urandom(2 * PART + 1000), os.urandom(2 * PART + 1000)
    path = make_file(old, name="rewritten.bin")
    artifact = ln.Artifact(path, key="data/rewritten.bin")
    callback = RewriteWhileUploading(path, new, when)
    try:
        artifact.save(callback=callback)
    except ln.SaveError as exc:
        assert "changed after it was hashed" in str(exc)
        assert ln.Artifact.filter().count() == 0
        assert backend.object_names() == []
    else:
        # a local copy of this size is taken in one kernel call before the first progress
        # tick, and its copy is what was hashed: the stored bytes are the old ones
        assert when == "mid" and not backend.is_s3, "a rewritten upload must fail"
        assert Path(artifact.load()).read_bytes() == old
    assert callback.done
    report = ln.check(deep=True)
    assert report.is_consistent and not report.pending, repr(report)
    # the same content saved again later loads exactly those bytes, never the rewrite
    again = ln.Artifact(make_file(old, name="again.bin"), key="data/again.bin").save()
    assert Path(again.cache()).read_bytes() == old
    now = ln.Artifact(path, key="data/rewritten.bin").save()
    assert Path(now.cache()).read_bytes() == new
    assert ln.check(deep=True).is_consistent


@pytest.fixture
def s3_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    backend = make_backend("sqlite-s3", tmp_path, request)
    ln.init(storage=backend.storage)
    return backend


@pytest.mark.parametrize("size", [1000, 2 * PART + 7])
def test_s3_requests_carry_a_checksum(s3_backend, make_file, monkeypatch, size):
    """Each PUT (and each part) carries a CRC32 the server checks and stores with the object."""
    backend = s3_backend
    monkeypatch.setattr(s3upload, "PART_SIZE", PART)
    content = os.urandom(size)
    artifact = ln.Artifact(make_file(content)).save()
    assert backend.s3 is not None
    head = backend.s3.client().head_object(
        Bucket=backend.bucket,
        Key=f"team/.lamindb/{artifact.uid}{artifact.suffix}",
        ChecksumMode="ENABLED",
    )
    assert head["ContentLength"] == size
    checksum = head.get("ChecksumCRC32")
    assert checksum, head
    if size <= PART:
        assert checksum == base64.b64encode(zlib.crc32(content).to_bytes(4, "big")).decode()
    assert Path(artifact.load()).read_bytes() == content
