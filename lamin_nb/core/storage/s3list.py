"""Listing an S3 prefix in key order, in parallel over name ranges (DESIGN §12).

Object names under the managed prefix start with a uid, uniformly spread over base62, so the
name space splits evenly by first character (and, for large prefixes, by second character
too). The first page (one request) tells how dense the keys are; a small prefix ends there.
Otherwise every first character becomes one or more ranges listed under its own ``Prefix``
(servers that scan per request, like moto, then scan only that part), and four more ranges
catch the names that start with anything else (strays, ``_meta/``). Up to ``connections``
ranges are listed at once, each in key order; they are handed out in key order, so the keys
come out in order. At most ``connections`` ranges are held at once: memory is bounded by the
range size, not by the number of objects.

Each page's XML is parsed here, not by botocore: botocore's generic parser spends ~75 ms of
CPU on a page of 1,000 keys (a shape walk per element and dateutil per timestamp), which on a
small machine was the whole cost of listing. The request is still botocore's (signed, retried,
``EncodingType=url`` set); only the body of a successful ``ListObjectsV2`` sent from here is
handed over raw (``_keep_body``), and read with ``xml.etree``'s C parser.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_plus

from ..ids import BASE62

PAGE = 1000  # keys per LIST request (the S3 maximum)
RANGE_KEYS = 4000  # aim for ranges of a few pages: parallel, with one extra request each
DEFAULT_CONNECTIONS = 16
GRID = [a + b for a in BASE62 for b in BASE62]  # sorted: BASE62 is in ASCII order
TOP = "\U0010ffff"  # the highest code point: "9" + TOP sorts after every name starting "9"
# names that start with none of BASE62: (start after, stop before), exclusive both
GAPS = [(None, "0"), ("9" + TOP, "A"), ("Z" + TOP, "a"), ("z" + TOP, None)]

Entry = tuple[str, int, datetime]  # name relative to the prefix, size, naive UTC mtime

PARSE_EVENT = "before-parse.s3.ListObjectsV2"
RAW_BODY = "LaminNbRawBody"  # where the raw body travels in botocore's parsed reply
EMPTY_REPLY = b"<ListBucketResult></ListBucketResult>"
# True inside this module's own requests: other ListObjectsV2 calls on the client are untouched
_raw_wanted: ContextVar[bool] = ContextVar("lamin_nb_raw_listing", default=False)


@dataclass
class ListingStats:
    """What one listing cost: LIST requests sent and ranges listed in parallel."""

    requests: int = 0
    ranges: int = 0


@dataclass(frozen=True)
class Range:
    """Keys that start with ``prefix``, after ``after`` (exclusive), up to ``upto``
    (inclusive) or below ``below`` (exclusive); all relative to the listed prefix."""

    prefix: str = ""
    after: str | None = None
    upto: str | None = None
    below: str | None = None

    def past(self, name: str) -> bool:
        """True once ``name`` is beyond this range (the listing of the range ends)."""
        return (self.upto is not None and name > self.upto) or (
            self.below is not None and name >= self.below
        )


def list_ordered(
    fs: Any,
    bucket: str,
    prefix: str,
    connections: int = DEFAULT_CONNECTIONS,
    stats: ListingStats | None = None,
) -> Iterator[Entry]:
    """Every key under ``prefix`` (ending in ``/``) in key order, as relative names.

    Parameters
    ----------
    fs : s3fs.S3FileSystem
        The filesystem whose client and event loop send the requests.
    bucket, prefix : str
        Where to list; ``prefix`` ends with ``/`` (or is empty).
    connections : int
        Requests in flight at once (1: a sequential paginator).
    stats : ListingStats or None
        Counts the requests, if given.

    Yields
    ------
    tuple
        ``(name, size, mtime)`` per object, in key order.
    """
    stats = stats if stats is not None else ListingStats()
    first, truncated = _run(fs, _page(fs, bucket, prefix, Range(), None, stats))
    if not truncated or connections <= 1:
        yield from first
        if truncated:
            last = Range(after=first[-1][0]) if first else Range()
            yield from _run(fs, _range(fs, bucket, prefix, last, stats))
        return
    # the ranges list these keys again: one request more, and no special first range
    ranges = plan(_estimate(first[-1][0] if first else "0"))
    del first
    stats.ranges += len(ranges)
    yield from _in_order(fs, bucket, prefix, ranges, connections, stats)


def _estimate(truncated_at: str) -> int:
    """Keys under the prefix, judged from how far into the name space one page got."""
    covered = (bisect.bisect_right(GRID, truncated_at) + 1) / (len(GRID) + 1)
    return int(PAGE / covered)


def plan(estimate: int) -> list[Range]:
    """The ranges, in key order: per first character, split further at second (and third)
    characters when a first character holds more than ``RANGE_KEYS``, and the four gaps.

    Parameters
    ----------
    estimate : int
        Keys expected under the prefix.

    Returns
    -------
    list of Range
        Covering every key exactly once, in key order.
    """
    per_char = max(1, min(len(GRID), round(estimate / len(BASE62) / RANGE_KEYS)))
    space = BASE62 if per_char <= len(BASE62) else GRID  # past ~15M keys: third characters
    step = len(space) / per_char
    cuts = [space[int(i * step)] for i in range(1, per_char)]
    ranges = [Range(after=GAPS[0][0], below=GAPS[0][1])]
    for char in BASE62:
        bounds = [char + cut for cut in cuts]
        for after, upto in zip([None, *bounds], [*bounds, None], strict=True):
            ranges.append(Range(prefix=char, after=after, upto=upto))
        gap = {"9": GAPS[1], "Z": GAPS[2], "z": GAPS[3]}.get(char)
        if gap is not None:
            ranges.append(Range(after=gap[0], below=gap[1]))
    return ranges


def _in_order(
    fs: Any,
    bucket: str,
    prefix: str,
    ranges: list[Range],
    connections: int,
    stats: ListingStats,
) -> Iterator[Entry]:
    todo = iter(ranges)
    running: deque[Future[list[Entry]]] = deque()

    def submit() -> None:
        found = next(todo, None)
        if found is not None:
            coro = _range(fs, bucket, prefix, found, stats)
            running.append(asyncio.run_coroutine_threadsafe(coro, fs.loop))

    for _ in range(connections):
        submit()
    try:
        while running:
            entries = running.popleft().result()
            submit()  # before yielding: the next range loads while this one is consumed
            yield from entries
    finally:
        for future in running:
            future.cancel()


async def _range(
    fs: Any, bucket: str, prefix: str, bounds: Range, stats: ListingStats
) -> list[Entry]:
    """The keys of one range, in order."""
    out: list[Entry] = []
    token: str | None = None
    while True:
        page, token = await _page(fs, bucket, prefix, bounds, token, stats)
        for entry in page:
            if bounds.past(entry[0]):
                return out
            out.append(entry)
        if token is None:
            return out


async def _page(
    fs: Any,
    bucket: str,
    prefix: str,
    bounds: Range,
    token: str | None,
    stats: ListingStats,
) -> tuple[list[Entry], Any]:
    """One LIST request: its entries and the continuation token (None at the end)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix + bounds.prefix, "MaxKeys": PAGE}
    if token is not None:
        kwargs["ContinuationToken"] = token
    elif bounds.after is not None:
        kwargs["StartAfter"] = prefix + bounds.after
    stats.requests += 1
    if LEAN:
        # a file system that has sent nothing yet has no client: s3fs makes it on first use
        await fs.set_session()
        client = await fs.get_s3(bucket)
        client.meta.events.register(PARSE_EVENT, _keep_body, unique_id=RAW_BODY)
    wanted = _raw_wanted.set(LEAN)
    try:
        reply = await fs._call_s3("list_objects_v2", **kwargs)
    finally:
        _raw_wanted.reset(wanted)
    if RAW_BODY in reply:
        return parse_page(reply[RAW_BODY], len(prefix))
    entries = [
        (item["Key"][len(prefix) :], int(item.get("Size") or 0), _naive(item["LastModified"]))
        for item in reply.get("Contents", ())
        if not item["Key"].endswith("/")  # a folder marker, not an object
    ]
    more = reply.get("NextContinuationToken") if reply.get("IsTruncated") else None
    return entries, more


