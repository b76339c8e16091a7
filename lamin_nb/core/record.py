"""``ArtifactRecord``: the fields and state the save, delete and query protocols read and write.

The protocols below the facade (``save``, ``delete``, ``query``) work on records; ``Artifact``
(``artifact.py``) is the record with the user-facing constructors and methods on top. What a
protocol needs from an artifact is here, public and typed: nothing outside this module
reaches into an artifact's private attributes.
"""

from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import instance as _instance
from .hashing import HASH_TYPE, hash_file
from .ids import random_base62, version_suffix
from .localfiles import trim_cache
from .storage import READ_ONLY

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Row

    from .models import ArtifactRow

R = TypeVar("R", bound="ArtifactRecord")
# the fields of a row that a record mirrors (``hash`` is kept as ``digest``)
ROW_FIELDS = (
    "uid",
    "key",
    "description",
    "suffix",
    "size",
    "hash_type",
    "otype",
    "version",
    "is_latest",
    "storage",
    "created_at",
    "created_by",
    "status",
    "is_trashed",
)
# row fields whose few distinct values repeat across records
SHARED_FIELDS = frozenset({"suffix", "hash_type", "otype", "storage", "created_by", "status"})


def row_values(row: ArtifactRow | Row[Any], is_latest: bool | None = None) -> tuple[Any, ...]:
    """What ``adopt_row`` takes from ``row``, as a plain tuple: a bulk save holds one per item
    between reading its rows back and its commit (a Row and the columns not adopted are
    several times larger). ``is_latest``: the flag to take instead of the row's."""
    values = (*(getattr(row, name) for name in ROW_FIELDS), row.hash)
    if is_latest is None:
        return values
    at = ROW_FIELDS.index("is_latest")
    return (*values[:at], is_latest, *values[at + 1 :])


