"""Engines, sessions and migrations.

SQLite runs in WAL mode with a busy timeout; writers take the lock up front (BEGIN IMMEDIATE)
so two processes never deadlock on a lock upgrade. On PostgreSQL, writers that must see a
stable view of the artifact table (dedup, versions, latest flags) serialise on one advisory
lock held for their short transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from .errors import DatabaseError, InstanceError
from .models import SCHEMA_VERSION
from .settings import mask_url

WRITE_LOCK_ID = 0x1A3117  # advisory lock key shared by all lamin_nb writers on PostgreSQL
SQLITE_BUSY_TIMEOUT_MS = 60_000


def create_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10, "application_name": "lamin_nb"},
    )


def _sqlite_engine(url: str) -> Engine:
    path = url[len("sqlite:///") :]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, see _on_begin
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=FULL")
        # LIKE (startswith/contains) is case-sensitive on PostgreSQL: the same on SQLite
        cur.execute("PRAGMA case_sensitive_like=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("lamin_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """An engine plus the two kinds of session lamin_nb uses: reads and serialised writes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(lamin_write=True)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({mask_url(self.url)!r})"

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success; serialised against other lamin_nb writers."""
        with self._write() as session, session.begin():
            if self.is_postgres:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_ID})
            yield session

    @contextmanager
    def read_rows(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write_rows(self, durable: bool = True) -> Iterator[Connection]:
        """Like ``write`` but a plain Core connection: the save protocol's hot path issues only
        Core statements, and skipping the ORM session halves its per-statement cost.

        ``durable=False`` (SQLite) skips the WAL flush of this one commit. Only for steps whose
        loss in a power cut is repaired anyway (a reservation: its object at worst becomes an
        orphan for ``ln.repair``); the next durable commit flushes these frames too.
        """
        with self._write_engine.connect() as conn:
            relaxed = not durable and not self.is_postgres
            if relaxed:
                conn.connection.dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    if self.is_postgres:
                        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_ID})
                    yield conn
            finally:
                if relaxed:
                    conn.connection.dbapi_connection.execute("PRAGMA synchronous=FULL")

    def dispose(self) -> None:
        self.engine.dispose()

    def schema_version(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            return None

    def migrate(self) -> None:
        """Bring the schema to head. Alembic is imported only when work is needed."""
        if self.schema_version() == SCHEMA_VERSION:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            # the write engine: on SQLite, BEGIN IMMEDIATE takes the lock up front and waits
            # for it (busy timeout). A deferred transaction that read the schema would fail
            # at once with "database is locked" when a process starting alongside migrates
            # first; alembic then re-reads the version under the lock and does nothing.
            with self._write_engine.begin() as conn:
                if self.is_postgres:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_ID})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise InstanceError(
                f"cannot create or upgrade the schema of {mask_url(self.url)}: {driver_cause(exc)}"
            ) from exc


UNCHANGED = "nothing was changed"


@contextmanager
def database_errors(
    doing: str,
    state: str = UNCHANGED,
    then: str = "run it again once the database is reachable",
) -> Iterator[None]:
    """Turn a SQLAlchemy error (connection refused or lost, database locked, ...) raised while
    ``doing`` into a ``DatabaseError`` that says the state the data is in and what to run."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise DatabaseError(
            f"{doing} failed: database error: {driver_cause(exc)}; {state}; {then}"
        ) from exc


def driver_cause(exc: BaseException) -> str:
    """The driver's own first line ('Connection refused', 'database "x" does not exist'),
    masked, without SQLAlchemy's SQL and parameters."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    first = lines[0] if lines else type(cause).__name__
    return mask_url(first[:300]) + f" ({type(cause).__name__})"
