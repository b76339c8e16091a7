"""What every storage backend offers (the ``Storage`` Protocol), and the managed name layout.

Objects live flat under ``<root>/.lamindb/``. Only ``_meta/`` and ``_quarantine/`` are reserved
inside it. A temporary upload is named ``<name>.<token>.tmp`` so check and repair can tie it to
its object. Callers never ask which backend they hold: where the backends differ in what a
caller must do, the Protocol has a method for it (``sync``, ``local_path``,
``incomplete_uploads``, ...).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

MANAGED = ".lamindb"
META = "_meta"
QUARANTINE = "_quarantine"
RESERVED = (META, QUARANTINE)
READ_ONLY = 0o444  # the mode of stored objects and cached copies: never edited in place


@dataclass(frozen=True)
class ObjectInfo:
    name: str  # path relative to the managed prefix
    size: int
    mtime: datetime  # naive UTC


@dataclass(frozen=True)
class IncompleteUpload:
    """A multipart upload that was started and never completed nor aborted."""

    name: str  # the object name it would have created
    upload_id: str
    started: datetime  # naive UTC


@dataclass(frozen=True)
class TransferState:
    """What a pending row recorded about an interrupted upload: enough to resume it."""

    transfer_id: str  # the S3 upload id, or the name of the local partial file
    part_size: int


class Journal(Protocol):
    """Where a large upload records itself (its pending row), so that a later run of the same
    save resumes it instead of starting from byte zero (DESIGN §9)."""

    resume_from: TransferState | None  # what an interrupted earlier run recorded

    def started(self, transfer_id: str, part_size: int, parts_total: int) -> None:
        """Record the upload; durable when this returns, before the first part moves."""

    def progressed(self, parts_done: int, bytes_done: int) -> None:
        """Parts finished so far (the journal batches its writes)."""

    def resuming(self, parts_done: int, parts_total: int, bytes_left: int) -> None:
        """The upload continues an interrupted one: say so."""

    def restarting(self, reason: str) -> None:
        """The interrupted upload cannot be continued: it starts over, for ``reason``."""


def storage_failure(exc: BaseException) -> bool:
    """Raised by the storage or on the way to it: an OSError, or botocore's own errors
    (endpoint unreachable, credentials, ClientError), which are not OSErrors."""
    if isinstance(exc, OSError):
        return True
    import sys

    boto = sys.modules.get("botocore.exceptions")
    return boto is not None and isinstance(exc, (boto.BotoCoreError, boto.ClientError))


def temp_name(name: str) -> str:
    return f"{name}.{secrets.token_hex(4)}.tmp"


def owner_of_temp(name: str) -> str | None:
    """The object name a temporary upload belongs to, or None if it is not one."""
    if not name.endswith(".tmp"):
        return None
    stem, _, token = name[: -len(".tmp")].rpartition(".")
    return stem if stem and len(token) == 8 else None


class Storage(Protocol):
    """A storage root and the objects under its managed prefix (names are relative to it)."""

    root: str
    managed: str  # ``<root>/.lamindb``
    default_workers: int  # parallel transfers that keep this backend busy
    has_temps: bool  # uploads go through temporary objects beside the final one

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (for tools; lamin_nb's own code uses the methods below)."""
        ...

    def path(self, name: str) -> str: ...

    # -- writing
    def prepare(self) -> None:
        """Create what must exist before the first write."""

    def put_file(
        self,
        source: Path,
        name: str,
        expected_hash: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
        journal: Journal | None = None,
    ) -> str:
        """Upload ``source`` to ``name``; the object exists only once complete, and only if
        the bytes sent hash to ``expected_hash`` (when given). Returns the hash of the bytes
        stored, computed as they were sent or verified: without ``expected_hash`` it is the
        content hash, and the source was read once (DESIGN §9).

        With a ``journal``, a large upload records itself there and, when it fails or is
        interrupted, keeps what it sent (S3 parts, a local partial file) for a later run to
        resume; only a source that changed while it was read (``IntegrityError``) leaves
        nothing. ``abort_upload`` discards what was kept."""

    def sync(self) -> None:
        """Make the objects written so far durable (once for a batch)."""

    def delete(self, name: str) -> None:
        """Delete one object; an object that is already gone is fine."""

    def delete_temps(self, name: str) -> None:
        """Remove leftover temporary uploads of ``name``."""

    def move(self, name: str, new_name: str) -> None: ...

    def write_marker(self, name: str, data: bytes) -> None: ...

    # -- reading
    def info(self, name: str) -> ObjectInfo | None: ...

    def exists(self, name: str) -> bool: ...

    def open(self, name: str) -> BinaryIO: ...

    def get_file(self, name: str, local: Path) -> None: ...

    def local_path(self, name: str) -> Path | None:
        """The object itself on this machine's filesystem, or None if it is remote."""

    def hash_object(self, name: str) -> tuple[str, int]:
        """Hash every byte of a stored object: (digest, size)."""
        ...

    def list_objects(self, folder: str = "") -> Iterator[ObjectInfo]:
        """Every object under the managed prefix (or one of its folders), reserved ones
        excluded."""
        ...

    def list_temps(self, names: Collection[str]) -> Iterator[ObjectInfo]:
        """The temporary uploads (``<name>.<token>.tmp``) of the given object names; none
        where uploads write no temporary objects (``has_temps`` is False)."""
        ...

    def read_marker(self, name: str) -> bytes | None: ...

    def find_folder(self, name: str) -> str | None:
        """The full path of the first folder called ``name`` below the managed prefix."""

    # -- uploads a killed writer left behind
    def incomplete_uploads(self) -> Iterator[IncompleteUpload]: ...

    def abort_upload(self, name: str, upload_id: str) -> int:
        """Discard an unfinished upload; returns the bytes it held (0 if unknown)."""
        ...

    def warnings(self) -> list[str]:
        """Configuration problems worth telling the user (e.g. no lifecycle rule that ends
        incomplete uploads)."""
        ...


class FsspecStorage:
    """What both backends share: a lazily created fsspec filesystem and the managed names."""

    default_workers = 8

    def __init__(self, root: str, options: dict[str, Any] | None = None) -> None:
        self.root = root
        self.options = dict(options or {})
        self.managed = f"{root.rstrip('/')}/{MANAGED}"
        self._fs: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = self._make_fs()
        return self._fs

    def _make_fs(self) -> Any:
        raise NotImplementedError

    def path(self, name: str) -> str:
        return f"{self.managed}/{name}"

    def exists(self, name: str) -> bool:
        return self.info(name) is not None

    def info(self, name: str) -> ObjectInfo | None:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        return self.fs.open(self.path(name), "rb")

    def get_file(self, name: str, local: Path) -> None:
        self.fs.get_file(self.path(name), str(local))

    def list_temps(self, names: Collection[str]) -> Iterator[ObjectInfo]:
        """None: this backend writes no temporary objects (``LocalStorage`` overrides)."""
        return iter(())

    def read_marker(self, name: str) -> bytes | None:
        try:
            return self.fs.cat_file(self.path(f"{META}/{name}"))
        except FileNotFoundError:
            return None
