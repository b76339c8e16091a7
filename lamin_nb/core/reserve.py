"""Step 3 of the save protocol, the rows it reserves: versions and uids decided under the
write lock, and the values of each ``pending`` row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Row

from . import rows
from .ids import random_base62, version_suffix
from .models import PENDING, utcnow

if TYPE_CHECKING:
    from .record import ArtifactRecord


def pending_rows(
    session: Any,
    records: list[ArtifactRecord],
    known: dict[str, Row[Any]],
    *,
    storage: str,
    owner: str,
    user: str,
) -> list[dict[str, Any]]:
    """The ``pending`` rows of ``records``; sets each record's version and final uid."""
    families = rows.families(session, [i.key for i in records if i.key])
    next_version = {k: f.next_version for k, f in families.items()}
    stems = {k: f.stem for k, f in families.items()}
    now, until = utcnow(), rows.lease_until()
    uid_before = {id(a): a.uid for a in records}
    described: dict[int, str | None] = {}
    for a in records:
        a.version = 1
        described[id(a)] = a.description
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
                described[id(a)] = family.description
    rows.record_families(
        session,
        {k: stem for k, stem in stems.items() if k not in families or not families[k].known},
    )
    # only uids that changed above need a look-up: ``known`` holds the rest
    taken = rows.existing_uids(session, [a.uid for a in records if a.uid != uid_before[id(a)]])
    for a in records:
        # a uid deleted for good is never issued again, whatever the content now
        retired = a.uid == a.deleted_uid
        # a one-read item (no hash yet) never reuses the uid of a row: its content is unknown
        same = a.uid in known and a.digest is not None and known[a.uid].hash == a.digest
        if retired or a.uid in taken or (a.uid in known and not same):
            a.uid = random_base62(16) + version_suffix(a.version or 1)
    values = {"storage": storage, "owner": owner, "created_by": user}
    return [_row_values(a, now, until, described[id(a)], values) for a in records]


def _row_values(
    a: ArtifactRecord, now: Any, until: Any, description: str | None, run: dict[str, Any]
) -> dict[str, Any]:
    return {
        "uid": a.uid,
        "key": a.key,
        "description": description,
        "suffix": a.suffix,
        "size": a.size,
        "hash": a.digest,
        "hash_type": a.hash_type,
        "otype": a.otype,
        "version": a.version,
        "is_latest": False,
        "storage": run["storage"],
        "created_at": now,
        "created_by": run["created_by"],
        "status": PENDING,
        "is_trashed": False,
        "owner": run["owner"],
        "lease_expires_at": until,
        "updated_at": now,
    }
