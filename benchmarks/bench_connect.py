"""``ln.connect()`` in a fresh process on an existing instance (SQLite + local folder).

    python benchmarks/bench_connect.py [--rounds 15]

Three kinds of fresh process, run in rotating order, medians of ``--rounds``:

- ``python -c pass``: the interpreter's own start (the floor every process pays);
- ``import sqlite3; sqlite3.connect(db).execute(...)``: a bare connect to the same database file
  and one query;
- ``import lamin_nb as ln; ln.connect()``.

Printed: wall times, ``connect`` minus interpreter start (target: under 120 ms), the ratio to
``python -c pass`` and how many times a bare sqlite3 connect the connect's own work costs. The
instance is made in a scratch folder first (not timed) and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 120.0


def _wall(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def _minus_start(values: list[float], start: list[float]) -> float:
    """Median of the paired differences (same round), in ms."""
    return statistics.median(v - p for v, p in zip(values, start, strict=True)) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="lamin-nb-bench-connect-"))
    env = {**os.environ, "LAMIN_NB_HOME": str(scratch / "home")}
    py = sys.executable
    # bytecode, as an installed package has it: with PYTHONDONTWRITEBYTECODE set, each process
    # would otherwise compile lamin_nb's sources again and the figure would measure the compiler
    package = Path(__file__).resolve().parent.parent / "lamin_nb"
    subprocess.run([py, "-m", "compileall", "-q", str(package)], check=True)
    try:
        subprocess.run(
            [py, "-c", f"import lamin_nb as ln; ln.init(storage={str(scratch / 'data')!r})"],
            check=True,
            env=env,
        )
        db = scratch / "home" / "instances" / "data" / "lamin.db"
        kinds = {
            "pass": [py, "-c", "pass"],
            "sqlite3": [
                py,
                "-c",
                f"import sqlite3; sqlite3.connect({str(db)!r})"
                ".execute('SELECT version_num FROM alembic_version').fetchone()",
            ],
            "connect": [py, "-c", "import lamin_nb as ln; ln.connect()"],
        }
        times: dict[str, list[float]] = {k: [] for k in kinds}
        load_start = os.getloadavg()[0]
        names = list(kinds)
        for i in range(args.rounds):
            for name in names[i % 3 :] + names[: i % 3]:  # rotate who goes first
                times[name].append(_wall(kinds[name], env))
        load_end = os.getloadavg()[0]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    own = _minus_start(times["connect"], times["pass"])
    bare = _minus_start(times["sqlite3"], times["pass"])
    print(f"{args.rounds} rounds, medians; load average {load_start:.2f} -> {load_end:.2f}")
    for name, ms in med.items():
        print(f"  {name:8s} {ms:7.1f} ms")
    print(
        f"connect minus interpreter start: {own:.1f} ms (target < {TARGET_MS:.0f} ms: "
        f"{'met' if own < TARGET_MS else 'MISSED'})"
    )
    print(f"connect / python -c pass: {med['connect'] / med['pass']:.2f}x")
    print(f"connect's own work / a bare sqlite3 connect's: {own / max(bare, 0.1):.1f}x ")
    print(f"  (bare sqlite3 connect + query minus interpreter start: {bare:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
