"""Issue 6 numbers: a bulk save of many small files against lower bounds measured in the same run.

    .venv/bin/python benchmarks/bench_bulk.py [--n 1000] [--kib 10] [--runs 5] [--only local,s3,pg]

- local: SQLite + a local folder. ``Artifact.from_dir`` + ``ln.save`` against a durable naive
  bound (copy each file, fsync each, then one INSERT transaction for all rows into a similar
  table, same SQLite pragmas) and, for information, the same copies without fsync.
- s3: the same files to a moto S3 server (a subprocess): ``ln.save`` against sequential s3fs
  ``put_file`` calls and against ``fs.put(list, list, batch_size=32)``. Targets: <= 0.6x and
  <= 1.2x.
- pg: PostgreSQL + a local folder against the durable naive bound on PostgreSQL (a scratch
  database, created and dropped). Target, like local: <= 2x.

Methods alternate their order from run to run so that drift on a shared machine hits all of
them alike; each line shows median, min and max, and ratios are of medians.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PG_ADMIN_URL = os.environ.get(
    "LAMIN_NB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BOUND_TABLE = """CREATE TABLE bound_artifact (
    id {serial} PRIMARY KEY, uid VARCHAR(20) UNIQUE, key VARCHAR(1024), description TEXT,
    suffix VARCHAR(64), size BIGINT, hash VARCHAR(64), hash_type VARCHAR(16),
    version INTEGER, is_latest BOOLEAN, storage VARCHAR(1024), created_at TIMESTAMP,
    created_by VARCHAR(128), status VARCHAR(16))"""
BOUND_INSERT = (
    "INSERT INTO bound_artifact (uid, key, description, suffix, size, hash, hash_type, "
    "version, is_latest, storage, created_at, created_by, status) VALUES "
    "({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)

Timing = Callable[[], float]


# -- measuring -----------------------------------------------------------------------------


def measure(methods: dict[str, Timing], runs: int) -> dict[str, list[float]]:
    """Each method returns its own timed duration (set-up and clean-up stay untimed)."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for run in range(runs):
        order = names[run % len(names) :] + names[: run % len(names)]
        for name in order:
            gc.collect()
            times[name].append(methods[name]())
        print(
            f"  run {run + 1}/{runs}: "
            + ", ".join(f"{n} {times[n][-1]:.3f}s" for n in names)
            + f"  (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return times


def report(
    title: str, times: dict[str, list[float]], subject: str, targets: dict[str, float]
) -> dict[str, Any]:
    print(f"\n== {title}")
    for name, values in times.items():
        print(
            f"  {name:<34} median {statistics.median(values):7.3f}s   "
            f"min {min(values):7.3f}s   max {max(values):7.3f}s"
        )
    mine = statistics.median(times[subject])
    ratios = {}
    for name, values in times.items():
        if name == subject:
            continue
        ratio = mine / statistics.median(values)
        ratios[name] = ratio
        target = targets.get(name)
        verdict = (
            ""
            if target is None
            else (f"  target <= {target}x: {'met' if ratio <= target else 'NOT met'}")
        )
        print(f"  {subject} / {name:<24} {ratio:5.2f}x{verdict}")
    return {"title": title, "times": times, "ratios": ratios}


def clock(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- lamin_nb side ---------------------------------------------------------------------------


def fresh_instance(workdir: Path, storage: str, db: str | None = None) -> None:
    import lamin_nb as ln
    from lamin_nb.core import instance

    if instance._current is not None:
        instance._current.close()
        instance._current = None
    home = workdir / f"home-{secrets.token_hex(4)}"
    os.environ["LAMIN_NB_HOME"] = str(home)
    ln.init(storage=storage, db=db)


def close_instance() -> None:
    from lamin_nb.core import instance

    if instance._current is not None:
        instance._current.close()
        instance._current = None


def timed_bulk_save(sources: Path) -> float:
    """Build the artifacts and save them: what a user waits for."""
    import lamin_nb as ln

    n = len(list(sources.iterdir()))

    def run() -> None:
        report = ln.save(ln.Artifact.from_dir(sources, key="bench"))
        assert len(report.saved) == n, report

    return clock(run)


# -- naive lower bounds ----------------------------------------------------------------------


def bound_rows(files: list[Path], storage: str) -> list[tuple[Any, ...]]:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return [
        (
            secrets.token_hex(10),
            f"bench/{f.name}",
            None,
            f.suffix,
            f.stat().st_size,
            secrets.token_urlsafe(16),
            "blake3",
            1,
            True,
            storage,
            now,
            "bench",
            "committed",
        )
        for f in files
    ]


def copy_all(files: list[Path], dest: Path, fsync: bool) -> None:
    for source in files:
        with open(source, "rb") as src, open(dest / source.name, "wb") as dst:
            shutil.copyfileobj(src, dst)
            if fsync:
                dst.flush()
                os.fsync(dst.fileno())
    if fsync:  # the new directory entries too
        fd = os.open(dest, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sqlite_bound(files: list[Path], workdir: Path, fsync: bool) -> float:
    base = workdir / f"bound-{secrets.token_hex(4)}"
    dest = base / "objects"
    dest.mkdir(parents=True)
    conn = sqlite3.connect(base / "bound.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # as lamin_nb's engine
    conn.execute(BOUND_TABLE.format(serial="INTEGER"))
    conn.execute("CREATE INDEX ix_hash ON bound_artifact (hash)")
    conn.execute("CREATE INDEX ix_key ON bound_artifact (key)")

    def run() -> None:
        copy_all(files, dest, fsync)
        conn.execute("BEGIN")
        conn.executemany(BOUND_INSERT.format(p="?"), bound_rows(files, str(base)))
        conn.execute("COMMIT")

    try:
        return clock(run)
    finally:
        conn.close()
        shutil.rmtree(base)


def pg_bound(files: list[Path], workdir: Path) -> float:
    import psycopg

    url, name = create_pg_database()
    base = workdir / f"bound-{secrets.token_hex(4)}"
    dest = base / "objects"
    dest.mkdir(parents=True)
    try:
        with psycopg.connect(url) as conn:
            conn.execute(BOUND_TABLE.format(serial="SERIAL"))
            conn.execute("CREATE INDEX ix_hash ON bound_artifact (hash)")
            conn.execute("CREATE INDEX ix_key ON bound_artifact (key)")
            conn.commit()

            def run() -> None:
                copy_all(files, dest, True)
                with conn.cursor() as cur:
                    cur.executemany(BOUND_INSERT.format(p="%s"), bound_rows(files, str(base)))
                conn.commit()

            return clock(run)
    finally:
        drop_pg_database(name)
        shutil.rmtree(base)


# -- servers ---------------------------------------------------------------------------------


def create_pg_database() -> tuple[str, str]:
    import psycopg

    name = f"lamin_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Moto:
    """moto's S3 server in its own process on a loopback port (as tests/support/servers.py)."""

    def __init__(self, log: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("moto_server")
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )

    def reset(self) -> None:
        request = urllib.request.Request(
            self.endpoint + "/moto-api/reset",
            data=b"",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=30).read()

    def new_bucket(self) -> str:
        import boto3

        name = f"bench-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def s3fs_client() -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


# -- scenarios -------------------------------------------------------------------------------


def scenario_local(sources: Path, workdir: Path, runs: int) -> dict[str, Any]:
    files = sorted(sources.iterdir())

    def lamin() -> float:
        fresh_instance(workdir, str(workdir / f"storage-{secrets.token_hex(4)}"))
        try:
            return timed_bulk_save(sources)
        finally:
            close_instance()

    times = measure(
        {
            "ln.save (from_dir + save)": lamin,
            "durable bound": lambda: sqlite_bound(files, workdir, True),
            "no-fsync bound": lambda: sqlite_bound(files, workdir, False),
        },
        runs,
    )
    return report(
        f"SQLite + local folder, {len(files)} files",
        times,
        "ln.save (from_dir + save)",
        {"durable bound": 2.0},
    )


def scenario_pg(sources: Path, workdir: Path, runs: int) -> dict[str, Any]:
    files = sorted(sources.iterdir())

    def lamin() -> float:
        url, name = create_pg_database()
        try:
            fresh_instance(workdir, str(workdir / f"storage-{secrets.token_hex(4)}"), url)
            return timed_bulk_save(sources)
        finally:
            close_instance()
            drop_pg_database(name)

    times = measure(
        {
            "ln.save (from_dir + save)": lamin,
            "durable bound (PostgreSQL)": lambda: pg_bound(files, workdir),
        },
        runs,
    )
    return report(
        f"PostgreSQL + local folder, {len(files)} files",
        times,
        "ln.save (from_dir + save)",
        {"durable bound (PostgreSQL)": 2.0},
    )


def scenario_s3(sources: Path, workdir: Path, runs: int) -> dict[str, Any]:
    files = sorted(sources.iterdir())
    moto = Moto(workdir / "moto.log")
    try:

        def lamin() -> float:
            moto.reset()
            fresh_instance(workdir, f"s3://{moto.new_bucket()}/bench")
            try:
                return timed_bulk_save(sources)
            finally:
                close_instance()

        def sequential() -> float:
            moto.reset()
            bucket, fs = moto.new_bucket(), s3fs_client()
            return clock(lambda: [fs.put_file(str(f), f"{bucket}/seq/{f.name}") for f in files])

        def batch32() -> float:
            moto.reset()
            bucket, fs = moto.new_bucket(), s3fs_client()
            targets = [f"{bucket}/batch/{f.name}" for f in files]
            return clock(lambda: fs.put([str(f) for f in files], targets, batch_size=32))

        times = measure(
            {
                "ln.save (from_dir + save)": lamin,
                "sequential put_file": sequential,
                "fs.put batch_size=32": batch32,
            },
            runs,
        )
    finally:
        moto.stop()
    return report(
        f"S3 (moto server), {len(files)} files",
        times,
        "ln.save (from_dir + save)",
        {"sequential put_file": 0.6, "fs.put batch_size=32": 1.2},
    )


def make_sources(folder: Path, n: int, kib: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"{i:05d}.bin").write_bytes(os.urandom(kib * 1024))
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of files")
    parser.add_argument("--kib", type=int, default=10, help="size of each file")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default="local,s3,pg", help="comma-separated scenarios")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    scenarios = {"local": scenario_local, "s3": scenario_s3, "pg": scenario_pg}
    workdir = Path(tempfile.mkdtemp(prefix="lamin-bench-bulk-"))
    results = []
    try:
        sources = make_sources(workdir / "sources", args.n, args.kib)
        print(
            f"{args.n} files of {args.kib} KiB, {args.runs} runs, {os.cpu_count()} cores, "
            f"LAMIN_NB_MAX_WORKERS={os.environ.get('LAMIN_NB_MAX_WORKERS', 'default')}"
        )
        for name in args.only.split(","):
            print(f"\n-- {name}", flush=True)
            results.append(scenarios[name.strip()](sources, workdir, args.runs))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
