"""The save protocol (DESIGN §4), single and bulk: ``ln.save`` and ``artifact.save()``.

Read ``SaveRun`` top to bottom; its steps are DESIGN §4's:

1. validate everything first (``saveinput.check_records``, before the run exists);
2. hash every item, then dedup against committed and pending rows (one query); a large file
   of a size no row has is hashed while it is written instead (one read, ``onepass.py``) and
   deduplicated at the commit;
3. reserve: insert ``pending`` rows with owner and lease, one transaction (``reserve.py``);
4. upload each object to its final name, bounded concurrency, progress per item, durable
   before commit (``Storage.put_file`` and one ``Storage.sync`` for the batch);
5. commit: flip the rows to ``committed`` (older versions to ``is_latest=False``), one
   transaction;
6. on failure: delete what was uploaded and the pending rows, report ``SaveError`` from the
   cause; what cannot be cleaned up stays pending for recovery (step 7, ``recovery.py``).

Undo deletes an object only after checking that its row is still pending, and a row that a
commit did flip is kept and reported as saved, so an ambiguous commit or an interrupt never
loses committed data. The items and the messages about them are in ``saving.py``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Row

from . import onepass, recovery, rows, transfers
from .callbacks import NO_PROGRESS, Guarded, ItemInfo, ItemState, SaveCallback
from .errors import (
    IntegrityError,
    LaminNbError,
    NotFoundError,
    SaveError,
    StorageError,
    ValidationError,
    describe,
)
from .faults import fault
from .hashing import HASH_TYPE
from .instance import Instance
from .models import COMMITTED, PENDING
from .owners import describe_owner, new_owner, running
from .record import ArtifactRecord, keep_staged_copy, row_values
from .record import item_label as label
from .report import KeyConflict, SaveReport, key_not_saved
from .reserve import pending_rows
from .saveinput import check_records, default_workers, target_instance
from .saving import (
    REPAIR_HINT,
    RESERVATION_GONE,
    Abandoned,
    Cancelled,
    Item,
    db_error,
    db_kind,
    deleted_elsewhere,
    fill_report,
    user_name,
    waiting_for,
    warn_key_conflicts,
    writer,
)
from .txstate import joined
from .validate import check_callback, check_flag, check_workers
from .workers import LeaseKeeper, deferred_interrupts, run_parallel, wait_for_writers

__all__ = ["KeyConflict", "SaveReport", "retry_failed", "save", "save_one"]
logger = logging.getLogger("lamin_nb")
S = ItemState
WAIT_FOR_OTHERS_SECONDS = 600.0  # same content in flight elsewhere: wait at most this long
R = TypeVar("R", bound=ArtifactRecord)
WAITS_FOR_BLOCK = "visible when the transaction commits"
# a non-atomic bulk save runs the protocol in chunks of this many items, each committed and
# its per-item state dropped before the next: memory stays flat however many files are saved
CHUNK_ITEMS = 10_000
# the report of this process's last save that raised SaveError: what ``retry_failed()`` saves
# when given no report (the one line a text output can name, see ``SaveReport.retry_hint``)
_last_failed: list[SaveReport] = []


def save(
    records: Any,
    atomic: bool = False,
    *,
    callback: SaveCallback | None = None,
    max_workers: int | None = None,
) -> SaveReport:
    """Save many artifacts. Each is atomic on its own; ``atomic=True`` makes the batch so.

    Items that succeed stay saved; if any fails, the others are still tried, then
    ``SaveError`` (a RuntimeError) is raised with the ``SaveReport`` as ``.report``. Running the
    same call again saves only what failed. Every artifact is validated before anything is
    written. Content already stored is deduplicated (nothing uploaded), artifacts saved before
    are reported as such and left untouched, and an artifact listed twice is saved once. A
    KeyboardInterrupt undoes what is in flight, then propagates.

    Many artifacts are saved in chunks of 10,000, each committed before the next starts, so
    memory stays flat however many files are saved (one progress display covers them all);
    a failure in a later chunk leaves the earlier ones saved. ``atomic=True`` keeps one
    commit for the whole batch, and so does a save inside ``ln.transaction()``: their memory
    grows with the batch (~1.4 KB per item).

    Parameters
    ----------
    records : Artifact or iterable of Artifact
        The artifacts to save.
    atomic : bool
        False (default): every item is atomic on its own. True: all or nothing; any failure
        rolls back every item of the batch.
    callback : SaveCallback or None
        Receives progress events (for example ``ln.TextProgress()``); a broken callback
        never fails the save.
    max_workers : int or None
        Bounds parallel hashing and uploads, 1 to 256 (default: ``LAMIN_NB_MAX_WORKERS``,
        else 8 for a local folder and 16 for S3).

    Returns
    -------
    SaveReport
        What was saved, deduplicated and already saved (nothing failed).

    Raises
    ------
    SaveError
        At least one item failed (each was undone). ``.report`` tells what was saved and what
        failed; with ``atomic=True`` nothing of the batch was saved.
    ValidationError
        An unsaved artifact's file, key or description cannot be used, or ``max_workers``
        (or ``LAMIN_NB_MAX_WORKERS``) is out of range; nothing was written.
    InstanceError
        There is no current instance (run ``ln.init``).
    TypeError
        ``records`` is not an iterable of artifacts (the message names the index and the
        type), or another argument has the wrong type; nothing was written.

    Warns
    -----
    KeyNotSavedWarning
        Some requested keys were not saved because their content is already stored under
        another key (listed in ``SaveReport.key_conflicts``).

    Examples
    --------
    >>> import lamin_nb as ln
    >>> artifacts = [ln.Artifact(p, key=f"runs/{p}") for p in ("a.csv", "b.csv")]  # doctest: +SKIP
    >>> ln.save(artifacts, callback=ln.TextProgress())  # doctest: +SKIP
    SaveReport(saved 2)
    >>> try:  # doctest: +SKIP
    ...     ln.save(artifacts, atomic=True)
    ... except ln.SaveError as exc:
    ...     print(exc.report.summary())
    """
    progress = Guarded(check_callback(callback) or NO_PROGRESS)
    report = SaveReport(atomic=atomic)
    try:
        check_flag("atomic", atomic)
        max_workers = check_workers(max_workers)
        artifacts = check_records(records)
        inst = target_instance(artifacts)
        tx = joined(inst)
        if tx is not None:  # its items join the block's display; it ends with the block
            progress = Guarded(tx.relay(callback))
        workers = max_workers or default_workers(inst)
        chunk = len(artifacts) if atomic or tx is not None else CHUNK_ITEMS
        run = SaveRun(inst, artifacts[:chunk], atomic, progress, workers, announce=False)
    except BaseException as exc:
        report.error = exc
        progress.finish(report)  # a display shown for this save ends too: "nothing saved"
        raise
    try:
        _announce(progress, artifacts)
        _run_chunks(run, artifacts, chunk, report)
    finally:
        progress.finish(report)
    for artifact in report.saved + report.deduplicated:
        artifact.instance = inst
    if report.key_conflicts:
        warn_key_conflicts(report.key_conflicts)
    if report.failed:
        _last_failed[:] = [report]
        raise SaveError(report.message(), report) from report.failed[0][1]
    return report


def _announce(progress: Guarded, artifacts: list[ArtifactRecord]) -> None:
    """``start`` once for the whole save: one progress display over every chunk."""
    if progress.callback is not NO_PROGRESS:  # 100,000 labels for no one to read: skip
        progress.start([ItemInfo(i, label(a), a.size) for i, a in enumerate(artifacts)])


def _run_chunks(
    run: SaveRun, artifacts: list[ArtifactRecord], chunk: int, report: SaveReport
) -> None:
    """Run ``run`` (the first chunk), then a run per further chunk of ``chunk`` items.

    Each chunk is reserved, uploaded and committed on its own, and its per-item state is
    dropped once the report holds its outcome: a bulk save of 100,000 files holds the
    protocol's state of ``CHUNK_ITEMS`` at a time. A chunk that fails does not stop the next
    (items are independent); an interrupt does, and the chunks not started end as not saved.
    """
    done = 0
    try:
        while True:
            try:
                run.execute()
            finally:
                fill_report(report, run.items)
                done += len(run.items)
                run.items = []  # the report holds what is left of them (save() holds the run)
            if done >= len(artifacts):
                return
            part = artifacts[done : done + chunk]
            run = SaveRun(run.inst, part, run.atomic, run.progress, run.workers, done, False)
    except BaseException as exc:
        _not_started(run.progress, artifacts, done, exc, report)
        raise


def _not_started(
    progress: Guarded,
    artifacts: list[ArtifactRecord],
    start: int,
    stop: BaseException,
    report: SaveReport,
) -> None:
    """The items of chunks an interrupt kept from starting: failed, nothing of them written."""
    reason = f"save interrupted ({type(stop).__name__}) before this item's chunk started"
    for index in range(start, len(artifacts)):
        error = StorageError(reason + "; nothing of it was saved; save it again")
        error.__cause__ = stop
        report.failed.append((artifacts[index], error))
        progress.state(index, S.QUEUED)  # every item's first state (the protocol's)
        progress.state(index, S.FAILED, reason)


def retry_failed(
    report: SaveReport | None = None,
    *,
    callback: SaveCallback | None = None,
    max_workers: int | None = None,
) -> SaveReport:
    """Save again only what a save could not save (after fixing the cause).

    The items are ``report.failed_records()``: the failed ones, and after an ``atomic=True``
    save the ones rolled back with them (saved all or nothing again). Each keeps its uid, so
    nothing is saved twice.

    Parameters
    ----------
    report : SaveReport or None
        The report of the failed save (``error.report`` of its ``SaveError``); None: the last
        save of this process that raised ``SaveError``.
    callback : SaveCallback or None
        Receives progress events, as for ``ln.save``.
    max_workers : int or None
        Bounds parallel hashing and uploads, as for ``ln.save``.

    Returns
    -------
    SaveReport
        What the retry saved.

    Raises
    ------
    SaveError
        Some items failed again; ``retry_failed()`` then retries those.
    NotFoundError
        There is nothing to retry: no failed save in this process, or the report has no
        failed item (a cancelled save: save again to start over).

    Examples
    --------
    >>> import lamin_nb as ln
    >>> try:  # doctest: +SKIP
    ...     ln.save(artifacts)
    ... except ln.SaveError as exc:
    ...     print(exc.report.summary())
    saved 2, failed 1
    >>> ln.retry_failed()  # doctest: +SKIP
    SaveReport(saved 1)
    """
    if report is None:
        if not _last_failed:
            raise NotFoundError("nothing to retry: no save of this process failed")
        report = _last_failed[0]
    records = report.failed_records()
    if not records:
        why = "it was cancelled; save again" if report.cancelled else "no item of it failed"
        raise NotFoundError(f"nothing to retry in {report!r}: {why}")
    again = save(records, atomic=report.atomic, callback=callback, max_workers=max_workers)
    if _last_failed and _last_failed[0] is report:
        _last_failed.clear()  # done: a later retry_failed() must not save these again
    return again


def save_one(artifact: R, callback: SaveCallback | None = None) -> R:
    """``artifact.save()``: the protocol for one item, which is all or nothing."""
    save([artifact], atomic=True, callback=callback)
    return artifact


class SaveRun:
    """One run of the protocol over a validated batch; ``execute`` drives it.

    Every item ends in a final state (saved, deduplicated, already saved, failed, rolled
    back); ``save`` turns the items into the ``SaveReport``.
    """

    def __init__(
        self,
        inst: Instance,
        artifacts: list[ArtifactRecord],
        atomic: bool,
        callback: SaveCallback,
        workers: int,
        offset: int = 0,
        announce: bool = True,
    ) -> None:
        self.inst = inst
        # ``offset``: a chunk's first item's index in the whole save (progress events use it)
        self.items = [Item(offset + i, a) for i, a in enumerate(artifacts)]
        self.announce = announce  # False: ``save`` sent ``start`` for every chunk at once
        self.atomic = atomic
        # the caller's callback, already guarded (save() reports to it before the run too)
        self.progress = callback if isinstance(callback, Guarded) else Guarded(callback)
        self.workers = workers
        # inside ``ln.transaction()``: reserve under the block's owner, commit at its end
        self.tx = joined(inst)
        self.identity = self.tx.identity if self.tx is not None else new_owner()
        if self.tx is not None:
            for artifact in artifacts:
                self.tx.remember(artifact)  # a rollback puts it back as it was
        self.owner = str(self.identity)
        self.user = user_name()
        self.cancel = threading.Event()
        self.stale_uploads: list[Row[Any]] = []  # of sources that changed since
        self.stopped_by: BaseException | None = (
            None  # raised by a progress hook off the main thread
        )

    # -- driver ----------------------------------------------------------------------

    def execute(self) -> None:
        """Run to the end; a KeyboardInterrupt undoes what is in flight, then propagates.

        The run's owner name is held only while it runs: rows it could not clean up are then
        recognised as abandoned, by this process and by ``ln.check``, without waiting for a lease.
        """
        if self.tx is not None:  # the block holds the owner name until it ends
            self._execute()
            return
        with running(self.identity):
            self._execute()

    def _execute(self) -> None:
        """Step 2 hashes every item once; then rounds of dedup, reserve, upload and commit
        until every item is done (an item waits a round while another writer saves the same
        content). Any exception undoes what is unfinished (step 6)."""
        if self.announce:
            self.progress.start(
                [ItemInfo(i.index, label(i.artifact), i.artifact.size) for i in self.items]
            )
        for item in self.items:
            self._set(item, S.QUEUED)
            if item.artifact.saved_elsewhere(self.inst):  # acts on its own instance: nothing
                self._set(item, S.ALREADY_SAVED, "saved in another instance")
        try:
            unsaved = [i for i in self.items if not i.artifact.is_saved]
            self._plan_one_read(unsaved)
            self._hash_all([i for i in unsaved if not i.one_read])
            todo = [i for i in self.items if not i.done]
            while todo:
                self._round(todo)
                todo = self._wait_for_others([i for i in self.items if i.waiting])
                todo += [i for i in self.items if i.hash_first and not i.done and i not in todo]
                if todo and self.atomic:
                    todo = [i for i in self.items if not i.done]
                self._hash_after_all(todo)
        except Exception as exc:  # noqa: BLE001 - becomes the cause of the SaveError
            self._abort(exc)
        except BaseException as exc:
            self._abort(exc)
            raise

    def _round(self, items: list[Item]) -> None:
        """Steps 2-5 for the items still to do: dedup and reserve, upload, commit."""
        if self.atomic and any(i.error for i in self.items):
            self._undo(items, S.ROLLED_BACK)
            return
        reserved = self._reserve(items)
        if self.atomic and any(i.waiting or i.hash_first for i in items):
            self._release(reserved)  # all or nothing: start together once the others are done
            return
        if self.stale_uploads:
            self._discard_stale_uploads()
        if reserved:
            fault("after_reserve")
            with LeaseKeeper(self.inst, self.owner, [i.artifact.uid for i in reserved]):
                self._upload_all(reserved)
                fault("after_upload")
                self._commit(reserved)
        self._settle_followers()

    # -- step 2: hash every byte, then dedup (in the reservation's transaction) ---------

    def _hash_all(self, items: list[Item]) -> None:
        pending = [i for i in items if i.artifact.needs_hash()]
        run_parallel(pending, self._hash_one, self.workers, self.cancel)
        self._reraise_stop()

    def _plan_one_read(self, items: list[Item]) -> None:
        """Which large items are hashed while written (``onepass.choose``: one indexed query
        by size). Not inside ``ln.transaction()``: its commit, at the block's end, does not
        deduplicate."""
        if self.tx is not None or onepass.threshold() < 0:
            return
        planned: list[tuple[Item, tuple[int, int]]] = []
        for item in items:
            a = item.artifact
            if item.done or a.source is None or not a.needs_hash():
                continue
            try:
                st = a.source.stat()
            except OSError:
                continue  # the hash step reports it
            if st.st_size >= onepass.threshold():
                planned.append((item, (st.st_size, st.st_mtime_ns)))
        if not planned:
            return
        try:
            with self.inst.db.read_rows() as session:
                same = onepass.rows_of_sizes(session, [stat[0] for _, stat in planned])
        except Exception as exc:  # noqa: BLE001 - hash first; the reservation reports the database
            logger.debug("hashing first: %s", describe(exc))
            return
        counts = Counter(stat[0] for _, stat in planned)
        for item, stat in planned:
            a = item.artifact
            assert a.source is not None
            one_read, item.resumable = onepass.choose(
                a.source, stat, counts[stat[0]], same.get(stat[0], [])
            )
            item.source_stat = stat
            if one_read:
                item.one_read = item.sets_hash = True
                a.digest, a.size, a.hash_type = None, stat[0], HASH_TYPE

    def _hash_after_all(self, items: list[Item]) -> None:
        """One-read items that another writer of the same size held up (it waited for them,
        or their interrupted upload was finished meanwhile): hashed now, so the next round
        deduplicates them against what that writer stored."""
        again = [i for i in items if i.one_read and not i.done and not i.reserved]
        for item in again:
            item.one_read = item.sets_hash = item.hash_first = False
        self._hash_all(again)

    def _hash_one(self, item: Item) -> None:
        self._set(item, S.HASHING)
        try:
            item.artifact.compute_hash(lambda n: self._advance(item, n))
        except Cancelled:
            return
        except OSError as exc:
            self._fail(
                item, ValidationError(f"cannot read {label(item.artifact)}: {describe(exc)}"), exc
            )

    # -- step 3: reserve pending rows, one transaction ------------------------------------

    def _reserve(self, items: list[Item]) -> list[Item]:
        try:
            try:
                with self.inst.db.write_rows(durable=False) as session:
                    return self._reserve_in(session, items, reclaim=True)
            except Abandoned as found:
                self._reclaim(found.rows)
            with self.inst.db.write_rows(durable=False) as session:
                return self._reserve_in(session, items, reclaim=False)
        except LaminNbError:
            raise
        except Exception as exc:
            for item in items:
                if not item.done:
                    self._fail(item, db_error("cannot reserve a database row", exc), exc)
            return []

    def _reserve_in(self, session: Any, items: list[Item], reclaim: bool) -> list[Item]:
        # with the interrupted one-read uploads of the items' sources, as they are now
        uids = [i.artifact.uid for i in items] + [u for i in items for u in i.resumable]
        known, by_hash = rows.by_uids_and_hashes(
            session, uids, [i.artifact.digest for i in items if i.artifact.digest]
        )
        if reclaim:
            found = {r.uid: r for r in known.values()}
            found.update((r.uid, r) for rs in by_hash.values() for r in rs)
            # an interrupted upload stays for a save of the same content to resume
            dead = [
                r for r in found.values() if rows.abandoned(r) and not transfers.is_resumable(r)
            ]
            if dead:  # finished first (outside this transaction), then the reservation again
                raise Abandoned(dead)
        leaders: dict[str, Item] = {}
        to_reserve: list[Item] = []
        taken: list[Item] = []  # interrupted uploads of the same content, resumed
        for item in items:
            if item.done:
                continue
            item.waiting, item.leader, digest = False, None, item.artifact.digest or ""
            item.waits_for = None
            own = known.get(item.artifact.uid)
            if own is not None and self.tx is not None and own.uid in self.tx.deleted:
                own = None  # deleted by this block: gone, as after a delete outside one
            if own is not None and (own.status == COMMITTED or self._saved_in_block(own)):
                item.artifact.adopt_row(own)
                self._set(item, S.ALREADY_SAVED)
                continue
            if own is not None and own.status != PENDING:
                self._fail(item, ValidationError(f"{label(item.artifact)} is being deleted"))
                continue
            if own is None and item.artifact.is_saved:  # another handle deleted it for good
                self._fail(item, NotFoundError(deleted_elsewhere(item.artifact)))
                continue
            if own is not None and own.owner != self.owner and rows.in_flight(own):
                # another process predicted the same uid, same content
                if own.hash == item.artifact.digest:
                    item.waiting, item.waits_for = True, own
                    continue
            others = [r for r in by_hash.get(digest, []) if r.uid != item.artifact.uid]
            # a trashed artifact is invisible: same content saves a new, visible one
            committed = [r for r in others if self._visible(r)]
            elsewhere = [r for r in others if rows.in_flight(r) and not self._ours(r)]
            if committed:
                self._dedup(item, committed[0])
            elif elsewhere:
                item.waiting = True
                item.waits_for = elsewhere[0]
            elif digest and digest in leaders:
                item.leader = leaders[digest]
            elif self._held_elsewhere(item, known):
                continue
            elif self._resume(session, item, [own, *others, *self._resumable(item, known)]):
                leaders[digest] = item
                if item.reserved:
                    taken.append(item)
            else:
                leaders[digest] = item
                to_reserve.append(item)
        stale = [
            i.artifact.uid
            for i in to_reserve
            if i.artifact.uid in known
            and known[i.artifact.uid].hash == i.artifact.digest
            and i.artifact.digest is not None  # a one-read item's row is never "the same"
        ]
        rows.delete_rows(session, stale, PENDING)  # this artifact's own earlier, failed attempt
        reserving = [i.artifact for i in to_reserve]
        values = pending_rows(
            session,
            reserving,
            known,
            storage=self.inst.storage.root,
            owner=self.owner,
            user=self.user,
        )
        rows.insert_pending(session, values)
        for item in to_reserve:
            item.reserved = True
        self._note_changed_sources(session, to_reserve)
        return to_reserve + taken

    def _ours(self, row: Row[Any]) -> bool:
        """A pending row of this run's transaction (never a writer to wait for)."""
        return self.tx is not None and self.tx.owns(row)

    def _saved_in_block(self, row: Row[Any]) -> bool:
        return self._ours(row) and row.uid in self.tx.saved  # type: ignore[union-attr]

    def _visible(self, row: Row[Any]) -> bool:
        """Committed and out of the trash, as this save sees it: inside a transaction, with
        the block's own saves, trash, restores and deletes applied."""
        tx = self.tx
        if tx is None:
            return row.status == COMMITTED and not row.is_trashed
        if row.uid in tx.deleted:
            return False
        trashed = row.uid in tx.trashed or (row.is_trashed and row.uid not in tx.restored)
        return (row.status == COMMITTED or self._saved_in_block(row)) and not trashed

    def _resumable(self, item: Item, known: dict[str, Row[Any]]) -> list[Row[Any]]:
        """The interrupted one-read uploads of the item's source, as read in this reservation."""
        return [known[uid] for uid in item.resumable if uid in known]

    def _held_elsewhere(self, item: Item, known: dict[str, Row[Any]]) -> bool:
        """A one-read upload of the item's source (no hash to find it by) is in flight
        elsewhere: wait for it, never send the same parts twice. A one-read item whose
        interrupted upload was finished meanwhile is hashed first (``hash_first``)."""
        stat = item.source_stat
        source = item.artifact.source
        for uid in item.resumable:
            row = known.get(uid)
            if row is None or stat is None or source is None:
                continue
            if not onepass.hashless_upload_of(row, source, stat):
                if item.one_read:  # committed (maybe the same content) or changed: hash
                    item.hash_first = True
                    return True
                continue
            if row.owner != self.owner and rows.in_flight(row):
                item.waiting, item.waits_for = True, row
                return True
        return False

    def _resume(self, session: Any, item: Item, candidates: list[Row[Any] | None]) -> bool:
        """Take over an interrupted upload of the same content (DESIGN §9): True if the item
        now holds it (reserved) or waits for the process that took it first."""
        row = next(
            (
                r
                for r in candidates
                if r is not None and transfers.can_resume(r, item.artifact, item.source_stat)
            ),
            None,
        )
        if row is None:
            return False
        if not transfers.take_over(session, row, self.owner, item.artifact.description):
            item.waiting, item.waits_for = True, row
            return True
        a = item.artifact
        a.uid, a.version = row.uid, row.version
        item.resume_row, item.reserved = row, True
        item.sets_hash = row.hash is None  # a one-read upload: the commit records its hash
        return True

    def _note_changed_sources(self, session: Any, items: list[Item]) -> None:
        """A fresh upload of a source whose interrupted upload held other content: that one
        can never be resumed; say why this one starts over, and free its parts."""
        by_path = {str(i.artifact.source): i for i in items if i.artifact.source is not None}
        if not by_path:
            return
        for path, row in transfers.changed_sources(session, list(by_path)).items():
            item = by_path[path]
            unchanged = row.hash is None and row.uid in item.resumable  # same file, one-read
            if row.hash != item.artifact.digest or (row.hash is None and not unchanged):
                item.restart_note = transfers.why_changed(row, Path(path))
                self.stale_uploads.append(row)

    def _discard_stale_uploads(self) -> None:
        """Best effort: what fails is left for ``ln.repair``."""
        stale, self.stale_uploads = self.stale_uploads, []
        for uid, error in recovery.finish_all(self.inst, stale):  # type: ignore[arg-type]
            if error is not None:
                logger.warning("could not discard the interrupted upload %s: %s", uid, error)

    def _reclaim(self, dead: list[Row[Any]]) -> None:
        """Roll back (or forward) rows whose writer is gone: a crashed process on this host, or
        a run of this process whose undo was cut short. Best effort: what fails stays for
        ``ln.repair()`` and no longer blocks this save."""
        results = recovery.finish_all(self.inst, dead)  # type: ignore[arg-type]
        done = [uid for uid, error in results if error is None]
        if done:
            owners = sorted({describe_owner(r.owner) for r in dead if r.uid in done})
            logger.info(
                "finished %d reservation(s) left by %s, which no longer runs",
                len(done),
                ", ".join(owners),
            )
        for uid, error in results:
            if error is not None:
                logger.warning("could not finish abandoned row %s: %s", uid, error)

    def _release(self, items: list[Item]) -> None:
        """Give reservations back before anything was uploaded (atomic batch must wait)."""
        with self.inst.db.write_rows() as session:
            mine = rows.claim_pending(session, [i.artifact.uid for i in items], self.owner)
            rows.delete_rows(session, mine, PENDING)
        for item in items:
            item.reserved = False

    # -- step 4: upload, durable before commit ------------------------------------------

    def _upload_all(self, items: list[Item]) -> None:
        run_parallel(items, self._upload_one, self.workers, self.cancel)
        self._reraise_stop()
        if any(i.uploaded for i in items):
            self.inst.storage.sync()

    def _upload_one(self, item: Item) -> None:
        if self.cancel.is_set():
            return
        item.upload_started = True
        self._set(item, S.UPLOADING)
        a = item.artifact
        assert a.source is not None
        if item.restart_note:
            self._say(item, f"starting over: {item.restart_note}")
        item.journal = transfers.RowJournal(
            self.inst, a.uid, self.owner, a.source, item.resume_row, lambda d: self._say(item, d)
        )
        try:
            digest = self.inst.storage.put_file(
                a.source,
                a.object_name,
                None if item.one_read else a.digest,
                lambda n: self._advance(item, n),
                item.journal,
            )
            if item.one_read:
                self._check_unchanged(item)
                a.digest = digest  # the hash of what was written: the content's
            item.uploaded = True
            # done with: an uploaded item is never resumed (``_keeps``); a bulk save would
            # otherwise hold one journal, its lock and callbacks per file to the end
            item.journal = item.resume_row = None
        except Cancelled:
            return
        except Exception as exc:
            if self._reservation_gone(item):
                # another process rolled it back (``ln.repair``, recovery after the lease) and
                # removed the temporary upload: say that, not "FileNotFoundError: ....tmp"
                error = StorageError(f"could not upload {label(a)}: {RESERVATION_GONE}")
                error.__cause__ = exc
                self._fail(item, error)
            else:
                why = describe(exc)
                if self._keeps(item, exc):
                    why += "; the parts sent are kept: save it again to resume"
                self._fail(item, StorageError(f"could not upload {label(a)}: {why}"), exc)
            if self.atomic:
                self.cancel.set()

    def _check_unchanged(self, item: Item) -> None:
        """A one-read item's source must not change while it is written: its size and mtime
        before (when planned, as its row records) and after. Else it fails, and undo removes
        what was written."""
        a = item.artifact
        assert a.source is not None
        try:
            st = a.source.stat()
            after: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
        except OSError:
            after = None
        if after != item.source_stat:
            raise IntegrityError(
                f"{a.source} changed while it was being saved; nothing of it was kept: "
                "save it again once it is written"
            )

    def _keeps(self, item: Item, exc: BaseException | None) -> bool:
        """Does an unfinished item keep its row and parts for a later save to resume? Only a
        journaled upload that did not complete and whose source did not change."""
        keep = (
            item.journal is not None
            and item.journal.recorded
            and not item.uploaded
            and not isinstance(exc, IntegrityError)
        )
        item.keep = item.keep or keep
        return item.keep

    def _say(self, item: Item, detail: str) -> None:
        logger.info("%s: %s", label(item.artifact), detail)
        self._set(item, S.UPLOADING, detail)

    def _reservation_gone(self, item: Item) -> bool:
        try:
            with self.inst.db.read_rows() as session:
                return not rows.claim_pending(session, [item.artifact.uid], self.owner)
        except Exception:  # noqa: BLE001 - unknown: report the upload's own error
            return False

    # -- step 5: commit, one transaction -------------------------------------------------

    def _commit(self, items: list[Item]) -> None:
        if self.atomic and (self.cancel.is_set() or any(i.error for i in self.items)):
            self._undo(items, S.ROLLED_BACK)
            return
        if self.tx is not None:
            self._stage(items)
            return
        ready = [i for i in items if i.uploaded and not i.done]
        for item in ready:
            self._set(item, S.COMMITTING)
        same: dict[int, Row[Any]] = {}
        try:
            with self.inst.db.write_rows() as session:
                fault("before_commit")
                same = self._same_content_committed(session, ready)
                ready = [i for i in ready if i.index not in same]
                hashes = {i.artifact.uid: i.artifact.digest for i in ready if i.sets_hash}
                rows.set_hashes(session, hashes, self.owner)  # type: ignore[arg-type]
                if len(ready) == 1:
                    stored = self._commit_one(session, ready[0])
                else:
                    mine = rows.commit_pending(session, [i.artifact.uid for i in ready], self.owner)
                    rows.refresh_latest(session, [i.artifact.key for i in ready])
                    rows.raise_marks(session, [i.artifact.key for i in ready])
                    stored = {row.uid: row_values(row) for row in rows.iter_by_uids(session, mine)}
        except Exception as exc:
            self._undo(items, S.FAILED, f"could not commit: {describe(exc)}", exc, db_kind(exc))
            return
        fault("after_commit")
        self._adopt_committed(ready, stored)
        self._dedup_written([i for i in items if i.index in same], same)
        self._undo(items, S.FAILED, RESERVATION_GONE)

    def _same_content_committed(self, session: Any, items: list[Item]) -> dict[int, Row[Any]]:
        """Dedup at the commit (``onepass``), under the write lock the reservation holds too:
        of the large items, those whose content another writer committed meanwhile (a one-read
        item's hash is known only now; a hash-first one may have raced with a one-read one).
        By item index, the committed row to return instead."""
        large = [i for i in items if i.sets_hash or i.source_stat is not None]
        if not large:
            return {}
        by_hash = rows.by_hashes(session, {i.artifact.digest or "" for i in large})
        found: dict[int, Row[Any]] = {}
        for item in large:
            uid = item.artifact.uid
            committed = [r for r in by_hash.get(item.artifact.digest or "", []) if r.uid != uid]
            committed = [r for r in committed if self._visible(r)]
            if committed:
                found[item.index] = committed[0]
        return found

    def _dedup_written(self, items: list[Item], same: dict[int, Row[Any]]) -> None:
        """Items whose content was committed by another writer while they were written: their
        objects go (before their pending rows, as undo removes them), the existing artifact
        is returned as a dedup before the upload would have returned it."""
        if not items:
            return
        self._remove(items)
        for item in items:
            item.reserved = False  # a row left (a failed removal) is repair's
            self._dedup(item, same[item.index])

    def _commit_one(self, session: Any, item: Item) -> dict[str, tuple[Any, ...]]:
        """The commit's statements for a single item: the UPDATE returns the row, so it is not
        read back; only its latest flag comes from ``refresh_latest``."""
        row = rows.commit_one(session, item.artifact.uid, self.owner)
        if row is None:  # rolled back meanwhile (repair, recovery): not ours to commit
            return {}
        if row.key is None:
            return {row.uid: row_values(row)}
        winners = rows.refresh_latest(session, [row.key])
        rows.raise_marks(session, [row.key])
        return {row.uid: row_values(row, is_latest=winners.get(row.key) == row.id)}

    def _stage(self, items: list[Item]) -> None:
        """Step 5 inside ``ln.transaction()``: the block's end commits. The rows stay pending
        under the block's owner (invisible to others, leases kept by the block) and the items
        count as saved; the display shows them committing until the block ends."""
        assert self.tx is not None
        ready = [i for i in items if i.uploaded and not i.done]
        try:
            with self.inst.db.read_rows() as conn:
                stored = rows.by_uids(conn, [i.artifact.uid for i in ready])
        except Exception as exc:
            why = f"could not read its reservation back: {describe(exc)}"
            self._undo(items, S.FAILED, why, exc, db_kind(exc))
            return
        for item in ready:
            row = stored.get(item.artifact.uid)
            if self.tx.owns(row):
                item.artifact.adopt_row(row)  # type: ignore[arg-type]
                self.tx.add_saved(item.artifact)
                item.state = S.SAVED  # for the save's report; the block decides the rest
                self.progress.state(
                    item.index, S.COMMITTING, "visible when the transaction commits"
                )
        self._undo(items, S.FAILED, RESERVATION_GONE)

    def _adopt_committed(self, items: list[Item], stored: dict[str, tuple[Any, ...]]) -> None:
        for item in items:
            values = stored.get(item.artifact.uid)
            if values is not None and not item.done:
                item.artifact.adopt_values(values)
                keep_staged_copy(self.inst, item.artifact)
                self._set(item, S.SAVED)

    # -- step 6: on failure, undo (what cannot be undone is left to recovery) ------------

    def _undo(
        self,
        items: list[Item],
        final: ItemState,
        reason: str = "",
        cause: BaseException | None = None,
        kind: type[LaminNbError] = StorageError,
    ) -> None:
        """End every unfinished item: saved if its row is committed after all, else ``final``;
        then remove uploads and pending rows, or leave both to recovery if the row cannot be
        checked."""
        reserved = [i for i in items if i.reserved and i.state != S.SAVED]
        if not reserved and all(i.done for i in items):
            return  # the common end of a successful save: nothing to undo
        for item in reserved:
            self._keeps(item, item.error.__cause__ if item.error is not None else cause)
        try:
            with self.inst.db.read_rows() as session:
                status = rows.statuses(session, [i.artifact.uid for i in reserved])
                # a row another process took over (its upload resumed there) is not ours
                taken = transfers.taken_by_others(
                    session, [i.artifact.uid for i in reserved], self.owner
                )
                status.update((uid, "taken") for uid in taken)
                committed = [
                    i.artifact.uid for i in reserved if status.get(i.artifact.uid) == COMMITTED
                ]
                found = rows.iter_by_uids(session, committed)
                self._adopt_committed(reserved, {row.uid: row_values(row) for row in found})
        except Exception as exc:  # noqa: BLE001 - recovery finishes; the user gets the first error
            logger.warning(
                "left %d pending row(s) for ln.repair(): %s", len(reserved), describe(exc)
            )
            status = None
        for item in items:
            if not item.done:
                if final == S.FAILED:
                    kept = "; the parts sent are kept: save it again to resume" if item.keep else ""
                    self._fail(item, kind((reason or "not saved") + kept), cause)
                else:
                    self._set(item, final)
        if status is not None:
            # a row that is gone was rolled back by repair: the object is still ours to remove
            self._remove(
                [
                    i
                    for i in reserved
                    if status.get(i.artifact.uid, PENDING) == PENDING and not i.keep
                ]
            )

    def _remove(self, items: list[Item]) -> None:
        removed = [i for i in items if not i.upload_started]  # nothing of theirs was written

        def remove(item: Item) -> None:
            if self._delete_object(item.artifact.object_name):
                removed.append(item)  # list.append is atomic

        run_parallel(
            [i for i in items if i.upload_started], remove, self.workers, threading.Event()
        )
        try:
            with self.inst.db.write_rows() as session:
                mine = rows.claim_pending(session, [i.artifact.uid for i in removed], self.owner)
                rows.delete_rows(session, mine, PENDING)
        except Exception as exc:  # noqa: BLE001 - the pending rows stay for recovery
            logger.warning(
                "left %d pending row(s) for ln.repair(): %s", len(removed), describe(exc)
            )
            return
        for item in removed:
            item.reserved = False

    def _delete_object(self, name: str) -> bool:
        try:
            self.inst.storage.delete(name)
            self.inst.storage.delete_temps(name)
            return True
        except IsADirectoryError:  # a folder in the way made the upload fail; it is not ours
            return True
        except Exception as exc:  # noqa: BLE001 - the pending row stays for recovery
            if self._nothing_there(name):  # e.g. a policy denies deletes, and none is needed
                return True
            logger.warning("could not remove %s: %s", name, describe(exc))
            return False

    def _nothing_there(self, name: str) -> bool:
        """Without temporary uploads (S3), a refused delete of an object that does not exist
        leaves nothing behind: the pending row can go."""
        if self.inst.storage.has_temps:
            return False
        try:
            return not self.inst.storage.exists(name)
        except Exception:  # noqa: BLE001 - unknown: the pending row stays for recovery
            return False

    def _abort(self, exc: BaseException) -> None:
        self.cancel.set()
        reason = (
            f"save interrupted: {describe(exc)}"
            if isinstance(exc, Exception)
            else f"save interrupted ({type(exc).__name__})"
        )
        # items whose rows a commit already flipped end as saved, so say what stopped the run
        logger.warning("%s; unfinished items are undone", reason)
        # reserved includes items that already failed but whose cleanup had not run yet; a
        # second Ctrl-C must not cut the undo short (it would leave this process's own rows)
        with deferred_interrupts() as held:
            self._undo([i for i in self.items if not i.done or i.reserved], S.FAILED, reason, exc)
        kept = [i for i in self.items if i.keep]
        if kept:
            logger.warning(
                "%d interrupted upload(s) kept (%s): save the same content again to resume; "
                "ln.uploads() lists them",
                len(kept),
                ", ".join(label(i.artifact) for i in kept[:5]),
            )
        if held and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt

    # -- dedup outcomes, and waiting for other writers of the same content ---------------

    def _dedup(self, item: Item, row: Row[Any]) -> None:
        item.artifact.adopt_row(row)
        if row.status == COMMITTED:  # a row of a transaction block may still roll back
            keep_staged_copy(self.inst, item.artifact)
        logger.info("returning existing artifact with same hash: %s", row.uid)
        self._set(item, S.DEDUPLICATED, self._same_content(item, row.uid))

    def _same_content(self, item: Item, uid: str) -> str:
        """The progress detail of a deduplicated item; a key the user asked for and did not
        get is named there (and in the report and a warning), never dropped silently."""
        kept = item.artifact.key
        if item.requested_key is None or item.requested_key == kept:
            return f"same content as {uid}"
        item.key_conflict = (item.requested_key, kept, uid)
        return key_not_saved(item.requested_key, kept, uid)

    def _settle_followers(self) -> None:
        for item in self.items:
            leader = item.leader
            if leader is None or item.done or not leader.done:
                continue
            if leader.state in (S.SAVED, S.DEDUPLICATED):
                item.artifact.adopt(leader.artifact)
                if self.tx is None:  # in a block, a rollback may need the staged file again
                    keep_staged_copy(self.inst, item.artifact)
                self._set(item, S.DEDUPLICATED, self._same_content(item, leader.artifact.uid))
            elif leader.state == S.ROLLED_BACK:
                self._set(item, S.ROLLED_BACK)
            else:
                self._fail(
                    item,
                    StorageError(f"same content as item {leader.index}, which failed"),
                    leader.error,
                )

    def _wait_for_others(self, waiting: list[Item]) -> list[Item]:
        """Same content is in flight elsewhere: wait until it is committed or rolled back, or
        its writer is known to be gone. The wait says on whom, how long at most, and what to
        run if that writer will not come back."""
        if not waiting:
            return []
        for item in waiting:
            self._set(item, S.WAITING, waiting_for(item.waits_for, WAIT_FOR_OTHERS_SECONDS))
        logger.warning(
            "%s: %s",
            label(waiting[0].artifact),
            waiting_for(waiting[0].waits_for, WAIT_FOR_OTHERS_SECONDS),
        )
        hashes = {i.artifact.digest for i in waiting if i.artifact.digest}
        # one-read uploads have no hash yet: waited for by uid
        held = [i.waits_for for i in waiting if i.waits_for is not None]
        uids = [row.uid for row in held if not row.hash]
        if wait_for_writers(self.inst, hashes, WAIT_FOR_OTHERS_SECONDS, uids):
            return waiting
        for item in waiting:
            item.waiting = False
            who = writer(item.waits_for)
            self._fail(
                item,
                StorageError(
                    f"the same content is still being saved by {who} after "
                    f"{WAIT_FOR_OTHERS_SECONDS:.0f} s; {REPAIR_HINT}, then save again"
                ),
            )
        return []

    # -- progress --------------------------------------------------------------------

    def _advance(self, item: Item, nbytes: int) -> None:
        if self.cancel.is_set() and item.state in (S.HASHING, S.UPLOADING):
            raise Cancelled()
        try:
            self.progress.advance(item.index, nbytes)
        except BaseException as exc:
            # a hook's KeyboardInterrupt: on S3 this runs in fsspec's event loop thread, which
            # must never see it (the loop would die and every later upload hang); carry it over
            self.stopped_by = self.stopped_by or exc
            self.cancel.set()
            raise Cancelled() from exc

    def _reraise_stop(self) -> None:
        if self.stopped_by is not None:
            raise self.stopped_by

    def _set(self, item: Item, state: ItemState, detail: str = "") -> None:
        item.state = state
        self.progress.state(item.index, state, detail)

    def _fail(self, item: Item, error: BaseException, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        item.error = error
        self._set(item, S.FAILED, describe(cause or error))
