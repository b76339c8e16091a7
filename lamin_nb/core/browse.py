"""Read-only views for tools that show an instance: the JupyterLab sidebar and status bar.

Every function takes the instance explicitly and never changes which one is current, so a
Jupyter server can show any known instance while kernels switch theirs. Which rows are
visible is decided by ``query.visible``, as for ``Artifact.filter``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from .errors import NotFoundError
from .instance import Instance
from .models import (
    ARTIFACT_FIELDS,
    DELETING,
    LOST,
    PENDING,
    ArtifactRow,
    CountRow,
    utcnow,
)
from .query import visible
from .settings import InstanceSettings, mask_options, mask_url

UID_STEM = 16  # the versions of one artifact share the first 16 characters of their uid


def describe_instance(settings: InstanceSettings) -> dict[str, Any]:
    """Name, storage and database of an instance, every secret masked."""
    db = mask_url(settings.db_url)
    return {
        "name": settings.name,
        "uid": settings.uid,
        "storage": settings.storage_root,
        "storage_kind": "s3" if settings.storage_root.startswith("s3://") else "local",
        "database": db,
        "database_kind": "postgresql" if db.startswith("postgresql") else "sqlite",
        "storage_options": mask_options(settings.storage_options),
    }


def _fields(row: ArtifactRow) -> dict[str, Any]:
    return {**{name: getattr(row, name) for name in ARTIFACT_FIELDS}, "is_trashed": row.is_trashed}


def page(
    instance: Instance,
    key_prefix: str | None = None,
    limit: int = 100,
    offset: int = 0,
    trashed: bool = False,
) -> tuple[int, list[dict[str, Any]]]:
    """Visible artifacts (or those in the trash), newest first: the total and one page."""
    where = [*visible(trashed)]
    if key_prefix:
        where.append(ArtifactRow.key.startswith(key_prefix, autoescape=True))
    newest_first = (
        select(ArtifactRow)
        .where(*where)
        .order_by(ArtifactRow.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with instance.db.read() as session:
        total = session.scalar(select(func.count()).select_from(ArtifactRow).where(*where))
        rows = [_fields(row) for row in session.scalars(newest_first)]
    return int(total or 0), rows


def versions(instance: Instance, uid: str) -> list[dict[str, Any]]:
    """Every saved version of the artifact ``uid`` belongs to, newest first (trashed included)."""
    stem = uid[:UID_STEM]
    stmt = (
        select(ArtifactRow)
        .where(ArtifactRow.uid.startswith(stem, autoescape=True), *visible(trashed=None))
        .order_by(ArtifactRow.version.desc(), ArtifactRow.id.desc())
    )
    with instance.db.read() as session:
        found = [_fields(row) for row in session.scalars(stmt)]
    if not any(row["uid"] == uid for row in found):
        raise NotFoundError(f"no saved artifact with uid {uid[:40]!r}")
    return found


def status_counts(instance: Instance, now: datetime | None = None) -> dict[str, int]:
    """Row counts by state, cheap enough to poll at millions of rows.

    The counts per state are kept by database triggers (``lamin_count``); ``expired``
    counts pending and deleting rows whose writer's lease ran out (they wait for
    ``ln.repair()``), read through the (status, lease) index: in-flight rows are few.
    """
    now = now or utcnow()
    counts = dict.fromkeys(("committed", "trashed", PENDING, DELETING, LOST, "expired"), 0)
    expired = select(func.count()).where(
        ArtifactRow.status.in_((PENDING, DELETING)), ArtifactRow.lease_expires_at < now
    )
    with instance.db.read() as session:
        for kind, n in session.execute(select(CountRow.kind, CountRow.n)):
            if kind in counts:
                counts[kind] = int(n)
        counts["expired"] = int(session.scalar(expired) or 0)
    return counts
