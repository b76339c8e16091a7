"""Listing an S3 prefix in key order, in parallel over name ranges (DESIGN §12).

Object names under the managed prefix start with a uid, uniformly spread over base62, so the
name space splits evenly at two-character boundaries. The first page (one request) tells how
dense the keys are; small prefixes end there. Otherwise the rest is cut into ranges
``(lo, hi]`` of about ``RANGE_KEYS`` keys each, listed by up to ``connections`` requests at a
time, each range in key order; ranges are handed out in order, so the keys come out in order.
At most ``connections`` ranges are held at once: memory is bounded by the range size, not by
the number of objects. Names that do not start with a base62 character (strays, ``_meta/``)
fall into the range that brackets them, so every key is listed exactly once.
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

Entry = tuple[str, int, datetime]  # name relative to the prefix, size, naive UTC mtime


@dataclass
class ListingStats:
    """What one listing cost: LIST requests sent and ranges listed in parallel."""

    requests: int = 0
    ranges: int = 0


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
    first, truncated = _run(fs, _page(fs, bucket, prefix, None, None, stats))
    yield from first
    if not truncated:
        return
    last = first[-1][0] if first else ""
    if connections <= 1:
        yield from _run(fs, _range(fs, bucket, prefix, last, None, stats))
        return
    bounds = _boundaries(last, _estimate(last))
    ranges = list(zip([last, *bounds], [*bounds, None], strict=True))
    stats.ranges += len(ranges)
    yield from _in_order(fs, bucket, prefix, ranges, connections, stats)


def _estimate(last: str) -> int:
    """Keys under the prefix, judged from how far into the name space the first page got."""
    covered = (bisect.bisect_right(GRID, last) + 1) / (len(GRID) + 1)
    return int(PAGE / covered)


def _boundaries(after: str, estimate: int) -> list[str]:
    """Evenly spaced two-character boundaries above ``after``: about ``RANGE_KEYS`` each."""
    start = bisect.bisect_right(GRID, after)
    left = len(GRID) - start
    keys_left = estimate * left / len(GRID)
    n = max(1, min(left, round(keys_left / RANGE_KEYS)))
    step = left / n
    return [GRID[start + int(i * step)] for i in range(1, n)] if n > 1 else []


def _in_order(
    fs: Any,
    bucket: str,
    prefix: str,
    ranges: list[tuple[str, str | None]],
    connections: int,
    stats: ListingStats,
) -> Iterator[Entry]:
    todo = iter(ranges)
    running: deque[Future[list[Entry]]] = deque()

    def submit() -> None:
        bounds = next(todo, None)
        if bounds is not None:
            coro = _range(fs, bucket, prefix, bounds[0], bounds[1], stats)
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
    fs: Any, bucket: str, prefix: str, lo: str, hi: str | None, stats: ListingStats
) -> list[Entry]:
    """The keys in ``(lo, hi]`` (``hi`` None: to the end), in order."""
    out: list[Entry] = []
    token: str | None = None
    while True:
        page, token = await _page(fs, bucket, prefix, lo if token is None else None, token, stats)
        for entry in page:
            if hi is not None and entry[0] > hi:
                return out
            out.append(entry)
        if token is None:
            return out


async def _page(
    fs: Any,
    bucket: str,
    prefix: str,
    start_after: str | None,
    token: str | None,
    stats: ListingStats,
) -> tuple[list[Entry], Any]:
    """One LIST request: its entries and the continuation token (None at the end)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": PAGE}
    if token is not None:
        kwargs["ContinuationToken"] = token
    elif start_after:
        kwargs["StartAfter"] = prefix + start_after
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
