"""The delete protocol: trash (reversible) and permanent (deleting -> object gone -> row gone)."""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from . import rows
from .db import database_errors
from .errors import NotFoundError, StorageError, describe
from .faults import fault
from .instance import Instance
from .models import COMMITTED, DELETING, ArtifactRow, utcnow
from .owners import running
from .record import ArtifactRecord, cache_path, item_label
from .txstate import Transaction, joined

logger = logging.getLogger("lamin_nb")


def _committed_row(session: object, artifact: ArtifactRecord) -> ArtifactRow:
    stmt = select(ArtifactRow).where(
        ArtifactRow.uid == artifact.uid, ArtifactRow.status == COMMITTED
    )
    row = session.scalars(stmt).first()  # type: ignore[attr-defined]
    if row is None:
        raise NotFoundError(f"{artifact!r} is not a saved artifact (anymore)")
    return row


def _set_trashed(artifact: ArtifactRecord, trashed: bool) -> None:
    inst = artifact.home()
    doing = f"{'trashing' if trashed else 'restoring'} {artifact.key or artifact.uid}"
    tx = joined(inst)
    if tx is not None:
        _in_block(tx, inst, artifact, "trash" if trashed else "restore", doing)
        artifact.is_trashed = trashed
        return
    with database_errors(doing), inst.db.write() as session:
        row = _committed_row(session, artifact)
        row.is_trashed = trashed
        row.updated_at = utcnow()
        if row.key is None:  # its own family: latest exactly while it is not in the trash
            row.is_latest = not trashed
        session.flush()
        rows.refresh_latest(session, [row.key])
        session.refresh(row)
        artifact.adopt_row(row)


def trash(artifact: ArtifactRecord) -> None:
    """Hide from queries; the object stays and ``restore()`` brings it back."""
    _set_trashed(artifact, True)


def restore(artifact: ArtifactRecord) -> None:
    _set_trashed(artifact, False)


def delete_permanently(artifact: ArtifactRecord) -> None:
    """Never leaves a committed row without its object: the row is marked first.

    If the object cannot be deleted, the row goes back to committed and the artifact is intact;
    if even that fails, the ``deleting`` row is rolled forward by ``ln.repair()``.
    """
    inst = artifact.home()
    doing = f"deleting {artifact.key or artifact.uid}"
    tx = joined(inst)
    if tx is not None:  # marked in the block's commit; the object goes after it
        _in_block(tx, inst, artifact, "delete", doing)
        artifact.deleted_uid = artifact.uid
        artifact.status = None
        artifact.is_latest = False
        return
    with running() as owner:  # a deleting row left behind is then known to be abandoned
        with database_errors(doing), inst.db.write() as session:
            row = _committed_row(session, artifact)
            row.status, row.owner, row.lease_expires_at = DELETING, owner, rows.lease_until()
            session.flush()
            rows.refresh_latest(session, [row.key])
        fault("mid_delete")
        name = artifact.object_name
        try:
            inst.storage.delete(name)
        except Exception as exc:
            _after_failed_delete(inst, artifact, exc, owner)
        fault("after_object_delete")
        left = "object deleted, row left for repair"
        with database_errors(doing, left, "run ln.repair() once the database is reachable"):
            with inst.db.write() as session:
                rows.delete_rows(session, [artifact.uid], DELETING)
    _drop_cached_copy(inst, artifact)
    artifact.deleted_uid = artifact.uid  # saved again, it gets a new uid (issued once)
    artifact.status = None
    artifact.is_latest = False


def _in_block(
    tx: Transaction, inst: Instance, artifact: ArtifactRecord, kind: str, doing: str
) -> None:
    """Inside ``ln.transaction()``: check the artifact is there as the block sees it, then
    record the change for the block's commit (nothing is written now)."""
    uid = artifact.uid
    if uid in tx.deleted:
        raise NotFoundError(f"{artifact!r} was deleted permanently in this transaction")
    if uid not in tx.saved:
        with database_errors(doing), inst.db.read_rows() as conn:
            row = rows.by_uids(conn, [uid]).get(uid)
        if row is None or row.status != COMMITTED:
            raise NotFoundError(f"{artifact!r} is not a saved artifact (anymore)")
    tx.change(kind, artifact, item_label(artifact))


def _after_failed_delete(
    inst: Instance, artifact: ArtifactRecord, exc: Exception, owner: str
) -> None:
    """The object delete raised: its outcome decides whether the row goes back or goes too.

    A request can fail after the server acted on it, so look before reverting: reverting a row
    whose object is gone would leave a committed row without its object.
    """
    try:
        present = inst.storage.exists(artifact.object_name)
    except Exception as probe:  # noqa: BLE001 - unknown: the deleting row waits for repair
        raise StorageError(
            f"could not delete {artifact!r}: {describe(exc)}; it stays hidden, marked deleting, "
            f"until ln.repair() finishes (storage unreachable: {describe(probe)})"
        ) from exc
    if not present:
        logger.info("%s was deleted although the request failed: %s", artifact.uid, describe(exc))
        return
    _revert(inst, artifact, owner)
    raise StorageError(
        f"could not delete {artifact!r}: {describe(exc)}; the artifact is unchanged"
    ) from exc


def _drop_cached_copy(inst: Instance, artifact: ArtifactRecord) -> None:
    cache_path(inst, artifact).unlink(missing_ok=True)  # only remote objects have one


def _revert(inst: Instance, artifact: ArtifactRecord, owner: str) -> None:
    """Back to committed, unless recovery took the row over (it then finishes the delete)."""
    try:
        with inst.db.write() as session:
            session.execute(
                update(ArtifactRow)
                .where(
                    ArtifactRow.uid == artifact.uid,
                    ArtifactRow.status == DELETING,
                    ArtifactRow.owner == owner,
                )
                .values(status=COMMITTED, owner=None, lease_expires_at=None)
            )
            rows.refresh_latest(session, [artifact.key])
    except Exception as exc:  # noqa: BLE001 - the deleting row is finished by ln.repair()
        logger.warning("left %s marked deleting for ln.repair(): %s", artifact.uid, describe(exc))
