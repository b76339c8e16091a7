"""One run of the save protocol over a batch (DESIGN §4): hash, dedup and reserve, upload,
commit, or undo. ``save.py`` validates the input and turns the outcome into a SaveReport.

Undo deletes an object only after checking that its row is still pending, and a row that a
commit did flip is kept and reported as saved, so an ambiguous commit or an interrupt never
loses committed data.
"""

from __future__ import annotations

import getpass
import logging
import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Row

from . import recovery, rows, transfers
from .artifact import Artifact, keep_staged_copy, version_suffix
from .callbacks import Guarded, ItemInfo, ItemState, SaveCallback
from .callbacks import item_label as label
from .errors import (
    DatabaseError,
    IntegrityError,
    LaminNbError,
    StorageError,
    ValidationError,
    describe,
)
from .faults import fault
from .instance import Instance, random_base62
from .models import COMMITTED, PENDING, utcnow
from .owners import describe_owner, new_owner, running
from .workers import LeaseKeeper, deferred_interrupts, run_parallel, wait_for_writers

logger = logging.getLogger("lamin_nb")
WAIT_FOR_OTHERS_SECONDS = 600.0
S = ItemState


class Item:
    def __init__(self, index: int, artifact: Artifact) -> None:
        self.index = index
        self.artifact = artifact
        self.state = S.QUEUED
        self.error: BaseException | None = None
        self.reserved = False
        self.upload_started = False  # from here on an object (or a temp file) may exist
        self.uploaded = False
        self.leader: Item | None = None  # same content earlier in this batch
        self.waiting = False  # same content is being saved by another process
        self.requested_key = artifact.key  # what the user asked for, before any dedup
        self.key_conflict: tuple[str, str | None, str] | None = None  # (requested, kept, uid)
        self.waits_for: Row[Any] | None = None  # that process's row
        self.resume_row: Row[Any] | None = None  # an interrupted upload this item took over
        self.journal: transfers.RowJournal | None = None
        self.restart_note = ""  # why an interrupted upload of its source starts over
        self.keep = False  # interrupted: its row and parts stay for a later save to resume

    @property
    def done(self) -> bool:
        return self.state.is_final


