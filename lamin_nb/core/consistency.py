"""``check``: database rows against one listing of the managed prefix (DESIGN §4 I1, I2).

Rows are streamed in batches, so memory is one batch plus the listing, whatever the object
sizes. The report is plain data; widgets and the CLI render it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from . import rows
from .db import database_errors
from .errors import describe
from .instance import Instance, current
from .models import COMMITTED, DELETING, LOST, PENDING, ArtifactRow, utcnow
from .owners import Liveness, liveness
from .resumable import is_resumable
from .storage import ObjectInfo, owner_of_temp
from .txstate import is_transaction_owner
from .units import human_age

BATCH = 5000
RECHECK_ONE_BY_ONE = 200  # beyond this, a second listing is cheaper than lookups


@dataclass(frozen=True)
class RowIssue:
    """A row of ``ConsistencyReport.missing`` or ``.lost``: its artifact and object name."""

    uid: str
    key: str | None
    name: str  # object name under the managed prefix
    detail: str = ""


@dataclass(frozen=True)
class Mismatch:
    """A committed object whose size or (deep check) hash differs from its row."""

    uid: str
    key: str | None
    name: str
    kind: str  # "size" or "hash"
    expected: Any
    actual: Any


@dataclass(frozen=True)
class Orphan:
    """An object under the managed prefix that no row claims."""

    name: str
    size: int
    age_seconds: float


@dataclass(frozen=True)
class InFlight:
    """A pending (upload) or deleting row: who holds it, since when, whether it is stuck."""

    uid: str
    key: str | None
    name: str
    owner: str | None
    age_seconds: float
    expired: bool
    object_present: bool
    owner_alive: bool | None = None  # False: its writer is known to be gone (owners.py)
    journaled: bool = False  # a large upload that records its parts (it can be resumed)
    resumable: bool = False  # interrupted, journaled, younger than the resume grace period
    # held by a ``ln.transaction()`` block: pending = not committed (rolled back by repair
    # once its writer is gone), deleting = committed, its object delete unfinished
    transaction: bool = False

    @property
    def abandoned(self) -> bool:
        """Its lease ran out, or its writer no longer runs."""
        return self.expired or self.owner_alive is False

    @property
    def stuck(self) -> bool:
        """Waits for repair: abandoned, and not an upload a save of the same content can
        still resume."""
        return self.abandoned and not self.resumable


@dataclass
class ConsistencyReport:
    """What ``ln.check`` found: rows against objects (DESIGN invariants I1 and I2).

    Plain data; widgets and the CLI render it, ``to_dict`` gives it as JSON-ready values.

    Attributes
    ----------
    storage : str
        The storage root that was checked.
    deep : bool
        Whether every committed object was re-hashed.
    checked_at : datetime.datetime
        When the check ran (UTC).
    n_ok : int
        Committed rows whose object is present with the recorded size (and hash, if deep).
    n_rows : int
        Rows read, any status.
    n_objects : int
        Objects listed under the managed prefix.
    missing : list of RowIssue
        Committed rows without their object (I1 broken).
    orphans : list of Orphan
        Objects that no row claims (I2 broken); ``ln.repair`` quarantines them.
    mismatched : list of Mismatch
        Committed objects whose size or hash differs from the row.
    pending : list of InFlight
        Uploads in progress or interrupted; ``stuck`` ones wait for ``ln.repair``.
    deleting : list of InFlight
        Permanent deletes in progress or interrupted.
    lost : list of RowIssue
        Rows that ``ln.repair(mark_lost=True)`` marked lost (hidden, kept for the record).
    warnings : list of str
        Things worth knowing that do not make the instance inconsistent: interrupted
        uploads waiting to be resumed, a bucket without a lifecycle rule for incomplete
        multipart uploads.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> report = ln.check()  # doctest: +SKIP
    >>> report.is_consistent  # doctest: +SKIP
    True
    >>> report.summary()  # doctest: +SKIP
    'storage and database are consistent: 12 ok, 0 missing, 0 orphans, ...'
    """

    storage: str
    deep: bool
    checked_at: datetime
    n_ok: int = 0
    n_rows: int = 0
    n_objects: int = 0
    missing: list[RowIssue] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    mismatched: list[Mismatch] = field(default_factory=list)
    pending: list[InFlight] = field(default_factory=list)
    deleting: list[InFlight] = field(default_factory=list)
    lost: list[RowIssue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_consistent(self) -> bool:
        """True when I1 and I2 hold and nothing waits for repair.

        Live uploads and deletes are fine; rows whose writer is gone are not, lease or no
        lease.
        """
        stuck = any(r.stuck for r in self.pending + self.deleting)
        return not (self.missing or self.orphans or self.mismatched or stuck)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain, JSON-ready values (what the REST API serves).

        Returns
        -------
        dict
            Every attribute (entries as dicts, ``checked_at`` as ISO 8601 with ``Z``), plus
            ``is_consistent``.

        Examples
        --------
        >>> from datetime import datetime
        >>> import lamin_nb as ln
        >>> report = ln.ConsistencyReport("/data", False, datetime(2026, 1, 2))
        >>> report.to_dict()["checked_at"], report.to_dict()["is_consistent"]
        ('2026-01-02T00:00:00Z', True)
        """
        data = asdict(self)
        data["checked_at"] = self.checked_at.isoformat() + "Z"
        data["is_consistent"] = self.is_consistent
        return data

    def summary(self) -> str:
        """One line: the verdict and the count of each kind of finding.

        Returns
        -------
        str
            ``"storage and database are consistent: ..."`` or ``"... NOT consistent: ..."``.

        Examples
        --------
        >>> from datetime import datetime
        >>> import lamin_nb as ln
        >>> report = ln.ConsistencyReport("/data", False, datetime(2026, 1, 2), n_ok=3)
        >>> report.summary()  # doctest: +ELLIPSIS
        'storage and database are consistent: 3 ok, 0 missing, 0 orphans, ..., 0 deleting'
        """
        verdict = "consistent" if self.is_consistent else "NOT consistent"
        parts = [
            f"{self.n_ok} ok",
            f"{len(self.missing)} missing",
            f"{len(self.orphans)} orphans",
            f"{len(self.mismatched)} mismatched",
            f"{len(self.pending)} pending",
            f"{len(self.deleting)} deleting",
        ]
        if self.lost:
            parts.append(f"{len(self.lost)} lost")
        return f"storage and database are {verdict}: " + ", ".join(parts)

    def __repr__(self) -> str:
        lines = [self.summary()]
        for title, entries in (
            ("missing objects", self.missing),
            ("orphans", self.orphans),
            ("mismatched", self.mismatched),
            ("pending", self.pending),
            ("deleting", self.deleting),
        ):
            for entry in entries[:20]:
                lines.append(f"  {title}: {_describe(entry, title)}")
            if len(entries) > 20:
                lines.append(f"  {title}: ... and {len(entries) - 20} more")
        lines += [f"  warning: {text}" for text in self.warnings]
        return "\n".join(lines)