class ArtifactRecord:
    """An artifact's fields and protocol state: what a row holds, and where its content is.

    ``status`` is None until the artifact is saved (then ``"committed"``); the uid is fixed at
    construction and kept through a failed save, so a retry reuses it.
    """

    uid: str
    key: str | None
    description: str | None
    suffix: str
    size: int | None
    hash_type: str | None
    otype: str | None
    version: int | None
    is_latest: bool
    storage: str | None
    created_at: datetime | None
    created_by: str | None
    status: str | None
    is_trashed: bool
    digest: str | None  # the content hash as known now; ``hash`` computes it when missing
    source: Path | None  # the local file to save; None for a record read from a row
    staged: bool  # ``source`` is a staging file lamin_nb wrote itself (from_df, from_anndata)
    instance: _instance.Instance | None  # where it was saved or loaded from
    deleted_uid: str | None  # its uid, once deleted for good through this object

    def _init_record(self, key: str | None, description: str | None, suffix: str) -> None:
        """Fields of a new, unsaved record (constructors validate their input first)."""
        self.uid = random_base62(16) + version_suffix(1)
        self.key = key
        self.description = description
        self.suffix = suffix
        self.size = None
        self.digest = None
        self.hash_type = None
        self.otype = None
        self.version = None
        self.is_latest = False
        self.storage = None
        self.created_at = None
        self.created_by = None
        self.status = None
        self.is_trashed = False
        self.source = None
        self.staged = False
        self.instance = None
        self.deleted_uid = None
        self._hashed_stat: tuple[int, int] | None = None  # source size/mtime when hashed

    @classmethod
    def from_row(cls: type[R], row: ArtifactRow, inst: _instance.Instance) -> R:
        """A record of a stored row of ``inst`` (as returned by queries)."""
        record = cls.__new__(cls)
        record._init_record(row.key, row.description, row.suffix)
        record.adopt_row(row)
        record.instance = inst
        return record

    def adopt_row(self, row: ArtifactRow | Row[Any]) -> None:
        """Take the stored state of ``row`` (after a save, or when deduplicated onto it)."""
        self.adopt_values(row_values(row))

    def adopt_values(self, values: tuple[Any, ...]) -> None:
        """``adopt_row`` from ``row_values(row)``."""
        for name, value in zip(ROW_FIELDS, values[:-1], strict=True):
            self._take(name, value)
        self._take("digest", values[-1])

    def _take(self, name: str, value: Any) -> None:
        """Set a field, keeping the object already held when equal and sharing repeated short
        strings: after a bulk save of 100,000 files each record would otherwise hold its own
        copies of what the database sent back (~0.3 KB per record)."""
        held = getattr(self, name, None)
        if type(value) is type(held) and value == held:
            return
        if isinstance(value, str) and name in SHARED_FIELDS:
            value = sys.intern(value)
        setattr(self, name, value)

    def adopt(self, other: ArtifactRecord) -> None:
        """Take the stored state of ``other`` (the same content, saved by it)."""
        for name in ROW_FIELDS:
            setattr(self, name, getattr(other, name))
        self.digest = other.digest
        self.instance = other.instance

    # -- content ---------------------------------------------------------------------

    @property
    def object_name(self) -> str:
        """The object's name under the storage's managed prefix: ``<uid><suffix>``."""
        return f"{self.uid}{self.suffix}"

    @property
    def is_saved(self) -> bool:
        """Saved in an instance (committed, possibly trashed), or read from one."""
        return self.status is not None

    def compute_hash(self, on_bytes: Callable[[int], None] | None = None) -> str:
        """Hash every byte of ``source`` now; sets ``digest``, ``size`` and ``hash_type``."""
        assert self.source is not None
        before = _stat_key(self.source)
        digest, size = hash_file(self.source, on_bytes)
        self.digest, self.size, self.hash_type = digest, size, HASH_TYPE
        self._hashed_stat = before
        return digest

    def needs_hash(self) -> bool:
        """No hash yet, or the source was modified since it was hashed (then save the new
        content: the user's file as it is now, not as it was when first looked at)."""
        if self.digest is None:
            return True
        if self.source is None or self.is_saved:
            return False
        try:
            return _stat_key(self.source) != self._hashed_stat
        except OSError:
            return False  # the save's own checks report a vanished source

    def discard_staging(self) -> None:
        """Remove the staging file lamin_nb wrote for this record, if any."""
        if self.staged and self.source is not None:
            self.source.unlink(missing_ok=True)

    # -- instance --------------------------------------------------------------------

    def home(self) -> _instance.Instance:
        """The instance this record belongs to: where it was saved or loaded from, even after
        another instance became current (the current one for an unsaved record)."""
        own, now = self.instance, _instance.current_or_none()
        if own is None or (now is not None and now.settings.uid == own.settings.uid):
            return _instance.current()
        return own  # its connections were closed on the switch; they reopen on use

    def saved_elsewhere(self, inst: _instance.Instance) -> bool:
        """Saved in another instance than ``inst`` (a save there leaves it alone)."""
        own = self.instance
        return self.is_saved and own is not None and own.settings.uid != inst.settings.uid


def item_label(record: ArtifactRecord) -> str:
    """How an item is named in progress displays and messages."""
    if record.key:
        return record.key
    if record.source is not None and not record.staged:
        return record.source.name
    return record.description or record.uid


def cache_path(inst: _instance.Instance, record: ArtifactRecord) -> Path:
    """Where the local copy of an S3 object lives; named by content hash as well as uid,
    because a uid can come back after its version was deleted, with other bytes."""
    return inst.settings.cache_dir / (record.digest or "unhashed") / record.object_name


def keep_staged_copy(inst: _instance.Instance, record: ArtifactRecord) -> None:
    """After a save, a staging file becomes the S3 cache copy (or is dropped if local)."""
    if not record.staged or record.source is None:
        return
    if inst.storage.local_path(record.object_name) is not None:  # no cache for local objects
        record.source.unlink(missing_ok=True)
    else:
        target = cache_path(inst, record)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(record.source), target)
        os.chmod(target, READ_ONLY)
        trim_cache(keep=target)
    record.source = None
    record.staged = False


def _stat_key(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