class SaveRun:
    def __init__(
        self,
        inst: Instance,
        artifacts: list[Artifact],
        atomic: bool,
        callback: SaveCallback,
        workers: int,
    ) -> None:
        self.inst = inst
        self.items = [Item(i, a) for i, a in enumerate(artifacts)]
        self.atomic = atomic
        # the caller's callback, already guarded (save() reports to it before the run too)
        self.progress = callback if isinstance(callback, Guarded) else Guarded(callback)
        self.workers = workers
        self.identity = new_owner()
        self.owner = str(self.identity)
        self.user = _user()
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
        with running(self.identity):
            self._execute()

    def _execute(self) -> None:
        self.progress.start(
            [ItemInfo(i.index, label(i.artifact), i.artifact.size) for i in self.items]
        )
        for item in self.items:
            self._set(item, S.QUEUED)
            if item.artifact._saved_elsewhere(self.inst):  # acts on its own instance: nothing
                self._set(item, S.ALREADY_SAVED, "saved in another instance")
        try:
            self._hash_all([i for i in self.items if not i.artifact._is_saved])
            todo = [i for i in self.items if not i.done]
            while todo:
                self._round(todo)
                todo = self._wait_for_others([i for i in self.items if i.waiting])
                if todo and self.atomic:
                    todo = [i for i in self.items if not i.done]
        except Exception as exc:  # noqa: BLE001 - becomes the cause of the SaveError
            self._abort(exc)
        except BaseException as exc:
            self._abort(exc)
            raise

    def _round(self, items: list[Item]) -> None:
        if self.atomic and any(i.error for i in self.items):
            self._undo(items, S.ROLLED_BACK)
            return
        reserved = self._reserve(items)
        if self.atomic and any(i.waiting for i in items):
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

    # -- hash, dedup, reserve ----------------------------------------------------------

    def _hash_all(self, items: list[Item]) -> None:
        pending = [i for i in items if i.artifact._needs_hash()]
        run_parallel(pending, self._hash_one, self.workers, self.cancel)
        self._reraise_stop()

    def _hash_one(self, item: Item) -> None:
        self._set(item, S.HASHING)
        try:
            item.artifact._compute_hash(lambda n: self._advance(item, n))
        except _Cancelled:
            return
        except OSError as exc:
            self._fail(
                item, ValidationError(f"cannot read {label(item.artifact)}: {describe(exc)}"), exc
            )

    def _reserve(self, items: list[Item]) -> list[Item]:
        try:
            try:
                with self.inst.db.write_rows(durable=False) as session:
                    return self._reserve_in(session, items, reclaim=True)
            except _Abandoned as found:
                self._reclaim(found.rows)
            with self.inst.db.write_rows(durable=False) as session:
                return self._reserve_in(session, items, reclaim=False)
        except LaminNbError:
            raise
        except Exception as exc:
            for item in items:
                if not item.done:
                    self._fail(item, _db_error("cannot reserve a database row", exc), exc)
            return []

    def _reserve_in(self, session: Any, items: list[Item], reclaim: bool) -> list[Item]:
        known, by_hash = rows.by_uids_and_hashes(
            session, [i.artifact.uid for i in items], [i.artifact._hash or "" for i in items]
        )
        if reclaim:
            found = {r.uid: r for r in known.values()}
            found.update((r.uid, r) for rs in by_hash.values() for r in rs)
            # an interrupted upload stays for a save of the same content to resume
            dead = [
                r for r in found.values() if rows.abandoned(r) and not transfers.is_resumable(r)
            ]
            if dead:  # finished first (outside this transaction), then the reservation again
                raise _Abandoned(dead)
        leaders: dict[str, Item] = {}
        to_reserve: list[Item] = []
        taken: list[Item] = []  # interrupted uploads of the same content, resumed
        for item in items:
            if item.done:
                continue
            item.waiting, item.leader, digest = False, None, item.artifact._hash or ""
            item.waits_for = None
            own = known.get(item.artifact.uid)
            if own is not None and own.status == COMMITTED:
                item.artifact._adopt(own)
                self._set(item, S.ALREADY_SAVED)
                continue
            if own is not None and own.status != PENDING:
                self._fail(item, ValidationError(f"{label(item.artifact)} is being deleted"))
                continue
            if own is not None and own.owner != self.owner and rows.in_flight(own):
                if own.hash == digest:  # another process predicted the same uid, same content
                    item.waiting, item.waits_for = True, own
                    continue
            others = [r for r in by_hash.get(digest, []) if r.uid != item.artifact.uid]
            # a trashed artifact is invisible: same content saves a new, visible one
            committed = [r for r in others if r.status == COMMITTED and not r.is_trashed]
            if committed:
                self._dedup(item, committed[0])
            elif any(rows.in_flight(r) for r in others):
                item.waiting = True
                item.waits_for = next(r for r in others if rows.in_flight(r))
            elif digest in leaders:
                item.leader = leaders[digest]
            elif self._resume(session, item, [own, *others]):
                leaders[digest] = item
                if item.reserved:
                    taken.append(item)
            else:
                leaders[digest] = item
                to_reserve.append(item)
        stale = [
            i.artifact.uid
            for i in to_reserve
            if i.artifact.uid in known and known[i.artifact.uid].hash == i.artifact._hash
        ]
        rows.delete_rows(session, stale, PENDING)  # this artifact's own earlier, failed attempt
        rows.insert_pending(session, self._pending_rows(session, to_reserve, known))
        for item in to_reserve:
            item.reserved = True
        self._note_changed_sources(session, to_reserve)
        return to_reserve + taken

    def _resume(self, session: Any, item: Item, candidates: list[Row[Any] | None]) -> bool:
        """Take over an interrupted upload of the same content: True if the item now holds
        it (reserved) or waits for the process that took it first."""
        row = next(
            (r for r in candidates if r is not None and transfers.can_resume(r, item.artifact)),
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
        return True

    def _note_changed_sources(self, session: Any, items: list[Item]) -> None:
        """A fresh upload of a source whose interrupted upload held other content: that one
        cannot be resumed; say why this one starts over (repair frees the old parts)."""
        by_path = {str(i.artifact._source): i for i in items if i.artifact._source is not None}
        if not by_path:
            return
        for path, row in transfers.changed_sources(session, list(by_path)).items():
            item = by_path[path]
            if row.hash != item.artifact._hash:
                item.restart_note = transfers.why_changed(row, Path(path))
                self.stale_uploads.append(row)

    def _discard_stale_uploads(self) -> None:
        """Interrupted uploads of content their source no longer holds can never be resumed:
        their parts are freed now (what fails is left for ``ln.repair``)."""
        stale, self.stale_uploads = self.stale_uploads, []
        for uid, error in recovery.finish_all(self.inst, stale):  # type: ignore[arg-type]
            if error is not None:
                logger.warning("could not discard the interrupted upload %s: %s", uid, error)

    def _pending_rows(
        self, session: Any, items: list[Item], known: dict[str, Row[Any]]
    ) -> list[dict[str, Any]]:
        families = rows.families(session, [i.artifact.key for i in items if i.artifact.key])
        next_version = {k: f.next_version for k, f in families.items()}
        stems = {k: f.stem for k, f in families.items()}
        now, until = utcnow(), rows.lease_until()
        uid_before = {id(i): i.artifact.uid for i in items}
        described: dict[int, str | None] = {}
        for item in items:
            a = item.artifact
            a.version = 1
            described[id(item)] = a.description
            if a.key is not None:
                a.version = next_version.get(a.key, 1)
                next_version[a.key] = a.version + 1
                # the version is decided here, under the write lock, and the uid follows it;
                # a new key's first item gives its stem to later versions in this batch
                stem = stems.setdefault(a.key, a.uid[:16])
                a.uid = stem + version_suffix(a.version)
                family = families.get(a.key)
                if a.description is None and family is not None:
                    # a new version is "the same thing": it keeps the description it had
                    described[id(item)] = family.description
        rows.record_families(
            session,
            {k: stem for k, stem in stems.items() if k not in families or not families[k].known},
        )
        # only uids that changed above need a look-up: ``known`` holds the rest
        taken = rows.existing_uids(
            session, [i.artifact.uid for i in items if i.artifact.uid != uid_before[id(i)]]
        )
        for item in items:
            a = item.artifact
            if a.uid in taken or (a.uid in known and known[a.uid].hash != a._hash):
                a.uid = random_base62(16) + version_suffix(a.version or 1)
        return [self._row_values(i.artifact, now, until, described[id(i)]) for i in items]

    def _row_values(
        self, a: Artifact, now: Any, until: Any, description: str | None
    ) -> dict[str, Any]:
        return {
            "uid": a.uid,
            "key": a.key,
            "description": description,
            "suffix": a.suffix,
            "size": a.size,
            "hash": a._hash,
            "hash_type": a.hash_type,
            "otype": a.otype,
            "version": a.version,
            "is_latest": False,
            "storage": self.inst.storage.root,
            "created_at": now,
            "created_by": self.user,
            "status": PENDING,
            "is_trashed": False,
            "owner": self.owner,
            "lease_expires_at": until,
            "updated_at": now,
        }

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

    # -- upload, commit ----------------------------------------------------------------

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
        assert a._source is not None
        if item.restart_note:
            self._say(item, f"starting over: {item.restart_note}")
        item.journal = transfers.RowJournal(
            self.inst,
            a.uid,
            self.owner,
            a._source,
            item.resume_row,
            lambda detail: self._say(item, detail),
        )
        try:
            self.inst.storage.put_file(
                a._source,
                a._object_name,
                a._hash,
                lambda n: self._advance(item, n),
                item.journal,
            )
            item.uploaded = True
        except _Cancelled:
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

    def _reservation_gone(self, item: Item) -> bool:
        try:
            with self.inst.db.read_rows() as session:
                return not rows.claim_pending(session, [item.artifact.uid], self.owner)
        except Exception:  # noqa: BLE001 - unknown: report the upload's own error
            return False

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

    def _commit(self, items: list[Item]) -> None:
        if self.atomic and (self.cancel.is_set() or any(i.error for i in self.items)):
            self._undo(items, S.ROLLED_BACK)
            return
        ready = [i for i in items if i.uploaded and not i.done]
        for item in ready:
            self._set(item, S.COMMITTING)
        try:
            with self.inst.db.write_rows() as session:
                fault("before_commit")
                mine = rows.commit_pending(session, [i.artifact.uid for i in ready], self.owner)
                rows.refresh_latest(session, [i.artifact.key for i in ready])
                rows.raise_marks(session, [i.artifact.key for i in ready])
                stored = rows.by_uids(session, mine)
        except Exception as exc:
            self._undo(items, S.FAILED, f"could not commit: {describe(exc)}", exc, _db_kind(exc))
            return
        fault("after_commit")
        self._adopt_committed(ready, stored)
        self._undo(items, S.FAILED, RESERVATION_GONE)

    def _adopt_committed(self, items: list[Item], stored: dict[str, Row[Any]]) -> None:
        for item in items:
            row = stored.get(item.artifact.uid)
            if row is not None and not item.done:
                item.artifact._adopt(row)
                keep_staged_copy(self.inst, item.artifact)
                self._set(item, S.SAVED)

    # -- undo ------------------------------------------------------------------------

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
                self._adopt_committed(reserved, rows.by_uids(session, committed))
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
            if self._delete_object(item.artifact._object_name):
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
            logger.warning("could not remove %s: %s", name, describe(exc))
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

    # -- dedup -----------------------------------------------------------------------

    def _dedup(self, item: Item, row: Row[Any]) -> None:
        item.artifact._adopt(row)
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
                item.artifact._adopt_from(leader.artifact)
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
            self._set(item, S.WAITING, _waiting_for(item.waits_for))
        logger.warning("%s: %s", label(waiting[0].artifact), _waiting_for(waiting[0].waits_for))
        if wait_for_writers(
            self.inst, {i.artifact._hash or "" for i in waiting}, WAIT_FOR_OTHERS_SECONDS
        ):
            return waiting
        for item in waiting:
            item.waiting = False
            who = _writer(item.waits_for)
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
            raise _Cancelled()
        try:
            self.progress.advance(item.index, nbytes)
        except BaseException as exc:
            # a hook's KeyboardInterrupt: on S3 this runs in fsspec's event loop thread, which
            # must never see it (the loop would die and every later upload hang); carry it over
            self.stopped_by = self.stopped_by or exc
            self.cancel.set()
            raise _Cancelled() from exc

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


def key_not_saved(requested: str, kept: str | None, uid: str) -> str:
    where = f"key {kept!r}" if kept is not None else "no key"
    return f"key {requested!r} not saved: same content is stored as {uid} ({where})"


class _Cancelled(Exception):
    pass


def _db_kind(exc: BaseException) -> type[LaminNbError]:
    from sqlalchemy.exc import SQLAlchemyError

    return DatabaseError if isinstance(exc, SQLAlchemyError) else StorageError


def _db_error(what: str, exc: BaseException) -> LaminNbError:
    """A database failure of a save step: nothing of the item was saved; run it again."""
    kind = _db_kind(exc)
    then = "; nothing was saved; save again once the database is reachable"
    return kind(f"{what}: {describe(exc)}" + (then if kind is DatabaseError else ""))


class _Abandoned(Exception):
    """Rows whose writer is gone stand in the way of a reservation: finish them first."""

    def __init__(self, dead: list[Row[Any]]) -> None:
        super().__init__(f"{len(dead)} abandoned row(s)")
        self.rows = dead


RESERVATION_GONE = (
    "your reservation expired and was rolled back by another process (ln.repair, or recovery "
    "after its lease ran out); nothing of it was saved; save it again"
)
REPAIR_HINT = (
    "if that process is gone (and no other writer runs), run "
    "ln.repair(dry_run=False, grace_seconds=0)"
)


def _writer(row: Row[Any] | None) -> str:
    return describe_owner(row.owner) if row is not None else "another process"


def _waiting_for(row: Row[Any] | None) -> str:
    """'waiting for process 123 on host-a, saving the same content as ... (at most 600 s; ...)'"""
    what = "the same content"
    if row is not None:
        what += f" as {row.uid}" + (f" (key {row.key!r})" if row.key else "")
    return (
        f"waiting for {_writer(row)}, which is saving {what}; at most "
        f"{WAIT_FOR_OTHERS_SECONDS:.0f} s; {REPAIR_HINT}"
    )


def _user() -> str:
    try:
        return getpass.getuser()[:128]
    except Exception:  # noqa: BLE001 - no login name in some containers
        return str(os.getuid())
