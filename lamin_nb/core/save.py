"""The save protocol (DESIGN §4): validate, dedup, reserve, upload, commit, or undo.

Rows move ``pending -> committed``; a pending row carries its owner and a lease so that a
crashed writer's leftovers can be told from a live upload. Undo deletes an object only after
checking that its row is still pending, so an ambiguous commit never loses committed data.
"""

from __future__ import annotations

import getpass
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from . import rows
from .artifact import Artifact, keep_staged_copy, version_suffix
from .callbacks import NO_PROGRESS, ItemInfo, ItemState, SaveCallback
from .errors import LaminNbError, SaveError, StorageError, ValidationError, describe
from .faults import fault
from .instance import Instance, current, owner_id, random_base62
from .models import COMMITTED, PENDING, ArtifactRow, utcnow
from .validate import check_source

logger = logging.getLogger("lamin_nb")
WAIT_FOR_OTHERS_SECONDS = 600.0


@dataclass
class SaveReport:
    """What a save did, item by item. ``failed`` holds ``(artifact, exception)`` pairs."""

    saved: list[Artifact] = field(default_factory=list)
    failed: list[tuple[Artifact, BaseException]] = field(default_factory=list)
    deduplicated: list[Artifact] = field(default_factory=list)
    already_saved: list[Artifact] = field(default_factory=list)
    rolled_back: list[Artifact] = field(default_factory=list)
    atomic: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        parts = [f"saved {len(self.saved)}"]
        for label, items in (("deduplicated", self.deduplicated),
                             ("already saved", self.already_saved),
                             ("failed", self.failed), ("rolled back", self.rolled_back)):
            if items:
                parts.append(f"{label} {len(items)}")
        return ", ".join(parts)

    def message(self) -> str:
        if len(self.failed) == 1 and not (self.saved or self.rolled_back or self.deduplicated):
            artifact, exc = self.failed[0]
            return f"could not save {artifact!r}: {describe(exc)}"
        total = len(self.saved) + len(self.failed) + len(self.rolled_back)
        lines = [f"{len(self.failed)} of {total} artifacts could not be saved:"]
        lines += [f"  - {a!r}: {describe(e)}" for a, e in self.failed]
        if self.rolled_back:
            lines.append(f"rolled back (atomic save): {len(self.rolled_back)} artifact(s)")
        lines.append(f"saved ({len(self.saved)}):")
        lines += [f"  - {a!r}" for a in self.saved]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SaveReport({self.summary()})"


class _Item:
    def __init__(self, index: int, artifact: Artifact) -> None:
        self.index = index
        self.artifact = artifact
        self.state = ItemState.QUEUED
        self.error: BaseException | None = None
        self.reserved = False
        self.uploaded = False
        self.leader: _Item | None = None  # same content earlier in this batch
        self.waiting = False  # same content is being saved by another process

    @property
    def done(self) -> bool:
        return self.state.is_final


def check_records(records: Any) -> list[Artifact]:
    """Everything is validated before anything is written; a non-artifact is a TypeError."""
    if isinstance(records, Artifact):
        records = [records]
    if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
        raise TypeError(f"ln.save expects a list of artifacts, not {type(records).__name__}")
    artifacts: list[Artifact] = []
    seen: set[int] = set()
    for index, record in enumerate(records):
        if not isinstance(record, Artifact):
            raise TypeError(
                f"item {index} is a {type(record).__name__} ({_short(record)}), not an Artifact; "
                "nothing was saved"
            )
        if id(record) not in seen:
            seen.add(id(record))
            artifacts.append(record)
    for artifact in artifacts:
        if not artifact._is_saved and artifact._source is not None:
            try:
                check_source(artifact._source)
            except ValidationError as exc:
                raise ValidationError(f"{artifact!r}: {exc}; nothing was saved") from exc
    return artifacts


def save(
    records: Any,
    atomic: bool = False,
    *,
    callback: SaveCallback | None = None,
    max_workers: int | None = None,
) -> SaveReport:
    """Save many artifacts. Each is atomic on its own; ``atomic=True`` makes the batch so."""
    if not isinstance(atomic, bool):
        raise TypeError(f"atomic must be True or False, not {type(atomic).__name__}")
    artifacts = check_records(records)
    run = _SaveRun(current(), artifacts, atomic, callback or NO_PROGRESS, max_workers)
    report = run.execute()
    if report.failed:
        raise SaveError(report.message(), report) from report.failed[0][1]
    return report


def save_one(artifact: Artifact, callback: SaveCallback | None = None) -> Artifact:
    save([artifact], atomic=True, callback=callback)
    return artifact


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _default_workers(inst: Instance) -> int:
    configured = os.environ.get("LAMIN_NB_MAX_WORKERS")
    if configured:
        return max(1, int(configured))
    return 8 if inst.storage.is_local else 16


