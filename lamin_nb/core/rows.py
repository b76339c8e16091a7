"""Row-level steps of the save and delete protocols, each inside a caller's transaction."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Row,
    Table,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from .models import COMMITTED, DELETING, PENDING, ArtifactRow, FamilyRow, utcnow
from .owners import is_dead

T = TypeVar("T")
Executor = Session | Connection  # the save path runs on bare Core connections
TABLE = cast(Table, ArtifactRow.__table__)  # declarative tables are Tables
FAMILY = cast(Table, FamilyRow.__table__)
CHUNK = 500  # stays far below every backend's bound-parameter limit


def _many(name: str) -> Any:
    return bindparam(name, expanding=True)


Match = Callable[[Any, str], Any]  # (column, parameter name) -> its WHERE condition


class Either:
    """A statement over lists of values, built twice: with expanding INs (rendered again for
    every call, which costs more than SQLite takes to run a small statement) and with plain
    equalities, for the one value per list that a single save passes."""

    def __init__(self, build: Callable[[Match], Any]) -> None:
        self.many = build(lambda col, name: col.in_(_many(name)))
        self.one = build(lambda col, name: col == bindparam(name))

    def execute(self, session: Executor, lists: dict[str, Sequence[Any]], **more: Any) -> Any:
        if lists and all(len(v) == 1 for v in lists.values()):
            return session.execute(self.one, {**{k: v[0] for k, v in lists.items()}, **more})
        return session.execute(self.many, {**{k: list(v) for k, v in lists.items()}, **more})


# Built once: a save runs these for every artifact, and building a statement costs more
# than SQLite takes to run it.
_BY_UID_OR_HASH = Either(
    lambda match: select(TABLE).where(match(TABLE.c.uid, "uids") | match(TABLE.c.hash, "hashes"))
)
_BY_KEY = select(TABLE).where(TABLE.c.key.in_(_many("keys"))).order_by(TABLE.c.version)
_BY_UID = select(TABLE).where(TABLE.c.uid.in_(_many("uids")))
_INSERT = insert(TABLE)
_LATEST_INPUTS = select(
    TABLE.c.id, TABLE.c.key, TABLE.c.version, TABLE.c.is_latest, TABLE.c.status, TABLE.c.is_trashed
).where(TABLE.c.key.in_(_many("keys")))
_SET_LATEST = Either(
    lambda match: update(TABLE).where(match(TABLE.c.id, "ids")).values(is_latest=bindparam("value"))
)

_HIGHEST = select(func.max(TABLE.c.version)).where(TABLE.c.key == FAMILY.c.key).scalar_subquery()
# A key's look-ups walk the (key, version) index from its top: their cost does not grow with
# the number of versions (the family table lists the keys, one row each).
_VISIBLE_OF_FAMILY = (
    TABLE.c.key == FAMILY.c.key,
    TABLE.c.status == COMMITTED,
    TABLE.c.is_trashed == false(),
)
_VISIBLE_ID = (
    select(TABLE.c.id)
    .where(*_VISIBLE_OF_FAMILY)
    .order_by(TABLE.c.version.desc(), TABLE.c.id.desc())
    .limit(1)
    .scalar_subquery()
)
_VISIBLE_DESCRIPTION = (
    select(TABLE.c.description)
    .where(*_VISIBLE_OF_FAMILY)
    .order_by(TABLE.c.version.desc(), TABLE.c.id.desc())
    .limit(1)
    .scalar_subquery()
)


def _families_and_unrecorded(match: Match) -> Any:
    """What ``families`` reads, in one statement: the family rows, and every version of the
    keys that have none (written before families were recorded, or rebuilt from objects). A
    new key's look-up (a single save of one does two) is one round trip, not two. A family
    row has no status; the other rows come ordered by version."""
    return union_all(
        select(
            FAMILY.c.key,
            FAMILY.c.stem,
            FAMILY.c.last_version.label("mark"),
            _HIGHEST.label("highest"),
            _VISIBLE_DESCRIPTION.label("description"),
            sql_cast(null(), TABLE.c.status.type).label("status"),
            sql_cast(null(), TABLE.c.is_trashed.type).label("is_trashed"),
        ).where(match(FAMILY.c.key, "keys")),
        select(
            TABLE.c.key,
            TABLE.c.uid,
            TABLE.c.version,
            TABLE.c.version,
            TABLE.c.description,
            TABLE.c.status,
            TABLE.c.is_trashed,
        ).where(match(TABLE.c.key, "keys"), ~exists().where(FAMILY.c.key == TABLE.c.key)),
    ).order_by("key", "mark")


_FAMILIES_AND_UNRECORDED = Either(_families_and_unrecorded)
_WINNERS = Either(
    lambda match: select(FAMILY.c.key, _VISIBLE_ID).where(match(FAMILY.c.key, "keys"))
)
_FLAGGED = Either(
    lambda match: select(TABLE.c.id).where(match(TABLE.c.key, "keys"), TABLE.c.is_latest == true())
)
_NEW_FAMILY = insert(FAMILY)
_RAISE_MARKS = Either(
    lambda match: (
        update(FAMILY)
        .where(match(FAMILY.c.key, "keys"), FAMILY.c.last_version < _HIGHEST)
        .values(last_version=_HIGHEST)
    )
)


# an artifact without a key is its own family, hence its own latest version; keyed rows
# get their flag from refresh_latest in the same transaction. Ordered: the statement
# reads "SET status=..." first (a test hooks on it)
_COMMITTED_VALUES: tuple[tuple[Any, Any], ...] = (
    (TABLE.c.status, COMMITTED),
    (TABLE.c.owner, None),
    (TABLE.c.lease_expires_at, None),
    (TABLE.c.updated_at, bindparam("p_now")),
    (TABLE.c.is_latest, TABLE.c.key.is_(None)),
)
_COMMIT = (
    update(TABLE)
    .where(
        TABLE.c.uid.in_(_many("uids")),
        TABLE.c.status == PENDING,
        TABLE.c.owner == bindparam("p_owner"),
    )
    .ordered_values(*_COMMITTED_VALUES)
    .returning(TABLE.c.uid)
)


# ``_COMMIT`` for one row of a single save: a plain equality (no expanding IN to render per
# call) that returns the whole committed row, so the save need not read it back
_COMMIT_ONE = (
    update(TABLE)
    .where(
        TABLE.c.uid == bindparam("p_uid"),
        TABLE.c.status == PENDING,
        TABLE.c.owner == bindparam("p_owner"),
    )
    .ordered_values(*_COMMITTED_VALUES)
    .returning(*TABLE.c)
)


def lease_seconds() -> int:
    return int(os.environ.get("LAMIN_NB_LEASE_SECONDS", "600"))


def lease_until() -> datetime:
    return utcnow() + timedelta(seconds=lease_seconds())


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def by_uids(session: Executor, uids: Sequence[str]) -> dict[str, Row[Any]]:
    """Read-only snapshots (Core rows: ``row.uid``, ``row.status``, ...), cheaper than ORM
    objects when a bulk save looks up thousands of rows."""
    return {row.uid: row for row in iter_by_uids(session, uids)}


def iter_by_uids(session: Executor, uids: Sequence[str]) -> Iterator[Row[Any]]:
    """``by_uids`` one chunk at a time, for a caller that keeps only a few fields of each."""
    for part in chunks(list(uids)):
        yield from session.execute(_BY_UID, {"uids": list(part)})


def existing_uids(session: Executor, uids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for part in chunks(list(uids)):
        found.update(session.scalars(select(TABLE.c.uid).where(TABLE.c.uid.in_(part))))
    return found


def by_hashes(session: Executor, hashes: Iterable[str]) -> dict[str, list[Row[Any]]]:
    found: dict[str, list[Row[Any]]] = defaultdict(list)
    for part in chunks(sorted(set(hashes))):
        for row in session.execute(
            select(TABLE).where(TABLE.c.hash.in_(part)).order_by(TABLE.c.id)
        ):
            found[row.hash or ""].append(row)
    return found


def by_uids_and_hashes(
    session: Executor,
    uids: Sequence[str],
    hashes: Sequence[str],
) -> tuple[dict[str, Row[Any]], dict[str, list[Row[Any]]]]:
    """``by_uids`` and ``by_hashes`` in one query per chunk (the reserve step's look-up)."""
    wanted_uids, wanted_hashes = set(uids), set(hashes)
    found: dict[str, Row[Any]] = {}
    same: dict[str, list[Row[Any]]] = defaultdict(list)
    seen: set[int] = set()  # a row can match in two chunks
    half = CHUNK // 2
    for start in range(0, max(len(uids), len(hashes)), half):
        part_u, part_h = uids[start : start + half], hashes[start : start + half]
        for row in _BY_UID_OR_HASH.execute(session, {"uids": part_u, "hashes": part_h}):
            if row.uid in wanted_uids:
                found[row.uid] = row
            if row.hash in wanted_hashes and row.id not in seen:
                seen.add(row.id)
                same[row.hash].append(row)
    for matches in same.values():
        matches.sort(key=lambda r: r.id)
    return found, same


def latest_by_key(session: Executor, keys: Iterable[str]) -> dict[str, Row[Any]]:
    """The highest version per key over every row (any status), for uid and version choice."""
    found: dict[str, Row[Any]] = {}
    for part in chunks(sorted(set(keys))):
        for row in session.execute(_BY_KEY, {"keys": list(part)}):
            found[row.key or ""] = row
    return found


@dataclass(frozen=True)
class Family:
    """What a new version of a key needs: the uid stem, the next version number (never one
    issued before) and the description of the version users see now."""

    stem: str
    next_version: int
    description: str | None
    known: bool  # has its row in the family table


def families(session: Executor, keys: Iterable[str]) -> dict[str, Family]:
    found: dict[str, Family] = {}
    unrecorded: dict[str, list[Any]] = defaultdict(list)  # key -> its rows, by version
    for part in chunks(sorted(set(keys))):
        for row in _FAMILIES_AND_UNRECORDED.execute(session, {"keys": part}):
            key, stem, mark, highest, description, status, _ = row
            if status is None:  # a family row
                found[key] = Family(stem, max(mark, highest or 0) + 1, description, True)
            else:
                unrecorded[key].append(row)
    for key, versions in unrecorded.items():
        # columns: key, uid, version, version, description, status, is_trashed
        visible = [r for r in versions if r[5] == COMMITTED and not r[6]]
        found[key] = Family(
            versions[-1][1][:16],
            versions[-1][2] + 1,
            visible[-1][4] if visible else None,
            False,
        )
    return found


def record_families(session: Executor, new: dict[str, str]) -> None:
    """Create the family rows of keys seen for the first time (``key -> uid stem``)."""
    values = [{"key": k, "stem": stem, "last_version": 0} for k, stem in sorted(new.items())]
    for part in chunks(values):
        session.execute(_NEW_FAMILY, list(part))


def raise_marks(session: Executor, keys: Iterable[str | None]) -> None:
    """At commit: the versions a family has now are issued for good, so its mark only ever
    goes up (a version given back by a failed save is not committed, and is reused by its
    retry)."""
    for part in chunks(sorted({k for k in keys if k is not None})):
        _RAISE_MARKS.execute(session, {"keys": part})


def in_flight(row: Any) -> bool:
    """A pending row whose writer may still be alive; an expired one, or one whose writer is
    known to be gone (see ``owners``), is left to recovery."""
    return (
        row.status == PENDING
        and row.lease_expires_at is not None
        and row.lease_expires_at >= utcnow()
        and not is_dead(row.owner)
    )


def abandoned(row: Any) -> bool:
    """A pending or deleting row whose writer is known to be gone, lease or not."""
    return row.status in (PENDING, DELETING) and is_dead(row.owner)


def insert_pending(session: Executor, rows: list[dict[str, Any]]) -> None:
    if len(rows) == 1:  # a single save: a plain execute, not the executemany machinery
        session.execute(_INSERT, rows[0])
        return
    for part in chunks(rows):
        session.execute(_INSERT, list(part))


def commit_pending(session: Executor, uids: Sequence[str], owner: str) -> list[str]:
    """Flip to committed those of ``uids`` still pending under ``owner`` (a repair may have
    rolled some back); returns them. One statement per chunk."""
    now = utcnow()
    done: list[str] = []
    for part in chunks(list(uids)):
        done.extend(session.scalars(_COMMIT, {"uids": list(part), "p_owner": owner, "p_now": now}))
    return done


def set_hashes(session: Executor, hashes: dict[str, str], owner: str) -> None:
    """Record the hash of one-read uploads (written before their hash was known) in their
    pending rows, in the commit's transaction."""
    for uid, digest in hashes.items():
        session.execute(
            update(ArtifactRow)
            .where(
                ArtifactRow.uid == uid, ArtifactRow.status == PENDING, ArtifactRow.owner == owner
            )
            .values(hash=digest)
        )


def commit_one(session: Executor, uid: str, owner: str) -> Row[Any] | None:
    """``commit_pending`` for one uid: the committed row as the UPDATE returns it (None if
    it is no longer pending under ``owner``). Its ``is_latest`` is final only for a row
    without a key; a keyed row gets its flag from ``refresh_latest`` afterwards."""
    params = {"p_uid": uid, "p_owner": owner, "p_now": utcnow()}
    return session.execute(_COMMIT_ONE, params).first()


def claim_pending(session: Executor, uids: Sequence[str], owner: str) -> list[str]:
    """Of ``uids``, those still pending under ``owner`` (a repair may have rolled some back)."""
    mine: list[str] = []
    for part in chunks(list(uids)):
        stmt = select(ArtifactRow.uid).where(
            ArtifactRow.uid.in_(part), ArtifactRow.status == PENDING, ArtifactRow.owner == owner
        )
        mine.extend(session.scalars(stmt))
    return mine


def renew_leases(session: Executor, uids: Sequence[str], owner: str) -> None:
    until = lease_until()
    for part in chunks(list(uids)):
        session.execute(
            update(ArtifactRow)
            .where(
                ArtifactRow.uid.in_(part),
                ArtifactRow.owner == owner,
                ArtifactRow.status != COMMITTED,
            )
            .values(lease_expires_at=until)
        )


def delete_rows(session: Executor, uids: Sequence[str], status: str) -> None:
    for part in chunks(list(uids)):
        session.execute(
            delete(ArtifactRow).where(ArtifactRow.uid.in_(part), ArtifactRow.status == status)
        )


def statuses(session: Executor, uids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in chunks(list(uids)):
        stmt = select(ArtifactRow.uid, ArtifactRow.status).where(ArtifactRow.uid.in_(part))
        found.update({uid: status for uid, status in session.execute(stmt)})
    return found


def refresh_latest(session: Executor, keys: Iterable[str | None]) -> dict[str, int | None]:
    """Exactly one latest per key: the highest committed, untrashed version. Returns the id
    now flagged per key (None: no visible version)."""
    wanted = sorted({k for k in keys if k is not None})
    winners: dict[str, int | None] = {}
    for part in chunks(wanted):
        winners.update((key, best) for key, best in _WINNERS.execute(session, {"keys": part}))
    scanned = _refresh_by_scan(session, [k for k in wanted if k not in winners])
    for part in chunks([k for k in wanted if k in winners]):
        flagged = set(_FLAGGED.execute(session, {"keys": part}).scalars())
        best = {winners[k] for k in part} - {None}
        _set_latest(session, sorted(flagged - best), False)
        _set_latest(session, sorted(best - flagged), True)  # type: ignore[arg-type]
    return {**{k: None for k in wanted}, **winners, **scanned}


def _refresh_by_scan(session: Executor, wanted: list[str]) -> dict[str, int]:
    """``refresh_latest`` for keys without a family row: reads every version."""
    found: dict[str, int] = {}
    for part in chunks(wanted):
        best: dict[str, tuple[int, int]] = {}
        flags: dict[int, bool] = {}
        for row_id, key, version, is_latest, status, trashed in session.execute(
            _LATEST_INPUTS, {"keys": list(part)}
        ):
            flags[row_id] = bool(is_latest)
            if status == COMMITTED and not trashed and (version, row_id) > best.get(key, (-1, -1)):
                best[key] = (version, row_id)
        winners = {row_id for _, row_id in best.values()}
        _set_latest(session, [i for i, f in flags.items() if f and i not in winners], False)
        _set_latest(session, [i for i in winners if not flags[i]], True)
        found.update((key, row_id) for key, (_, row_id) in best.items())
    return found


def _set_latest(session: Executor, ids: list[int], value: bool) -> None:
    for part in chunks(ids):
        _SET_LATEST.execute(session, {"ids": part}, value=value)


def count_by_status(session: Session) -> dict[str, int]:
    stmt = select(ArtifactRow.status, func.count()).group_by(ArtifactRow.status)
    return {status: int(n) for status, n in session.execute(stmt)}
