"""Lower bounds: the bare work a save must do on this backend, done directly.

Copies go to ``<scratch>/bound/`` (outside the managed prefix) through the same filesystem
object lamin_nb uses, and rows go to a one-table stand-in in the same database, through
the same engine (so SQLite pragmas and PostgreSQL round trips are the same).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .scratch import Scratch

TABLE = "lamin_nb_bench_bound"


def _table() -> Any:
    from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table

    return Table(
        TABLE,
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("uid", String(20), unique=True),
        Column("key", String(1024)),
        Column("suffix", String(64)),
        Column("size", BigInteger),
        Column("hash", String(64)),
        Column("status", String(16)),
        Column("created_at", DateTime),
    )


class Bounds:
    def __init__(self, scratch: Scratch) -> None:
        self.inst = scratch.instance
        from ..core.storage import LocalStorage

        # the lower bounds are per backend: the kernel's own copy locally, a plain PUT on S3
        self.is_local = isinstance(self.inst.storage, LocalStorage)
        self.dest = f"{scratch.root}/bound"
        if self.is_local:
            Path(self.dest).mkdir(parents=True, exist_ok=True)
        self.table = _table()
        self.table.create(self.inst.db.engine, checkfirst=True)
        self._ids = itertools.count()

    @property
    def workers(self) -> int:
        """The same concurrency lamin_nb uses for a bulk save on this storage."""
        try:
            from ..core.saveinput import default_workers
        except ImportError:  # moved: fall back to the documented defaults
            return int(os.environ.get("LAMIN_NB_MAX_WORKERS") or self.inst.storage.default_workers)
        return int(default_workers(self.inst))

    def _name(self, suffix: str) -> str:
        return f"b{next(self._ids):08d}{suffix}"

    # -- storage -------------------------------------------------------------------------

    def copy(self, source: Path, fsync: bool = True) -> str:
        """Copy one (small) file to the bound folder; ``fsync`` makes it durable."""
        name = self._name(source.suffix)
        if not self.is_local:
            self.inst.storage.fs.put_file(str(source), f"{self.dest}/{name}")
            return name
        with open(source, "rb") as src, open(Path(self.dest, name), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            if fsync:
                dst.flush()
                os.fsync(dst.fileno())
        return name

    def copy_many(self, sources: Sequence[Path], fsync: bool = True) -> list[str]:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(lambda p: self.copy(p, fsync), sources))

    def copy_large(self, source: Path) -> str:
        """``cp`` then fsync locally (the kernel's own copy); a plain upload on S3."""
        name = self._name(source.suffix)
        if not self.is_local:
            self.inst.storage.fs.put_file(str(source), f"{self.dest}/{name}")
            return name
        target = Path(self.dest, name)
        if shutil.which("cp"):
            subprocess.run(["cp", str(source), str(target)], check=True)
        else:
            shutil.copyfile(source, target)
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return name

    def flush(self, path: Path) -> None:
        """fsync ``path``, a file written in place (as ``copy_large`` does after ``cp``)."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def clear(self) -> None:
        """Remove the copies (not timed)."""
        if self.is_local:
            shutil.rmtree(self.dest, ignore_errors=True)
            Path(self.dest).mkdir(parents=True, exist_ok=True)
            return
        fs = self.inst.storage.fs
        for key in fs.find(self.dest):
            fs.rm_file(key)

    # -- database ------------------------------------------------------------------------

    def row(self, name: str, size: int) -> dict[str, Any]:
        from ..core.models import utcnow

        return {
            "uid": name[:20],
            "key": None,
            "suffix": Path(name).suffix,
            "size": size,
            "hash": "x" * 22,
            "status": "committed",
            "created_at": utcnow(),
        }

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """One transaction, committed (durably, with the instance's own settings)."""
        from sqlalchemy import insert

        with self.inst.db.engine.begin() as conn:
            conn.execute(insert(self.table), rows)

    def drop(self) -> None:
        self.table.drop(self.inst.db.engine, checkfirst=True)


def timed(fn: Callable[[], Any]) -> float:
    import gc
    import time

    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired(run: int, first: Callable[[], Any], second: Callable[[], Any]) -> tuple[float, float]:
    """Time both, alternating which goes first, so drift on a busy machine hits both alike."""
    if run % 2 == 0:
        a = timed(first)
        return a, timed(second)
    b = timed(second)
    return timed(first), b
