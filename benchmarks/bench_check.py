"""Issue 3 numbers: ``ln.check()`` on many committed artifacts, time and peak memory.

    .venv/bin/python benchmarks/bench_check.py [--n 100000] [--s3-n 10000] [--runs 3]
                                               [--only local,s3]

- local: SQLite + a local folder with N small objects (target: < 5 s, < 300 MB peak).
- s3: PostgreSQL-free, SQLite + a moto S3 server (a subprocess) with the S3 N.

The artifacts are written directly (objects, then committed rows in bulk INSERTs): this
measures check, not save. Every measurement runs in a fresh child process and reports wall
time and peak RSS (VmHWM: ru_maxrss would carry the parent's peak over fork+exec), plus
Python-heap peak from tracemalloc in a separate run (tracemalloc slows Python down). The lower
bound, measured in the same run, is the least any check must do: one listing, one SELECT of
(uid, suffix, size), one dictionary comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROWS_PER_INSERT = 5_000
LOCAL_TARGET = (5.0, 300.0)  # seconds, MB


# -- child side ----------------------------------------------------------------------------


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child(kind: str) -> dict[str, Any]:
    import lamin_nb as ln

    inst = ln.connect()
    base = _peak_mb()
    if kind == "trace":
        import tracemalloc

        tracemalloc.start()
    start = time.perf_counter()
    if kind == "bound":
        n_rows, consistent = _bound(inst)
    else:
        report = ln.check()
        n_rows, consistent = report.n_rows, report.is_consistent
    seconds = time.perf_counter() - start
    out = {
        "seconds": seconds,
        "rss_base_mb": base,
        "rss_peak_mb": _peak_mb(),
        "n_rows": n_rows,
        "consistent": consistent,
    }
    if kind == "trace":
        import tracemalloc

        out["heap_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    return out


def _bound(inst: Any) -> tuple[int, bool]:
    from lamin_nb.benchlib.child import naive_check

    return naive_check(inst)


# -- parent side ---------------------------------------------------------------------------


def populate(inst: Any, n: int) -> None:
    import blake3
    from sqlalchemy import insert

    from lamin_nb.core.hashing import HASH_TYPE, encode
    from lamin_nb.core.instance import random_base62
    from lamin_nb.core.models import COMMITTED, ArtifactRow, utcnow

    now = utcnow()
    for start in range(0, n, ROWS_PER_INSERT):
        objects, rows = {}, []
        for i in range(start, min(start + ROWS_PER_INSERT, n)):
            uid = random_base62(16) + "0000"
            data = f"check benchmark object {i:09d}\n".encode()
            objects[f"{uid}.txt"] = data
            rows.append(
                {
                    "uid": uid,
                    "key": f"bench/{i:09d}.txt",
                    "description": None,
                    "suffix": ".txt",
                    "size": len(data),
                    "hash": encode(blake3.blake3(data).digest()),
                    "hash_type": HASH_TYPE,
                    "otype": None,
                    "version": 1,
                    "is_latest": True,
                    "storage": inst.storage.root,
                    "created_at": now,
                    "created_by": "bench",
                    "status": COMMITTED,
                    "is_trashed": False,
                    "owner": None,
                    "lease_expires_at": None,
                    "updated_at": now,
                }
            )
        _write_objects(inst.storage, objects)
        with inst.db.engine.begin() as conn:
            conn.execute(insert(ArtifactRow), rows)


def _write_objects(storage: Any, objects: dict[str, bytes]) -> None:
    if storage.local_path("") is not None:
        for name, data in objects.items():
            Path(storage.local_path(name)).write_bytes(data)
    else:
        storage.fs.pipe({storage.path(name): data for name, data in objects.items()}, batch_size=64)


def run_child(kind: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child failed: {done.stderr.strip()[-600:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    label: str, n: int, env: dict[str, str], runs: int, target: tuple[float, float] | None
) -> dict[str, Any]:
    ours, bound, peaks = [], [], []
    for run in range(runs):  # alternate the order so drift on a shared machine hits both
        order = ["check", "bound"] if run % 2 == 0 else ["bound", "check"]
        got = {kind: run_child(kind, env) for kind in order}
        if not got["check"]["consistent"] or got["check"]["n_rows"] != n:
            raise RuntimeError(f"check saw {got['check']}")
        ours.append(got["check"]["seconds"])
        bound.append(got["bound"]["seconds"])
        peaks.append(got["check"]["rss_peak_mb"])
        base = got["check"]["rss_base_mb"]
    trace = run_child("trace", env)
    result = {
        "scenario": label,
        "n": n,
        "runs": runs,
        "check_s_median": statistics.median(ours),
        "check_s_min": min(ours),
        "check_s_max": max(ours),
        "bound_s_median": statistics.median(bound),
        "ratio_to_bound": statistics.median(ours) / statistics.median(bound),
        "rss_peak_mb": statistics.median(peaks),
        "rss_before_check_mb": base,
        "heap_peak_mb": trace["heap_peak_mb"],
    }
    if target is not None:
        result["target"] = f"< {target[0]:g} s and < {target[1]:g} MB"
        result["meets_target"] = (
            result["check_s_median"] < target[0] and result["rss_peak_mb"] < target[1]
        )
    print_result(result)
    return result


def print_result(r: dict[str, Any]) -> None:
    print(f"\n{r['scenario']}: ln.check() on {r['n']:,} committed artifacts ({r['runs']} runs)")
    print(
        f"  wall time   median {r['check_s_median']:.2f} s (min {r['check_s_min']:.2f}, "
        f"max {r['check_s_max']:.2f}); lower bound {r['bound_s_median']:.2f} s "
        f"-> {r['ratio_to_bound']:.2f}x"
    )
    print(
        f"  peak RSS    {r['rss_peak_mb']:.0f} MB (process before check: "
        f"{r['rss_before_check_mb']:.0f} MB); Python heap peak {r['heap_peak_mb']:.0f} MB"
    )
    if "target" in r:
        print(f"  target      {r['target']}: {'met' if r['meets_target'] else 'MISSED'}")


def bench_local(n: int, runs: int, tmp: Path) -> dict[str, Any]:
    import lamin_nb as ln

    env = {**os.environ, "LAMIN_NB_HOME": str(tmp / "home-local"), "LAMIN_NB_INSTANCE": "bench"}
    os.environ.update(env)
    inst = ln.init(storage=str(tmp / "storage"), name="bench")
    start = time.perf_counter()
    populate(inst, n)
    print(f"(local: wrote {n:,} objects and rows in {time.perf_counter() - start:.0f} s)")
    return measure("SQLite + local folder", n, env, runs, LOCAL_TARGET)


def bench_s3(n: int, runs: int, tmp: Path) -> dict[str, Any]:
    import boto3

    import lamin_nb as ln

    port, proc = _start_moto(tmp / "moto.log")
    try:
        endpoint = f"http://127.0.0.1:{port}"
        aws = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        os.environ.update(aws)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-check")
        env = {**os.environ, "LAMIN_NB_HOME": str(tmp / "home-s3"), "LAMIN_NB_INSTANCE": "bench"}
        os.environ.update(env)
        inst = ln.init(storage="s3://bench-check/team", name="bench")
        start = time.perf_counter()
        populate(inst, n)
        print(f"(s3: wrote {n:,} objects and rows in {time.perf_counter() - start:.0f} s)")
        return measure("SQLite + S3 (moto server)", n, env, runs, None)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _start_moto(log: Path) -> tuple[int, subprocess.Popen[bytes]]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).read()
            return port, proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="artifacts for SQLite + local")
    parser.add_argument("--s3-n", type=int, default=10_000, help="artifacts for S3")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="local,s3")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child)), flush=True)
        return 0
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        if "local" in args.only:
            results.append(bench_local(args.n, args.runs, Path(tmp)))
        if "s3" in args.only:
            results.append(bench_s3(args.s3_n, args.runs, Path(tmp)))
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r.get("meets_target", True) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