class _SaveRun:
    def __init__(self, inst: Instance, artifacts: list[Artifact], atomic: bool,
                 callback: SaveCallback, max_workers: int | None) -> None:
        self.inst = inst
        self.items = [_Item(i, a) for i, a in enumerate(artifacts)]
        self.atomic = atomic
        self.callback = callback
        self.workers = max_workers or _default_workers(inst)
        self.owner = owner_id()
        self.user = _user()
        self.cancel = threading.Event()
        self.report = SaveReport(atomic=atomic)

    # -- driver ----------------------------------------------------------------------

    def execute(self) -> SaveReport:
        self.callback.start([ItemInfo(i.index, _label(i.artifact), i.artifact.size)
                             for i in self.items])
        for item in self.items:
            self._set(item, ItemState.QUEUED)
        try:
            self._hash_all([i for i in self.items if not i.artifact._is_saved])
            todo = [i for i in self.items if not i.done]
            while todo:
                self._round(todo)
                todo = self._wait_for_others([i for i in self.items if i.waiting])
        except Exception as exc:  # noqa: BLE001 - becomes the cause of the SaveError
            self._abort(exc)
        except BaseException as exc:  # KeyboardInterrupt: undo what is in flight, then stop
            self._abort(exc)
            raise
        finally:
            self._finish_report()
        return self.report

    def _round(self, items: list[_Item]) -> None:
        if self.atomic and any(i.error for i in self.items):
            self._undo(items, ItemState.ROLLED_BACK)
            return
        reserved = self._reserve(items)
        if not reserved:
            self._settle_followers()
            return
        fault("after_reserve")
        with _LeaseKeeper(self.inst, self.owner, [i.artifact.uid for i in reserved]):
            self._upload_all(reserved)
            fault("after_upload")
            self._commit(reserved)
        self._settle_followers()

    # -- steps -----------------------------------------------------------------------

    def _hash_all(self, items: list[_Item]) -> None:
        pending = [i for i in items if i.artifact._hash is None]
        self._parallel(pending, self._hash_one)

    def _hash_one(self, item: _Item) -> None:
        self._set(item, ItemState.HASHING)
        try:
            item.artifact._compute_hash(lambda n: self._advance(item, n))
        except OSError as exc:
            self._fail(item, ValidationError(f"cannot read {_label(item.artifact)}: {describe(exc)}"),
                       exc)

    def _reserve(self, items: list[_Item]) -> list[_Item]:
        try:
            with self.inst.db.write() as session:
                return self._reserve_in(session, items)
        except LaminNbError:
            raise
        except Exception as exc:
            for item in items:
                if not item.done:
                    self._fail(item, StorageError(f"cannot reserve a database row: {describe(exc)}"),
                               exc)
            return []

    def _reserve_in(self, session: Any, items: list[_Item]) -> list[_Item]:
        known = rows.by_uids(session, [i.artifact.uid for i in items])
        by_hash = rows.by_hashes(session, [i.artifact._hash or "" for i in items])
        leaders: dict[str, _Item] = {}
        to_reserve: list[_Item] = []
        for item in items:
            if item.done:
                continue
            item.waiting = False
            own = known.get(item.artifact.uid)
            if own is not None and own.status == COMMITTED:
                item.artifact._adopt(own)
                self._set(item, ItemState.ALREADY_SAVED)
                continue
            if own is not None and own.status != PENDING:
                self._fail(item, ValidationError(f"{_label(item.artifact)} is being deleted"))
                continue
            others = [r for r in by_hash.get(item.artifact._hash or "", [])
                      if r.uid != item.artifact.uid]
            committed = [r for r in others if r.status == COMMITTED]
            if committed:
                committed.sort(key=lambda r: (r.is_trashed, r.id))
                self._dedup(item, committed[0])
            elif any(_in_flight(r) for r in others):
                item.waiting = True
            elif item.artifact._hash in leaders:
                item.leader = leaders[item.artifact._hash or ""]
            else:
                leaders[item.artifact._hash or ""] = item
                to_reserve.append(item)
        stale = [i.artifact.uid for i in to_reserve
                 if i.artifact.uid in known and known[i.artifact.uid].hash == i.artifact._hash]
        rows.delete_rows(session, stale, PENDING)  # this artifact's own earlier, failed attempt
        rows.insert_pending(session, self._pending_rows(session, to_reserve, known))
        for item in to_reserve:
            item.reserved = True
        return to_reserve

    def _pending_rows(self, session: Any, items: list[_Item],
                      known: dict[str, ArtifactRow]) -> list[dict[str, Any]]:
        latest = rows.latest_by_key(session, [i.artifact.key for i in items if i.artifact.key])
        next_version = {k: r.version + 1 for k, r in latest.items()}
        now, until = utcnow(), rows.lease_until()
        for item in items:
            a = item.artifact
            a.version = 1
            if a.key is not None:
                a.version = next_version.get(a.key, 1)
                next_version[a.key] = a.version + 1
                family = latest.get(a.key)
                if family is not None and a.uid[:16] != family.uid[:16]:
                    a.uid = family.uid[:16] + version_suffix(a.version)
        taken = rows.by_uids(session, [i.artifact.uid for i in items if i.artifact.uid not in known])
        for item in items:
            a = item.artifact
            if a.uid in taken or (a.uid in known and known[a.uid].hash != a._hash):
                a.uid = random_base62(16) + version_suffix(a.version or 1)
        return [self._row_values(i.artifact, now, until) for i in items]

    def _row_values(self, a: Artifact, now: Any, until: Any) -> dict[str, Any]:
        return {
            "uid": a.uid, "key": a.key, "description": a.description, "suffix": a.suffix,
            "size": a.size, "hash": a._hash, "hash_type": a.hash_type, "otype": a.otype,
            "version": a.version, "is_latest": False, "storage": self.inst.storage.root,
            "created_at": now, "created_by": self.user, "status": PENDING,
            "is_trashed": False, "owner": self.owner, "lease_expires_at": until,
            "updated_at": now,
        }

    def _upload_all(self, items: list[_Item]) -> None:
        self._parallel(items, self._upload_one)
        if self.inst.storage.is_local and any(i.uploaded for i in items):
            self.inst.storage.sync()

    def _upload_one(self, item: _Item) -> None:
        if self.cancel.is_set():
            return
        self._set(item, ItemState.UPLOADING)
        a = item.artifact
        assert a._source is not None
        try:
            self.inst.storage.put_file(a._source, a._object_name, a._hash,
                                       lambda n: self._advance(item, n))
            item.uploaded = True
        except _Cancelled:
            return
        except Exception as exc:
            self._fail(item, StorageError(f"could not upload {_label(a)}: {describe(exc)}"), exc)
            if self.atomic:
                self.cancel.set()

    def _commit(self, items: list[_Item]) -> None:
        ready = [i for i in items if i.uploaded and not i.done]
        if self.atomic and (self.cancel.is_set() or any(i.error for i in self.items)):
            self._undo(items, ItemState.ROLLED_BACK)
            return
        for item in ready:
            self._set(item, ItemState.COMMITTING)
        try:
            with self.inst.db.write() as session:
                fault("before_commit")
                mine = set(rows.claim_pending(session, [i.artifact.uid for i in ready], self.owner))
                rows.mark_committed(session, sorted(mine))
                rows.refresh_latest(session, [i.artifact.key for i in ready if i.artifact.uid in mine])
                stored = rows.by_uids(session, sorted(mine))
        except Exception as exc:
            for item in ready:
                self._fail(item, StorageError(f"could not commit: {describe(exc)}"), exc)
            self._undo(items, ItemState.FAILED)
            return
        fault("after_commit")
        for item in ready:
            row = stored.get(item.artifact.uid)
            if row is None:
                self._fail(item, StorageError("its reservation expired and was rolled back"))
                continue
            item.artifact._adopt(row)
            keep_staged_copy(self.inst, item.artifact)
            self._set(item, ItemState.SAVED)
        self._undo(items, ItemState.FAILED)

    def _undo(self, items: list[_Item], final: ItemState) -> None:
        """Remove uploads and pending rows; leave both if the row can no longer be checked."""
        reserved = [i for i in items if i.reserved and i.state != ItemState.SAVED]
        for item in items:
            if not item.done:
                self._set(item, final)
        if not reserved:
            return
        uids = [i.artifact.uid for i in reserved]
        try:
            with self.inst.db.read() as session:
                status = rows.statuses(session, uids)
            # a row that is gone was rolled back by repair: the object is still ours to remove
            removable = [u for u in uids if status.get(u, PENDING) == PENDING
                         and self._delete_object(u)]
            with self.inst.db.write() as session:
                mine = set(rows.claim_pending(session, removable, self.owner))
                rows.delete_rows(session, sorted(mine), PENDING)
        except Exception as exc:  # noqa: BLE001 - recovery finishes; the user gets the first error
            logger.warning("left %d pending row(s) for ln.repair(): %s", len(uids), describe(exc))
            return
        for item in reserved:
            item.reserved = False

    def _delete_object(self, uid: str) -> bool:
        item = next(i for i in self.items if i.artifact.uid == uid)
        name = item.artifact._object_name
        try:
            self.inst.storage.delete(name)
            self.inst.storage.delete_temps(name)
            return True
        except Exception as exc:  # noqa: BLE001 - the pending row stays for recovery
            logger.warning("could not remove %s: %s", name, describe(exc))
            return False

    def _dedup(self, item: _Item, row: ArtifactRow) -> None:
        item.artifact._adopt(row)
        keep_staged_copy(self.inst, item.artifact)
        note = " (it is in the trash; call .restore())" if row.is_trashed else ""
        logger.info("returning existing artifact with same hash: %s%s", row.uid, note)
        self._set(item, ItemState.DEDUPLICATED, f"same content as {row.uid}{note}")

    def _settle_followers(self) -> None:
        for item in self.items:
            leader = item.leader
            if leader is None or item.done or not leader.done:
                continue
            if leader.state in (ItemState.SAVED, ItemState.DEDUPLICATED):
                item.artifact._adopt_from(leader.artifact)
                keep_staged_copy(self.inst, item.artifact)
                self._set(item, ItemState.DEDUPLICATED, f"same content as {leader.artifact.uid}")
            elif leader.state == ItemState.ROLLED_BACK:
                self._set(item, ItemState.ROLLED_BACK)
            else:
                self._fail(item, StorageError(f"same content as item {leader.index}, which failed"),
                           leader.error)

    def _wait_for_others(self, waiting: list[_Item]) -> list[_Item]:
        """Same content is in flight elsewhere: wait until it is committed or rolled back."""
        if not waiting:
            return []
        deadline = time.monotonic() + WAIT_FOR_OTHERS_SECONDS
        hashes = {i.artifact._hash or "" for i in waiting}
        while time.monotonic() < deadline:
            time.sleep(0.2)
            with self.inst.db.read() as session:
                found = rows.by_hashes(session, hashes)
            if not any(_in_flight(r) for rs in found.values() for r in rs):
                return waiting
        for item in waiting:
            item.waiting = False
            self._fail(item, StorageError("the same content is still being saved by another process"))
        return []

    def _abort(self, exc: BaseException) -> None:
        self.cancel.set()
        for item in self.items:
            if not item.done:
                self._fail(item, StorageError(f"save interrupted: {describe(exc)}"), exc)
        self._undo([i for i in self.items if i.reserved], ItemState.FAILED)

    # -- helpers ---------------------------------------------------------------------

    def _parallel(self, items: list[_Item], fn: Any) -> None:
        if len(items) <= 1 or self.workers == 1:
            for item in items:
                fn(item)
            return
        pool = ThreadPoolExecutor(max_workers=min(self.workers, len(items)))
        try:
            futures = [pool.submit(fn, item) for item in items]
            wait(futures)
            for future in futures:
                future.result()
        except BaseException:
            self.cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _advance(self, item: _Item, nbytes: int) -> None:
        if self.cancel.is_set() and item.state == ItemState.UPLOADING:
            raise _Cancelled()
        self.callback.advance(item.index, nbytes)

    def _set(self, item: _Item, state: ItemState, detail: str = "") -> None:
        item.state = state
        self.callback.state(item.index, state, detail)

    def _fail(self, item: _Item, error: BaseException, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        item.error = error
        self._set(item, ItemState.FAILED, describe(cause or error))

    def _finish_report(self) -> None:
        buckets = {ItemState.SAVED: self.report.saved, ItemState.DEDUPLICATED: self.report.deduplicated,
                   ItemState.ALREADY_SAVED: self.report.already_saved,
                   ItemState.ROLLED_BACK: self.report.rolled_back}
        for item in self.items:
            if item.state == ItemState.FAILED:
                self.report.failed.append((item.artifact, item.error or StorageError("failed")))
            elif item.state in buckets:
                buckets[item.state].append(item.artifact)
        self.callback.finish(self.report)


class _Cancelled(Exception):
    pass


class _LeaseKeeper:
    """Renews the leases of a batch in flight so a slow upload is never taken for a crash."""

    def __init__(self, inst: Instance, owner: str, uids: Sequence[str]) -> None:
        self.inst, self.owner, self.uids = inst, owner, list(uids)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lamin-nb-lease", daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        interval = max(rows.lease_seconds() / 3, 1.0)
        while not self.stop.wait(interval):
            try:
                with self.inst.db.write() as session:
                    rows.renew_leases(session, self.uids, self.owner)
            except Exception as exc:  # noqa: BLE001 - the next round or recovery copes
                logger.warning("could not renew upload leases: %s", describe(exc))


def _in_flight(row: ArtifactRow) -> bool:
    """A pending row whose writer may still be alive; an expired one is left to recovery."""
    return (row.status == PENDING and row.lease_expires_at is not None
            and row.lease_expires_at >= utcnow())


def _label(artifact: Artifact) -> str:
    if artifact.key:
        return artifact.key
    if artifact._source is not None and not artifact._staged:
        return artifact._source.name
    return artifact.description or artifact.uid


def _user() -> str:
    try:
        return getpass.getuser()[:128]
    except Exception:  # noqa: BLE001 - no login name in some containers
        return str(os.getuid())
