"""The storage contract: the same assertions on every backend class behind ``Storage``.

A local folder, moto's S3 server and SeaweedFS (a second S3 server, which verifies each
request's checksum) must agree on what put, list, info, delete, move, markers, temporary
uploads and multipart uploads mean. The save, delete, check and repair protocols rely on
exactly this and nothing more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from lamin_nb.core.errors import IntegrityError
from lamin_nb.core.hashing import hash_file
from lamin_nb.core.storage import (
    MANAGED,
    QUARANTINE,
    LocalStorage,
    S3Storage,
    Storage,
    multipart,
    open_storage,
)
from tests.support.seaweed import SeaweedServer
from tests.support.servers import MotoServer

BACKENDS = ["local", "moto", "seaweed"]
S3_BACKENDS = ["moto", "seaweed"]
PART = 5 * 1024 * 1024  # the smallest part S3 accepts


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop()


def _storage(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    if kind == "local":
        return open_storage(str(tmp_path / "root"))
    if kind == "moto":
        moto: MotoServer = request.getfixturevalue("s3_server")
        return open_storage(f"s3://{moto.new_bucket()}/team")
    weed: SeaweedServer = request.getfixturevalue("seaweed")
    return open_storage(f"s3://{weed.new_bucket()}/team", weed.storage_options())


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    s = _storage(request.param, tmp_path, request)
    s.prepare()
    return s


@pytest.fixture(params=S3_BACKENDS)
def s3_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return _storage(request.param, tmp_path, request)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(3000))
    return path


def _names(storage: Storage, folder: str = "") -> list[str]:
    return sorted(info.name for info in storage.list_objects(folder))


def test_open_storage_picks_the_class_from_the_root(tmp_path: Path) -> None:
    assert isinstance(open_storage(str(tmp_path)), LocalStorage)
    assert isinstance(open_storage("s3://bucket/prefix"), S3Storage)
    s3 = open_storage("s3://bucket/prefix/")
    assert s3.managed == f"s3://bucket/prefix/{MANAGED}"
    assert s3.path("a.txt") == f"s3://bucket/prefix/{MANAGED}/a.txt"


def test_put_then_read_back(storage: Storage, source: Path, tmp_path: Path) -> None:
    sent: list[int] = []
    digest, size = hash_file(source)
    storage.put_file(source, "obj.bin", digest, sent.append)
    storage.sync()
    assert sum(sent) == size == 3000
    info = storage.info("obj.bin")
    assert info is not None and info.name == "obj.bin" and info.size == 3000
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert info.mtime.tzinfo is None and abs(now - info.mtime) < timedelta(minutes=5)
    assert storage.exists("obj.bin")
    with storage.open("obj.bin") as fh:
        assert fh.read() == source.read_bytes()
    copy = tmp_path / "copy.bin"
    storage.get_file("obj.bin", copy)
    assert copy.read_bytes() == source.read_bytes()
    assert storage.hash_object("obj.bin") == (digest, size)
    assert _names(storage) == ["obj.bin"]


def test_local_path_is_the_object_itself_only_on_a_local_folder(
    storage: Storage, source: Path
) -> None:
    storage.put_file(source, "obj.bin")
    local = storage.local_path("obj.bin")
    if isinstance(storage, LocalStorage):
        assert local is not None and local.read_bytes() == source.read_bytes()
    else:
        assert local is None


def test_missing_objects(storage: Storage, tmp_path: Path) -> None:
    assert storage.info("nope.bin") is None
    assert not storage.exists("nope.bin")
    storage.delete("nope.bin")  # already gone is fine
    storage.delete_temps("nope.bin")
    assert _names(storage) == []
    assert _names(storage, QUARANTINE) == []


def test_a_put_whose_bytes_do_not_match_the_hash_leaves_nothing(
    storage: Storage, source: Path
) -> None:
    with pytest.raises(IntegrityError, match="changed after it was hashed"):
        storage.put_file(source, "obj.bin", "not-the-hash")
    assert _names(storage) == []  # neither the object nor a temporary upload
    assert list(storage.incomplete_uploads()) == []


def test_a_put_replaces_an_object_whole(storage: Storage, source: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.bin"
    other.write_bytes(b"short")
    storage.put_file(source, "obj.bin")
    storage.put_file(other, "obj.bin")
    with storage.open("obj.bin") as fh:
        assert fh.read() == b"short"
    assert _names(storage) == ["obj.bin"]


def test_delete_removes_one_object(storage: Storage, source: Path) -> None:
    storage.put_file(source, "a.bin")
    storage.put_file(source, "b.bin")
    storage.delete("a.bin")
    assert _names(storage) == ["b.bin"]
    assert storage.info("a.bin") is None


def test_delete_temps_keeps_the_object_and_its_neighbours(storage: Storage, source: Path) -> None:
    for name in ("a.bin", "a.bin2", "b.bin"):
        storage.put_file(source, name)
    storage.delete_temps("a.bin")
    assert _names(storage) == ["a.bin", "a.bin2", "b.bin"]


def test_leftover_temporary_uploads_are_listed_then_removed(source: Path, tmp_path: Path) -> None:
    """Only a local folder writes temporary files (S3 objects appear whole); a killed writer's
    leftovers are listed like any object, so check can tie them to their row, and go with
    ``delete_temps`` of their object."""
    storage = open_storage(str(tmp_path / "root"))
    storage.prepare()
    storage.put_file(source, "a.bin")
    managed = Path(storage.managed)
    (managed / "a.bin.0123abcd.tmp").write_bytes(b"partial")
    (managed / "a.bin2.0123abcd.tmp").write_bytes(b"someone else's")
    assert _names(storage) == ["a.bin", "a.bin.0123abcd.tmp", "a.bin2.0123abcd.tmp"]
    storage.delete_temps("a.bin")
    assert _names(storage) == ["a.bin", "a.bin2.0123abcd.tmp"]


def test_listing_skips_reserved_folders_and_lists_one_folder(
    storage: Storage, source: Path
) -> None:
    storage.put_file(source, "a.bin")
    storage.put_file(source, "b.bin")
    storage.write_marker("instance.json", b"{}")
    storage.move("b.bin", f"{QUARANTINE}/20250101T000000/b.bin")
    assert _names(storage) == ["a.bin"]
    assert _names(storage, QUARANTINE) == [f"{QUARANTINE}/20250101T000000/b.bin"]
    storage.move(f"{QUARANTINE}/20250101T000000/b.bin", "b.bin")
    assert _names(storage) == ["a.bin", "b.bin"]
    assert _names(storage, QUARANTINE) == []


def test_markers(storage: Storage) -> None:
    assert storage.read_marker("instance.json") is None
    storage.write_marker("instance.json", b'{"name": "x"}')
    assert storage.read_marker("instance.json") == b'{"name": "x"}'
    storage.write_marker("instance.json", b"{}")
    assert storage.read_marker("instance.json") == b"{}"


def test_find_folder(storage: Storage, source: Path) -> None:
    assert storage.find_folder(MANAGED) is None
    storage.put_file(source, "a.bin")
    storage.move("a.bin", f"sub/{MANAGED}/a.bin")
    assert storage.find_folder(MANAGED) == f"{storage.managed}/sub/{MANAGED}"


def test_a_large_file_goes_up_whole_in_parts(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(multipart, "PART_SIZE", PART)
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(2 * PART + 17))
    sent: list[int] = []
    storage.put_file(large, "large.bin", hash_file(large)[0], sent.append)
    assert sum(sent) == large.stat().st_size
    assert storage.hash_object("large.bin") == hash_file(large)
    assert list(storage.incomplete_uploads()) == []
    with pytest.raises(IntegrityError):
        storage.put_file(large, "other.bin", "not-the-hash")
    assert _names(storage) == ["large.bin"]
    assert list(storage.incomplete_uploads()) == []  # the failed multipart upload was aborted


def test_an_abandoned_multipart_upload_is_listed_and_aborted(s3_storage: Storage) -> None:
    """A writer killed mid-upload leaves parts that no listing shows (but are billed)."""
    fs = s3_storage.fs
    bucket, _, prefix = s3_storage.managed.removeprefix("s3://").partition("/")
    mine = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=f"{prefix}/x.bin")
    outside = fs.call_s3("create_multipart_upload", Bucket=bucket, Key="elsewhere/x.bin")
    found = list(s3_storage.incomplete_uploads())
    assert [(u.name, u.upload_id) for u in found] == [("x.bin", mine["UploadId"])]
    assert found[0].started.tzinfo is None  # naive UTC (moto reports a fixed date in 2010)
    s3_storage.abort_upload("x.bin", mine["UploadId"])
    s3_storage.abort_upload("x.bin", mine["UploadId"])  # already gone is fine
    assert list(s3_storage.incomplete_uploads()) == []
    left = fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in left] == ["elsewhere/x.bin"]  # never outside the managed prefix
    fs.call_s3(
        "abort_multipart_upload", Bucket=bucket, Key="elsewhere/x.bin", UploadId=outside["UploadId"]
    )
