"""Issue 21 numbers: ``ln.check()`` memory and time as the instance grows (DESIGN §12).

    .venv/bin/python benchmarks/bench_scale.py [--ns 10000,100000,300000] [--runs 3]

One SQLite + local-folder instance is grown to each N in turn (committed rows in bulk INSERTs
and tiny objects written directly: this measures check, not save; ``lamin-nb bench --scale``
builds through ``ln.save`` instead, which is too slow for 10^6 on a shared 2-core machine).
At each N, the check runs in fresh child processes (peak RSS = VmHWM), alternating with the
in-memory lower bound (one listing into a dict, one SELECT of every row, one comparison).
Targets: peak RSS at the largest N within 30 MB of that at the smallest; time linear in N
(microseconds per artifact roughly constant).
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
from pathlib import Path
from typing import Any

RSS_SLACK_MB = 30.0


def child(kind: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "lamin_nb.benchlib.child", kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=3 * 3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child failed: {done.stderr.strip()[-600:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def grow(inst: Any, have: int, n: int) -> None:
    from lamin_nb.benchlib.checkbench import ROWS_PER_INSERT, _add_batch

    for start in range(have, n, ROWS_PER_INSERT):
        _add_batch(inst, range(start, min(start + ROWS_PER_INSERT, n)))


def measure(n: int, env: dict[str, str], runs: int) -> dict[str, Any]:
    ours, bound = [], []
    for run in range(runs):
        for kind in ["check", "check-bound"] if run % 2 == 0 else ["check-bound", "check"]:
            (ours if kind == "check" else bound).append(child(kind, env))
    if not all(r["consistent"] and r["n_rows"] == n for r in ours):
        raise RuntimeError(f"check saw {ours}")
    seconds = statistics.median(r["seconds"] for r in ours)
    return {
        "n": n,
        "check_s": seconds,
        "check_s_range": (min(r["seconds"] for r in ours), max(r["seconds"] for r in ours)),
        "us_per_artifact": seconds / n * 1e6,
        "rss_peak_mb": statistics.median(r["rss_peak_mb"] for r in ours),
        "rss_base_mb": ours[0]["rss_base_mb"],
        "bound_s": statistics.median(r["seconds"] for r in bound),
        "bound_rss_peak_mb": statistics.median(r["rss_peak_mb"] for r in bound),
        "load_avg": os.getloadavg()[0],
    }


def show(r: dict[str, Any]) -> None:
    lo, hi = r["check_s_range"]
    print(
        f"  N={r['n']:>9,}: check {r['check_s']:7.2f} s ({lo:.2f}-{hi:.2f}) = "
        f"{r['us_per_artifact']:5.1f} us/artifact, peak RSS {r['rss_peak_mb']:5.0f} MB "
        f"(after connect {r['rss_base_mb']:.0f}) | in-memory bound {r['bound_s']:6.2f} s, "
        f"{r['bound_rss_peak_mb']:5.0f} MB | load {r['load_avg']:.1f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ns", default="10000,100000,300000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    ns = sorted(int(n) for n in args.ns.split(","))
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    import lamin_nb as ln

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        env = {**os.environ, "LAMIN_NB_HOME": f"{tmp}/home", "LAMIN_NB_INSTANCE": "scale"}
        os.environ.update(env)
        inst = ln.init(storage=f"{tmp}/storage", name="scale")
        have = 0
        for n in ns:
            start = time.perf_counter()
            grow(inst, have, n)
            have = n
            print(f"(grown to {n:,} in {time.perf_counter() - start:.0f} s)", flush=True)
            results.append(measure(n, env, args.runs))
            show(results[-1])
        db = Path(tmp, "home").rglob("*.db")
        db_bytes = sum(p.stat().st_size + _wal(p) for p in db)
    first, last = results[0], results[-1]
    growth = last["rss_peak_mb"] - first["rss_peak_mb"]
    print(
        f"\npeak RSS {first['n']:,} -> {last['n']:,}: {growth:+.0f} MB (target within "
        f"{RSS_SLACK_MB:.0f} MB: {'met' if growth <= RSS_SLACK_MB else 'MISSED'}); "
        f"time per artifact {first['us_per_artifact']:.1f} -> {last['us_per_artifact']:.1f} us"
    )
    print(f"SQLite database: {db_bytes / last['n']:.0f} bytes/artifact at {last['n']:,}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _wal(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


if __name__ == "__main__":
    sys.exit(main())
