"""``repair``: a plan from ``check`` (dry run by default), applied only on request.

Orphans are moved into ``_quarantine/<timestamp>/`` rather than deleted, and purged only after
a retention period, so a wrong call can be undone with ``restore_quarantined``. Missing objects
cannot be recreated: their rows are reported, and marked ``lost`` only when asked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from . import recovery, rows, staged
from .consistency import ConsistencyReport, InFlight, check
from .db import database_errors
from .errors import DatabaseError, ValidationError, describe
from .instance import Instance, current
from .models import COMMITTED, LOST, PENDING, ArtifactRow, utcnow
from .storage import QUARANTINE, owner_of_temp
from .units import human_age, human_size

logger = logging.getLogger("lamin_nb")
STAMP = "%Y%m%dT%H%M%S"
UID_LENGTH = 20
DEFAULT_RETENTION = 7 * 86400


@dataclass
class RepairAction:
    """One step of a ``RepairPlan``: what (``kind``), on what (``target``), and its outcome."""

    kind: str  # roll back pending | roll forward deleting | quarantine orphan | mark lost |
    #            abort incomplete upload | remove abandoned browser upload | purge quarantined
    target: str
    detail: str = ""
    done: bool = False
    error: str | None = None
    ref: str = ""  # the S3 upload id of an incomplete upload


@dataclass
class RepairPlan:
    """What ``ln.repair`` would do (dry run) or did, made from a ``ConsistencyReport``.

    Attributes
    ----------
    actions : list of RepairAction
        The steps: ``roll back pending``, ``roll forward deleting``, ``quarantine orphan``,
        ``mark lost``, ``abort incomplete upload``, ``purge quarantined``. Once applied, each
        has ``done`` set, or ``error`` saying why it failed.
    skipped : list of RepairAction
        Findings left alone, with the reason in ``detail``: rows whose writer is still at
        work, orphans and uploads younger than the grace period, missing objects without
        ``mark_lost``, size or hash mismatches, and steps whose situation changed before
        they were applied.
    report : ConsistencyReport
        The check the plan was made from.
    dry_run : bool
        True when nothing was applied.
    applied : bool
        True after ``ln.repair(dry_run=False)`` ran the actions.
    after : ConsistencyReport or None
        The check run after applying; None for a dry run.
    freed_bytes : int
        Bytes of interrupted uploads (S3 parts, local partial files) that were discarded.
    rounds : int
        Plans applied: more than one when the check found more than ``LIMIT`` findings of a
        kind (each round repairs the next batch; ``actions`` holds the last round's).
    done_earlier : int
        Actions done in the rounds before the last.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> plan = ln.repair()  # doctest: +SKIP
    >>> plan  # doctest: +SKIP
    repair plan (dry run): quarantine orphan x1; left alone: 0
      quarantine orphan: ... (12 bytes, 7200 s old)
    >>> ln.repair(dry_run=False).after.is_consistent  # doctest: +SKIP
    True
    """

    actions: list[RepairAction]
    skipped: list[RepairAction]
    report: ConsistencyReport
    dry_run: bool = True
    applied: bool = False
    after: ConsistencyReport | None = field(default=None, repr=False)
    freed_bytes: int = 0
    rounds: int = 1
    done_earlier: int = 0

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to do (skipped findings do not count)."""
        return not self.actions

    def summary(self) -> str:
        """One line: the mode, the count of each kind of action, and how many were left alone.

        Returns
        -------
        str
            For example ``"repair plan (dry run): roll back pending x2; left alone: 1"``, or
            ``"nothing to repair"``.
        """
        mode = "applied" if self.applied else "plan (dry run)"
        if not self.actions:
            return "nothing to repair" + (
                f" ({len(self.skipped)} left alone)" if self.skipped else ""
            )
        counts: dict[str, int] = {}
        for action in self.actions:
            counts[action.kind] = counts.get(action.kind, 0) + 1
        listed = ", ".join(f"{kind} x{n}" for kind, n in counts.items())
        freed = f"; freed {human_size(self.freed_bytes)}" if self.freed_bytes else ""
        earlier = (
            f"; {self.rounds} rounds, {self.done_earlier} done before the last"
            if self.rounds > 1
            else ""
        )
        return f"repair {mode}: {listed}; left alone: {len(self.skipped)}{freed}{earlier}"

    def __repr__(self) -> str:
        lines = [self.summary()]
        for action in self.actions[:50] + self.skipped[:50]:
            state = "error: " + action.error if action.error else ("done" if action.done else "")
            lines.append(f"  {action.kind}: {action.target} {action.detail} {state}".rstrip())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain, JSON-ready values (what the REST API serves).

        Returns
        -------
        dict
            ``summary``, ``dry_run``, ``applied``, and ``actions`` and ``skipped`` as lists of
            dicts with the fields of ``RepairAction``.
        """
        return {
            "summary": self.summary(),
            "dry_run": self.dry_run,
            "applied": self.applied,
            "freed_bytes": self.freed_bytes,
            "actions": [vars(a) for a in self.actions],
            "skipped": [vars(a) for a in self.skipped],
        }


def repair(
    dry_run: bool = True,
    grace_seconds: float = 3600,
    mark_lost: bool = False,
    purge: bool = False,
    retention_seconds: float = DEFAULT_RETENTION,
) -> RepairPlan:
    """Plan (and with ``dry_run=False`` apply) what makes the instance consistent again.

    ``grace_seconds=0`` also treats every lease as expired: use it only when no writer runs.

    The plan comes from ``ln.check()``: pending rows whose lease expired or whose writer is
    gone are rolled back (object and row deleted), such deleting rows are rolled forward,
    interrupted large uploads (``ln.uploads()``) are kept until they are older than
    ``grace_seconds``, for a save of the same content to resume, then aborted (the bytes freed
    are in ``RepairPlan.freed_bytes``), orphans are moved into ``_quarantine/<timestamp>/``
    under the managed prefix (undo with
    ``ln.restore_quarantined``), incomplete S3 multipart uploads are aborted. Missing objects
    cannot be recreated; their rows are marked lost only with ``mark_lost=True``. Nothing
    outside the managed prefix is ever touched. When applied, each action is checked again
    first (a writer may have finished it meanwhile) and a failing action is recorded in the
    plan, not raised.

    Parameters
    ----------
    dry_run : bool
        True (default): only plan. False: apply the plan.
    grace_seconds : float
        Orphans and incomplete uploads younger than this are left alone (a writer may still
        be at work); 0 also treats every lease as expired.
    mark_lost : bool
        Mark committed rows whose object is missing as ``lost`` (hidden from queries, kept
        for the record).
    purge : bool
        Also delete quarantined objects older than ``retention_seconds``.
    retention_seconds : float
        How long quarantined objects are kept before ``purge`` deletes them (default: 7
        days).

    Returns
    -------
    RepairPlan
        The actions (done or not, with any error) and what was left alone; after applying,
        ``.after`` holds a fresh check.

    Raises
    ------
    ValidationError
        ``grace_seconds`` or ``retention_seconds`` is negative, not finite or too large.
    InstanceError
        There is no current instance.
    OSError
        The storage cannot be listed or read (as the filesystem reports it).
    TypeError
        A flag is not True or False, or a duration is not a number.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.repair()  # doctest: +SKIP
    nothing to repair
    >>> ln.repair(dry_run=False, grace_seconds=0)  # doctest: +SKIP
    repair applied: roll back pending x1; left alone: 0
      roll back pending: ... done
    """
    for name, flag in (("dry_run", dry_run), ("mark_lost", mark_lost), ("purge", purge)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, not {type(flag).__name__}")
    from .validate import check_seconds  # NaN, inf and huge values would break date arithmetic

    grace_seconds = check_seconds("grace_seconds", grace_seconds)
    retention_seconds = check_seconds("retention_seconds", retention_seconds)
    inst = current()
    report = check(instance=inst)
    plan = _plan(inst, report, grace_seconds, mark_lost, purge, retention_seconds)
    plan.dry_run = dry_run
    if not dry_run:
        _apply(inst, plan, grace_seconds == 0)
        plan.applied = True
        try:
            plan.after = check(instance=inst)
            _more_rounds(inst, plan, grace_seconds, mark_lost)
        except DatabaseError as exc:  # the actions are done; only the look afterwards failed
            logger.warning("repair applied; the check afterwards failed: %s", exc)
    return plan


def _more_rounds(inst: Instance, plan: RepairPlan, grace: float, mark_lost: bool) -> None:
    """A check holds at most ``LIMIT`` findings of a kind: while the plan came from a check
    that had more, and its round did something, plan and repair the next batch (the plan
    keeps counts of earlier rounds, not their actions: memory stays flat however broken the
    instance is)."""
    planned_from = plan.report
    while planned_from.truncated and plan.after is not None and any(a.done for a in plan.actions):
        planned_from = plan.after
        more = _plan(inst, planned_from, grace, mark_lost, False, DEFAULT_RETENTION)
        _apply(inst, more, grace == 0)
        plan.rounds += 1
        plan.done_earlier += sum(a.done for a in plan.actions)
        plan.actions, plan.skipped = more.actions, more.skipped
        plan.freed_bytes += more.freed_bytes
        plan.after = check(instance=inst)


def _plan(
    inst: Instance,
    report: ConsistencyReport,
    grace: float,
    mark_lost: bool,
    purge: bool,
    retention: float,
) -> RepairPlan:
    actions: list[RepairAction] = []
    skipped: list[RepairAction] = []
    for row in report.pending:
        # an interrupted upload a save can resume is kept for the grace period
        due = row.stuck or grace == 0 or (row.abandoned and row.age_seconds >= grace)
        detail = _in_flight_detail(row, pending=True)
        if row.resumable and not due:
            detail = f"({row.name}; interrupted upload: save it again to resume)"
        (actions if due else skipped).append(RepairAction("roll back pending", row.uid, detail))
    for row in report.deleting:
        target = actions if (row.stuck or grace == 0) else skipped
        detail = _in_flight_detail(row, pending=False)
        target.append(RepairAction("roll forward deleting", row.uid, detail))
    for orphan in report.orphans:
        target = actions if orphan.age_seconds >= grace else skipped
        target.append(
            RepairAction(
                "quarantine orphan",
                orphan.name,
                f"({orphan.size} bytes, {human_age(orphan.age_seconds)} old)",
            )
        )
    for missing in report.missing:
        if mark_lost:
            actions.append(
                RepairAction("mark lost", missing.uid, f"(object {missing.name} missing)")
            )
        else:
            skipped.append(
                RepairAction(
                    "missing object",
                    missing.uid,
                    f"({missing.name}; pass mark_lost=True to mark it lost)",
                )
            )
    for mismatch in report.mismatched:
        skipped.append(
            RepairAction(f"{mismatch.kind} mismatch", mismatch.uid, f"({mismatch.name})")
        )
    uploads, young_uploads = _incomplete_uploads(inst, report, grace)
    actions += uploads
    skipped += young_uploads
    for upload in staged.abandoned(grace, instance=inst.name):  # browser uploads never saved
        if upload.state == staged.RECEIVING:
            actions.append(
                RepairAction("remove abandoned browser upload", upload.id, f"({upload.name})")
            )
    if purge:
        actions += [RepairAction("purge quarantined", name) for name in _purgeable(inst, retention)]
    return RepairPlan(actions, skipped, report)


def _in_flight_detail(row: InFlight, pending: bool) -> str:
    notes = [row.name]
    if row.transaction:  # pending: never committed, so rolled back, never forward
        notes.append("uncommitted transaction" if pending else "committed transaction")
    if row.owner_alive is False:
        notes.append("owner not alive")
    return f"({'; '.join(notes)})"


def _apply(inst: Instance, plan: RepairPlan, all_leases: bool) -> None:
    with database_errors("ln.repair()"):
        found = recovery.expired_rows(inst, all_leases=all_leases)
    stuck = {row.uid: row for row in found}
    stamp = utcnow().strftime(STAMP)
    for action in list(plan.actions):
        freed: list[int] = []
        try:
            action.done = _apply_one(inst, action, stuck, stamp, all_leases, freed)
            if sum(freed):
                plan.freed_bytes += sum(freed)
                action.detail += f" (freed {human_size(sum(freed))})"
        except Exception as exc:  # noqa: BLE001 - report per action, carry on with the rest
            action.error = describe(exc)
            logger.warning("repair %s %s failed: %s", action.kind, action.target, action.error)
            continue
        if not action.done:  # the world moved on since the plan was made: nothing was touched
            plan.actions.remove(action)
            plan.skipped.append(action)


def _apply_one(
    inst: Instance,
    action: RepairAction,
    stuck: dict[str, ArtifactRow],
    stamp: str,
    all_leases: bool,
    freed: list[int],
) -> bool:
    if action.kind in ("roll back pending", "roll forward deleting"):
        row = stuck.get(action.target)
        if row is None or not recovery.finish(inst, row, all_leases, freed):
            action.detail += " left alone: its writer finished or renewed it meanwhile"
            return False
    elif action.kind == "quarantine orphan":
        if _has_row(inst, action.target):
            action.detail += " left alone: a row claims it now"
            return False
        if inst.storage.exists(action.target):
            inst.storage.move(action.target, f"{QUARANTINE}/{stamp}/{action.target}")
    elif action.kind == "mark lost":
        _mark_lost(inst, action.target)
    elif action.kind == "abort incomplete upload":
        freed.append(inst.storage.abort_upload(action.target, action.ref))
    elif action.kind == "remove abandoned browser upload":
        return staged.sweep_one(action.target)
    elif action.kind == "purge quarantined":
        inst.storage.delete(action.target)
    return True


def _has_row(inst: Instance, name: str) -> bool:
    """Does a row own the object called ``name`` (any status), or the temporary upload called
    ``name`` (only a pending row: beside a committed object, a temp is a leftover)?"""
    owner = owner_of_temp(name)
    base = owner or name
    uid = base[:UID_LENGTH]
    with inst.db.read() as session:
        row = session.scalars(select(ArtifactRow).where(ArtifactRow.uid == uid)).first()
    if row is None or f"{row.uid}{row.suffix}" != base:
        return False
    return owner is None or row.status == PENDING


def _mark_lost(inst: Instance, uid: str) -> None:
    """Missing objects cannot come back: hide the row, keep it for the record."""
    with inst.db.write() as session:
        row = session.scalars(
            select(ArtifactRow).where(ArtifactRow.uid == uid, ArtifactRow.status == COMMITTED)
        ).first()
        if row is None:
            return
        row.status, row.is_latest, row.updated_at = LOST, False, utcnow()
        session.flush()
        rows.refresh_latest(session, [row.key])


def _incomplete_uploads(
    inst: Instance,
    report: ConsistencyReport,
    grace: float,
) -> tuple[list[RepairAction], list[RepairAction]]:
    """Uploads that a killed writer never completed (S3 multipart: invisible, but billed)."""
    # a journaled upload goes with its row (rolled back above, or kept for a resume)
    live = {p.name for p in report.pending if (not p.stuck and grace > 0) or p.journaled}
    now = utcnow()
    actions: list[RepairAction] = []
    skipped: list[RepairAction] = []
    try:
        uploads = list(inst.storage.incomplete_uploads())
    except Exception as exc:  # noqa: BLE001 - e.g. no s3:ListBucketMultipartUploads permission
        skipped.append(RepairAction("incomplete uploads", "(not listed)", describe(exc)))
        return actions, skipped
    for upload in uploads:
        age = (now - upload.started).total_seconds()
        action = RepairAction(
            "abort incomplete upload",
            upload.name,
            f"({human_age(age)} old)",
            ref=upload.upload_id,
        )
        (skipped if upload.name in live or age < grace else actions).append(action)
    return actions, skipped


def _purgeable(inst: Instance, retention: float) -> list[str]:
    cutoff = utcnow() - timedelta(seconds=retention)
    names = []
    for info in inst.storage.list_objects(QUARANTINE):
        stamp = info.name.split("/")[1] if info.name.count("/") >= 2 else ""
        try:
            moved = datetime.strptime(stamp, STAMP)
        except ValueError:
            moved = info.mtime
        if moved <= cutoff:
            names.append(info.name)
    return names


def list_quarantined() -> list[str]:
    """The objects ``ln.repair`` moved into quarantine and that are still there.

    Returns
    -------
    list of str
        Names under the managed prefix, ``_quarantine/<timestamp>/<original name>``.

    Raises
    ------
    InstanceError
        There is no current instance.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.list_quarantined()  # doctest: +SKIP
    ['_quarantine/20260102T030405/stray.bin']
    """
    return [info.name for info in current().storage.list_objects(QUARANTINE)]


def restore_quarantined(names: list[str] | str | None = None) -> list[str]:
    """Move quarantined objects back (all, or those whose original name is given).

    A restored object no row claims is an orphan again for ``ln.check``.

    Parameters
    ----------
    names : list of str or str or None
        Original names (or quarantined names, as ``list_quarantined`` shows them) to
        restore; names not in quarantine are ignored. None: every quarantined object.

    Returns
    -------
    list of str
        The original names restored.

    Raises
    ------
    ValidationError
        An object with the original name exists again; objects handled before it were
        restored, the rest stay in quarantine.
    InstanceError
        There is no current instance.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.restore_quarantined("stray.bin")  # doctest: +SKIP
    ['stray.bin']
    """
    inst = current()
    wanted = {names} if isinstance(names, str) else set(names) if names is not None else None
    restored = []
    for quarantined in list_quarantined():
        original = quarantined.split("/", 2)[-1]
        if wanted is not None and original not in wanted and quarantined not in wanted:
            continue
        if inst.storage.exists(original):
            raise ValidationError(f"cannot restore {original}: an object with that name exists")
        inst.storage.move(quarantined, original)
        restored.append(original)
    return restored
