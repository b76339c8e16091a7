"""Queries over committed artifacts (pending, deleting and lost rows are never visible)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select

from . import instance as _instance
from .db import database_errors
from .errors import NotFoundError, ValidationError
from .models import ARTIFACT_FIELDS, COMMITTED, ArtifactRow
from .record import ArtifactRecord
from .validate import check_query_value, normalize_key, shorten

_FILTERABLE = set(ARTIFACT_FIELDS) - {"status"} | {"is_trashed"}
_LOOKUPS = {"startswith", "contains", "in", "gt", "gte", "lt", "lte"}
R = TypeVar("R", bound=ArtifactRecord)


def visible(trashed: bool | None = False) -> tuple[Any, ...]:
    """Which rows users see: committed ones (never pending, deleting or lost), outside the
    trash, in it (``trashed=True``) or both (``None``). Every listing of artifacts uses it."""
    if trashed is None:
        return (ArtifactRow.status == COMMITTED,)
    return ArtifactRow.status == COMMITTED, ArtifactRow.is_trashed.is_(trashed)


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
        self._conditions = [_condition(k, v) for k, v in fields.items()]
        asks_trash = any(k.partition("__")[0] == "is_trashed" for k in fields)
        self._visible = visible(None if asks_trash else False)

    def _select(self) -> Select[Any]:
        return select(ArtifactRow).where(*self._visible, *self._conditions)

    def all(self) -> list[R]:
        inst = _instance.current()
        with database_errors("ln.Artifact.filter"), inst.db.read() as session:
            rows = session.scalars(self._select().order_by(ArtifactRow.id)).all()
        return [self._record_type.from_row(row, inst) for row in rows]

    def first(self) -> R | None:
        newest = (ArtifactRow.is_latest.desc(), ArtifactRow.version.desc(), ArtifactRow.id.desc())
        inst = _instance.current()
        with database_errors("ln.Artifact.filter"), inst.db.read() as session:
            row = session.scalars(self._select().order_by(*newest).limit(1)).first()
        return None if row is None else self._record_type.from_row(row, inst)

    def latest_version(self) -> QuerySet[R]:
        """Only the latest version of each key (and every artifact without a key)."""
        narrowed = QuerySet(self._record_type, {})
        narrowed._conditions = [*self._conditions, ArtifactRow.is_latest.is_(True)]
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
            ordered = stmt.order_by(ArtifactRow.is_latest.desc(), ArtifactRow.version.desc())
            row = session.scalars(ordered.limit(1)).first()
            if row is not None:
                return record_type.from_row(row, inst)
    raise NotFoundError(f"no artifact with uid or key {shorten(uid_or_key)}")
