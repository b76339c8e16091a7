"""Resumable transfers (DESIGN §9): the journal a large upload keeps in its pending row, the
take-over of an interrupted upload by a later save of the same content, and the list of
uploads that can still be resumed (``ln.uploads``).

A large upload records itself in its pending row before its first part moves (the S3 upload
id or the local partial file, the part size, the source's path, size and mtime; the row
already holds the hash) and, batched, how many parts are done. When its writer is gone (a
killed kernel, Ctrl-C, a dropped connection), the row stays pending and the parts stay where
they are. A later save of the same content under the same key takes the row over (one
conditional UPDATE, so two processes never both resume it) and the storage sends only the
parts the server does not hold. Recovery and repair leave such rows alone until they are
older than the grace period; then the upload is aborted and its bytes are freed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from . import onepass, recovery, rows
from .errors import NotFoundError, StorageError
from .instance import Instance, current
from .models import PENDING, ArtifactRow, utcnow
from .owners import Liveness, describe_owner, liveness
from .resumable import grace_seconds, is_resumable, last_activity  # noqa: F401
from .storage import Journal, TransferState
from .units import human_size

if TYPE_CHECKING:
    from .report import SaveReport

logger = logging.getLogger("lamin_nb")
TABLE = rows.TABLE
RECORD_EVERY = 2.0  # seconds between two progress writes of one upload


def can_resume(row: Any, artifact: Any, stat: tuple[int, int] | None = None) -> bool:
    """Can a save of ``artifact`` continue the interrupted upload of ``row``? Same content
    (the same hash, or for a one-read upload without a hash yet, the same unchanged source
    file: ``stat`` is its size and mtime), same key and suffix, and nobody at work on it."""
    same = row.hash == artifact.digest or (
        row.hash is None
        and stat is not None
        and artifact.source is not None
        and onepass.same_source(row, artifact.source, stat)
    )
    return (
        row.status == PENDING
        and bool(getattr(row, "transfer_id", None))
        and same
        and row.key == artifact.key
        and row.suffix == artifact.suffix
        and not rows.in_flight(row)
    )


def take_over(session: Any, row: Any, owner: str, description: str | None) -> bool:
    """Make ``row`` this run's, if it is still as it was read (one conditional UPDATE: of two
    processes re-running the same save, one wins, the other sees it in flight and waits)."""
    owned = TABLE.c.owner.is_(None) if row.owner is None else TABLE.c.owner == row.owner
    values: dict[str, Any] = {
        "owner": owner,
        "lease_expires_at": rows.lease_until(),
        "updated_at": utcnow(),
    }
    if description is not None:
        values["description"] = description
    stmt = (
        update(TABLE)
        .where(TABLE.c.uid == row.uid, TABLE.c.status == PENDING, owned)
        .values(**values)
    )
    return bool(session.execute(stmt).rowcount)


def taken_by_others(session: Any, uids: list[str], owner: str) -> set[str]:
    """Of ``uids``, the pending rows another writer holds now (a save that resumed them, or
    recovery): their objects are not this run's to remove."""
    found: set[str] = set()
    for part in rows.chunks(uids):
        stmt = select(TABLE.c.uid).where(
            TABLE.c.uid.in_(part), TABLE.c.status == PENDING, TABLE.c.owner != owner
        )
        found.update(session.scalars(stmt))
    return found


# built once: every save runs it, and building it cost more than SQLite takes to answer
_JOURNALED_FROM = rows.Either(
    lambda match: select(TABLE).where(
        match(TABLE.c.source_path, "paths"),
        TABLE.c.status == PENDING,
        TABLE.c.transfer_id.is_not(None),
    )
)


def changed_sources(session: Any, paths: list[str]) -> dict[str, Any]:
    """Interrupted, journaled uploads of these source paths (by path), for telling a user
    whose file changed since why the save starts over."""
    found: dict[str, Any] = {}
    for part in rows.chunks(sorted(set(paths))):
        for row in _JOURNALED_FROM.execute(session, {"paths": part}):
            if not rows.in_flight(row):
                found.setdefault(row.source_path, row)
    return found


