"""Finishing what interrupted writers left: pending rows roll back, deleting rows roll forward.

A row is finished once its lease has expired, or at once when its writer is known to be gone
(``owners``: a dead process on this host, or a run of this process that no longer runs).
Before touching storage, recovery takes the row over (a conditional UPDATE of its owner and
lease). From then on the original writer can neither commit it (its commit claims rows by
owner) nor revert a delete, so a slow writer whose lease ran out can never end up with a
committed row whose object recovery just removed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, delete, or_, select, update

from . import rows
from .errors import describe
from .models import DELETING, PENDING, ArtifactRow, utcnow
from .owners import running
from .resources import Resources
from .resumable import is_resumable

logger = logging.getLogger("lamin_nb")


def expired_rows(
    inst: Resources,
    now: datetime | None = None,
    all_leases: bool = False,
) -> list[ArtifactRow]:
    """Pending and deleting rows whose lease has run out or whose writer is gone (every one
    with ``all_leases``)."""
    stmt = select(ArtifactRow).where(ArtifactRow.status.in_((PENDING, DELETING)))
    with inst.db.read() as session:
        found = list(session.scalars(stmt.order_by(ArtifactRow.id)))
    if all_leases:
        return found
    now = now or utcnow()
    return [r for r in found if _expired(r, now) or rows.abandoned(r)]


def _expired(row: ArtifactRow, now: datetime) -> bool:
    return row.lease_expires_at is None or row.lease_expires_at < now


def _lease_over(now: datetime) -> ColumnElement[bool]:
    return or_(ArtifactRow.lease_expires_at.is_(None), ArtifactRow.lease_expires_at < now)


def claim(inst: Resources, row: ArtifactRow, new_owner: str, all_leases: bool = False) -> bool:
    """Take ``row`` over if it is still in the state we saw (and still expired, unless its
    writer is gone: then the unchanged owner is proof enough that nobody works on it)."""
    owned = ArtifactRow.owner.is_(None) if row.owner is None else ArtifactRow.owner == row.owner
    stmt = (
        update(ArtifactRow)
        .where(ArtifactRow.uid == row.uid, ArtifactRow.status == row.status, owned)
        .values(owner=new_owner, lease_expires_at=rows.lease_until())
    )
    if not (all_leases or rows.abandoned(row)):
        stmt = stmt.where(_lease_over(utcnow()))
    with inst.db.write() as session:
        result: CursorResult[Any] = session.execute(stmt)  # type: ignore[assignment]
        return bool(result.rowcount)


def finish(
    inst: Resources,
    row: ArtifactRow,
    all_leases: bool = False,
    freed: list[int] | None = None,
) -> bool:
    """Roll one interrupted row back (pending) or forward (deleting): object first, then row.
    A journaled upload of a pending row is aborted; the bytes it held are added to ``freed``.

    Returns False when the row was no longer ours to finish (its writer committed, reverted
    or renewed it in the meantime); nothing is touched then.
    """
    with running(recovery=True) as me:
        if not claim(inst, row, me, all_leases):
            return False
        name = f"{row.uid}{row.suffix}"
        transfer = getattr(row, "transfer_id", None)
        if row.status == PENDING and transfer:
            held = inst.storage.abort_upload(name, transfer)
            if freed is not None:
                freed.append(held)
        inst.storage.delete(name)
        inst.storage.delete_temps(name)
        with inst.db.write() as session:
            session.execute(
                delete(ArtifactRow).where(
                    ArtifactRow.uid == row.uid,
                    ArtifactRow.status == row.status,
                    ArtifactRow.owner == me,
                )
            )
            if row.status == DELETING:
                rows.refresh_latest(session, [row.key])
    return True


def finish_all(
    inst: Resources,
    targets: Sequence[ArtifactRow],
    all_leases: bool = False,
) -> list[tuple[str, str | None]]:
    """Finish each row; returns ``(uid, error or None)`` per row that was ours to finish."""
    results: list[tuple[str, str | None]] = []
    for row in targets:
        try:
            if finish(inst, row, all_leases):
                results.append((row.uid, None))
        except Exception as exc:  # noqa: BLE001 - one stuck row must not stop the others
            results.append((row.uid, describe(exc)))
    return results


def recover_expired(inst: Resources) -> int:
    """Run on connect: finish rows whose lease expired; returns how many were handled.
    Interrupted uploads younger than the grace period are kept for a save to resume."""
    results = finish_all(inst, [r for r in expired_rows(inst) if not is_resumable(r)])
    failures = [r for r in results if r[1] is not None]
    for uid, error in failures:
        logger.warning("could not finish interrupted row %s: %s", uid, error)
    if len(results) > len(failures):
        logger.info("finished %d interrupted save(s)/delete(s)", len(results) - len(failures))
    return len(results) - len(failures)
