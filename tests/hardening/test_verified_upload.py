"""Verified uploads on SeaweedFS, a second real S3 server that checks each request's CRC32
(moto stores the checksum but does not check it): a file rewritten while it uploads is never
stored, the aborted multipart upload leaves nothing, and what is stored carries its checksum.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import lamin_nb as ln
from lamin_nb.core.storage import multipart
from tests.contract.test_stored_is_loaded import PART, RewriteWhileUploading
from tests.support.seaweed import SeaweedServer


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path / "seaweed")
    server.start()
    yield server
    server.stop()


def test_rewritten_upload_is_aborted_and_checksums_are_stored(
    tmp_path: Path, seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(multipart, "PART_SIZE", PART)
    monkeypatch.setattr(multipart, "PARTS_IN_FLIGHT", 1)
    bucket = seaweed.new_bucket()
    ln.init(storage=f"s3://{bucket}/team", storage_options=seaweed.storage_options())
    old, new = os.urandom(2 * PART + 10), os.urandom(2 * PART + 10)
    path = tmp_path / "rewritten.bin"
    path.write_bytes(old)
    with pytest.raises(ln.SaveError, match="changed after it was hashed"):
        ln.Artifact(path, key="rewritten.bin").save(
            callback=RewriteWhileUploading(path, new, "mid")
        )
    client = seaweed.client()
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert [k for k in seaweed.keys(bucket) if "/_meta/" not in k] == []
    assert ln.Artifact.filter().count() == 0

    saved = ln.Artifact(path, key="rewritten.bin").save()
    small = tmp_path / "small.txt"
    small.write_bytes(b"small")
    one_put = ln.Artifact(small).save()
    for artifact, content in ((saved, new), (one_put, b"small")):
        head = client.head_object(
            Bucket=bucket,
            Key=f"team/.lamindb/{artifact.uid}{artifact.suffix}",
            ChecksumMode="ENABLED",
        )
        assert head.get("ChecksumCRC32"), head
        assert Path(artifact.load()).read_bytes() == content
    assert ln.check(deep=True).is_consistent
