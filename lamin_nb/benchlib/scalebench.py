"""``lamin-nb bench --scale N``: an instance of N artifacts, built through the public API in
bulk saves, then ``ln.check()`` on it: time, peak memory and LIST requests (DESIGN §12).

Every bulk save and every check runs in a fresh child process, which reports its own peak
RSS (VmHWM), so the figures are per operation, not the high-water mark of this process. The
check is measured against the lower bound of ``lamin_nb.benchlib.child`` (one listing, one
SELECT, one dict comparison: all in memory) in the same run, alternating the order.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_BATCH = 10_000


def child(scratch: Any, *command: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "lamin_nb.benchlib.child", *command],
        env=scratch.child_env(),
        capture_output=True,
        text=True,
        timeout=6 * 3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} child failed: {done.stderr.strip()[-600:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build(scratch: Any, n: int, batch: int) -> list[dict[str, Any]]:
    """N small files saved with ``ln.save`` in bulk saves of ``batch`` (each in a child)."""
    saves = []
    done = 0
    while done < n:
        size = min(batch, n - done)
        folder = scratch.home / f"batch-{done}"
        folder.mkdir()
        for i in range(done, done + size):
            (folder / f"f{i:09d}.txt").write_bytes(f"scale benchmark object {i:09d}\n".encode())
        result = child(scratch, "bulk-save", str(folder))
        shutil.rmtree(folder)
        if result["saved"] != size:
            raise RuntimeError(f"a bulk save of {size} files saved {result['saved']}")
        result["n"] = size
        saves.append(result)
        done += size
        print(
            f"    built {done:,}/{n:,}: {size / result['seconds']:.0f} items/s, "
            f"peak RSS {result['rss_peak_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    return saves


def measure_check(scratch: Any, n: int, runs: int) -> dict[str, Any]:
    ours: list[dict[str, Any]] = []
    bound: list[dict[str, Any]] = []
    for run in range(runs):
        order = ["check", "check-bound"] if run % 2 == 0 else ["check-bound", "check"]
        for command in order:
            result = child(scratch, command)
            (ours if command == "check" else bound).append(result)
    if not all(r["consistent"] and r["n_rows"] == n for r in ours):
        raise RuntimeError(f"check did not see {n} consistent rows: {ours}")
    seconds = statistics.median(r["seconds"] for r in ours)
    return {
        "n": n,
        "check_s": seconds,
        "check_s_min": min(r["seconds"] for r in ours),
        "check_s_max": max(r["seconds"] for r in ours),
        "bound_s": statistics.median(r["seconds"] for r in bound),
        "check_rss_peak_mb": statistics.median(r["rss_peak_mb"] for r in ours),
        "check_rss_base_mb": ours[0]["rss_base_mb"],
        "bound_rss_peak_mb": statistics.median(r["rss_peak_mb"] for r in bound),
        "list_requests": ours[0]["list_requests"],
        "us_per_artifact": seconds / n * 1e6,
    }


def run(scratch: Any, n: int, runs: int, batch: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Build N artifacts in ``scratch`` and measure the check; prints and returns the figures.

    Parameters
    ----------
    scratch : Scratch
        The scratch instance (current in this process).
    n : int
        Artifacts to build.
    runs : int
        Checks (and lower bounds) to run, alternating.
    batch : int
        Files per bulk save.

    Returns
    -------
    dict
        Build rate, bulk-save peak RSS, check time, peak RSS and LIST requests, the bound.
    """
    start = time.perf_counter()
    saves = build(scratch, n, batch)
    built_s = time.perf_counter() - start
    result = measure_check(scratch, n, runs)
    result.update(
        build_s=built_s,
        build_items_per_s=n / built_s,
        bulk_save_rss_peak_mb=max(s["rss_peak_mb"] for s in saves),
        artifacts_built_rss_mb=max(s["rss_artifacts_built_mb"] for s in saves),
        batch=batch,
        load_avg=os.getloadavg()[0],
        db_bytes=_db_bytes(scratch),
    )
    print(report_text(result), flush=True)
    return result


def _db_bytes(scratch: Any) -> int | None:
    from ..core.db import sqlite_file

    found = sqlite_file(scratch.instance.db.url)
    if found is None:
        return None
    files = [found, Path(f"{found}-wal")]  # rows may still sit in the write-ahead log
    return sum(f.stat().st_size for f in files if f.exists())


def report_text(r: dict[str, Any]) -> str:
    lines = [
        f"scale: {r['n']:,} artifacts built through ln.save in bulk saves of {r['batch']:,}: "
        f"{r['build_s']:.0f} s ({r['build_items_per_s']:.0f} items/s), "
        f"bulk save peak RSS {r['bulk_save_rss_peak_mb']:.0f} MB (the list of Artifacts "
        f"alone: {r['artifacts_built_rss_mb']:.0f} MB)",
        f"  ln.check()  median {r['check_s']:.2f} s (min {r['check_s_min']:.2f}, max "
        f"{r['check_s_max']:.2f}) = {r['us_per_artifact']:.1f} us/artifact; lower bound "
        f"{r['bound_s']:.2f} s -> {r['check_s'] / r['bound_s']:.2f}x",
        f"  peak RSS    {r['check_rss_peak_mb']:.0f} MB (after connect "
        f"{r['check_rss_base_mb']:.0f} MB); bound {r['bound_rss_peak_mb']:.0f} MB",
    ]
    if r["list_requests"] is not None:
        lines.append(f"  LIST requests per check: {r['list_requests']}")
    if r["db_bytes"] is not None:
        lines.append(f"  SQLite file: {r['db_bytes'] / r['n']:.0f} bytes/artifact")
    lines.append(f"  load average {r['load_avg']:.1f}")
    return "\n".join(lines)
