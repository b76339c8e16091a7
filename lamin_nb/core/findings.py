"""What ``ln.check`` finds, as plain data: ``ConsistencyReport`` and its entries.

Widgets, the CLI and the REST API render these; ``consistency`` fills them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .units import human_age


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
    not_listed : dict of str to int
        Findings counted but not held, per kind (``"missing"``, ``"orphans"``, ...,
        ``"stuck"``): each list stops at ``LIMIT`` entries so that a badly broken instance
        of millions of objects still fits in memory. ``count(kind)`` gives the full count.
    since : datetime.datetime or None
        For an incremental check (``ln.check(since=...)``): the time it looked back to; None
        for a full check.
    not_looked_for : str or None
        What this check did not look for: an incremental check does not list the storage, so
        objects written outside lamin_nb since ``since`` (no row claims them) are found only
        by a full check. None for a full check.

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
    not_listed: dict[str, int] = field(default_factory=dict)
    since: datetime | None = None
    not_looked_for: str | None = None

    @property
    def is_consistent(self) -> bool:
        """True when I1 and I2 hold and nothing waits for repair.

        Live uploads and deletes are fine; rows whose writer is gone are not, lease or no
        lease.
        """
        stuck = any(r.stuck for r in self.pending + self.deleting) or self.not_listed.get(
            "stuck", 0
        )
        broken = self.count("missing") or self.count("orphans") or self.count("mismatched")
        return not (broken or stuck)

    @property
    def truncated(self) -> bool:
        """True when some findings are only counted (``not_listed``), not held in the lists."""
        return any(self.not_listed.values())

    def count(self, kind: str) -> int:
        """All findings of one kind, held or only counted.

        Parameters
        ----------
        kind : str
            ``"missing"``, ``"orphans"``, ``"mismatched"``, ``"pending"``, ``"deleting"`` or
            ``"lost"``.

        Returns
        -------
        int
            ``len`` of that list plus what was counted past ``LIMIT``.

        Examples
        --------
        >>> from datetime import datetime
        >>> import lamin_nb as ln
        >>> ln.ConsistencyReport("/data", False, datetime(2026, 1, 2)).count("orphans")
        0
        """
        return len(getattr(self, kind)) + self.not_listed.get(kind, 0)

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
        data["since"] = None if self.since is None else self.since.isoformat() + "Z"
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
        kinds = ("missing", "orphans", "mismatched", "pending", "deleting")
        parts = [f"{self.n_ok} ok"] + [f"{self.count(kind)} {kind}" for kind in kinds]
        if self.count("lost"):
            parts.append(f"{self.count('lost')} lost")
        scope = "" if self.since is None else f" (changes since {self.since:%Y-%m-%d %H:%M:%S})"
        return f"storage and database are {verdict}{scope}: " + ", ".join(parts)

    def __repr__(self) -> str:
        lines = [self.summary()]
        for title, entries in (
            ("missing objects", self.missing),
            ("orphans", self.orphans),
            ("mismatched", self.mismatched),
            ("pending", self.pending),
            ("deleting", self.deleting),
        ):
            more = max(len(entries) - 20, 0) + self.not_listed.get(title.split()[0], 0)
            for entry in entries[:20]:
                lines.append(f"  {title}: {_describe(entry, title)}")
            if more > 0:
                lines.append(f"  {title}: ... and {more} more")
        lines += [f"  warning: {text}" for text in self.warnings]
        if self.not_looked_for:
            lines.append(f"  note: {self.not_looked_for}")
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
