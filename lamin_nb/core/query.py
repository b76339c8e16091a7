"""Queries over committed artifacts (pending, deleting and lost rows are never visible)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, case, exists, func, not_, or_, select, true
from sqlalchemy.orm import aliased

from . import instance as _instance
from .db import database_errors
from .errors import NotFoundError, ValidationError
from .models import ARTIFACT_FIELDS, COMMITTED, PENDING, ArtifactRow
from .record import ArtifactRecord
from .txstate import Transaction, reading
from .validate import check_query_value, normalize_key, shorten

_FILTERABLE = set(ARTIFACT_FIELDS) - {"status"} | {"is_trashed"}
_LOOKUPS = {"startswith", "contains", "in", "gt", "gte", "lt", "lte"}
R = TypeVar("R", bound=ArtifactRecord)


def visible(trashed: bool | None = False) -> tuple[Any, ...]:
    """Which rows users see: committed ones (never pending, deleting or lost), outside the
    trash, in it (``trashed=True``) or both (``None``). Every listing of artifacts uses it."""
    tx = _block()
    if tx is not None:
        return _visible_in_block(tx, ArtifactRow, trashed)
    if trashed is None:
        return (ArtifactRow.status == COMMITTED,)
    return ArtifactRow.status == COMMITTED, ArtifactRow.is_trashed.is_(trashed)


# -- inside ``ln.transaction()``: this thread sees the block's own changes ---------------


def _block() -> Transaction | None:
    inst = _instance.current_or_none()
    return None if inst is None else reading(inst)


def _visible_in_block(tx: Transaction, table: Any, trashed: bool | None) -> tuple[Any, ...]:
    """``visible`` with the block applied: its saves (pending rows of its owner) count as
    committed, its permanent deletes as gone, its trash and restores as done."""
    saved = and_(table.status == PENDING, table.owner == tx.owner, table.uid.in_(list(tx.saved)))
    shown = or_(table.status == COMMITTED, saved)
    if tx.deleted:
        shown = and_(shown, table.uid.not_in(list(tx.deleted)))
    if trashed is None:
        return (shown,)
    in_trash = _trashed_in_block(tx, table)
    return shown, in_trash if trashed else not_(in_trash)


def _trashed_in_block(tx: Transaction, table: Any) -> Any:
    in_trash: Any = table.is_trashed == true()
    if tx.restored:
        in_trash = and_(in_trash, table.uid.not_in(list(tx.restored)))
    if tx.trashed:
        in_trash = or_(in_trash, table.uid.in_(list(tx.trashed)))
    return in_trash


def _latest_in_block(tx: Transaction) -> Any:
    """``is_latest`` as the block's commit will set it: the highest visible, untrashed
    version of its key (an artifact without a key is its own latest while untrashed)."""
    other = aliased(ArtifactRow)
    higher = exists().where(
        other.key == ArtifactRow.key,
        other.version > ArtifactRow.version,
        *_visible_in_block(tx, other, False),
    )
    return and_(*_visible_in_block(tx, ArtifactRow, False), or_(ArtifactRow.key.is_(None), ~higher))


def latest() -> Any:
    """The condition "latest version of its key", inside a transaction block as well."""
    tx = _block()
    return ArtifactRow.is_latest.is_(True) if tx is None else _latest_in_block(tx)


def newest_first() -> tuple[Any, ...]:
    """Latest version first, then the highest version, then the newest row."""
    tx = _block()
    flag = ArtifactRow.is_latest if tx is None else case((_latest_in_block(tx), 1), else_=0)
    return flag.desc(), ArtifactRow.version.desc(), ArtifactRow.id.desc()


def _condition(name: str, value: Any) -> Any:
    field, _, lookup = name.partition("__")
    if field not in _FILTERABLE:
        allowed = ", ".join(sorted(_FILTERABLE))
        raise ValidationError(f"cannot filter on {shorten(field)}; fields are: {allowed}")
    column = getattr(ArtifactRow, field)
    if lookup and lookup not in _LOOKUPS:
        raise ValidationError(
            f"unknown lookup {shorten(lookup)} in {shorten(name)}; use one of {sorted(_LOOKUPS)}"
        )
    value = check_query_value(name, lookup, value, column.type.python_type)
    tx = _block()
    if tx is not None and not lookup and field in ("is_latest", "is_trashed"):
        flag = _latest_in_block(tx) if field == "is_latest" else _trashed_in_block(tx, ArtifactRow)
        return flag if value else not_(flag)
    if field == "key" and value is not None:  # keys are stored in NFC: look them up so
        value = [normalize_key(v) for v in value] if lookup == "in" else normalize_key(value)
    if not lookup:
        return column.is_(None) if value is None else column == value
    if lookup == "startswith":
        return column.startswith(value, autoescape=True)
    if lookup == "contains":
        return column.contains(value, autoescape=True)
    if lookup == "in":
        return column.in_(value)
    return {
        "gt": column > value,
        "gte": column >= value,
        "lt": column < value,
        "lte": column <= value,
    }[lookup]


class QuerySet(Generic[R]):
    """Lazy: nothing runs until ``all``, ``first``, ``count``, ``df`` or iteration.

    Every version that matches is returned (as in LaminDB, ``filter`` does not narrow to
    latest versions; pass ``is_latest=True`` or call ``latest_version()`` for that). ``all``,
    ``df`` and iteration list matches in the order they were saved, oldest first. ``first``
    answers "the one under this key": the latest version among the matches (what
    ``ln.Artifact.get(key)`` returns), else the highest version, else the newest.
    Results are records of ``record_type`` (``Artifact`` for ``ln.Artifact.filter``).
    """

    def __init__(self, record_type: type[R], fields: dict[str, Any]) -> None:
        self._record_type = record_type
        self._fields = fields
        self._latest_only = False
        self._conditions = [_condition(k, v) for k, v in fields.items()]  # validates now
        self._asks_trash = any(k.partition("__")[0] == "is_trashed" for k in fields)

    def _select(self) -> Select[Any]:
        # built when it runs: inside a transaction block, what the block did up to now counts
        conditions = [_condition(k, v) for k, v in self._fields.items()]
        if self._latest_only:
            conditions.append(latest())
        shown = visible(None if self._asks_trash else False)
        return select(ArtifactRow).where(*shown, *conditions)

    def all(self) -> list[R]:
        inst = _instance.current()
        with database_errors("ln.Artifact.filter"), inst.db.read() as session:
            rows = session.scalars(self._select().order_by(ArtifactRow.id)).all()
        return [self._record_type.from_row(row, inst) for row in rows]

    def first(self) -> R | None:
        inst = _instance.current()
        with database_errors("ln.Artifact.filter"), inst.db.read() as session:
            row = session.scalars(self._select().order_by(*newest_first()).limit(1)).first()
        return None if row is None else self._record_type.from_row(row, inst)

    def latest_version(self) -> QuerySet[R]:
        """Only the latest version of each key (and every artifact without a key)."""
        narrowed = QuerySet(self._record_type, self._fields)
        narrowed._latest_only = True
        return narrowed

    def count(self) -> int:
        stmt = select(func.count()).select_from(self._select().subquery())
        with database_errors("ln.Artifact.filter"), _instance.current().db.read() as session:
            return int(session.scalar(stmt) or 0)

    def df(self) -> Any:
        import pandas as pd

        records = [{name: getattr(a, name) for name in ARTIFACT_FIELDS} for a in self.all()]
        return pd.DataFrame.from_records(records, columns=list(ARTIFACT_FIELDS))

    def __iter__(self) -> Iterator[R]:
        return iter(self.all())

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"<QuerySet of {self.count()} artifact(s)>"


def get(record_type: type[R], uid_or_key: str) -> R:
    """By full uid (20 chars), by uid stem (16 chars: latest version), or by key (latest)."""
    if not isinstance(uid_or_key, str):
        raise TypeError(f"get expects a uid or key string, not {type(uid_or_key).__name__}")
    check_query_value("uid_or_key", "", uid_or_key, str)
    uid_or_key = normalize_key(uid_or_key)  # a uid is ASCII: only a key can change
    shown = visible()
    candidates = [select(ArtifactRow).where(ArtifactRow.uid == uid_or_key, *shown)]
    if len(uid_or_key) == 16:
        candidates.append(
            select(ArtifactRow).where(
                ArtifactRow.uid.startswith(uid_or_key, autoescape=True), *shown
            )
        )
    candidates.append(select(ArtifactRow).where(ArtifactRow.key == uid_or_key, *shown))
    inst = _instance.current()
    with database_errors("ln.Artifact.get"), inst.db.read() as session:
        for stmt in candidates:
            ordered = stmt.order_by(*newest_first())
            row = session.scalars(ordered.limit(1)).first()
            if row is not None:
                return record_type.from_row(row, inst)
    raise NotFoundError(f"no artifact with uid or key {shorten(uid_or_key)}")