def why_changed(row: Any, source: Path) -> str:
    """'big.h5ad changed since its interrupted upload (size 1.0 GiB -> 1.1 GiB)'."""
    try:
        st = source.stat()
    except OSError:
        return f"{source.name} changed since its interrupted upload"
    what = []
    if row.source_size is not None and row.source_size != st.st_size:
        what.append(f"size {human_size(row.source_size)} -> {human_size(st.st_size)}")
    if row.source_mtime_ns is not None and row.source_mtime_ns != st.st_mtime_ns:
        what.append("modified since")
    if not what:
        what.append("different content")
    return f"{source.name} changed since its interrupted upload ({', '.join(what)})"


class RowJournal(Journal):
    """The pending row of one upload, as the storage's journal (``storage.Journal``)."""

    def __init__(
        self,
        inst: Instance,
        uid: str,
        owner: str,
        source: Path,
        resume_row: Any | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.inst, self.uid, self.owner, self.source = inst, uid, owner, source
        self.say = say or (lambda _detail: None)
        self.resume_from: TransferState | None = None
        if resume_row is not None and resume_row.transfer_id and resume_row.part_size:
            self.resume_from = TransferState(resume_row.transfer_id, int(resume_row.part_size))
        self.recorded = self.resume_from is not None  # parts may exist from here on
        self._last = 0.0
        self._lock = threading.Lock()

    def _update(self, durable: bool = True, **values: Any) -> None:
        stmt = (
            update(TABLE)
            .where(TABLE.c.uid == self.uid, TABLE.c.status == PENDING, TABLE.c.owner == self.owner)
            .values(updated_at=utcnow(), **values)
        )
        with self.inst.db.write_rows(durable=durable) as session:
            if not session.execute(stmt).rowcount:
                raise StorageError(
                    f"the reservation of {self.uid} was taken over (its lease ran out, and "
                    "ln.repair or another save took it); nothing of this upload is committed"
                )

    def started(self, transfer_id: str, part_size: int, parts_total: int) -> None:
        st = self.source.stat()
        self._update(
            transfer_id=transfer_id,
            part_size=part_size,
            parts_done=0,
            bytes_done=0,
            source_path=str(self.source),
            source_size=st.st_size,
            source_mtime_ns=st.st_mtime_ns,
            transfer_started_at=utcnow(),
        )
        self.recorded = True
        self._last = time.monotonic()

    def progressed(self, parts_done: int, bytes_done: int) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < RECORD_EVERY:
                return
            self._last = now
        # a summary (the server's part list is the truth): losing it in a power cut is
        # harmless, so no flush to disk on the upload's thread (SQLite) for it
        self._update(durable=False, parts_done=parts_done, bytes_done=bytes_done)

    def resuming(self, parts_done: int, parts_total: int, bytes_left: int) -> None:
        self.say(
            f"resuming: {parts_done} of {parts_total} parts already uploaded "
            f"({human_size(bytes_left)} left)"
        )

    def restarting(self, reason: str) -> None:
        self.resume_from = None
        self.recorded = False
        self.say(f"starting over: {reason}")


# -- ln.uploads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """One upload that can be resumed (``ln.uploads()``).

    Attributes
    ----------
    uid : str
        The artifact it will create.
    key : str or None
        Its key.
    size : int
        Bytes in total.
    bytes_done : int
        Bytes already in storage (as last recorded).
    parts_done : int
        Parts already in storage (as last recorded).
    parts_total : int
        Parts in total.
    started_at : datetime.datetime
        When the upload started (UTC).
    owner : str or None
        The writer that holds it.
    alive : bool or None
        True while its writer runs, False once it is known to be gone (the upload waits to
        be resumed), None when that cannot be told from here (another host).
    source : str or None
        The file it reads.
    resumable_for : float
        Seconds left before ``ln.repair()`` may abort it.
    stopped : bool
        No writer is at work on it (its writer is gone or its lease ran out): it can be
        resumed or discarded now. ``can_resume`` and ``can_discard`` say which.
    """

    uid: str
    key: str | None
    size: int
    bytes_done: int
    parts_done: int
    parts_total: int
    started_at: datetime
    owner: str | None
    alive: bool | None
    source: str | None
    resumable_for: float
    stopped: bool = False

    @property
    def can_discard(self) -> bool:
        """Discard applies: nobody is at work on it (``discard_upload`` refuses otherwise)."""
        return self.stopped

    @property
    def can_resume(self) -> bool:
        """Resume applies: nobody is at work on it and its source file is recorded."""
        return self.stopped and bool(self.source)

    def to_dict(self) -> dict[str, Any]:
        """The upload as JSON-ready values (``started_at`` in ISO 8601 with ``Z``), with
        ``can_resume`` and ``can_discard``."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat() + "Z"
        data["can_resume"], data["can_discard"] = self.can_resume, self.can_discard
        return data

    def __str__(self) -> str:
        state = {True: "in progress", False: "interrupted", None: "unknown writer"}[self.alive]
        return (
            f"{self.key or self.uid}: {human_size(self.bytes_done)} of {human_size(self.size)} "
            f"({self.parts_done} of {self.parts_total} parts), {state}"
        )


def uploads(instance: Instance | None = None) -> list[Upload]:
    """The large uploads started and not finished: in progress, or interrupted.

    An interrupted upload waits to be resumed: saving the same content again (the same cell,
    a new ``Artifact`` of the same file, ``ln.save`` of the same batch, ``lamin-nb save``)
    resumes it, and only the missing parts are sent. ``ln.repair(dry_run=False)`` aborts
    those older than its grace period; ``discard_upload`` aborts one now.

    Parameters
    ----------
    instance : Instance or None
        The instance to look at; None: the current one.

    Returns
    -------
    list of Upload
        Oldest first; each with ``key``, ``size``, ``bytes_done``, ``parts_done``,
        ``parts_total``, ``started_at``, ``owner`` and ``alive``.

    Raises
    ------
    InstanceError
        There is no current instance.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.uploads()  # doctest: +SKIP
    [Upload(uid='...', key='big.h5ad', size=1073741824, bytes_done=751828992, ...)]
    >>> [str(u) for u in ln.uploads()]  # doctest: +SKIP
    ['big.h5ad: 717.0 MiB of 1.0 GiB (90 of 128 parts), interrupted']
    """
    inst = instance or current()
    stmt = (
        select(TABLE)
        .where(TABLE.c.status == PENDING, TABLE.c.transfer_id.is_not(None))
        .order_by(TABLE.c.transfer_started_at)
    )
    with inst.db.read_rows() as session:
        found = list(session.execute(stmt))
    now, grace = utcnow(), grace_seconds()
    listed = []
    for row in found:
        alive = liveness(row.owner)
        running = alive is Liveness.ALIVE and rows.in_flight(row)
        size = int(row.size or row.source_size or 0)
        part = int(row.part_size or 1)
        left = grace - (now - last_activity(row)).total_seconds()
        listed.append(
            Upload(
                uid=row.uid,
                key=row.key,
                size=size,
                bytes_done=int(row.bytes_done or 0),
                parts_done=int(row.parts_done or 0),
                parts_total=max(1, -(-size // part)),
                started_at=row.transfer_started_at or row.created_at,
                owner=row.owner,
                alive=True if running else (None if alive is Liveness.UNKNOWN else False),
                source=row.source_path,
                resumable_for=max(0.0, left),
                stopped=not rows.in_flight(row),
            )
        )
    return listed


class TransferConflict(StorageError):
    """The upload is not in a state for what was asked: its writer is at work on it, or
    the file a Resume would read is gone (a REST answer of 409)."""


def find_upload(uid: str, instance: Instance | None = None) -> Upload:
    """The entry of ``ln.uploads()`` with this ``uid``.

    Raises
    ------
    NotFoundError
        No unfinished upload has this uid (finished, discarded, or never started).
    """
    found = [u for u in uploads(instance) if u.uid == uid]
    if not found:
        raise NotFoundError(
            f"no unfinished upload {uid[:40]!r}: it was finished or discarded meanwhile; "
            "ln.uploads() lists those left"
        )
    return found[0]


def resume_source(uid: str, instance: Instance | None = None) -> tuple[Path, str | None]:
    """What a Resume saves again: the upload's recorded source file and its key.

    Saving that file under that key takes the interrupted upload over, and only the parts
    the server does not hold are sent (a changed file starts over and says why).

    Raises
    ------
    NotFoundError
        No unfinished upload has this uid.
    TransferConflict
        Its writer is at work on it, or its source file is not recorded or is gone.
    """
    upload = find_upload(uid, instance)
    name = upload.key or uid
    if not upload.stopped:
        busy = _busy(upload.owner, upload.alive)
        raise TransferConflict(f"the upload of {name} cannot be resumed now: {busy}")
    if not upload.source:
        raise TransferConflict(
            f"the upload of {name} has no source file recorded, so it cannot be resumed; "
            "discard it, or save the file again"
        )
    source = Path(upload.source)
    if not source.is_file():
        raise TransferConflict(
            f"the source of the upload of {name}, {source}, is gone; discard the upload, or "
            "save the file again from where it is now"
        )
    return source, upload.key


def _busy(owner: str | None, alive: bool | None) -> str:
    """Why an upload cannot be touched now: who is at work on it, and what to do."""
    who = describe_owner(owner)
    if alive:
        return f"its writer ({who}) is still sending it; wait for it, or stop it first"
    return (
        f"its writer ({who}) holds its lease (it may run on another host); wait for it, or "
        "for the lease to run out"
    )


def discard_upload(uid: str, instance: Instance | None = None) -> int:
    """Abort an interrupted upload now: its parts (or partial file) and its pending row go.

    Parameters
    ----------
    uid : str
        The ``uid`` of an entry of ``ln.uploads()``.
    instance : Instance or None
        The instance; None: the current one.

    Returns
    -------
    int
        The bytes freed in storage.

    Raises
    ------
    NotFoundError
        No unfinished upload has this uid.
    TransferConflict
        The upload is in progress (its writer is at work on it), or was resumed or discarded
        by another writer meanwhile.
    """
    inst = instance or current()
    with inst.db.read() as session:
        row = session.scalars(
            select(ArtifactRow).where(ArtifactRow.uid == uid, ArtifactRow.status == PENDING)
        ).first()
    if row is None or not row.transfer_id:
        raise NotFoundError(
            f"no unfinished upload {uid[:40]!r}: it was finished or discarded meanwhile; "
            "ln.uploads() lists those left"
        )
    name = row.key or uid
    if rows.in_flight(row):
        busy = _busy(row.owner, liveness(row.owner) is Liveness.ALIVE)
        raise TransferConflict(f"the upload of {name} cannot be discarded now: {busy}")
    freed: list[int] = []
    if not recovery.finish(inst, row, all_leases=True, freed=freed):
        raise TransferConflict(f"the upload of {name} was resumed or discarded meanwhile")
    return sum(freed)


def discard_cancelled(report: SaveReport, instance: Instance | None = None) -> tuple[int, int]:
    """After a save was cancelled on purpose: discard the large uploads it cut short.

    A KeyboardInterrupt keeps the parts of a large upload so that saving the same content
    again resumes it (DESIGN §9); a Cancel means "nothing of this save", so its kept uploads
    are aborted now, their parts (or partial files) freed and their pending rows removed.

    Parameters
    ----------
    report : SaveReport
        The report of the cancelled save (``report.cancelled``); others discard nothing.
    instance : Instance or None
        The instance saved to; None: the current one.

    Returns
    -------
    tuple of int
        ``(uploads discarded, bytes freed)``.
    """
    if not report.cancelled:
        return 0, 0
    inst = instance or current()
    uids = [a.uid for a, _ in report.failed] + [a.uid for a in report.rolled_back]
    if not uids:
        return 0, 0
    with inst.db.read() as session:
        kept = session.scalars(
            select(ArtifactRow).where(
                ArtifactRow.uid.in_(uids),
                ArtifactRow.status == PENDING,
                ArtifactRow.transfer_id.is_not(None),
            )
        ).all()
    freed: list[int] = []
    done = sum(
        1
        for row in kept
        if not rows.in_flight(row) and recovery.finish(inst, row, all_leases=True, freed=freed)
    )
    return done, sum(freed)