def _describe(entry: Any, title: str = "") -> str:
    if isinstance(entry, Orphan):
        return f"{entry.name} ({entry.size} bytes, {human_age(entry.age_seconds)} old)"
    if isinstance(entry, Mismatch):
        return f"{entry.name} {entry.kind}: expected {entry.expected}, found {entry.actual}"
    if isinstance(entry, InFlight):
        state = (
            "interrupted upload, resumable"
            if entry.resumable
            else "owner not alive"
            if entry.owner_alive is False
            else "expired"
            if entry.expired
            else "in flight"
        )
        if entry.transaction:
            state += (
                ", uncommitted transaction: repair rolls it back"
                if title == "pending"
                else ", committed transaction: repair finishes the delete"
            )
        return f"{entry.name} ({state}, {human_age(entry.age_seconds)}, owner {entry.owner})"
    return f"{entry.name} key={entry.key!r}"


def check(deep: bool = False, instance: Instance | None = None) -> ConsistencyReport:
    """Compare rows and objects; ``deep=True`` re-hashes every committed object.

    One listing first, then the rows streamed in batches. Rows always exist before their
    objects and outlive them, so a writer active during the check can only make a committed
    row look missing (uploaded after the listing) or an object look orphaned (deleted after
    the listing); both kinds are looked at once more before they are reported. Nothing is
    changed; ``ln.repair`` acts on what the check finds.

    Parameters
    ----------
    deep : bool
        Also re-hash every committed object (reads every byte; on S3 over the network).
    instance : Instance or None
        The instance to check; None: the current one.

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
        ``deep`` is not True or False.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.check()  # doctest: +SKIP
    storage and database are consistent: 12 ok, 0 missing, 0 orphans, 0 mismatched, ...
    >>> ln.check(deep=True).mismatched  # doctest: +SKIP
    []
    """
    if not isinstance(deep, bool):
        raise TypeError(f"deep must be True or False, not {type(deep).__name__}")
    inst = instance or current()
    with database_errors("ln.check()"):
        return _check(inst, deep)


