"""``ln.connect()`` in a fresh process on an existing instance (local folder; SQLite, or
PostgreSQL with ``--pg``).

    python benchmarks/bench_connect.py [--rounds 15] [--pg]

Three kinds of fresh process, run in rotating order, medians of ``--rounds``:

- ``python -c pass``: the interpreter's own start (the floor every process pays);
- a bare driver connect to the same database and one query: ``sqlite3`` (SQLite) or ``psycopg``
  (PostgreSQL, its import included);
- ``import lamin_nb as ln; ln.connect()``.

Printed: wall times, ``connect`` minus interpreter start (target: under 120 ms), the ratio to
``python -c pass`` and how many times a bare driver connect the connect's own work costs. The
instance is made in a scratch folder (and, with ``--pg``, a scratch database on
``$LAMIN_NB_TEST_PG_URL``'s server) first, not timed, and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 120.0
# the scratch database of the transaction benchmark (this folder is on sys.path when run)
from bench_transaction import scratch_pg  # noqa: E402


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one fresh process. On a shared machine the
    CPU time is the steadier figure: waiting for a core does not count."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _minus_start(values: list[float], start: list[float]) -> float:
    """Median of the paired differences (same round), in ms."""
    return statistics.median(v - p for v, p in zip(values, start, strict=True)) * 1000


def bare_connect(py: str, scratch: Path, db_url: str | None) -> list[str]:
    """A fresh process that connects with the driver alone and reads the schema version."""
    query = "SELECT version_num FROM alembic_version"
    if db_url is None:
        db = scratch / "home" / "instances" / "data" / "lamin.db"
        return [
            py,
            "-c",
            f"import sqlite3; sqlite3.connect({str(db)!r}).execute({query!r}).fetchone()",
        ]
    return [
        py,
        "-c",
        f"import psycopg; psycopg.connect({db_url!r}).execute({query!r}).fetchone()",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    db_url, drop = scratch_pg() if args.pg else (None, lambda: None)
    scratch = Path(tempfile.mkdtemp(prefix="lamin-nb-bench-connect-"))
    env = {**os.environ, "LAMIN_NB_HOME": str(scratch / "home")}
    py = sys.executable
    # bytecode, as an installed package has it: with PYTHONDONTWRITEBYTECODE set, each process
    # would otherwise compile lamin_nb's sources again and the figure would measure the compiler
    package = Path(__file__).resolve().parent.parent / "lamin_nb"
    subprocess.run([py, "-m", "compileall", "-q", str(package)], check=True)
    try:
        init = f"ln.init(storage={str(scratch / 'data')!r}, db={db_url!r})"
        subprocess.run([py, "-c", f"import lamin_nb as ln; {init}"], check=True, env=env)
        driver = "psycopg" if args.pg else "sqlite3"
        kinds = {
            "pass": [py, "-c", "pass"],
            driver: bare_connect(py, scratch, db_url),
            "connect": [py, "-c", "import lamin_nb as ln; ln.connect()"],
        }
        times: dict[str, list[float]] = {k: [] for k in kinds}
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        load_start = os.getloadavg()[0]
        names = list(kinds)
        for i in range(args.rounds):
            for name in names[i % 3 :] + names[: i % 3]:  # rotate who goes first
                wall, used = _run(kinds[name], env)
                times[name].append(wall)
                cpu[name].append(used)
        load_end = os.getloadavg()[0]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        drop()
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    own = _minus_start(times["connect"], times["pass"])
    bare = _minus_start(times[driver], times["pass"])
    backend = "PostgreSQL" if args.pg else "SQLite"
    print(
        f"{backend}: {args.rounds} rounds, medians; load average {load_start:.2f} -> {load_end:.2f}"
    )
    for name, ms in med.items():
        print(f"  {name:8s} {ms:7.1f} ms")
    print(
        f"connect minus interpreter start: {own:.1f} ms (target < {TARGET_MS:.0f} ms: "
        f"{'met' if own < TARGET_MS else 'MISSED'})"
    )
    print(f"connect / python -c pass: {med['connect'] / med['pass']:.2f}x")
    print("CPU time (user + system), medians:")
    for name, values in cpu.items():
        print(f"  {name:8s} {statistics.median(values) * 1000:7.1f} ms")
    own_cpu = _minus_start(cpu["connect"], cpu["pass"])
    bare_cpu = _minus_start(cpu[driver], cpu["pass"])
    print(
        f"connect's CPU minus interpreter start: {own_cpu:.1f} ms; "
        f"bare {driver}'s: {bare_cpu:.1f} ms"
    )
    print(f"connect's own work / a bare {driver} connect's: {own / max(bare, 0.1):.1f}x ")
    print(f"  (bare {driver} connect + query minus interpreter start: {bare:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
