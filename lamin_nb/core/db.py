"""Engines, sessions and migrations.

SQLite runs in WAL mode with a busy timeout; writers take the lock up front (BEGIN IMMEDIATE)
so two processes never deadlock on a lock upgrade. On PostgreSQL, writers that must see a
stable view of the artifact table (dedup, versions, latest flags) serialise on one advisory
lock held for their short transaction.

SQLAlchemy is imported when the engine is first used, not when a ``Database`` is made: a
connect to an up-to-date instance with nothing to recover reads its state with one query
through the driver alone (``Database.probe``: the standard library's sqlite3, or psycopg on
PostgreSQL) and never needs it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DatabaseError, InstanceError
from .schema import ARTIFACT_TABLE, SCHEMA_VERSION, UNFINISHED
from .settings import home, mask_url

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine
    from sqlalchemy.orm import Session, sessionmaker

WRITE_LOCK_ID = 0x1A3117  # advisory lock key shared by all lamin_nb writers on PostgreSQL
SQLITE_BUSY_TIMEOUT_MS = 60_000
PG_WRITE_LOCK = f"SELECT pg_advisory_xact_lock({WRITE_LOCK_ID})"
# what every PostgreSQL connection of lamin_nb passes to psycopg (the engine's and the probe's)
PG_CONNECT_ARGS: dict[str, Any] = {"connect_timeout": 10, "application_name": "lamin_nb"}
# the state a connect needs, in one statement: the schema version and whether recovery has work
PROBE_SQL = (
    "SELECT (SELECT version_num FROM alembic_version), EXISTS (SELECT 1 FROM "
    f"{ARTIFACT_TABLE} WHERE status IN ({{marks}}))"
)


def create_db_engine(url: str) -> Engine:
    from sqlalchemy import create_engine

    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, connect_args=dict(PG_CONNECT_ARGS))


def _sqlite_engine(url: str) -> Engine:
    from sqlalchemy import create_engine, event

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
        # settings.normalize_db_url maps every PostgreSQL URL to postgresql+psycopg://
        self.is_postgres = url.startswith("postgresql")
        self.file = sqlite_file(url)
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened

    @cached_property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, made (and SQLAlchemy imported) on first use."""
        engine = create_db_engine(self.url)
        if self.file is not None:
            from sqlalchemy import event

            event.listen(engine, "do_connect", self._before_connect)
            event.listen(engine, "connect", self._after_connect)
        return engine

    @cached_property
    def _write_engine(self) -> Engine:
        return self.engine.execution_options(lamin_write=True)

    @cached_property
    def _read(self) -> sessionmaker[Session]:
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self.engine, expire_on_commit=False)

    @cached_property
    def _write(self) -> sessionmaker[Session]:
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self._write_engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({mask_url(self.url)!r})"

    # -- the SQLite file's identity ---------------------------------------------------
    # A connection keeps its file open: after the settings folder is deleted (or the file
    # replaced by a copy), its writes would go on into an unlinked file and vanish with the
    # process. One stat before each commit and each new connection catches it.

    def check_identity(self) -> None:
        """Raise ``InstanceError`` if the database file is no longer the one this process opened."""
        if self.file is not None and self._identity is not None:
            if file_identity(self.file) != self._identity:
                raise self._moved()

    def _before_connect(self, *_args: Any) -> None:
        self.check_identity()  # before SQLite creates an empty file in its place

    def _after_connect(self, *_args: Any) -> None:
        if self._identity is None and self.file is not None:
            self._identity = file_identity(self.file)

    def _moved(self) -> InstanceError:
        return InstanceError(
            f"the database file {self.file} was deleted or replaced after this process opened "
            f"it (was the settings folder {home()} removed?); nothing was written. Rows "
            "committed before are only in the file that was removed; the objects in storage are "
            "intact. Put the file back and run ln.connect(), or rebuild the rows from the "
            "objects with ln.init(storage=..., adopt=True) (keys and descriptions cannot be "
            "recovered that way)"
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success; serialised against other lamin_nb writers."""
        from sqlalchemy import text

        self.check_identity()
        with self._write() as session, session.begin():
            if self.is_postgres:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_ID})
            yield session
            self.check_identity()

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

        self.check_identity()
        with self._write_engine.connect() as conn:
            relaxed = not durable and not self.is_postgres
            raw: Any = conn.connection.dbapi_connection  # sqlite3's own connection
            if relaxed:
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.begin():
                    if self.is_postgres:  # the driver's SQL as is: nothing to compile per save
                        conn.exec_driver_sql(PG_WRITE_LOCK)
                    yield conn
                    self.check_identity()
            finally:
                if relaxed:
                    raw.execute("PRAGMA synchronous=FULL")

    def dispose(self) -> None:
        if "engine" in self.__dict__:  # never made: nothing to release
            self.engine.dispose()

    def probe(self) -> Probe | None:
        """The schema version and whether any row is unfinished, in one query through the
        driver alone (no SQLAlchemy); None when that cannot tell (a database, file or table
        that does not exist yet, a locked or unreadable file, a server that cannot be
        reached): then the caller takes the full path (``migrate``, recovery), which reports
        what is wrong.
        """
        if self.is_postgres:
            return self._probe_postgres()
        return self._probe_sqlite()

    def _probe_sqlite(self) -> Probe | None:
        """The file is opened read-write without creating it, with the same busy timeout as
        the engine, and its identity is recorded as the one this process opened."""
        if self.file is None:
            return None
        before = file_identity(self.file)
        try:
            conn = sqlite3.connect(
                f"{self.file.resolve().as_uri()}?mode=rw",
                uri=True,
                timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
            )
        except sqlite3.Error:
            return None
        try:
            version, unfinished = conn.execute(
                PROBE_SQL.format(marks=", ".join("?" for _ in UNFINISHED)), UNFINISHED
            ).fetchone()
        except sqlite3.Error:
            return None
        finally:
            conn.close()
        if self._identity is None and before is not None:
            self._identity = before
        return Probe(version, bool(unfinished))

    def _probe_postgres(self) -> Probe | None:
        """psycopg alone, autocommit (one statement: no transaction to end), the engine's
        connect arguments; the connection is closed at once (the engine opens its own when
        first used). A server that cannot be reached raises here, as ``migrate`` would, rather
        than being tried (and waited for) a second time."""
        import psycopg

        try:
            conn = psycopg.connect(libpq_url(self.url), autocommit=True, **PG_CONNECT_ARGS)
        except psycopg.Error as exc:
            raise self._schema_error(exc) from exc
        try:
            with conn:
                row = conn.execute(
                    PROBE_SQL.format(marks=", ".join("%s" for _ in UNFINISHED)), UNFINISHED
                ).fetchone()
        except psycopg.Error:
            return None  # no schema yet, a permission, ...: the full path says
        return Probe(row[0], bool(row[1])) if row is not None else None

    def schema_version(self) -> str | None:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

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
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

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
            raise self._schema_error(exc) from exc

    def _schema_error(self, exc: BaseException) -> InstanceError:
        return InstanceError(
            f"cannot create or upgrade the schema of {mask_url(self.url)}: {driver_cause(exc)}"
        )


@dataclass(frozen=True)
class Probe:
    """What ``Database.probe`` read: the schema version, and whether any row is pending or
    deleting (recovery has work only then)."""

    version: str | None
    unfinished: bool


def libpq_url(url: str) -> str:
    """A ``postgresql+psycopg://`` URL as libpq reads it (the query, percent-escapes and all:
    SQLAlchemy's psycopg dialect hands the same parts to libpq)."""
    return "postgresql://" + url.split("://", 1)[1]


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for PostgreSQL and in-memory databases)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return Path(path) if path and path != ":memory:" else None


def file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


UNCHANGED = "nothing was changed"


@contextmanager
def database_errors(
    doing: str,
    state: str = UNCHANGED,
    then: str = "run it again once the database is reachable",
) -> Iterator[None]:
    """Turn a SQLAlchemy error (connection refused or lost, database locked, ...) raised while
    ``doing`` into a ``DatabaseError`` that says the state the data is in and what to run."""
    from sqlalchemy.exc import SQLAlchemyError

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
