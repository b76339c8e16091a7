"""``ln.transaction()``: every save, trash, restore and permanent delete of a block becomes
visible in one database commit at its end, or not at all (DESIGN §10).

Read ``TransactionBlock`` top to bottom; its steps:

1. open: an owner name held while the block runs (if the process dies, its rows are known to
   be abandoned at once), a lease keeper for the rows it reserves, its display;
2. inside: saves reserve and upload as usual and stop before their commit (``save.py``): their
   rows stay ``pending``, invisible to others; trash, restore and permanent deletes are only
   recorded (``delete.py``); reads of this thread see all of it (``query.py``);
3. commit, one database transaction: conflicts first (another writer committed a higher
   version of a key the block adds to, or changed an artifact the block trashes, restores or
   deletes), then the block's rows flip to committed, trash and restores apply, permanent
   deletes are marked ``deleting``, latest flags and version marks follow, and the block's
   marker row is written;
4. after the commit: the objects of the permanent deletes go, then their rows (interrupted,
   recovery rolls them forward: ``deleting`` rows whose owner is gone);
5. an exception or KeyboardInterrupt inside, a conflict or a failed commit: undo (the block's
   uploads and pending rows are removed; nothing else was written), then raise. A second
   Ctrl-C waits for the undo.

A COMMIT whose reply was lost is resolved by reading the marker row back under the write lock
(the cut transaction has ended by then), never by deleting what may be committed. If even
that read fails, nothing is touched: ``ln.repair`` finishes from what the database holds.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any

from sqlalchemy import case, func, insert, select, update

from . import rows, txstate
from .callbacks import NO_PROGRESS, Guarded, ItemState, SaveCallback, TransactionOutcome
from .errors import TransactionConflict, TransactionError, describe
from .faults import fault
from .instance import current
from .models import COMMITTED, DELETING, PENDING, TransactionRow, utcnow
from .owners import running
from .record import ArtifactRecord, cache_path, keep_staged_copy
from .report import SaveReport
from .saveinput import default_workers
from .validate import check_callback
from .workers import LeaseKeeper, deferred_interrupts, run_parallel

__all__ = ["TransactionBlock", "transaction"]
logger = logging.getLogger("lamin_nb")
TABLE = rows.TABLE
READ_BACK_TRIES = 3
NEXT = "nothing of the block was saved; run it again"


def transaction(*, callback: SaveCallback | None = None) -> TransactionBlock:
    """One database commit for every save, trash, restore and permanent delete in the block.

    Use it as ``with ln.transaction():``. Uploads happen inside the block (pending rows with
    leases, as for any save); leaving it normally commits every row change at once, then
    deletes the objects of permanent deletes (rolled forward by ``ln.repair()`` or the next
    connect if interrupted). Other processes see nothing of the block until that commit.
    Reads in the block (``Artifact.get``, ``filter``, ``load``) see its own changes. A block
    inside a block joins the outer one. An exception or KeyboardInterrupt inside undoes
    everything (uploads removed, pending rows gone, trashed or deleted artifacts intact) and
    propagates; a second Ctrl-C waits for the undo.

    Parameters
    ----------
    callback : SaveCallback or None
        Shows every item of the block (the saves inside report to it as well as to their own
        callback), then ``transaction_end`` with "committed" or "rolled back: <reason>".
        Ignored by a nested block (the outer block's display shows its items).

    Returns
    -------
    TransactionBlock
        The context manager; after the block, ``.outcome`` says how it ended.

    Raises
    ------
    TransactionConflict
        At the end: another writer committed a higher version of a key the block adds a
        version to, or deleted or changed an artifact the block trashes, restores or deletes;
        the block was rolled back.
    TransactionError
        At the end: the commit failed (rolled back), a nested block raised and the outer one
        went on (rolled back), or the connection was lost during COMMIT and the outcome could
        not be read back (``.committed`` is None; the message says what to run).
    InstanceError
        There is no current instance.
    TypeError
        ``callback`` lacks the progress protocol's methods.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> with ln.transaction():  # doctest: +SKIP
    ...     ln.Artifact("model.pt", key="runs/7/model.pt").save()
    ...     ln.save([ln.Artifact(p, key=f"runs/7/{p}") for p in figures])
    ...     ln.Artifact.get("runs/6/model.pt").delete(permanent=True)
    >>> with ln.transaction(callback=ln.TextProgress()) as block:  # doctest: +SKIP
    ...     ln.Artifact("metrics.csv", key="runs/7/metrics.csv").save()
    >>> block.outcome.line  # doctest: +SKIP
    'committed: 1 saved'
    """
    return TransactionBlock(check_callback(callback))


class TransactionBlock:
    """The context manager ``ln.transaction()`` returns; ``outcome`` is set when it ends."""

    def __init__(self, callback: SaveCallback | None) -> None:
        self.callback = callback
        self.outcome: TransactionOutcome | None = None
        self.tx: txstate.Transaction | None = None
        self.joined = False
        self._running: Any = None

    def __repr__(self) -> str:
        state = self.outcome.line if self.outcome is not None else "open" if self.tx else "new"
        return f"<transaction {state}>"

    # -- step 1: open, or join the block already open in this thread --------------------

    def __enter__(self) -> TransactionBlock:
        outer = txstate.current()
        if outer is not None:
            outer.depth += 1
            self.tx, self.joined = outer, True
            return self
        inst = current()
        tx = txstate.Transaction(inst, progress=Guarded(self.callback or NO_PROGRESS))
        tx.progress.start([])
        self._running = running(tx.identity)
        self._running.__enter__()  # its rows are abandoned at once if this process dies
        tx.keeper = LeaseKeeper(inst, tx.owner, [])
        tx.keeper.__enter__()
        self.tx = tx
        txstate.set_current(tx)
        return self

    # -- steps 3 to 5: commit, or undo -----------------------------------------------------

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tx = self.tx
        assert tx is not None
        if self.joined:
            tx.depth -= 1
            if exc is not None and tx.doomed is None:
                tx.doomed = exc  # the outer block rolls back, even if it catches this
            return
        txstate.set_current(None)
        try:
            with deferred_interrupts() as held:
                self._end(tx, exc)
        finally:
            tx.keeper.__exit__(None, None, None)
            self._running.__exit__(None, None, None)
        if held and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt

    def _end(self, tx: txstate.Transaction, exc: BaseException | None) -> None:
        if exc is not None:
            self.outcome = _roll_back(tx, _why(exc), exc)
            return  # the exception propagates
        if tx.doomed is not None:
            reason = f"a nested block raised {_why(tx.doomed)}"
            self.outcome = _roll_back(tx, reason, tx.doomed)
            raise TransactionError(f"rolled back: {reason}; {NEXT}") from tx.doomed
        self.outcome = _commit(tx)


def _why(exc: BaseException) -> str:
    return describe(exc) if isinstance(exc, Exception) else type(exc).__name__


# -- step 3: one database commit ----------------------------------------------------------


class _CommitUnknown(Exception):
    """The connection failed while COMMIT was under way: its outcome is not known here."""


def _commit(tx: txstate.Transaction) -> TransactionOutcome:
    fault("tx_end")
    try:
        _write_commit(tx)
    except TransactionConflict as exc:
        _roll_back(tx, describe(exc), exc)
        raise
    except _CommitUnknown as lost:
        cause = lost.__cause__ or lost
        committed = _read_back(tx)
        if committed is None:
            return _unknown(tx, cause)
        if not committed:
            reason = f"the connection was lost during COMMIT ({describe(cause)}); read back: "
            reason += "not committed"
            _roll_back(tx, reason, cause)
            raise TransactionError(f"rolled back: {reason}; {NEXT}") from cause
        logger.info("the connection was lost during COMMIT; read back: committed")
    except Exception as exc:
        reason = f"could not commit: {describe(exc)}"
        _roll_back(tx, reason, exc)
        raise TransactionError(f"rolled back: {reason}; {NEXT}") from exc
    fault("tx_after_commit")
    return _after_commit(tx)


def _write_commit(tx: txstate.Transaction) -> None:
    """Conflicts, then every row change of the block and its marker, in one transaction."""
    reached = False
    try:
        with tx.inst.db.write_rows() as conn:
            _check_versions(conn, tx)
            flipped = rows.commit_pending(conn, list(tx.saved), tx.owner)
            if len(flipped) != len(tx.saved):
                gone = sorted(set(tx.saved) - set(flipped))
                raise TransactionConflict(
                    f"{len(gone)} reservation(s) of the block were rolled back by another "
                    f"process (ln.repair, or recovery after the lease), e.g. {gone[0]}; {NEXT}"
                )
            _set_trashed(conn, list(tx.trashed), True)
            _set_trashed(conn, list(tx.restored), False)
            _mark_deleting(conn, tx)
            keys = {r.key for r in tx.records() if r.key is not None}
            rows.refresh_latest(conn, keys)
            rows.raise_marks(conn, keys)
            conn.execute(
                insert(TransactionRow.__table__).values(  # type: ignore[arg-type]
                    id=tx.id,
                    owner=tx.owner,
                    committed_at=utcnow(),
                    n_saved=len(tx.saved),
                    n_deleted=len(tx.deleted),
                )
            )
            fault("tx_before_commit")
            reached = True  # from here the COMMIT runs: a failure leaves its outcome open
    except Exception as exc:
        if reached and not isinstance(exc, TransactionConflict):
            raise _CommitUnknown(describe(exc)) from exc
        raise


def _check_versions(conn: Any, tx: txstate.Transaction) -> None:
    """Never two versions with one number, never a lost save: a version reserved by the block
    is lower than one another writer committed since, so the block cannot commit it."""
    mine: dict[str, int] = {}
    for record in tx.saved.values():
        if record.key is not None and record.version is not None:
            mine[record.key] = min(record.version, mine.get(record.key, record.version))
    for part in rows.chunks(sorted(mine)):
        stmt = (
            select(TABLE.c.key, func.max(TABLE.c.version))
            .where(TABLE.c.key.in_(list(part)), TABLE.c.status == COMMITTED)
            .group_by(TABLE.c.key)
        )
        for key, highest in conn.execute(stmt):
            if highest is not None and highest > mine[key]:
                raise TransactionConflict(
                    f"another writer committed version {highest} of key {key!r} after this "
                    f"transaction reserved version {mine[key]}; {NEXT} (it then saves "
                    f"version {highest + 1})"
                )


def _set_trashed(conn: Any, uids: list[str], trashed: bool) -> None:
    """Trash or restore committed rows; an artifact without a key is its own latest version
    exactly while it is out of the trash."""
    done = 0
    for part in rows.chunks(uids):
        result = conn.execute(
            update(TABLE)
            .where(TABLE.c.uid.in_(list(part)), TABLE.c.status == COMMITTED)
            .values(
                is_trashed=trashed,
                updated_at=utcnow(),
                is_latest=case((TABLE.c.key.is_(None), not trashed), else_=TABLE.c.is_latest),
            )
        )
        done += result.rowcount
    if done != len(uids):
        what = "trashes" if trashed else "restores"
        raise TransactionConflict(
            f"an artifact the block {what} was deleted by another writer meanwhile; {NEXT}"
        )


def _mark_deleting(conn: Any, tx: txstate.Transaction) -> None:
    """Permanent deletes: hidden in this commit, their objects go after it."""
    uids, done = list(tx.deleted), 0
    for part in rows.chunks(uids):
        result = conn.execute(
            update(TABLE)
            .where(TABLE.c.uid.in_(list(part)), TABLE.c.status == COMMITTED)
            .values(
                status=DELETING,
                owner=tx.owner,
                lease_expires_at=rows.lease_until(),
                updated_at=utcnow(),
                is_latest=False,
            )
        )
        done += result.rowcount
    if done != len(uids):
        raise TransactionConflict(
            f"an artifact the block deletes was deleted or changed by another writer "
            f"meanwhile; {NEXT}"
        )


def _read_back(tx: txstate.Transaction) -> bool | None:
    """Did the block commit? Its marker row answers, read under the write lock, so the cut
    transaction has ended (committed or not) before we look. None: the database could not be
    reached."""
    for attempt in range(READ_BACK_TRIES):
        try:
            with tx.inst.db.write_rows() as conn:
                stmt = select(TransactionRow.id).where(TransactionRow.id == tx.id)
                return conn.execute(stmt).first() is not None
        except Exception as exc:  # noqa: BLE001 - retried, then reported as unknown
            logger.warning("reading the transaction's outcome back failed: %s", describe(exc))
            time.sleep(0.5 * (attempt + 1))
    return None


def _unknown(tx: txstate.Transaction, cause: BaseException) -> TransactionOutcome:
    reason = (
        f"the connection was lost during COMMIT ({describe(cause)}) and the database cannot "
        "be read back"
    )
    outcome = TransactionOutcome(None, reason)
    tx.progress.transaction_end(outcome)
    tx.progress.finish(SaveReport(error=cause))
    raise TransactionError(
        f"outcome unknown: {reason}; either every change of the block is committed or none "
        "is, and nothing was deleted. Once the database is reachable, run ln.check() (a "
        "committed block's artifacts are there; an uncommitted one left pending rows), then "
        "ln.repair(dry_run=False): it rolls an uncommitted block back and finishes a "
        "committed block's deletes",
        committed=None,
    ) from cause


# -- step 4: after the commit ---------------------------------------------------------------


def _after_commit(tx: txstate.Transaction) -> TransactionOutcome:
    left = _finish_deletes(tx)
    _adopt_rows(tx)
    outcome = TransactionOutcome(
        True,
        "",
        saved=len(tx.saved),
        deleted=len(tx.deleted),
        trashed=len(tx.trashed),
        restored=len(tx.restored),
    )
    if left:
        logger.warning(
            "transaction committed; %d deleted artifact(s) keep their object for now: they "
            "stay hidden, marked deleting, until ln.repair() (or the next connect) finishes",
            left,
        )
    _close_items(tx, ItemState.SAVED)
    tx.progress.transaction_end(outcome)
    tx.progress.finish(SaveReport(saved=list(tx.saved.values())))
    return outcome


def _finish_deletes(tx: txstate.Transaction) -> int:
    """Objects first, then their ``deleting`` rows; returns how many are left for repair."""
    inst = tx.inst
    gone: list[str] = []

    def remove(record: ArtifactRecord) -> None:
        try:
            inst.storage.delete(record.object_name)
            gone.append(record.uid)  # list.append is atomic
        except Exception as exc:  # noqa: BLE001 - the deleting row stays for repair
            logger.warning("could not delete %s: %s", record.object_name, describe(exc))
        cache_path(inst, record).unlink(missing_ok=True)

    records = list(tx.deleted.values())
    run_parallel(records, remove, default_workers(inst), threading.Event())
    try:
        with inst.db.write_rows() as conn:
            for part in rows.chunks(gone):
                conn.execute(
                    TABLE.delete().where(
                        TABLE.c.uid.in_(list(part)),
                        TABLE.c.status == DELETING,
                        TABLE.c.owner == tx.owner,
                    )
                )
    except Exception as exc:  # noqa: BLE001 - rolled forward by repair: objects are gone
        logger.warning("left %d deleting row(s) for ln.repair(): %s", len(gone), describe(exc))
        return len(records)
    return len(records) - len(gone)


def _adopt_rows(tx: txstate.Transaction) -> None:
    """The records the block touched take their committed state (latest flags included)."""
    wanted = [r for r in tx.records() if r.status is not None]
    try:
        with tx.inst.db.read_rows() as conn:
            stored = rows.by_uids(conn, [r.uid for r in wanted])
    except Exception as exc:  # noqa: BLE001 - committed; only the copies in memory are stale
        logger.warning("committed; could not refresh the artifacts in memory: %s", describe(exc))
        return
    for record in wanted:
        row = stored.get(record.uid)
        if row is not None and row.status == COMMITTED:
            record.adopt_row(row)
            record.instance = tx.inst
            keep_staged_copy(tx.inst, record)


# -- step 5: undo ----------------------------------------------------------------------------


def _roll_back(
    tx: txstate.Transaction, reason: str, cause: BaseException | None
) -> TransactionOutcome:
    """Remove the block's uploads and pending rows; what fails is left for ``ln.repair``
    (the rows stay pending under an owner that is gone once the block ends)."""
    logger.warning("transaction rolled back: %s", reason)
    _remove_block_rows(tx)
    tx.restore_records()
    outcome = TransactionOutcome(False, reason)
    _close_items(tx, ItemState.ROLLED_BACK)
    tx.progress.transaction_end(outcome)
    tx.progress.finish(SaveReport(rolled_back=list(tx.saved.values()), error=cause))
    return outcome


def _remove_block_rows(tx: txstate.Transaction) -> None:
    inst = tx.inst
    stmt = select(TABLE.c.uid, TABLE.c.suffix, TABLE.c.transfer_id).where(
        TABLE.c.owner == tx.owner, TABLE.c.status == PENDING
    )
    try:
        with inst.db.read_rows() as conn:
            found = list(conn.execute(stmt))
    except Exception as exc:  # noqa: BLE001 - the pending rows stay for recovery
        logger.warning("left the block's pending rows for ln.repair(): %s", describe(exc))
        return
    removed: list[str] = []

    def remove(row: Any) -> None:
        name = f"{row.uid}{row.suffix}"
        try:
            if row.transfer_id:
                inst.storage.abort_upload(name, row.transfer_id)
            inst.storage.delete(name)
            inst.storage.delete_temps(name)
            removed.append(row.uid)
        except Exception as exc:  # noqa: BLE001 - its pending row stays for recovery
            logger.warning("could not remove %s: %s", name, describe(exc))

    run_parallel(found, remove, default_workers(inst), threading.Event())
    try:
        with inst.db.write_rows() as conn:
            mine = rows.claim_pending(conn, removed, tx.owner)
            rows.delete_rows(conn, mine, PENDING)
    except Exception as exc:  # noqa: BLE001 - the pending rows stay for recovery
        logger.warning("left %d pending row(s) for ln.repair(): %s", len(removed), describe(exc))


def _close_items(tx: txstate.Transaction, final: ItemState) -> None:
    """Every item still open in the display ends with the block."""
    kinds = {index: name.split(":", 1)[0] for name, index in tx.intents.items()}
    done = {"delete": "deleted", "trash": "trashed", "restore": "restored"}
    for index in sorted(tx.open_items):
        kind = kinds.get(index)
        if final is ItemState.SAVED:
            detail = done.get(kind or "", "")
        else:
            detail = "with the transaction"
        tx.progress.state(index, final, detail)
    tx.open_items.clear()
