"""The current instance: settings, database and storage, created by init and connect."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .db import Database, Probe
from .errors import InstanceError, StorageError, ValidationError, describe
from .ids import random_base62
from .nesting import check_not_nested
from .schema import SCHEMA_VERSION
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
from .storage import open_storage, storage_failure
from .validate import check_flag

if TYPE_CHECKING:
    from .adopt import AdoptReport

logger = logging.getLogger("lamin_nb")


def owner_id() -> str:
    """Who holds a lease: host and process, so an operator can tell who is writing."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}"


class Instance:
    def __init__(self, settings: InstanceSettings) -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        self.storage = open_storage(settings.storage_root, settings.storage_options)
        self.adopted: AdoptReport | None = None  # what ln.init(..., adopt=True) rebuilt

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


def disconnect() -> None:
    """Close the current instance in this process (its connections are released).

    The settings folder still names it as the current instance, so the next call that needs
    one connects again; ``ln.init``/``ln.connect`` choose another. Artifacts keep their own
    instance and reconnect to it when used. Calling it with no instance open does nothing.

    Returns
    -------
    None

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.disconnect()
    >>> ln.disconnect()  # nothing open: nothing to do
    """
    global _current
    if _current is not None:
        _current.close()
        _current = None


def current_or_none() -> Instance | None:
    """The instance this process is connected to, or None; never connects."""
    return _current


def _activate(instance: Instance) -> Instance:
    """Make ``instance`` current: recorded in the settings folder first, so a folder that
    cannot be written (read-only, full) leaves the previous instance current, not half a switch."""
    global _current
    try:
        set_current(instance.name)
    except OSError as exc:
        if instance is not _current:
            instance.close()
        raise InstanceError(
            f"cannot write the settings folder {home()}: {describe(exc)}; instance "
            f"{instance.name!r} was not made current and nothing was changed; free space or make "
            "the folder writable (or point LAMIN_NB_HOME elsewhere), then run it again"
        ) from exc
    if _current is not None and _current is not instance:
        _current.close()
    _current = instance
    return instance


def init(
    storage: Any = "./data",
    db: str | None = None,
    name: str | None = None,
    storage_options: dict[str, Any] | None = None,
    adopt: bool = False,
) -> Instance:
    """Create an instance (or connect to it if it already exists) and make it current.

    The instance's settings are written under ``LAMIN_NB_HOME`` (default ``~/.lamin_nb``, read
    at call time), never inside the storage root, so the storage may be S3, shared or
    read-only. Calling ``init`` again with the same name and storage connects to the existing
    instance.

    Parameters
    ----------
    storage : str or os.PathLike or upath.UPath
        The storage root: a local folder (made absolute) or ``s3://bucket/prefix``. S3 honours
        the standard AWS configuration (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, profiles,
        ...); credentials never belong in the URL.
    db : str or None
        The database URL: ``postgresql://user:pw@host:5432/name`` (run through psycopg 3) or
        ``sqlite:///path``. None: a SQLite file in the instance's settings folder.
    name : str or None
        The instance name (letters, digits, ``.``, ``_``, ``-``; at most 64). None: the last
        path part of the storage root.
    storage_options : dict or None
        Options for the S3 filesystem (s3fs), kept with the instance settings; secret-looking
        values are masked wherever they are shown.
    adopt : bool
        Recover from lost metadata (a deleted settings folder, a lost database): the storage
        is taken over from the instance it names, and every object without a row gets a
        committed row, re-hashed from its bytes. Keys and descriptions live only in the
        database and cannot be recovered; ``instance.adopted`` reports what was rebuilt and
        what was not.

    Returns
    -------
    Instance
        The instance, now current; its repr masks the database password.

    Raises
    ------
    ValidationError
        An invalid name or database URL; a storage URL that is not local or S3; an instance
        of this name with another storage or database; a database or storage that belongs to
        another instance; a storage root nested in another instance's; ``adopt=True`` with a
        database that already holds artifacts.
    StorageError
        The storage root cannot be created, read or written (or, with ``adopt=True``, listed).
    InstanceError
        The database schema cannot be created or upgraded.
    TypeError
        An argument of the wrong type.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.init(storage="./data")  # doctest: +SKIP
    Instance(name='data', storage='/home/me/data', db='sqlite:///...')
    >>> ln.init(storage="s3://bucket/project", db="postgresql://me:pw@db/lab")  # doctest: +SKIP
    Instance(name='project', storage='s3://bucket/project', db='postgresql+psycopg://me:***@db/lab')
    """
    check_flag("adopt", adopt)
    root = normalize_storage_root(storage)
    name = validate_name(name if name is not None else default_name(root))
    if storage_options is not None and not isinstance(storage_options, dict):
        raise TypeError(f"storage_options must be a dict, not {type(storage_options).__name__}")
    db_url = normalize_db_url(db) if db is not None else None
    existing = _existing_settings(name)
    if existing is not None:
        _check_same(existing, root, db_url)
        return _adopt(connect(name)) if adopt else connect(name)
    with _storage_errors(root):
        check_not_nested(root, dict(storage_options or {}))
    if db_url is None:
        db_url = f"sqlite:///{home() / 'instances' / name / 'lamin.db'}"
    settings = InstanceSettings(name, "", root, db_url, dict(storage_options or {}))
    instance = Instance(settings)
    instance.db.migrate()
    settings.uid = _claim_database(instance)
    _claim_storage(instance, adopt)
    settings.persist()
    logger.info("created instance %s", name)
    _activate(instance)
    return _adopt(instance) if adopt else instance


