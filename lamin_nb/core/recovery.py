"""Finishing what interrupted writers left: pending rows roll back, deleting rows roll forward."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select

from . import rows
from .errors import describe
from .instance import Instance
from .models import DELETING, PENDING, ArtifactRow, utcnow

logger = logging.getLogger("lamin_nb")


def expired_rows(inst: Instance, now: datetime | None = None, all_leases: bool = False,
                 ) -> list[ArtifactRow]:
    """Pending and deleting rows whose lease has run out (every one with ``all_leases``)."""
    stmt = select(ArtifactRow).where(ArtifactRow.status.in_((PENDING, DELETING)))
    if not all_leases:
        now = now or utcnow()
        stmt = stmt.where(or_(ArtifactRow.lease_expires_at.is_(None),
                              ArtifactRow.lease_expires_at < now))
    with inst.db.read() as session:
        return list(session.scalars(stmt.order_by(ArtifactRow.id)))


def finish(inst: Instance, row: ArtifactRow) -> None:
    """Roll one interrupted row back (pending) or forward (deleting): object first, then row.

    The row is removed only if it is still in the state we saw, so a writer that committed in
    the meantime keeps its artifact.
    """
    name = f"{row.uid}{row.suffix}"
    with inst.db.read() as session:
        if rows.statuses(session, [row.uid]).get(row.uid) != row.status:
            return
    inst.storage.delete(name)
    inst.storage.delete_temps(name)
    with inst.db.write() as session:
        rows.delete_rows(session, [row.uid], row.status)
        if row.status == DELETING:
            rows.refresh_latest(session, [row.key])


def finish_all(inst: Instance, targets: Sequence[ArtifactRow]) -> list[tuple[str, str | None]]:
    """Finish each row; returns ``(uid, error or None)`` per row."""
    results: list[tuple[str, str | None]] = []
    for row in targets:
        try:
            finish(inst, row)
            results.append((row.uid, None))
        except Exception as exc:  # noqa: BLE001 - one stuck row must not stop the others
            results.append((row.uid, describe(exc)))
    return results


def recover_expired(inst: Instance) -> int:
    """Run on connect: finish rows whose lease expired; returns how many were handled."""
    targets = expired_rows(inst)
    failures = [r for r in finish_all(inst, targets) if r[1] is not None]
    for uid, error in failures:
        logger.warning("could not finish interrupted row %s: %s", uid, error)
    if targets:
        logger.info("finished %d interrupted save(s)/delete(s)", len(targets) - len(failures))
    return len(targets) - len(failures)
