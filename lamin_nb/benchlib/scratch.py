"""A scratch instance: its own settings folder, storage prefix and database, removed after.

Where the scratch parts go, given a storage root and a database URL:
- storage: ``<root>/lamin-nb-<kind>-<token>``, a sibling of the instance's managed prefix
  ``<root>/.lamindb``, so no instance ever lists it; removed recursively afterwards.
- SQLite: a new file beside the given one (same disk), or in the private settings folder.
- PostgreSQL: a new database on the server of the given URL (``CREATE DATABASE``), dropped
  afterwards (``DROP DATABASE ... WITH (FORCE)``). If the role may not create databases, a new
  schema in the given database instead (the connection's ``search_path`` points at it), dropped
  with ``CASCADE``. Either way the user's tables are never read or written.
- settings: a private ``LAMIN_NB_HOME``, so the user's current instance is unchanged.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import InstanceError, describe
from ..core.settings import mask_url, normalize_db_url, normalize_storage_root

ENV_KEYS = ("LAMIN_NB_HOME", "LAMIN_NB_INSTANCE", "LAMIN_NB_FAULT")


@dataclass
class Target:
    """The backend to exercise: a storage root and a database URL (None: SQLite)."""

    storage_root: str
    db_url: str | None
    storage_options: dict[str, Any] = field(default_factory=dict)
    origin: str = "arguments"

    @property
    def is_s3(self) -> bool:
        return self.storage_root.startswith("s3://")

    @property
    def is_postgres(self) -> bool:
        return bool(self.db_url and self.db_url.startswith("postgresql"))

    @property
    def label(self) -> str:
        return (
            f"{'PostgreSQL' if self.is_postgres else 'SQLite'} + {'S3' if self.is_s3 else 'local'}"
        )


def resolve_target(storage: str | None, db: str | None, use_current: bool) -> Target:
    """Explicit arguments win; with neither, the current instance (if asked), else temp."""
    if storage is None and db is None and use_current:
        current = _current_settings()
        if current is not None:
            return Target(
                current.storage_root,
                current.db_url,
                dict(current.storage_options),
                f"current instance {current.name!r}",
            )
    root = (
        normalize_storage_root(storage)
        if storage
        else normalize_storage_root(tempfile.gettempdir())
    )
    return Target(
        root,
        normalize_db_url(db) if db else None,
        origin="arguments" if storage or db else "temporary SQLite + local folder",
    )


def _current_settings() -> Any:
    from ..core.settings import InstanceSettings, current_name

    name = current_name()
    if name is None:
        return None
    try:
        return InstanceSettings.load(name)
    except InstanceError:
        return None


class Scratch:
    """Context manager: creates the scratch instance and makes it current, then removes all."""

    def __init__(self, target: Target, kind: str) -> None:
        self.target = target
        self.kind = kind
        self.token = secrets.token_hex(4)
        self.name = f"lamin-nb-{kind}-{self.token}"
        self.root = f"{target.storage_root.rstrip('/')}/{self.name}"
        self.home = Path(tempfile.mkdtemp(prefix=f"lamin-nb-{kind}-home-"))
        self.db_url: str | None = None
        self.db_kind = "sqlite file"
        self.instance: Any = None
        self.problems: list[str] = []
        self._saved_env: dict[str, str | None] = {}
        self._saved_current: Any = None

    # -- where things go -----------------------------------------------------------------

    @property
    def work(self) -> Path:
        """Local folder for source files: on the storage's disk when storage is local."""
        path = self.home / "work" if self.target.is_s3 else Path(self.root) / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def managed(self) -> str:
        return f"{self.root}/.lamindb"

    def describe(self) -> str:
        db = mask_url(self.db_url) if self.db_url else f"SQLite in {self.home}"
        return f"storage {self.root}, database {db} ({self.db_kind})"

    # -- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> Scratch:
        try:
            self._enter()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open_or_explain(self, command: str) -> bool:
        """Create the scratch instance; on failure print why (no traceback) and return False."""
        try:
            self.__enter__()
        except Exception as exc:  # noqa: BLE001 - any set-up failure ends the command cleanly
            cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
            print(
                f"lamin-nb {command}: cannot set up a scratch instance on {self.target.label}: "
                f"{mask_url(describe(cause))}",
                file=sys.stderr,
            )
            return False
        return True

    def _enter(self) -> None:
        from ..core import faults, instance

        for key in ENV_KEYS:
            self._saved_env[key] = os.environ.pop(key, None)
        os.environ["LAMIN_NB_HOME"] = str(self.home)
        faults.configure(None)
        self._saved_current = instance._current
        instance._current = None
        self.db_url = self._create_database()
        if not self.target.is_s3:
            Path(self.root).mkdir(parents=True, exist_ok=False)
        import lamin_nb as ln

        self.instance = ln.init(
            storage=self.root,
            db=self.db_url,
            name=self.name,
            storage_options=self.target.storage_options or None,
        )

    def close(self) -> None:
        """Remove the scratch storage, database and settings; record anything that stayed."""
        from ..core import instance

        if self.instance is not None:
            self.instance.close()
        instance._current = self._saved_current
        for step in (self._remove_storage, self._drop_database):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - report, then carry on cleaning
                self.problems.append(describe(exc))
        shutil.rmtree(self.home, ignore_errors=True)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}

    def child_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
        env["LAMIN_NB_HOME"] = str(self.home)
        env.update(extra)
        return env

    # -- database ------------------------------------------------------------------------

    def _create_database(self) -> str | None:
        url = self.target.db_url
        if url is None:
            return None
        if url.startswith("sqlite:///"):
            folder = Path(url[len("sqlite:///") :]).expanduser().parent
            self.db_kind = "sqlite file beside the given one"
            return f"sqlite:///{folder / (self.name + '.db')}"
        from . import pgscratch

        scratch_url, self.db_kind = pgscratch.create(url, self.name.replace("-", "_"))
        return scratch_url

    def _drop_database(self) -> None:
        if self.db_url is None:
            return
        if self.db_url.startswith("sqlite:///"):
            path = Path(self.db_url[len("sqlite:///") :])
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return
        from . import pgscratch

        pgscratch.drop(self.target.db_url or "", self.name.replace("-", "_"), self.db_kind)

    # -- storage -------------------------------------------------------------------------

    def _remove_storage(self) -> None:
        if not self.target.is_s3:
            path = Path(self.root)
            if path.exists():
                _unfreeze(path)
                shutil.rmtree(path)
            return
        fs = self.s3fs()
        try:
            fs.rm(self.root, recursive=True)
        except FileNotFoundError:
            pass
        # s3fs's rm ignores per-key failures: delete stragglers one by one, which raises
        for key in _objects_under(fs, self.root):
            fs.rm_file(key)
        left = _objects_under(fs, self.root)
        if left:
            raise OSError(f"{len(left)} object(s) stayed under {self.root}")

    def s3fs(self) -> Any:
        from ..core.storage import open_storage

        return open_storage(self.target.storage_root, self.target.storage_options).fs

    def leftovers(self) -> list[str]:
        """What still exists of the scratch area (empty after a clean ``close``)."""
        found = list(self.problems)
        if self.target.is_s3:
            found += [f"object {k}" for k in _objects_under(self.s3fs(), self.root)]
        elif Path(self.root).exists():
            found.append(f"folder {self.root}")
        if self.db_url and self.target.is_postgres:
            from . import pgscratch

            if pgscratch.exists(
                self.target.db_url or "", self.name.replace("-", "_"), self.db_kind
            ):
                found.append(f"{self.db_kind} {self.name.replace('-', '_')}")
        elif self.db_url and Path(self.db_url[len("sqlite:///") :]).exists():
            found.append(f"database file {self.db_url[len('sqlite:///') :]}")
        if self.home.exists():
            found.append(f"settings folder {self.home}")
        return found


def _objects_under(fs: Any, root: str) -> list[str]:
    """Objects strictly under ``root``. Some servers (SeaweedFS) keep an emptied prefix listed
    as a folder; that is not an object and holds no data."""
    prefix = root.removeprefix("s3://").rstrip("/") + "/"
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return []
    return [
        path
        for path, info in found.items()
        if info.get("type") != "directory" and path.startswith(prefix)
    ]


def _unfreeze(path: Path) -> None:
    """Undo the ``chattr +i`` / ``chmod`` of a denied-write check that did not finish."""
    import subprocess

    managed = path / ".lamindb"
    if not managed.exists():
        return
    if shutil.which("chattr") and sys.platform.startswith("linux"):
        subprocess.run(["chattr", "-i", str(managed)], capture_output=True, check=False)
    os.chmod(managed, 0o755)
