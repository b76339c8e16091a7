"""Typed SQLAlchemy 2 models. Times are naive UTC so SQLite and PostgreSQL agree."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .schema import (
    ARTIFACT_TABLE,
    COMMITTED,
    DELETING,
    LOST,
    PENDING,
    SCHEMA_VERSION,
    STATUSES,
)

__all__ = [
    "COMMITTED",
    "DELETING",
    "LOST",
    "PENDING",
    "SCHEMA_VERSION",
    "STATUSES",
    "ArtifactRow",
    "Base",
    "CountRow",
    "FamilyRow",
    "InstanceRow",
    "SettingRow",
    "TransactionRow",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class ArtifactRow(Base):
    """One stored object. Only rows with status ``committed`` are visible to users."""

    __tablename__ = ARTIFACT_TABLE

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(20), unique=True)
    key: Mapped[str | None] = mapped_column(String(1024), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    suffix: Mapped[str] = mapped_column(String(64), default="")
    size: Mapped[int | None] = mapped_column(BigInteger)
    hash: Mapped[str | None] = mapped_column(String(64), index=True)
    hash_type: Mapped[str | None] = mapped_column(String(16))
    otype: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)
    is_latest: Mapped[bool] = mapped_column(Boolean, default=False)
    storage: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), index=True)
    is_trashed: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # a resumable transfer (DESIGN §9), recorded before its first part moves
    transfer_id: Mapped[str | None] = mapped_column(String(1024))  # S3 upload id / partial file
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    parts_done: Mapped[int | None] = mapped_column(Integer)
    bytes_done: Mapped[int | None] = mapped_column(BigInteger)
    source_path: Mapped[str | None] = mapped_column(Text)
    source_size: Mapped[int | None] = mapped_column(BigInteger)
    source_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    transfer_started_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (
        Index("ix_lamin_artifact_status_lease", "status", "lease_expires_at"),
        Index("ix_lamin_artifact_key_version", "key", "version"),
        Index("ix_lamin_artifact_key_latest", "key", "is_latest"),
        Index("ix_lamin_artifact_updated_at", "updated_at"),
        Index("ix_lamin_artifact_size", "size"),  # migration 0006: one read for new content
    )


class CountRow(Base):
    """Rows per state (``committed``, ``trashed``, ``pending``, ``deleting``, ``lost``), kept
    by database triggers in the transaction of each change (migration 0005)."""

    __tablename__ = "lamin_count"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)


class SettingRow(Base):
    """A small value of the instance, e.g. ``last_full_check`` (ISO 8601, UTC)."""

    __tablename__ = "lamin_setting"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class FamilyRow(Base):
    """One per key ever saved: the versions issued so far never come back (a permanently
    deleted latest version does not lower ``last_version``), so neither does a uid."""

    __tablename__ = "lamin_family"

    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    stem: Mapped[str] = mapped_column(String(16))
    last_version: Mapped[int] = mapped_column(Integer)


class TransactionRow(Base):
    """One per committed ``ln.transaction()``, written in its commit: an outcome lost with the
    connection during COMMIT is learned by reading this row back."""

    __tablename__ = "lamin_transaction"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    committed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    n_saved: Mapped[int] = mapped_column(Integer, default=0)
    n_deleted: Mapped[int] = mapped_column(Integer, default=0)


class InstanceRow(Base):
    """Identifies the instance a database belongs to (one row)."""

    __tablename__ = "lamin_instance"

    uid: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    storage_root: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


ARTIFACT_FIELDS = (
    "uid",
    "key",
    "description",
    "suffix",
    "size",
    "hash",
    "hash_type",
    "otype",
    "version",
    "is_latest",
    "storage",
    "created_at",
    "created_by",
    "status",
)
