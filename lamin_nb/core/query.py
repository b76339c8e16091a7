"""Queries over committed artifacts (pending, deleting and lost rows are never visible)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Select, func, select

from . import instance as _instance
from .artifact import Artifact
from .db import database_errors
from .errors import NotFoundError, ValidationError
from .models import ARTIFACT_FIELDS, COMMITTED, ArtifactRow
from .validate import check_query_value, shorten

_FILTERABLE = set(ARTIFACT_FIELDS) - {"status"} | {"is_trashed"}
_LOOKUPS = {"startswith", "contains", "in", "gt", "gte", "lt", "lte"}


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


class QuerySet:
    """Lazy: nothing runs until ``all``, ``first``, ``count``, ``df`` or iteration."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self._conditions = [_condition(k, v) for k, v in fields.items()]
        if not any(k.partition("__")[0] == "is_trashed" for k in fields):
            self._conditions.append(ArtifactRow.is_trashed.is_(False))

    def _select(self) -> Select[Any]:
        return select(ArtifactRow).where(ArtifactRow.status == COMMITTED, *self._conditions)

    def all(self) -> list[Artifact]:
        with database_errors("ln.Artifact.filter"), _instance.current().db.read() as session:
            rows = session.scalars(self._select().order_by(ArtifactRow.id)).all()
        return [Artifact._from_row(row) for row in rows]

    def first(self) -> Artifact | None:
        with database_errors("ln.Artifact.filter"), _instance.current().db.read() as session:
            row = session.scalars(self._select().order_by(ArtifactRow.id).limit(1)).first()
        return None if row is None else Artifact._from_row(row)

    def count(self) -> int:
        stmt = select(func.count()).select_from(self._select().subquery())
        with database_errors("ln.Artifact.filter"), _instance.current().db.read() as session:
            return int(session.scalar(stmt) or 0)

    def df(self) -> Any:
        import pandas as pd

        records = [{name: getattr(a, name) for name in ARTIFACT_FIELDS} for a in self.all()]
        return pd.DataFrame.from_records(records, columns=list(ARTIFACT_FIELDS))

    def __iter__(self) -> Iterator[Artifact]:
        return iter(self.all())

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"<QuerySet of {self.count()} artifact(s)>"


def get(uid_or_key: str) -> Artifact:
    """By full uid (20 chars), by uid stem (16 chars: latest version), or by key (latest)."""
    if not isinstance(uid_or_key, str):
        raise TypeError(f"get expects a uid or key string, not {type(uid_or_key).__name__}")
    check_query_value("uid_or_key", "", uid_or_key, str)
    visible = (ArtifactRow.status == COMMITTED, ArtifactRow.is_trashed.is_(False))
    candidates = [select(ArtifactRow).where(ArtifactRow.uid == uid_or_key, *visible)]
    if len(uid_or_key) == 16:
        candidates.append(
            select(ArtifactRow).where(
                ArtifactRow.uid.startswith(uid_or_key, autoescape=True), *visible
            )
        )
    candidates.append(select(ArtifactRow).where(ArtifactRow.key == uid_or_key, *visible))
    with database_errors("ln.Artifact.get"), _instance.current().db.read() as session:
        for stmt in candidates:
            ordered = stmt.order_by(ArtifactRow.is_latest.desc(), ArtifactRow.version.desc())
            row = session.scalars(ordered.limit(1)).first()
            if row is not None:
                return Artifact._from_row(row)
    raise NotFoundError(f"no artifact with uid or key {shorten(uid_or_key)}")
