"""Helpers for the hardening tests: real faults (PostgreSQL backends terminated, a full
filesystem, an S3 server that goes away) and the checks that nothing was lost afterwards.

Figures (cases tried, faults injected, throughput, items lost) are collected in ``FIGURES``
and printed at the end of the pytest run by ``tests/hardening/conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.servers import pg_admin

FIGURES: Counter[str] = Counter()
NOTES: dict[str, str] = {}


def count(name: str, n: int = 1) -> None:
    FIGURES[name] += n


def note(name: str, text: str) -> None:
    NOTES[name] = text


# -- file trees --------------------------------------------------------------------------


def snapshot(root: Path, skip: Iterable[Path] = ()) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` (relative name -> (size, mtime_ns)), minus ``skip``."""
    skipped = {os.fspath(p) for p in skip}
    found: dict[str, tuple[int, int]] = {}
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.path in skipped:
                continue
            st = entry.stat(follow_symlinks=False)
            is_dir = entry.is_dir(follow_symlinks=False)
            found[os.path.relpath(entry.path, root)] = (
                -1 if is_dir else st.st_size,
                0 if is_dir else st.st_mtime_ns,
            )
            if is_dir:
                stack.append(entry.path)
    return found


def tree_diff(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, list[str]]:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return {k: v for k, v in (("added", added), ("removed", removed), ("changed", changed)) if v}


# -- invariants --------------------------------------------------------------------------


def assert_clean(committed: Iterable[str] = ()) -> Any:
    """I1-I3 hold, nothing waits for repair, and every uid in ``committed`` is there with its
    object. Returns the check report."""
    import lamin_nb as ln
    from lamin_nb.core.instance import current
    from lamin_nb.core.models import COMMITTED
    from lamin_nb.core.rows import count_by_status

    report = ln.check()
    assert report.is_consistent, repr(report)
    assert not report.pending and not report.deleting, repr(report)
    inst = current()
    with inst.db.read() as session:
        counts = count_by_status(session)
    assert set(counts) <= {COMMITTED}, counts
    lost = missing_committed(committed)
    assert not lost, f"committed artifacts lost: {lost}"
    return report


def missing_committed(uids: Iterable[str]) -> list[str]:
    """Of ``uids`` (once committed), those without a committed row or without their object."""
    from lamin_nb.core.instance import current
    from lamin_nb.core.models import COMMITTED
    from lamin_nb.core.rows import by_uids

    inst = current()
    wanted = sorted(set(uids))
    with inst.db.read() as session:
        found = by_uids(session, wanted)
    objects = {info.name for info in inst.storage.list_objects()}
    return [
        uid
        for uid in wanted
        if uid not in found
        or found[uid].status != COMMITTED
        or f"{uid}{found[uid].suffix}" not in objects
    ]


def repair_all() -> Any:
    """What an operator runs once the fault is gone and no writer is active."""
    import lamin_nb as ln

    return ln.repair(dry_run=False, grace_seconds=0)


# -- PostgreSQL ----------------------------------------------------------------------------


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def terminate_lamin_backends(url: str) -> int:
    """pg_terminate_backend every lamin_nb connection to the database of ``url``."""
    with pg_admin() as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = 'lamin_nb' AND datname = %s AND pid <> pg_backend_pid()",
            (db_name(url),),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def allow_connections(url: str, allowed: bool) -> None:
    """Refuse (or allow again) new connections to the database, as during an outage."""
    name = db_name(url).replace('"', '""')
    with pg_admin() as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')


# -- a tiny filesystem -----------------------------------------------------------------------


@contextmanager
def tiny_filesystem(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A size-limited tmpfs mounted on ``folder`` (root only); unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)], check=True
    )
    try:
        yield folder
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(folder)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(folder)], check=False)
