"""The current instance: settings, database and storage, created by init and connect."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from typing import Any

from sqlalchemy import select

from .db import Database
from .errors import InstanceError, StorageError, ValidationError, describe
from .models import InstanceRow, utcnow
from .settings import (
    InstanceSettings,
    current_name,
    default_name,
    home,
    mask_url,
    normalize_db_url,
    normalize_storage_root,
    set_current,
    validate_name,
)
from .storage import Storage, storage_failure

logger = logging.getLogger("lamin_nb")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_base62(n: int) -> str:
    # one draw, uniform over all 62**n strings; 5x faster than n secrets.choice calls, which
    # shows when from_dir builds thousands of artifacts
    value, out = secrets.randbelow(62**n), []
    for _ in range(n):
        value, digit = divmod(value, 62)
        out.append(_BASE62[digit])
    return "".join(out)


def owner_id() -> str:
    """Who holds a lease: host and process, so an operator can tell who is writing."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}"


class Instance:
    def __init__(self, settings: InstanceSettings) -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        self.storage = Storage(settings.storage_root, settings.storage_options)

    @property
    def name(self) -> str:
        return self.settings.name

    def __repr__(self) -> str:
        return (
            f"Instance(name={self.name!r}, storage={self.settings.storage_root!r}, "
            f"db={mask_url(self.settings.db_url)!r})"
        )

    def close(self) -> None:
        self.db.dispose()


_current: Instance | None = None


def current() -> Instance:
    global _current
    if _current is None:
        if current_name() is None:
            raise InstanceError("no lamin_nb instance: call ln.init(storage=...) first")
        connect()
    assert _current is not None
    return _current


def _activate(instance: Instance) -> Instance:
    global _current
    if _current is not None and _current is not instance:
        _current.close()
    _current = instance
    set_current(instance.name)
    return instance


def init(
    storage: Any = "./data",
    db: str | None = None,
    name: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Instance:
    """Create an instance (or connect to it if it already exists) and make it current."""
    root = normalize_storage_root(storage)
    name = validate_name(name if name is not None else default_name(root))
    if storage_options is not None and not isinstance(storage_options, dict):
        raise TypeError(f"storage_options must be a dict, not {type(storage_options).__name__}")
    db_url = normalize_db_url(db) if db is not None else None
    existing = _existing_settings(name)
    if existing is not None:
        _check_same(existing, root, db_url)
        return connect(name)
    if db_url is None:
        db_url = f"sqlite:///{home() / 'instances' / name / 'lamin.db'}"
    settings = InstanceSettings(name, "", root, db_url, dict(storage_options or {}))
    instance = Instance(settings)
    instance.db.migrate()
    settings.uid = _claim_database(instance)
    _claim_storage(instance)
    settings.persist()
    logger.info("created instance %s", name)
    return _activate(instance)


def connect(name: str | None = None) -> Instance:
    """Reconnect to the named instance, or to the current one, e.g. in a new process."""
    name = validate_name(name) if name is not None else current_name()
    if name is None:
        raise InstanceError("no lamin_nb instance to connect to: call ln.init(storage=...) first")
    instance = Instance(InstanceSettings.load(name))
    instance.db.migrate()
    _activate(instance)
    _recover_quietly(instance)
    return instance


def _existing_settings(name: str) -> InstanceSettings | None:
    try:
        return InstanceSettings.load(name)
    except InstanceError:
        return None


def _check_same(existing: InstanceSettings, root: str, db_url: str | None) -> None:
    if existing.storage_root != root:
        raise ValidationError(
            f"instance {existing.name!r} already exists with storage {existing.storage_root!r}; "
            f"pass another name= for {root!r}"
        )
    if db_url is not None and db_url != existing.db_url:
        raise ValidationError(
            f"instance {existing.name!r} already uses database {mask_url(existing.db_url)!r}, "
            f"not {mask_url(db_url)!r}"
        )


def _claim_database(instance: Instance) -> str:
    """Return the uid recorded in the database, recording a new one for a fresh database."""
    root = instance.settings.storage_root
    with instance.db.write() as session:
        row = session.scalars(select(InstanceRow)).first()
        if row is None:
            row = InstanceRow(
                uid=random_base62(12), name=instance.name, storage_root=root, created_at=utcnow()
            )
            session.add(row)
        elif row.storage_root != root:
            raise ValidationError(
                f"database {mask_url(instance.settings.db_url)!r} belongs to an instance with "
                f"storage {row.storage_root!r}, not {root!r}"
            )
        return row.uid


def _claim_storage(instance: Instance) -> None:
    """Mark the storage as managed by this instance; refuse one that another instance manages.

    Two databases managing one prefix would each see the other's objects as orphans.
    """
    storage = instance.storage
    uid = instance.settings.uid
    try:
        storage.prepare()
        raw = storage.read_marker("instance.json")
        if raw is not None:
            owner = json.loads(raw)
            if owner.get("uid") != uid:
                raise ValidationError(
                    f"storage {storage.root!r} is managed by another instance "
                    f"({owner.get('name')!r}); connect to that instance instead"
                )
            return
        marker = {"uid": uid, "name": instance.name}
        storage.write_marker("instance.json", json.dumps(marker).encode())
    except ValidationError:
        raise
    except Exception as exc:
        if not (storage_failure(exc) or isinstance(exc, ValueError)):
            raise
        raise StorageError(
            f"cannot use storage {storage.root!r}: {describe(exc)}; no instance was created"
        ) from exc


def _recover_quietly(instance: Instance) -> None:
    """Finish what crashed writers left behind (expired leases only); never fail a connect."""
    from .recovery import recover_expired

    try:
        recover_expired(instance)
    except Exception as exc:  # noqa: BLE001 - recovery is best effort here; ln.repair reports
        logger.warning("could not finish interrupted saves on connect: %s", describe(exc))
