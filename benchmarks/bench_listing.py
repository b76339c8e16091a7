"""Issue 21 numbers: listing a managed prefix of N objects, parallel ranges vs one paginator.

    .venv/bin/python benchmarks/bench_listing.py [--n 200000] [--servers moto,seaweedfs]
                                                 [--runs 3] [--connections 4,16]

The objects (tiny, uid-named as lamin_nb names them) are PUT directly by 32 threads: this
measures listing, not saving. Each run lists the whole prefix sequentially (one paginator,
the bound: what ``ln.check`` did before) and in parallel over name ranges with each given
number of connections, in alternating order; both must return the same keys in the same
order. Reported: median seconds, the ratio, and LIST requests per listing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.seaweed import SeaweedServer  # noqa: E402
from tests.support.servers import MotoServer, s3_env  # noqa: E402

PREFIX = "team/.lamindb/"
TARGET = 4.0  # x faster with 16 connections


def fill(client: Any, bucket: str, n: int) -> float:
    from lamin_nb.core.ids import random_base62

    start = time.perf_counter()
    keys = [f"{PREFIX}{random_base62(16)}0000.bin" for _ in range(n)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))
    return time.perf_counter() - start


def list_once(fs: Any, bucket: str, connections: int) -> tuple[float, int, int, str]:
    from lamin_nb.core.storage import s3list

    stats = s3list.ListingStats()
    digest = hashlib.blake2b()
    count = 0
    start = time.perf_counter()
    for name, _size, _mtime in s3list.list_ordered(fs, bucket, PREFIX, connections, stats):
        digest.update(name.encode() + b"\0")
        count += 1
    return time.perf_counter() - start, stats.requests, count, digest.hexdigest()


def measure(label: str, fs: Any, bucket: str, n: int, runs: int, conns: list[int]) -> None:
    times: dict[int, list[float]] = {c: [] for c in [1, *conns]}
    requests: dict[int, int] = {}
    reference = None
    for run in range(runs):
        order = [1, *conns] if run % 2 == 0 else [*conns, 1]
        for c in order:
            seconds, sent, count, digest = list_once(fs, bucket, c)
            if count != n or (reference is not None and digest != reference):
                raise RuntimeError(f"{label}: {c} connections listed {count} keys (or others)")
            reference = digest
            times[c].append(seconds)
            requests[c] = sent
    seq = statistics.median(times[1])
    print(f"\n{label}: {n:,} objects, {runs} runs, load average {os.getloadavg()[0]:.1f}")
    print(
        f"  sequential paginator  {seq:6.2f} s (min {min(times[1]):.2f}, max "
        f"{max(times[1]):.2f})  {requests[1]} requests"
    )
    for c in conns:
        med = statistics.median(times[c])
        verdict = f"  target >= {TARGET:g}x: {'met' if seq / med >= TARGET else 'MISSED'}"
        print(
            f"  parallel, {c:2d} conns   {med:6.2f} s (min {min(times[c]):.2f}, max "
            f"{max(times[c]):.2f})  {requests[c]} requests  -> {seq / med:.1f}x faster"
            + (verdict if c == 16 else "")
        )


def s3fs_for(endpoint: str, key: str, secret: str) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        key=key,
        secret=secret,
        client_kwargs={"endpoint_url": endpoint},
        config_kwargs={"max_pool_connections": 32},
        use_listings_cache=False,
    )


def run_moto(n: int, runs: int, conns: list[int], tmp: Path) -> None:
    server = MotoServer(tmp / "moto.log")
    server.start()
    try:
        os.environ.update(s3_env(server.endpoint))
        bucket = server.new_bucket()
        client = server.client()
        print(f"(moto: {n:,} PUTs in {fill(client, bucket, n):.0f} s)", flush=True)
        fs = s3fs_for(server.endpoint, "testing", "testing")
        measure("moto server", fs, bucket, n, runs, conns)
    finally:
        server.stop()


def run_seaweed(n: int, runs: int, conns: list[int], tmp: Path) -> None:
    from tests.support import seaweed as weed

    server = SeaweedServer(tmp / "seaweed")
    server.start()
    try:
        bucket = server.new_bucket()
        client = server.client()
        print(f"(SeaweedFS: {n:,} PUTs in {fill(client, bucket, n):.0f} s)", flush=True)
        fs = s3fs_for(server.endpoint, weed.ACCESS_KEY, weed.SECRET_KEY)
        measure("SeaweedFS", fs, bucket, n, runs, conns)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--servers", default="moto,seaweedfs")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", default="4,16")
    args = parser.parse_args(argv)
    conns = [int(c) for c in args.connections.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp:
        if "moto" in args.servers:
            run_moto(args.n, args.runs, conns, Path(tmp))
        if "seaweed" in args.servers:
            run_seaweed(args.n, args.runs, conns, Path(tmp))
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
