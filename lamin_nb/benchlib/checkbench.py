"""``ln.check()`` on N artifacts: time and peak memory, each run in a fresh process.

The N artifacts are written directly (small objects plus committed rows in bulk INSERTs):
this scenario measures check, not save, and saving 100,000 files first would dominate.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import Result

if TYPE_CHECKING:
    from .scenarios import Context

DEFAULT_LOCAL_N = 100_000
DEFAULT_S3_N = 2_000
ROWS_PER_INSERT = 5_000


def check_scenario(ctx: Context) -> Result:
    n = ctx.options.check_n or (DEFAULT_S3_N if ctx.scratch.target.is_s3 else DEFAULT_LOCAL_N)
    result = Result(
        f"ln.check() on {n:,} artifacts",
        "s",
        "listing + SELECT",
        target=ctx.target("< 5 s and < 300 MB"),
    )
    populate(ctx, n)
    peaks: list[float] = []
    for run in range(ctx.options.runs):
        order = ["check", "check-bound"] if run % 2 == 0 else ["check-bound", "check"]
        measured = {cmd: _child(ctx, cmd) for cmd in order}
        ours = measured["check"]
        if not ours["consistent"] or ours["n_rows"] < n:
            raise RuntimeError(f"check saw {ours['n_rows']} rows, consistent={ours['consistent']}")
        result.add(ours["seconds"], measured["check-bound"]["seconds"])
        peaks.append(ours["rss_peak_mb"])
        result.extra["rss_base_mb"] = ours["rss_base_mb"]
    peak = statistics.median(peaks)
    result.extra.update(
        rss_peak_mb=peak,
        bound_rss_peak_mb=measured["check-bound"]["rss_peak_mb"],
        note=f"peak RSS {peak:.0f} MB (+{peak - result.extra['rss_base_mb']:.0f} MB over connect)",
    )
    return result


def _child(ctx: Context, command: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "lamin_nb.benchlib.child", command],
        env=ctx.scratch.child_env(),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command} child failed: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def populate(ctx: Context, n_total: int) -> None:
    """Top the scratch instance up to ``n_total`` committed artifacts (not timed)."""
    from sqlalchemy import func, select

    from ..core.models import ArtifactRow

    inst = ctx.scratch.instance
    with inst.db.read() as session:
        have = session.scalar(select(func.count()).select_from(ArtifactRow)) or 0
    for start in range(int(have), n_total, ROWS_PER_INSERT):
        _add_batch(inst, range(start, min(start + ROWS_PER_INSERT, n_total)))


def _add_batch(inst: Any, numbers: range) -> None:
    import blake3
    from sqlalchemy import insert

    from ..core.hashing import HASH_TYPE, encode
    from ..core.instance import random_base62
    from ..core.models import COMMITTED, ArtifactRow, utcnow

    now = utcnow()
    objects: dict[str, bytes] = {}
    rows = []
    for i in numbers:
        uid = random_base62(16) + "0000"
        data = f"check benchmark object {i:09d}\n".encode()
        objects[f"{uid}.txt"] = data
        rows.append(
            {
                "uid": uid,
                "key": f"check/{i:09d}.txt",
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
    _write_objects(inst, objects)
    with inst.db.engine.begin() as conn:
        conn.execute(insert(ArtifactRow), rows)


def _write_objects(inst: Any, objects: dict[str, bytes]) -> None:
    from ..core.storage import LocalStorage

    storage = inst.storage
    if isinstance(storage, LocalStorage):  # the fastest way to fill each backend
        for name, data in objects.items():
            Path(storage.managed, name).write_bytes(data)
        return
    storage.fs.pipe({storage.path(name): data for name, data in objects.items()}, batch_size=32)