LEAN = True  # parse pages here (False: botocore's parser; benchmarks compare both)


def _keep_body(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """botocore's ``before-parse`` hook: keep a successful page's body raw and let botocore
    parse an empty result instead (only for requests sent by ``_page``)."""
    if _raw_wanted.get() and response_dict.get("status_code") == 200:
        customized_response_dict[RAW_BODY] = response_dict["body"]
        response_dict["body"] = EMPTY_REPLY


def parse_page(body: bytes, strip: int) -> tuple[list[Entry], str | None]:
    """A ``ListObjectsV2`` result: ``(name, size, mtime)`` per object, names without their
    first ``strip`` characters, and the continuation token (None on the last page).

    XML entities are resolved by the parser; with ``EncodingType`` ``url`` in the reply, keys
    are URL-decoded as botocore decodes them (``unquote_plus``). Folder markers (keys ending
    in ``/``) are left out.
    """
    from xml.etree import ElementTree

    root = ElementTree.fromstring(body)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    contents, key_tag, size_tag, time_tag = (
        ns + "Contents",
        ns + "Key",
        ns + "Size",
        ns + "LastModified",
    )
    url = root.findtext(ns + "EncodingType") == "url"
    truncated = root.findtext(ns + "IsTruncated") == "true"
    more = root.findtext(ns + "NextContinuationToken") if truncated else None
    entries: list[Entry] = []
    for item in root.iterfind(contents):
        key, size, stamp = "", 0, ""
        for field in item:
            tag = field.tag
            if tag == key_tag:
                key = field.text or ""
            elif tag == size_tag:
                size = int(field.text or 0)
            elif tag == time_tag:
                stamp = field.text or ""
        if url and ("%" in key or "+" in key):
            key = unquote_plus(key)
        if not key.endswith("/"):  # a folder marker, not an object
            entries.append((key[strip:], size, _timestamp(stamp)))
    return entries, more


def _timestamp(text: str) -> datetime:
    """S3's ISO 8601 ``LastModified`` as a naive UTC datetime."""
    try:
        return _naive(datetime.fromisoformat(text))
    except ValueError:  # not ISO 8601: whatever botocore accepts
        from botocore.utils import parse_timestamp

        return _naive(parse_timestamp(text))


def _run(fs: Any, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, fs.loop).result()


def _naive(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