def _check(inst: Instance, deep: bool) -> ConsistencyReport:
    now = utcnow()
    listing = {info.name: info for info in inst.storage.list_objects()}
    report = ConsistencyReport(inst.storage.root, deep, now, n_objects=len(listing))
    temps: dict[str, list[str]] = {}
    for name in listing:
        owner = owner_of_temp(name) if name.endswith(".tmp") else None
        if owner is not None:
            temps.setdefault(owner, []).append(name)
    stmt = select(
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
    missing: list[tuple[Any, str]] = []
    with inst.db.read() as session:
        # Core rows, streamed: the ORM layer would double the time for plain columns
        result = session.connection().execution_options(yield_per=BATCH).execute(stmt)
        for row in result:
            report.n_rows += 1
            name = row.uid + row.suffix
            info = listing.pop(name, None)
            if (
                row.status == COMMITTED
                and info is not None
                and not deep
                and (row.size is None or row.size == info.size)
            ):
                report.n_ok += 1  # the common case, kept cheap
                continue
            if row.status == PENDING:  # an upload in progress (or interrupted) owns its temps
                for temp in temps.pop(name, []):
                    listing.pop(temp, None)
            if info is None and row.status == COMMITTED:
                missing.append((row, name))
            else:
                _classify(inst, report, row, name, info, now)
    _recheck_missing(inst, report, missing, now)
    _recheck_orphans(inst, report, list(listing.values()), now)
    _add_warnings(inst, report)
    return report


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
    inst: Instance, report: ConsistencyReport, candidates: list[tuple[Any, str]], now: datetime
) -> None:
    found = _present(inst, [name for _, name in candidates])
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
    inst: Instance, report: ConsistencyReport, candidates: list[ObjectInfo], now: datetime
) -> None:
    still = _present(inst, [info.name for info in candidates])
    for info in candidates:
        if info.name in still:
            report.orphans.append(Orphan(info.name, info.size, (now - info.mtime).total_seconds()))


def _present(inst: Instance, names: list[str]) -> dict[str, ObjectInfo]:
    """Which of ``names`` exist now: one lookup each, or one more listing if there are many."""
    if not names:
        return {}
    if len(names) <= RECHECK_ONE_BY_ONE:
        infos = (inst.storage.info(name) for name in names)
        return {info.name: info for info in infos if info is not None}
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
        (report.pending if row.status == PENDING else report.deleting).append(entry)
    elif row.status == LOST:
        report.lost.append(RowIssue(row.uid, row.key, name, "marked lost by repair"))
    elif row.status == COMMITTED:
        _check_committed(inst, report, row, name, info)


def _check_committed(
    inst: Instance, report: ConsistencyReport, row: Any, name: str, info: ObjectInfo | None
) -> None:
    if info is None:
        report.missing.append(RowIssue(row.uid, row.key, name, "object not found"))
    elif row.size is not None and info.size != row.size:
        report.mismatched.append(Mismatch(row.uid, row.key, name, "size", row.size, info.size))
    elif report.deep and row.hash is not None and _rehash(inst, name) != row.hash:
        report.mismatched.append(Mismatch(row.uid, row.key, name, "hash", row.hash, "different"))
    else:
        report.n_ok += 1


def _rehash(inst: Instance, name: str) -> str:
    return inst.storage.hash_object(name)[0]
