"""Issue 21 numbers: listing a managed prefix of N objects, parallel ranges vs one paginator.

    .venv/bin/python benchmarks/bench_listing.py [--n 200000] [--servers moto,seaweedfs]
                                                 [--runs 3] [--connections 4,16]

The objects (tiny, uid-named as lamin_nb names them) are PUT directly by 32 threads: this
measures listing, not saving. Each run lists the whole prefix sequentially with botocore's
parser (one paginator, the bound: what ``ln.check`` did before), sequentially with lamin_nb's
page parser, and in parallel over name ranges with each given number of connections, in
alternating order; all must return the same keys in the same order. Reported: median seconds,
the ratio to the paginator, LIST requests, and the CPU seconds the client process and the S3
server process spent per listing (from ``/proc``). Both share the machine's cores, so a listing
cannot take less than (server + client CPU-s) / cores, nor less than the client's CPU-s (one
Python process) or a Python server's (moto: one interpreter): that floor is printed with the
best ratio it allows. "of the cores" is the share of the machine the two used while listing:
well below 100% on a loaded machine means other processes had the rest.
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
from dataclasses import dataclass
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


Variant = tuple[int, bool]  # connections, lamin_nb's page parser (False: botocore's)


@dataclass
class Listed:
    seconds: float
    client_cpu: float
    server_cpu: float
    requests: int
    count: int
    digest: str


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads); this process if None."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def list_once(fs: Any, bucket: str, variant: Variant, server_pid: int) -> Listed:
    from lamin_nb.core.storage import s3list

    connections, lean = variant
    s3list.LEAN = lean
    stats = s3list.ListingStats()
    digest = hashlib.blake2b()
    count = 0
    cpu, server, start = cpu_seconds(), cpu_seconds(server_pid), time.perf_counter()
    for name, _size, _mtime in s3list.list_ordered(fs, bucket, PREFIX, connections, stats):
        digest.update(name.encode() + b"\0")
        count += 1
    seconds = time.perf_counter() - start
    client_cpu, server_cpu = cpu_seconds() - cpu, cpu_seconds(server_pid) - server
    s3list.LEAN = True
    return Listed(seconds, client_cpu, server_cpu, stats.requests, count, digest.hexdigest())


def measure(
    label: str, fs: Any, bucket: str, n: int, runs: int, conns: list[int], server_pid: int
) -> None:
    variants: list[Variant] = [(1, False), (1, True), *((c, True) for c in conns)]
    listed: dict[Variant, list[Listed]] = {v: [] for v in variants}
    reference = None
    for run in range(runs):
        for v in variants if run % 2 == 0 else variants[::-1]:
            got = list_once(fs, bucket, v, server_pid)
            if got.count != n or (reference is not None and got.digest != reference):
                raise RuntimeError(f"{label}: {v} listed {got.count} keys (or others)")
            reference = got.digest
            listed[v].append(got)
    cores = os.cpu_count() or 1
    python_server = label.startswith("moto")
    seq = statistics.median(x.seconds for x in listed[(1, False)])
    print(f"\n{label}: {n:,} objects, {runs} runs, load average {os.getloadavg()[0]:.1f}")
    print(
        "  (median s; CPU-s of the client and the server per listing; floor = max((server +"
        f" client) / {cores} cores, client{', server' if python_server else ''}))"
    )
    for v in variants:
        runs_v = listed[v]
        med = statistics.median(x.seconds for x in runs_v)
        client = statistics.median(x.client_cpu for x in runs_v)
        server = statistics.median(x.server_cpu for x in runs_v)
        floor = max((client + server) / cores, client, server if python_server else 0.0)
        name = "sequential, botocore parser" if v == (1, False) else f"{v[0]:2d} conns, lean parser"
        verdict = ""
        if v[0] == 16:
            verdict = f"  target >= {TARGET:g}x: {'met' if seq / med >= TARGET else 'MISSED'}"
        print(
            f"  {name:28s} {med:6.2f} s (min {min(x.seconds for x in runs_v):.2f}, max "
            f"{max(x.seconds for x in runs_v):.2f})  {runs_v[0].requests} requests  "
            f"client {client:5.2f} CPU-s  server {server:5.2f} CPU-s  (of the cores: "
            f"{(client + server) / (med * cores):4.0%})  floor {floor:5.2f} s "
            f"(<= {seq / floor:.1f}x)  -> {seq / med:.1f}x faster{verdict}"
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
        assert server.proc is not None
        measure("moto server", fs, bucket, n, runs, conns, server.proc.pid)
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
        assert server.proc is not None
        measure("SeaweedFS", fs, bucket, n, runs, conns, server.proc.pid)
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
