"""``check``: database rows against the listing of the managed prefix (DESIGN §4 I1, I2; §12).

Both sides stream in object-name order (rows from a server-side cursor, the listing sorted per
directory or, on S3, in key order), and are merged side by side: memory is one batch of rows,
one listing window and the findings, capped at ``LIMIT`` per kind, whatever the number of
artifacts. ``since=`` checks only what changed (``incremental``). The report is plain data;
widgets and the CLI render it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select

from . import incremental, rows
from .db import database_errors
from .errors import IntegrityError, describe
from .findings import ConsistencyReport, InFlight, Mismatch, Orphan, RowIssue
from .instance import Instance, current
from .models import COMMITTED, DELETING, LOST, PENDING, ArtifactRow, utcnow
from .owners import Liveness, liveness
from .resumable import is_resumable
from .storage import ObjectInfo, owner_of_temp
from .txstate import is_transaction_owner

BATCH = 5000
RECHECK_ONE_BY_ONE = 200  # beyond this, a second listing is cheaper than lookups
LIMIT = 10_000  # findings of each kind held in the report; past it they are only counted
UID_LENGTH = 20


def check(
    deep: bool = False, instance: Instance | None = None, since: datetime | str | None = None
) -> ConsistencyReport:
    """Compare rows and objects; ``deep=True`` re-hashes every committed object.

    A full check merges two streams in object-name order: the rows, from a server-side cursor,
    and the storage listing (on S3, in parallel over name ranges). Memory stays flat however
    many artifacts there are; the report holds the findings, at most ``LIMIT`` of each kind
    (``count`` gives them all). Rows always exist before their objects and outlive them, so a
    writer active during the check can only make a committed row look missing (deleted after
    the rows were read) or an object look orphaned (saved after); both kinds are looked at
    once more before they are reported. Nothing is changed, except that a full check records
    when it ran; ``ln.repair`` acts on what the check finds.

    ``since`` makes an incremental check: only rows changed since then and every in-flight
    row are compared with their objects (one lookup each, no listing of the storage), so its
    cost follows the changes, not the size of the instance. It does not look for objects
    written outside lamin_nb (no row claims them) nor for objects deleted behind lamin_nb's
    back from rows that did not change: only a full check finds those, and the report says
    so (``not_looked_for``). A full check remains the ground truth.

    Parameters
    ----------
    deep : bool
        Also re-hash every committed object (reads every byte; on S3 over the network).
    instance : Instance or None
        The instance to check; None: the current one.
    since : datetime.datetime or str or None
        None: a full check. A time (naive values are UTC) or ``"last"`` (the last full
        check's start; a full check if none ran yet): an incremental check.

    Returns
    -------
    ConsistencyReport
        ``.is_consistent``, ``.missing``, ``.orphans``, ``.mismatched``, ``.pending``,
        ``.deleting``, ``.n_ok``.

    Raises
    ------
    InstanceError
        There is no current instance.
    OSError
        The storage cannot be listed or read (as the filesystem reports it).
    TypeError
        ``deep`` is not True or False, or ``since`` is not a datetime or ``"last"``.
    ValueError
        ``since`` is a string other than ``"last"``.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.check()  # doctest: +SKIP
    storage and database are consistent: 12 ok, 0 missing, 0 orphans, 0 mismatched, ...
    >>> ln.check(deep=True).mismatched  # doctest: +SKIP
    []
    >>> ln.check(since="last")  # doctest: +SKIP
    storage and database are consistent (changes since 2026-01-02 03:04:05): 2 ok, ...
    """
    if not isinstance(deep, bool):
        raise TypeError(f"deep must be True or False, not {type(deep).__name__}")
    inst = instance or current()
    with database_errors("ln.check()"):
        after = None if since is None else incremental.resolve_since(inst, since)
        if after is not None:
            return _check_since(inst, deep, after)
        report = _check(inst, deep)
        _record(inst, report)
        return report


def _record(inst: Instance, report: ConsistencyReport) -> None:
    try:
        incremental.record_full_check(inst, report.checked_at)
    except Exception as exc:  # noqa: BLE001 - e.g. a read-only database: the check stands
        report.warnings.append(f"could not record this full check: {describe(exc)}")


def _check_since(inst: Instance, deep: bool, since: datetime) -> ConsistencyReport:
    """Rows changed since ``since`` and every in-flight row, one object lookup each; no
    listing of the storage (DESIGN §12): its cost follows the changes."""
    report = ConsistencyReport(inst.storage.root, deep, utcnow(), since=since)
    report.not_looked_for = incremental.not_looked_for(since)
    merge = _Merge(inst, report)
    leaving: list[str] = []  # deleting rows' objects: their temporaries are orphans
    with inst.db.read() as session:
        ordered = ROWS.order_by(_name_order(inst))
        changed = incremental.changed_rows(session, ordered, since, BATCH)
        for batch in incremental.batches(changed, incremental.LOOKUP_BATCH):
            found = incremental.lookup(inst, [row.uid + row.suffix for row in batch])
            for row in batch:
                name = row.uid + row.suffix
                merge.row(row, name, found.get(name))
                if row.status == DELETING:
                    leaving.append(name)
    # a pending row's temporaries are its upload in progress (never reported, as in a full
    # check); a deleting row's are left over: orphans unless a save claims them again
    for batch in incremental.batches(inst.storage.list_temps(leaving), incremental.LOOKUP_BATCH):
        claimed = _claimed_now(inst, [info.name for info in batch])
        for info in batch:
            report.n_objects += 1
            if info.name not in claimed and _keep(report, "orphans", merge.orphans):
                merge.orphans.append(info)
    _recheck_missing(inst, report, merge.missing, report.checked_at, listing=False)
    _recheck_orphans(inst, report, merge.orphans, report.checked_at, listing=False)
    _add_warnings(inst, report)
    return report


def _check(inst: Instance, deep: bool) -> ConsistencyReport:
    report = ConsistencyReport(inst.storage.root, deep, utcnow())
    merge = _Merge(inst, report)
    with inst.db.read() as session:
        # Core rows, streamed in name order from a server-side cursor (the ORM layer would
        # double the time for plain columns); the snapshot is taken before the listing starts
        ordered = ROWS.order_by(_name_order(inst))
        result = session.connection().execution_options(yield_per=BATCH).execute(ordered)
        merge.run(iter(result), inst.storage.list_objects())
    _recheck_missing(inst, report, merge.missing, report.checked_at)
    _recheck_orphans(inst, report, merge.orphans, report.checked_at)
    _add_warnings(inst, report)
    return report


ROWS = select(
    ArtifactRow.uid,
    ArtifactRow.key,
    ArtifactRow.suffix,
    ArtifactRow.size,
    ArtifactRow.hash,
    ArtifactRow.status,
    ArtifactRow.owner,
    ArtifactRow.lease_expires_at,
    ArtifactRow.updated_at,
    ArtifactRow.transfer_id,
    ArtifactRow.created_at,
    ArtifactRow.transfer_started_at,
)


def _name_order(inst: Instance) -> Any:
    """Rows in the order of their object names, as storage lists them (bytes): every uid has
    the same length, so the uid orders the name; PostgreSQL is told to compare bytes ("C")
    whatever the database's collation, which an index of that collation serves."""
    if inst.db.is_postgres:
        return ArtifactRow.uid.collate("C")
    return ArtifactRow.uid


class _Merge:
    """Rows and objects, both in name order, walked side by side: one row and one object in
    memory at a time, plus the findings (capped at ``LIMIT`` each, counted in full)."""

    def __init__(self, inst: Instance, report: ConsistencyReport) -> None:
        self.inst, self.report = inst, report
        self.missing: list[tuple[Any, str]] = []  # committed rows whose object was not listed
        self.orphans: list[ObjectInfo] = []  # objects no row (in the snapshot) claims
        self.previous: Any = None  # the last row passed: the owner of temps that follow it

    def run(self, rows_in: Iterator[Any], objects: Iterator[ObjectInfo]) -> None:
        row = next(rows_in, None)
        info = next(objects, None)
        while row is not None:
            name = row.uid + row.suffix
            if self.previous is not None and name <= self.previous.uid + self.previous.suffix:
                raise IntegrityError(
                    f"the database returned {name} after {self.previous.uid}: rows are not in "
                    "object-name order, so the check cannot compare them with the listing; "
                    "nothing was changed"
                )
            while info is not None and info.name < name:
                self._unclaimed(info)
                info = next(objects, None)
            if info is not None and info.name == name:
                self.row(row, name, info)
                info = next(objects, None)
            else:
                self.row(row, name, None)
            self.previous = row
            row = next(rows_in, None)
        while info is not None:
            self._unclaimed(info)
            info = next(objects, None)

    def row(self, row: Any, name: str, info: ObjectInfo | None) -> None:
        """Compare one row with its object (None: not listed)."""
        report = self.report
        report.n_rows += 1
        report.n_objects += info is not None
        if row.status == COMMITTED and info is not None:
            if not report.deep and (row.size is None or row.size == info.size):
                report.n_ok += 1  # the common case, kept cheap
                return
        if info is None and row.status == COMMITTED:
            if _keep(report, "missing", self.missing):
                self.missing.append((row, name))
            return
        _classify(self.inst, report, row, name, info, report.checked_at)

    def _unclaimed(self, info: ObjectInfo) -> None:
        """An object with no row of its name: a pending row's temporary upload (it sorts
        right after the row's own name), or an orphan."""
        self.report.n_objects += 1
        previous = self.previous
        if (
            previous is not None
            and previous.status == PENDING
            and owner_of_temp(info.name) == previous.uid + previous.suffix
        ):
            return
        if _keep(self.report, "orphans", self.orphans):
            self.orphans.append(info)


def _keep(report: ConsistencyReport, kind: str, held: list[Any]) -> bool:
    """True while fewer than ``LIMIT`` are held; past that, the finding is only counted."""
    if len(held) < LIMIT:
        return True
    report.not_listed[kind] = report.not_listed.get(kind, 0) + 1
    return False


def _add(report: ConsistencyReport, kind: str, entry: Any) -> None:
    held = getattr(report, kind)
    if _keep(report, kind, held):
        held.append(entry)
    elif isinstance(entry, InFlight) and entry.stuck:
        report.not_listed["stuck"] = report.not_listed.get("stuck", 0) + 1


def _add_warnings(inst: Instance, report: ConsistencyReport) -> None:
    waiting = [p for p in report.pending if p.resumable]
    if waiting:
        report.warnings.append(
            f"{len(waiting)} interrupted upload(s) can be resumed: save the same content "
            "again (ln.uploads() lists them; ln.repair aborts them after its grace period)"
        )
    try:
        report.warnings += inst.storage.warnings()
    except Exception as exc:  # noqa: BLE001 - a warning must never fail the check
        report.warnings.append(f"could not read the storage configuration: {describe(exc)}")


def _recheck_missing(
    inst: Instance,
    report: ConsistencyReport,
    candidates: list[tuple[Any, str]],
    now: datetime,
    listing: bool = True,
) -> None:
    found = _present(inst, [name for _, name in candidates], listing)
    absent = [row.uid for row, name in candidates if name not in found]
    still_committed: set[str] = set()
    if absent:  # a delete may have started since the rows were read: it marks the row first
        with inst.db.read() as session:
            statuses = rows.statuses(session, absent)
        still_committed = {uid for uid, status in statuses.items() if status == COMMITTED}
    for row, name in candidates:
        if name in found or row.uid in still_committed:
            _classify(inst, report, row, name, found.get(name), now)


def _recheck_orphans(
    inst: Instance,
    report: ConsistencyReport,
    candidates: list[ObjectInfo],
    now: datetime,
    listing: bool = True,
) -> None:
    """An object listed without a row in the snapshot: a save may have reserved its row since
    (rows come first), or a delete removed it since it was listed."""
    if not candidates:
        return
    claimed = _claimed_now(inst, [info.name for info in candidates])
    still = _present(inst, [info.name for info in candidates if info.name not in claimed], listing)
    for info in candidates:
        if info.name in still:
            report.orphans.append(Orphan(info.name, info.size, (now - info.mtime).total_seconds()))


def _claimed_now(inst: Instance, names: list[str]) -> set[str]:
    """The names a row claims now: its object (any status), or a pending row's temporary."""
    owners = {name: owner_of_temp(name) or name for name in names}
    uids = sorted({base[:UID_LENGTH] for base in owners.values()})
    found: dict[str, tuple[str, str]] = {}
    with inst.db.read() as session:
        for part in rows.chunks(uids):
            stmt = select(ArtifactRow.uid, ArtifactRow.suffix, ArtifactRow.status)
            for uid, suffix, status in session.execute(stmt.where(ArtifactRow.uid.in_(part))):
                found[uid] = (uid + suffix, status)
    claimed = set()
    for name, base in owners.items():
        row = found.get(base[:UID_LENGTH])
        if row is not None and row[0] == base and (base == name or row[1] == PENDING):
            claimed.add(name)
    return claimed


def _present(inst: Instance, names: list[str], listing: bool = True) -> dict[str, ObjectInfo]:
    """Which of ``names`` exist now: one lookup each, or one more listing if there are many
    (and ``listing`` allows it: an incremental check never lists the storage)."""
    if not names:
        return {}
    if len(names) <= RECHECK_ONE_BY_ONE or not listing:
        return incremental.lookup(inst, names)
    wanted = set(names)
    return {info.name: info for info in inst.storage.list_objects() if info.name in wanted}


def _classify(
    inst: Instance,
    report: ConsistencyReport,
    row: Any,
    name: str,
    info: ObjectInfo | None,
    now: datetime,
) -> None:
    if row.status in (PENDING, DELETING):
        expired = row.lease_expires_at is None or row.lease_expires_at < now
        alive = liveness(row.owner)
        journaled = row.status == PENDING and bool(row.transfer_id)
        entry = InFlight(
            row.uid,
            row.key,
            name,
            row.owner,
            (now - row.updated_at).total_seconds(),
            expired,
            info is not None,
            None if alive is Liveness.UNKNOWN else alive is Liveness.ALIVE,
            journaled,
            journaled and (expired or alive is Liveness.DEAD) and is_resumable(row, now=now),
            is_transaction_owner(row.owner),
        )
        _add(report, "pending" if row.status == PENDING else "deleting", entry)
    elif row.status == LOST:
        _add(report, "lost", RowIssue(row.uid, row.key, name, "marked lost by repair"))
    elif row.status == COMMITTED:
        _check_committed(inst, report, row, name, info)


def _check_committed(
    inst: Instance, report: ConsistencyReport, row: Any, name: str, info: ObjectInfo | None
) -> None:
    if info is None:
        _add(report, "missing", RowIssue(row.uid, row.key, name, "object not found"))
    elif row.size is not None and info.size != row.size:
        _add(report, "mismatched", Mismatch(row.uid, row.key, name, "size", row.size, info.size))
    elif report.deep and row.hash is not None and _rehash(inst, name) != row.hash:
        _add(report, "mismatched", Mismatch(row.uid, row.key, name, "hash", row.hash, "different"))
    else:
        report.n_ok += 1


def _rehash(inst: Instance, name: str) -> str:
    return inst.storage.hash_object(name)[0]
