"""Issue 20 numbers: a transaction of many small saves and permanent deletes against the same
work as plain saves and deletes, measured in the same run.

    .venv/bin/python benchmarks/bench_transaction.py [--n 1000] [--deletes 100] [--kib 1]
                                                     [--runs 5] [--pg]

Each method, timed: ``n`` single ``Artifact(...).save()`` calls of fresh small files (distinct
keys, distinct content) and ``deletes`` permanent deletes of artifacts saved beforehand
(untimed). ``transaction`` does it inside one ``with ln.transaction():``; ``plain`` does the
same calls without it. Default: SQLite + a local folder; ``--pg``: PostgreSQL (a scratch
database, created and dropped) + a local folder. The two methods alternate their order from
run to run so that drift on a shared machine hits both alike; ratios are of medians.
Target: transaction / plain <= 1.2x.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the same alternating, timed loop as the bulk benchmark (this folder is on sys.path when run)
from bench_bulk import measure

PG_ADMIN_URL = os.environ.get(
    "LAMIN_NB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TARGET = 1.2


def make_files(folder: Path, n: int, kib: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"f{i}.bin" for i in range(n)]
    for path in paths:
        path.write_bytes(os.urandom(kib * 1024))
    return paths


def prepare(workdir: Path, n: int, deletes: int, kib: int) -> tuple[list[Path], list[Any]]:
    """Untimed: fresh files to save, and saved artifacts to delete."""
    import lamin_nb as ln

    tag = secrets.token_hex(4)
    sources = make_files(workdir / f"new-{tag}", n, kib)
    doomed = [
        ln.Artifact(p, key=f"old/{tag}/{p.name}")
        for p in make_files(workdir / f"old-{tag}", deletes, kib)
    ]
    ln.save(doomed)
    return sources, doomed


def work(sources: list[Path], doomed: list[Any], tag: str) -> None:
    import lamin_nb as ln

    for path in sources:
        ln.Artifact(path, key=f"new/{tag}/{path.name}").save()
    for artifact in doomed:
        artifact.delete(permanent=True)


def plain(workdir: Path, n: int, deletes: int, kib: int) -> float:
    sources, doomed = prepare(workdir, n, deletes, kib)
    start = time.perf_counter()
    work(sources, doomed, secrets.token_hex(4))
    return time.perf_counter() - start


def in_transaction(workdir: Path, n: int, deletes: int, kib: int) -> float:
    import lamin_nb as ln

    sources, doomed = prepare(workdir, n, deletes, kib)
    start = time.perf_counter()
    with ln.transaction():
        work(sources, doomed, secrets.token_hex(4))
    return time.perf_counter() - start


def scratch_pg() -> tuple[str, Callable[[], None]]:
    import psycopg

    name = f"lamin_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="single saves per run")
    parser.add_argument("--deletes", type=int, default=100, help="permanent deletes per run")
    parser.add_argument("--kib", type=int, default=1, help="size of each file")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args(argv)

    import lamin_nb as ln

    workdir = Path(tempfile.mkdtemp(prefix="lamin-bench-tx-"))
    os.environ["LAMIN_NB_HOME"] = str(workdir / "home")
    db, drop = scratch_pg() if args.pg else (None, lambda: None)
    try:
        ln.init(storage=str(workdir / "storage"), db=db)
        sizes = (args.n, args.deletes, args.kib)
        backend = "PostgreSQL" if args.pg else "SQLite"
        print(
            f"{args.n} single saves of {args.kib} KiB + {args.deletes} permanent deletes, "
            f"{backend} + local folder, {args.runs} runs (load {os.getloadavg()[0]:.1f})"
        )
        times = measure(
            {
                "transaction": lambda: in_transaction(workdir, *sizes),
                "plain": lambda: plain(workdir, *sizes),
            },
            args.runs,
        )
    finally:
        ln.disconnect()
        drop()
        shutil.rmtree(workdir, ignore_errors=True)
    for name, values in times.items():
        print(
            f"  {name:<12} median {statistics.median(values):7.3f}s   "
            f"min {min(values):7.3f}s   max {max(values):7.3f}s"
        )
    ratio = statistics.median(times["transaction"]) / statistics.median(times["plain"])
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(
        f"  transaction / plain {ratio:5.2f}x  target <= {TARGET}x: {verdict}"
        f"  (load {os.getloadavg()[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