def connect(name: str | None = None) -> Instance:
    """Reconnect to the named instance, or to the current one, e.g. in a new process.

    The instance becomes current. Rows that crashed writers left behind (pending or deleting,
    with an expired lease or a writer known to be gone) are finished on the way, best effort:
    a failure there is logged and left for ``ln.repair()``, never fails the connect.

    Parameters
    ----------
    name : str or None
        The instance to connect to; None: the current one (``LAMIN_NB_INSTANCE``, else the
        one the settings folder names).

    Returns
    -------
    Instance
        The instance, now current.

    Raises
    ------
    InstanceError
        No instance was ever created (run ``ln.init(storage=...)``), none of that name has
        settings under ``LAMIN_NB_HOME``, its settings cannot be read, or its database schema
        cannot be created or upgraded.
    ValidationError
        ``name`` is not a valid instance name.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.connect("data")  # doctest: +SKIP
    Instance(name='data', storage='/home/me/data', db='sqlite:///...')
    """
    name = validate_name(name) if name is not None else current_name()
    if name is None:
        raise InstanceError("no lamin_nb instance to connect to: call ln.init(storage=...) first")
    instance = Instance(InstanceSettings.load(name))
    state = _migrate(instance)
    _activate(instance)
    if state is None or state.unfinished:  # recovery finishes pending and deleting rows only
        _recover_quietly(instance)
    _sweep_quietly()
    return instance


def _migrate(instance: Instance) -> Probe | None:
    """Bring the schema to head; Alembic runs only when the version differs. An up-to-date
    instance is read with one plain query through its driver (``Database.probe``: sqlite3 or
    psycopg), without SQLAlchemy."""
    state = instance.db.probe()
    if state is None or state.version != SCHEMA_VERSION:
        instance.db.migrate()
        return None
    return state


def open_instance(name: str) -> Instance:
    """The named instance, ready to use, without making it current.

    Nothing in the settings folder changes (``connect`` rewrites the current marker, which
    kernels sharing the folder follow): a Jupyter server showing an instance uses this.
    """
    instance = Instance(InstanceSettings.load(validate_name(name)))
    _migrate(instance)
    return instance


_binding = threading.RLock()


@contextmanager
def bound(instance: Instance) -> Iterator[Instance]:
    """Make ``instance`` this process's current one inside the block, then restore the previous.

    For a process serving several instances (the Jupyter server): the protocols that act on
    the current instance (save, trash, repair) run on ``instance``; the settings folder's
    current marker is not touched. One block at a time per process (a lock serialises them),
    and other threads of the process see ``instance`` as current meanwhile.
    """
    global _current
    with _binding:
        previous, _current = _current, instance
        try:
            yield instance
        finally:
            _current = previous


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
    from sqlalchemy import select

    from .models import InstanceRow, utcnow

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


def _claim_storage(instance: Instance, adopt: bool = False) -> None:
    """Mark the storage as managed by this instance; refuse one that another instance manages
    (unless adopting it: its metadata is lost).

    Two databases managing one prefix would each see the other's objects as orphans.
    """
    storage = instance.storage
    uid = instance.settings.uid
    with _storage_errors(storage.root):
        storage.prepare()
        raw = storage.read_marker("instance.json")
        if raw is not None:
            owner = json.loads(raw)
            if owner.get("uid") == uid:
                return
            if not adopt:
                raise ValidationError(
                    f"storage {storage.root!r} is managed by another instance "
                    f"({owner.get('name')!r}); connect to that instance instead, or, if its "
                    f"database is lost, run ln.init(storage={storage.root!r}, adopt=True) to "
                    "rebuild the rows from the objects"
                )
            _check_adoptable(instance, owner.get("name"))
        marker = {"uid": uid, "name": instance.name}
        storage.write_marker("instance.json", json.dumps(marker).encode())


@contextmanager
def _storage_errors(root: str) -> Iterator[None]:
    """A storage that cannot be reached or used while an instance is created: StorageError."""
    try:
        yield
    except ValidationError:
        raise
    except Exception as exc:
        if not (storage_failure(exc) or isinstance(exc, ValueError)):
            raise
        raise StorageError(
            f"cannot use storage {root!r}: {describe(exc)}; no instance was created"
        ) from exc


def _check_adoptable(instance: Instance, previous: str | None) -> None:
    """Adopting merges nothing: the database must not hold another instance's artifacts."""
    from sqlalchemy import func, select

    from .models import ArtifactRow

    with instance.db.read() as session:
        n = int(session.scalar(select(func.count()).select_from(ArtifactRow)) or 0)
    if n:
        raise ValidationError(
            f"cannot adopt storage {instance.storage.root!r} (managed by instance {previous!r}): "
            f"database {mask_url(instance.settings.db_url)!r} already holds {n} artifact(s) of "
            "another instance; adopt needs a database without artifacts"
        )


def _adopt(instance: Instance) -> Instance:
    from .adopt import adopt_objects

    try:
        instance.adopted = adopt_objects(instance)
    except (OSError, ValueError) as exc:
        raise StorageError(
            f"cannot list or read storage {instance.storage.root!r} to adopt its objects: "
            f"{describe(exc)}"
        ) from exc
    return instance


def _sweep_quietly() -> None:
    """Staging files of processes that no longer run (built, never saved): cheap, one listing."""
    from .localfiles import sweep_staging

    try:
        sweep_staging()
    except OSError as exc:
        logger.warning("could not sweep the staging folder: %s", describe(exc))


def _recover_quietly(instance: Instance) -> None:
    """Finish what crashed writers left behind (expired leases only); never fail a connect."""
    from .recovery import recover_expired

    try:
        recover_expired(instance)
    except Exception as exc:  # noqa: BLE001 - recovery is best effort here; ln.repair reports
        logger.warning("could not finish interrupted saves on connect: %s", describe(exc))
