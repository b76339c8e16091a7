"""Storage listings in name order (what ``ln.check``'s merge needs): a local folder sorted per
directory with runs spilled to disk, and S3 listed in parallel over name ranges, equal to a
sequential paginator on moto and on SeaweedFS."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from lamin_nb.core.ids import random_base62
from lamin_nb.core.storage import S3Storage, Storage, open_storage, ordered, s3list
from tests.support.seaweed import SeaweedServer
from tests.support.servers import MotoServer

STRAYS = [
    "!first",
    "0",
    "00",
    "a.txt",
    "a/b",
    "a0",
    "_other.bin",
    "sub/deeper/deepest.txt",
    "sub.txt",
    "zz~",
    "~last",
    "Zy.bin.0badf00d.tmp",
    ":colon",
    "[bracket",
    "\u00e9t\u00e9.txt",
    "9\u00e9",
    ".hidden",
    "sp ace+plus%20&amp;<lt>'q\"",  # URL-encoded and XML-escaped in the listing
    "\u65e5\u672c/\U0001f600.txt",
]
RESERVED = ["_meta/marker", "_quarantine/20260101T000000/old.bin"]


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed"))
    server.start()
    yield server
    server.stop()


def _names(n: int) -> list[str]:
    return [random_base62(16) + "0000" + secrets.choice([".bin", ".h5ad", ""]) for _ in range(n)]


def _fill(storage: Storage, names: list[str]) -> None:
    if isinstance(storage, S3Storage):
        storage.fs.pipe({storage.path(name): b"x" for name in names}, batch_size=32)
        return
    for name in names:
        path = Path(storage.managed, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_local_listing_is_in_name_order_with_spilled_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(ordered, "RUN", 7)  # many runs, merged back from disk
    storage = open_storage(str(tmp_path / "root"))
    storage.prepare()
    names = _names(120) + STRAYS
    _fill(storage, names + RESERVED)
    listed = [info.name for info in storage.list_objects()]
    assert listed == sorted(names)
    assert [info.name for info in storage.list_objects("_quarantine")] == [RESERVED[1]]


@pytest.mark.parametrize("server", ["moto", "seaweed"])
def test_parallel_s3_listing_equals_the_sequential_one(server, request, monkeypatch):
    monkeypatch.setattr(s3list, "PAGE", 7)  # small pages and ranges: dozens of ranges
    monkeypatch.setattr(s3list, "RANGE_KEYS", 2)
    if server == "moto":
        moto: MotoServer = request.getfixturevalue("s3_server")
        storage = open_storage(f"s3://{moto.new_bucket()}/team")
    else:
        weed: SeaweedServer = request.getfixturevalue("seaweed")
        storage = open_storage(f"s3://{weed.new_bucket()}/team", weed.storage_options())
    assert isinstance(storage, S3Storage)
    names = _names(400) + STRAYS
    _fill(storage, names + RESERVED)
    bucket, prefix = storage._bucket_and_prefix()

    sequential = s3list.ListingStats()
    one_by_one = list(s3list.list_ordered(storage.fs, bucket, prefix, 1, sequential))
    parallel = s3list.ListingStats()
    in_ranges = list(s3list.list_ordered(storage.fs, bucket, prefix, 16, parallel))

    assert [e[0] for e in in_ranges] == [e[0] for e in one_by_one]
    assert parallel.ranges > 60 and sequential.ranges == 0
    # lamin_nb's page parser reads what botocore's reads: names, sizes, times
    monkeypatch.setattr(s3list, "LEAN", False)
    by_botocore = list(s3list.list_ordered(storage.fs, bucket, prefix, 1))
    assert in_ranges == one_by_one == by_botocore
    listed = [info.name for info in storage.list_objects()]
    # SeaweedFS lists a nested folder where its name sorts without the slash ("a/b" before
    # "a.txt"); only names that are not object names of rows differ, and check looks at
    # those once more. AWS and moto list in byte order.
    if server == "moto":
        assert listed == sorted(names)
    else:
        assert sorted(listed) == sorted(names)
        flat = [name for name in listed if "/" not in name]
        assert flat == sorted(flat)


def test_a_small_s3_prefix_is_listed_in_one_request(s3_server):
    storage = open_storage(f"s3://{s3_server.new_bucket()}/team")
    assert isinstance(storage, S3Storage)
    _fill(storage, _names(30))
    assert len(list(storage.list_objects())) == 30
    assert (storage.listing.requests, storage.listing.ranges) == (1, 0)


def test_a_file_system_that_has_sent_nothing_yet_lists(s3_server):
    """The first request of a new S3 file system can be a listing (a Jupyter server's check):
    s3fs makes its client only then."""
    import s3fs

    url = f"s3://{s3_server.new_bucket()}/team"
    filled = open_storage(url)
    assert isinstance(filled, S3Storage)
    _fill(filled, _names(30))
    s3fs.S3FileSystem.clear_instance_cache()
    fresh = open_storage(url)
    assert isinstance(fresh, S3Storage) and fresh.fs is not filled.fs
    assert len(list(fresh.list_objects())) == 30


@pytest.mark.parametrize("estimate", [2_000, 300_000, 10_000_000, 100_000_000])
def test_the_ranges_cover_every_name_once_in_order(estimate):
    ranges = s3list.plan(estimate)
    names = sorted(_names(3000) + STRAYS + RESERVED + ["", "z", "zzz\U0010ffff", "\x00"])
    by_prefix: dict[str, list[int]] = {}
    for i, r in enumerate(ranges):
        by_prefix.setdefault(r.prefix, []).append(i)

    def holds(r: s3list.Range, name: str) -> bool:
        return (
            name.startswith(r.prefix) and (r.after is None or name > r.after) and not r.past(name)
        )

    owners = []
    for name in names:
        candidates = set(by_prefix.get("", []) + by_prefix.get(name[:1], []))
        found = [i for i in candidates if holds(ranges[i], name)]
        assert len(found) == 1, (name, found)
        owners += found
    assert owners == sorted(owners)


def test_a_page_is_parsed_as_botocore_parses_it():
    ns = "http://s3.amazonaws.com/doc/2006-03-01/"
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="{ns}"><Name>b</Name><Prefix>p%2F</Prefix><KeyCount>3</KeyCount>
<MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<NextContinuationToken>a&amp;b==</NextContinuationToken>
<Contents><Key>p%2Fa+b%2Bc%26d</Key><LastModified>2026-01-02T03:04:05.678Z</LastModified>
<ETag>&quot;x&quot;</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Size>0</Size><Key>p%2Fdir%2F</Key><LastModified>2026-01-02T03:04:05Z</LastModified>
</Contents>
<Contents><Key>p%2F%C3%A9</Key><Size>7</Size>
<LastModified>2026-01-02T04:04:05+01:00</LastModified></Contents>
</ListBucketResult>""".encode()
    entries, more = s3list.parse_page(body, 2)
    when = datetime(2026, 1, 2, 3, 4, 5)
    assert entries == [("a b+c&d", 12, when.replace(microsecond=678000)), ("\u00e9", 7, when)]
    assert more == "a&b=="
    plain = body.replace(b"<EncodingType>url</EncodingType>", b"").replace(
        b"p%2Fa+b%2Bc%26d", b"p/a&amp;b&lt;"
    )
    entries, _ = s3list.parse_page(plain.replace(b"<IsTruncated>true", b"<IsTruncated>false"), 2)
    assert entries[0][0] == "a&b<" and _ is None
