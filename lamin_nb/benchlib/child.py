"""Child processes of bench and selftest: ``python -m lamin_nb.benchlib.child COMMAND ...``.

They connect to the current instance of ``$LAMIN_NB_HOME`` (the scratch one). ``save`` and
``delete`` run under ``LAMIN_NB_FAULT=point:kill`` and are expected to die at that point;
``check`` and ``check-bound`` print one JSON line with time and peak memory.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _peak_mb() -> float:
    """Peak resident memory of this process in MB.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child would report
    its parent's peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    """Resident memory of this process now, in MB (VmRSS)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _check() -> dict[str, Any]:
    import lamin_nb as ln

    inst = ln.connect()
    base = _peak_mb()
    start = time.perf_counter()
    report = ln.check()
    seconds = time.perf_counter() - start
    listing = getattr(inst.storage, "listing", None)  # S3: the LIST requests sent
    return {
        "seconds": seconds,
        "rss_base_mb": base,
        "rss_peak_mb": _peak_mb(),
        "n_rows": report.n_rows,
        "consistent": report.is_consistent,
        "list_requests": None if listing is None else listing.requests,
    }


def _bulk_save(folder: str) -> dict[str, Any]:
    """``ln.save`` of every file in ``folder`` (one bulk save): time and peak memory."""
    import lamin_nb as ln

    ln.connect()
    paths = sorted(Path(folder).iterdir())
    base = _peak_mb()
    start = time.perf_counter()
    artifacts = [ln.Artifact(p) for p in paths]
    built = _rss_mb()  # what the caller's own list of artifacts takes
    report = ln.save(artifacts)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rss_base_mb": base,
        "rss_artifacts_built_mb": built,
        "rss_peak_mb": _peak_mb(),
        "saved": len(report.saved),
    }


def naive_check(inst: Any) -> tuple[int, bool]:
    """The least a check must do: one listing, one SELECT, one comparison (rows, consistent)."""
    from sqlalchemy import select

    from lamin_nb.core.models import ArtifactRow
    from lamin_nb.core.storage import LocalStorage

    storage = inst.storage
    if isinstance(storage, LocalStorage):  # the cheapest listing of each backend
        listing = {e.name: e.stat().st_size for e in os.scandir(storage.managed) if e.is_file()}
    else:
        found = storage.fs.find(storage.managed, detail=True)
        listing = {p.rsplit("/", 1)[-1]: int(i.get("size") or 0) for p, i in found.items()}
    stmt = select(ArtifactRow.uid, ArtifactRow.suffix, ArtifactRow.size)
    with inst.db.read() as session:
        rows = session.execute(stmt).all()
    bad = sum(1 for uid, suffix, size in rows if listing.pop(f"{uid}{suffix}", None) != size)
    return len(rows), bad == 0


def _check_bound() -> dict[str, Any]:
    import lamin_nb as ln

    inst = ln.connect()
    base = _peak_mb()
    start = time.perf_counter()
    n_rows, consistent = naive_check(inst)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rss_base_mb": base,
        "rss_peak_mb": _peak_mb(),
        "n_rows": n_rows,
        "consistent": consistent,
    }


def _save(path: str, key: str) -> dict[str, Any]:
    import lamin_nb as ln

    ln.connect()
    artifact = ln.Artifact(Path(path), key=key, description="selftest")
    artifact.save()
    return {"uid": artifact.uid, "status": artifact.status}


def _delete(uid: str) -> dict[str, Any]:
    import lamin_nb as ln

    ln.connect()
    ln.Artifact.get(uid).delete(permanent=True)
    return {"uid": uid, "deleted": True}


COMMANDS: dict[str, Callable[..., Any]] = {
    "check": _check,
    "check-bound": _check_bound,
    "bulk-save": _bulk_save,
    "save": _save,
    "delete": _delete,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(
            f"usage: python -m lamin_nb.benchlib.child {{{'|'.join(COMMANDS)}}} ...",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(COMMANDS[argv[0]](*argv[1:])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
