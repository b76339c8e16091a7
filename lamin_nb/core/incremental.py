"""``ln.check(since=...)``: only what changed since a time, usually the last full check.

Rows changed since then (``updated_at``, indexed) and every in-flight row are looked up one
object each (a stat or a HEAD), plus the temporary uploads of deleting rows. The storage is not
listed, so the cost follows the changes, not the size of the instance. A full check stays the
ground truth: objects written outside lamin_nb (no row claims them) and objects deleted behind
lamin_nb's back from a row that did not change are found only by a full one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import or_, select

from .instance import Instance
from .models import DELETING, PENDING, ArtifactRow, SettingRow
from .storage import ObjectInfo

LAST_FULL_CHECK = "last_full_check"
SKEW = timedelta(minutes=5)  # writers' and servers' clocks may differ: look back a little more
LOOKUP_BATCH = 256
LOOKUP_THREADS = 16  # S3: one HEAD per row, in parallel
T = TypeVar("T")


def resolve_since(inst: Instance, since: datetime | str) -> datetime | None:
    """``since`` as naive UTC; ``"last"`` is the last full check's start (None: never ran).

    Parameters
    ----------
    inst : Instance
        Whose last full check to read.
    since : datetime.datetime or str
        A time (naive values are UTC) or ``"last"``.

    Returns
    -------
    datetime.datetime or None
        Naive UTC; None when ``"last"`` was asked and no full check was recorded.
    """
    if isinstance(since, str):
        if since != "last":
            raise ValueError(f'since must be a datetime or "last", not {since!r}')
        return last_full_check(inst)
    if not isinstance(since, datetime):
        raise TypeError(f'since must be a datetime or "last", not {type(since).__name__}')
    if since.tzinfo is not None:
        return since.astimezone(timezone.utc).replace(tzinfo=None)
    return since


def last_full_check(inst: Instance) -> datetime | None:
    """When the last full check of ``inst`` started (naive UTC), or None.

    Parameters
    ----------
    inst : Instance
        The instance.

    Returns
    -------
    datetime.datetime or None
        Read from the instance's database (``lamin_setting``).
    """
    with inst.db.read() as session:
        value = session.scalar(select(SettingRow.value).where(SettingRow.key == LAST_FULL_CHECK))
    return datetime.fromisoformat(value) if value else None


def record_full_check(inst: Instance, started: datetime) -> None:
    """Remember when a full check that just finished started (what ``since="last"`` uses)."""
    with inst.db.write() as session:
        row = session.get(SettingRow, LAST_FULL_CHECK)
        if row is None:
            session.add(SettingRow(key=LAST_FULL_CHECK, value=started.isoformat()))
        elif datetime.fromisoformat(row.value) < started:
            row.value = started.isoformat()


def changed_rows(session: Any, rows: Any, since: datetime, batch: int) -> Any:
    """Of the ``rows`` statement, those updated since ``since`` and every in-flight row,
    streamed (a server-side cursor, ``batch`` rows at a time)."""
    stmt = rows.where(
        or_(ArtifactRow.updated_at >= since - SKEW, ArtifactRow.status.in_((PENDING, DELETING)))
    )
    return session.connection().execution_options(yield_per=batch).execute(stmt)


def lookup(inst: Instance, names: list[str]) -> dict[str, ObjectInfo]:
    """The objects among ``names`` that exist now (one stat or HEAD each, in parallel)."""
    if inst.storage.local_path("") is not None:
        infos: Iterable[ObjectInfo | None] = map(inst.storage.info, names)
        return {info.name: info for info in infos if info is not None}
    with ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="lamin-nb-lookup") as pool:
        return {info.name: info for info in pool.map(inst.storage.info, names) if info}


def refresh_since(inst: Instance, full_every: float) -> str | None:
    """What a periodic refresh (the status bar) should check: ``"last"`` (incremental), or
    None (a full check) once the last full one is ``full_every`` seconds old or never ran,
    since only a full check finds objects written outside lamin_nb.

    Parameters
    ----------
    inst : Instance
        The instance refreshed.
    full_every : float
        Seconds between full checks; 0: every refresh is a full check.

    Returns
    -------
    str or None
        The ``since`` to pass to ``ln.check``.
    """
    last = last_full_check(inst)
    if last is None or full_every <= 0:
        return None
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return "last" if (now - last).total_seconds() < full_every else None


def not_looked_for(since: datetime) -> str:
    """What an incremental check leaves to a full one, in words (the report's note)."""
    return (
        f"objects written outside lamin_nb since {since:%Y-%m-%d %H:%M:%S} UTC (orphans no row "
        "claims) were not looked for: an incremental check does not list the storage; run a "
        "full ln.check() to find them"
    )


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``."""
    found = iter(items)
    while batch := list(islice(found, size)):
        yield batch
