"""Instance settings: where the database and the storage live, persisted per user.

The settings folder is ``$LAMIN_NB_HOME`` (default ``~/.lamin_nb``), read each time it is
needed so that tests and users can move it between calls. Secrets are masked in every repr.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InstanceError, ValidationError

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# The password runs to the LAST '@' on the line: an unencoded '@' or space inside a password
# must not leave its tail visible (masking too much is the safe side).
_URL_PASSWORD_RE = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*:)(?P<pw>[^\n]*)(?P<at>@)"
)
_QUERY_SECRET_RE = re.compile(r"(?i)(?P<k>(?:password|secret|token|key)[A-Za-z_]*=)[^&\s]+")
SECRET_OPTION_KEYS = ("secret", "pass", "token", "session", "credential", "auth", "private")


def home() -> Path:
    """The settings folder, read from the environment at call time."""
    return Path(os.environ.get("LAMIN_NB_HOME") or Path.home() / ".lamin_nb").expanduser()


def mask_url(url: str) -> str:
    """Replace any password (and secret-looking query values) of a URL with ``***``."""
    masked = _URL_PASSWORD_RE.sub(lambda m: f"{m['head']}***{m['at']}", url)
    return _QUERY_SECRET_RE.sub(lambda m: f"{m['k']}***", masked)


def mask_options(options: dict[str, Any]) -> dict[str, Any]:
    """Secret-looking values masked, also inside nested options (client_kwargs, config_kwargs)."""
    return {
        k: (
            "***"
            if any(s in str(k).lower() for s in SECRET_OPTION_KEYS)
            else mask_options(v)
            if isinstance(v, dict)
            else mask_url(v)
            if isinstance(v, str)
            else v
        )
        for k, v in options.items()
    }


def normalize_db_url(db: str) -> str:
    """Map user-facing URLs to SQLAlchemy's: PostgreSQL always goes through psycopg 3."""
    if not isinstance(db, str):
        raise TypeError(f"db must be a URL string, not {type(db).__name__}")
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if db.startswith(prefix):
            return _parsable("postgresql+psycopg://" + db[len(prefix) :])
    if db.startswith(("postgresql+psycopg://", "sqlite:///")):
        return _parsable(db)
    raise ValidationError(
        f"unsupported database URL {mask_url(db)!r}: use 'postgresql://user:pw@host:5432/name' "
        "or 'sqlite:///path'"
    )


def _parsable(url: str) -> str:
    """Refuse a URL SQLAlchemy would misread, naming the problem but never the password."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - ValueError, ArgumentError: one clear message
        raise ValidationError(
            f"cannot parse database URL {mask_url(url)!r}: {mask_url(str(exc))}"
        ) from None
    if parsed.host is not None and "@" in parsed.host:
        raise ValidationError(
            f"database URL {mask_url(url)!r}: a password containing '@' must be written as %40"
        )
    return url


def normalize_storage_root(storage: Any) -> str:
    """A local folder becomes an absolute path; ``s3://bucket/prefix`` loses trailing slashes."""
    if isinstance(storage, os.PathLike):
        storage = os.fspath(storage)
    elif hasattr(storage, "protocol") and hasattr(storage, "path"):  # a UPath
        storage = str(storage)
    if not isinstance(storage, str):
        raise TypeError(f"storage must be a path or URL string, not {type(storage).__name__}")
    if not storage or "\x00" in storage:
        raise ValidationError("storage must be a non-empty path or URL without NUL characters")
    if storage.startswith("s3://"):
        bucket_and_prefix = storage[len("s3://") :].strip("/")
        if not bucket_and_prefix:
            raise ValidationError(f"storage {storage!r} names no bucket")
        if "@" in bucket_and_prefix.split("/", 1)[0]:
            # the root is shown and stored everywhere: credentials must never be part of it
            raise ValidationError(
                f"storage 's3://***@{bucket_and_prefix.rsplit('@', 1)[1]}' has credentials in "
                "the URL; pass them in "
                "storage_options or the AWS environment variables instead"
            )
        return "s3://" + bucket_and_prefix
    if "://" in storage and not storage.startswith("file://"):
        raise ValidationError(
            f"unsupported storage {mask_url(storage)!r}: use a local folder or s3://bucket/prefix"
        )
    if storage.startswith("file://"):
        storage = storage[len("file://") :]
    return str(Path(storage).expanduser().resolve())


def default_name(storage_root: str) -> str:
    last = storage_root.rstrip("/").rsplit("/", 1)[-1] or "default"
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", last).lstrip(".-_") or "default"
    return name[:64]


def validate_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, not {type(name).__name__}")
    if not _NAME_RE.fullmatch(name):  # fullmatch: '$' alone would let a trailing newline in
        shown = repr(name if len(name) <= 80 else name[:80] + "...")
        raise ValidationError(
            f"instance name {shown} is not allowed: use letters, digits, '.', '_' or '-' (max 64)"
        )
    return name


@dataclass
class InstanceSettings:
    """What is needed to reach one instance. ``repr`` never shows a password."""

    name: str
    uid: str
    storage_root: str
    db_url: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return home() / "instances" / self.name

    @property
    def cache_dir(self) -> Path:
        return home() / "cache" / self.name

    def __repr__(self) -> str:
        return (
            f"InstanceSettings(name={self.name!r}, storage_root={self.storage_root!r}, "
            f"db={mask_url(self.db_url)!r}, storage_options={mask_options(self.storage_options)!r})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uid": self.uid,
            "storage_root": self.storage_root,
            "db_url": self.db_url,
            "storage_options": self.storage_options,
        }

    def persist(self) -> None:
        """Write with owner-only permissions: the file may hold a database password."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / "instance.json"
        # a name of its own: processes starting together persist the same instance at once
        tmp = target.with_suffix(f".json.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_json(), fh, indent=2)
        os.replace(tmp, target)

    @classmethod
    def load(cls, name: str) -> InstanceSettings:
        path = home() / "instances" / validate_name(name) / "instance.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise InstanceError(
                f"no instance named {name!r} under the settings folder; run ln.init(storage=...)"
            ) from exc
        except (OSError, ValueError) as exc:
            raise InstanceError(f"the settings of instance {name!r} cannot be read: {exc}") from exc
        return cls(**data)


def known_names() -> list[str]:
    """The instances whose settings live in the settings folder, sorted by name."""
    folder = home() / "instances"
    if not folder.is_dir():
        return []
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if _NAME_RE.fullmatch(entry.name) and (entry / "instance.json").is_file()
    )


def set_current(name: str) -> None:
    # replaced atomically: other processes read it while they connect (truncate + write
    # let a concurrent connect see an empty file and fail with "no instance")
    home().mkdir(parents=True, exist_ok=True)
    tmp = home() / f"current.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(name + "\n")
    os.replace(tmp, home() / "current")


def current_name() -> str | None:
    override = os.environ.get("LAMIN_NB_INSTANCE")
    if override:
        return override
    try:
        return (home() / "current").read_text().strip() or None
    except FileNotFoundError:
        return None
