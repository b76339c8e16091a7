"""A scratch PostgreSQL database (or, without CREATEDB, a scratch schema) next to the user's."""

from __future__ import annotations

from typing import Any

DATABASE = "scratch database"
SCHEMA = "scratch schema"
INSUFFICIENT_PRIVILEGE = "42501"


def _admin(url: str) -> Any:
    from sqlalchemy import create_engine

    return create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        poolclass=_null_pool(),
        connect_args={"connect_timeout": 10, "application_name": "lamin_nb"},
    )


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


def create(url: str, name: str) -> tuple[str, str]:
    """Return the URL of a new scratch database (or schema) and which of the two it is."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    base = make_url(url)
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            try:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                return base.set(database=name).render_as_string(hide_password=False), DATABASE
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
                    raise
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    finally:
        engine.dispose()
    options = " ".join(filter(None, [str(base.query.get("options", "")), f"-csearch_path={name}"]))
    return base.update_query_dict({"options": options}).render_as_string(
        hide_password=False
    ), SCHEMA


def drop(url: str, name: str, kind: str) -> None:
    from sqlalchemy import text

    statement = (
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        if kind == DATABASE
        else f'DROP SCHEMA IF EXISTS "{name}" CASCADE'
    )
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def exists(url: str, name: str, kind: str) -> bool:
    from sqlalchemy import text

    query = (
        "SELECT 1 FROM pg_database WHERE datname = :n"
        if kind == DATABASE
        else "SELECT 1 FROM information_schema.schemata WHERE schema_name = :n"
    )
    engine = _admin(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(query), {"n": name}).first() is not None
    finally:
        engine.dispose()
