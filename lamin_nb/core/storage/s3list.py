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
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..ids import BASE62

PAGE = 1000  # keys per LIST request (the S3 maximum)
RANGE_KEYS = 4000  # aim for ranges of a few pages: parallel, with one extra request each
DEFAULT_CONNECTIONS = 16
GRID = [a + b for a in BASE62 for b in BASE62]  # sorted: BASE62 is in ASCII order
TOP = "\U0010ffff"  # the highest code point: "9" + TOP sorts after every name starting "9"
# names that start with none of BASE62: (start after, stop before), exclusive both
GAPS = [(None, "0"), ("9" + TOP, "A"), ("Z" + TOP, "a"), ("z" + TOP, None)]

Entry = tuple[str, int, datetime]  # name relative to the prefix, size, naive UTC mtime


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
    reply = await fs._call_s3("list_objects_v2", **kwargs)
    entries = [
        (item["Key"][len(prefix) :], int(item.get("Size") or 0), _naive(item["LastModified"]))
        for item in reply.get("Contents", ())
        if not item["Key"].endswith("/")  # a folder marker, not an object
    ]
    more = reply.get("NextContinuationToken") if reply.get("IsTruncated") else None
    return entries, more


def _run(fs: Any, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, fs.loop).result()


def _naive(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
