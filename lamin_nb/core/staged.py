"""Browser uploads staged on the Jupyter host's disk, chunk by chunk, until they are saved.

An upload is a folder ``<LAMIN_NB_HOME>/uploads/<id>/`` holding ``meta.json`` (name, size,
key, owner, state), the bytes received so far in ``file/<name>``, and ``progress.json``: the
byte ranges that arrived whole. ``received`` is the prefix that arrived (from byte 0, without
a gap), so an upload survives a page reload and a server restart and resumes where the disk
says. Nothing is held in memory beyond one network read.

A chunk is written at ``received``, or, so that several can be in flight at once, at a later
multiple of ``chunk_size`` (each is written at its offset into the file); anything else is an
``OffsetConflict`` carrying ``received``. Chunks stay within the announced size and never
overlap one in flight. A range is recorded only once its chunk arrived whole (a chunk cut
off at ``received`` still extends it by the bytes that came). Chunk writers share the file's
lock; a save holds it alone. The bytes are not fsynced as they arrive (that would halve the
throughput): a power loss can lose what the page cache held; the save fsyncs before it reads.
Saving goes through the ordinary save protocol (``staged_save.save_staged``); afterwards the folder
keeps only ``meta.json`` as a tombstone naming the artifact, so a page that lost the answer
learns what happened. Abandoned uploads and old tombstones are removed by ``sweep``, which
``ln.repair()`` and the Jupyter server call.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import LaminNbError, NotFoundError, StorageError, ValidationError
from .settings import home
from .validate import check_description, check_key, shorten

if TYPE_CHECKING:
    pass

CHUNK_SIZE = 64 * 2**20  # asked per PUT: fewer, larger requests measured fastest (bench_upload)
MAX_SIZE = 2**46  # 64 TiB: beyond any disk; larger announced sizes are refused outright
DISK_MARGIN = 256 * 2**20  # left free on the staging disk for everything else
DEFAULT_GRACE = 24 * 3600  # an upload untouched this long is abandoned
ID_LENGTH = 24
_ID_CHARS = string.ascii_letters + string.digits
RECEIVING, COMMITTED = "receiving", "committed"
META = "meta.json"
PROGRESS = "progress.json"

# chunks being written by this process, by upload id: (start, end) ranges
_in_flight: dict[str, list[tuple[int, int]]] = {}
_progress_lock = threading.Lock()  # reading and recording ranges, and the in-flight list


class OffsetConflict(LaminNbError):
    """A chunk sent for another offset than the server's ``received`` (answer: 409)."""

    def __init__(self, message: str, received: int) -> None:
        super().__init__(message)
        self.received = received


class UploadBusy(LaminNbError):
    """Another request writes or saves this upload right now (answer: 409)."""


class IncompleteUpload(LaminNbError):
    """Saving was asked before every announced byte arrived (answer: 409)."""


class NotYourUpload(LaminNbError, PermissionError):
    """The upload was started by another user of this Jupyter server (answer: 403)."""


class NoSpace(StorageError):
    """The announced size does not fit on the staging disk (answer: 413)."""


def uploads_root() -> Path:
    """Where uploads are staged: inside the settings folder, on the Jupyter host."""
    return home() / "uploads"


@dataclass
class StagedUpload:
    id: str
    name: str
    size: int
    key: str
    description: str | None
    owner: str
    instance: str | None
    created_at: str
    state: str = RECEIVING
    artifact: str | None = None  # the uid, once saved
    chunk_size: int = CHUNK_SIZE
    # where it was found (a kernel may have another settings folder than the server)
    root: Path | None = field(default=None, compare=False, repr=False)

    @property
    def folder(self) -> Path:
        return (self.root or uploads_root()) / self.id

    @property
    def path(self) -> Path:
        """The staged bytes; named like the user's file so the artifact gets its suffix."""
        return self.folder / "file" / self.name

    @property
    def received(self) -> int:
        """The bytes that arrived from byte 0 on, without a gap."""
        if self.state == COMMITTED:
            return self.size
        return self.progress()[0]

    def progress(self) -> tuple[int, list[tuple[int, int]]]:
        """``(received, ranges that arrived beyond it)``, as recorded."""
        try:
            raw = json.loads((self.folder / PROGRESS).read_text())
            return int(raw["received"]), [(int(a), int(b)) for a, b in raw["ranges"]]
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError):
            return 0, []  # unreadable: everything is sent again
        try:  # staged before ranges were recorded: the file grew only at its end
            return self.path.stat().st_size, []
        except FileNotFoundError:
            return 0, []

    def record(self, start: int, end: int) -> int:
        """Bytes ``start..end`` arrived: merge them in; returns ``received``. Caller holds
        ``_progress_lock``."""
        received, ranges = self.progress()
        if end > start:
            ranges.append((start, end))
        for a, b in sorted(ranges):
            if a <= received:
                received = max(received, b)
        ranges = sorted((a, b) for a, b in ranges if b > received)
        tmp = self.folder / f".{PROGRESS}.{secrets.token_hex(4)}"
        try:
            tmp.write_text(json.dumps({"received": received, "ranges": ranges}))
            os.replace(tmp, self.folder / PROGRESS)
        except FileNotFoundError:  # cancelled meanwhile: the folder is gone
            pass
        return received

    def status(self) -> dict[str, Any]:
        received = self.received
        state = "complete" if self.state == RECEIVING and received == self.size else self.state
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "received": received,
            "state": state,
            "key": self.key,
            "description": self.description,
            "instance": self.instance,
            "created_at": self.created_at,
            "updated_at": _iso(_last_activity(self.folder)),
            "chunk_size": self.chunk_size,
            "artifact": self.artifact,
            "path": str(self.path),
        }

    def write_meta(self) -> None:
        tmp = self.folder / f".{META}.{secrets.token_hex(4)}"
        record = asdict(self)
        del record["root"]
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.folder / META)


# -- validation ------------------------------------------------------------------------------


def check_name(name: Any) -> str:
    """A file name as the browser reports it: one path segment, no tricks."""
    if not isinstance(name, str):
        raise ValidationError(f"name must be a file name (a string), not {shorten(repr(name))}")
    if "/" in name or "\\" in name:
        raise ValidationError(
            f"name {shorten(name)} must be a file name, not a path (no '/' or '\\')"
        )
    try:
        check_key(name)
    except ValidationError as exc:
        raise ValidationError(str(exc).replace("key ", "name ", 1)) from None
    if len(name.encode("utf-8")) > 255:
        raise ValidationError(f"name {shorten(name)} is longer than 255 bytes")
    return name


def check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValidationError(f"size must be a whole number of bytes, not {shorten(repr(size))}")
    if size < 0:
        raise ValidationError(f"size must be >= 0, not {size}")
    if size > MAX_SIZE:
        raise NoSpace(f"size {size} is larger than the largest upload allowed ({MAX_SIZE} bytes)")
    return size


def check_id(upload_id: Any) -> str:
    if (
        not isinstance(upload_id, str)
        or len(upload_id) != ID_LENGTH
        or any(ch not in _ID_CHARS for ch in upload_id)
    ):
        raise NotFoundError(f"no upload {shorten(str(upload_id))} on this Jupyter host")
    return upload_id


# -- the store ---------------------------------------------------------------------------


def create(
    name: Any,
    size: Any,
    owner: str,
    key: Any = None,
    description: Any = None,
    instance: str | None = None,
    also_on: Path | None = None,
) -> StagedUpload:
    """Register an upload after checking every field and the free disk space; no bytes yet.

    ``also_on``: a local storage root the bytes are copied to when saved; when it shares the
    staging disk, the space is needed twice.
    """
    name, size = check_name(name), check_size(size)
    key = check_key(key) if key is not None else name
    description = check_description(description)
    root = uploads_root()
    root.mkdir(parents=True, exist_ok=True)
    check_space(root, size, also_on)
    upload = StagedUpload(
        id=_new_id(),
        name=name,
        size=size,
        key=key,
        description=description,
        owner=owner,
        instance=instance,
        created_at=_iso(time.time()),
    )
    upload.path.parent.mkdir(parents=True)
    upload.path.touch()
    upload.record(0, 0)
    upload.write_meta()
    return upload


def check_space(root: Path, size: int, also_on: Path | None = None) -> None:
    """Refuse up front what cannot fit: the staged bytes, the other unfinished uploads' rest,
    and (local storage on the same disk) the saved copy."""
    needed = size + outstanding(root)
    if also_on is not None:
        with contextlib.suppress(OSError):
            if os.stat(also_on).st_dev == os.stat(root).st_dev:
                needed += size
    free = shutil.disk_usage(root).free - DISK_MARGIN
    if needed > free:
        raise NoSpace(
            f"not enough free disk space on the Jupyter host for an upload of {_human(size)}: "
            f"{_human(max(free, 0))} free at {root} after the unfinished uploads "
            f"({_human(needed - size)} reserved); free space or remove abandoned uploads "
            "(ln.repair())"
        )


def outstanding(root: Path) -> int:
    """Bytes still to come for every unfinished upload."""
    total = 0
    for upload in _all(root):
        if upload.state == RECEIVING:
            total += max(upload.size - upload.received, 0)
    return total


def load(upload_id: Any, owner: str | None) -> StagedUpload:
    """The upload ``upload_id``; ``owner`` None skips the owner check (the kernel's path)."""
    upload = _read(uploads_root() / check_id(upload_id))
    if upload is None:
        raise NotFoundError(
            f"no upload {upload_id!r} on this Jupyter host (cancelled, or removed as abandoned)"
        )
    if owner is not None and upload.owner != owner:
        raise NotYourUpload(
            f"upload {upload_id!r} was started by another user; only they can resume, save or "
            "cancel it"
        )
    return upload


def load_at(path: Any) -> StagedUpload:
    """The upload whose staged file is ``path``: what the notebook widget is told by the page.

    The kernel reads the server's staging folder directly (same host), whatever its own
    settings folder is.
    """
    folder = Path(str(path)).parent.parent
    upload = _read(folder) if folder.name == _valid_id(folder.name) else None
    if upload is None or upload.path != Path(str(path)):
        raise NotFoundError(
            f"{shorten(str(path))} is not a staged upload this kernel can read (a kernel on "
            "another host than the Jupyter server cannot save browser uploads)"
        )
    return upload


def mine(owner: str) -> list[StagedUpload]:
    """This owner's uploads that are not saved yet, oldest first: what a reloaded page resumes."""
    found = [u for u in _all(uploads_root()) if u.owner == owner and u.state == RECEIVING]
    return sorted(found, key=lambda u: u.created_at)


class ChunkWriter:
    """Writes one chunk at its offset: checks offset and size first; a refused chunk is cut
    off again, and only a chunk that arrived whole is recorded beyond ``received``."""

    def __init__(self, upload: StagedUpload, offset: int, length: int) -> None:
        self.upload, self.start, self.limit = upload, offset, offset + length
        self.file: BinaryIO = open(upload.path, "r+b")  # noqa: SIM115 - closed by close()
        self.registered = False
        try:
            _lock(self.file, upload.id, shared=True)  # other chunks too; a save excludes all
            with _progress_lock:
                self._check(offset, length)
                _in_flight.setdefault(upload.id, []).append((self.start, self.limit))
                self.registered = True
            self.file.seek(offset)
        except BaseException:
            self.file.close()
            raise
        self.position = offset

    def _check(self, offset: int, length: int) -> None:
        upload = self.upload
        received = upload.received
        chunk = max(upload.chunk_size, 1)
        if offset != received and (offset < received or offset % chunk):
            raise OffsetConflict(
                f"upload {upload.id!r} has {received} bytes; send the chunk at offset "
                f"{received}, not {offset}",
                received,
            )
        if length < 0 or self.limit > upload.size:
            raise ValidationError(
                f"a chunk of {length} bytes at offset {offset} goes past the announced size "
                f"of {upload.size} bytes of {upload.name!r}; nothing of it was written"
            )
        end = max(self.limit, offset + 1)
        if any(a < end and offset < b for a, b in _in_flight.get(upload.id, [])):
            raise UploadBusy(
                f"upload {upload.id!r} is being written at offset {offset} by another request; "
                "wait for it, then ask GET uploads/{id} where to continue"
            )

    def write(self, data: bytes) -> None:
        if self.position + len(data) > self.limit:
            self.abort()
            raise ValidationError(
                f"the chunk sent more bytes than announced (past byte {self.limit} of "
                f"{self.upload.name!r}); nothing of it was written"
            )
        self.file.write(data)
        self.position += len(data)

    def write_many(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def finish(self) -> int:
        """All the chunk's bytes arrived: record them, release the file; returns
        ``received``."""
        if self.position != self.limit:
            self.abort()
            raise ValidationError(
                f"the chunk ended after {self.position - self.start} of its "
                f"{self.limit - self.start} bytes; nothing of it was written"
            )
        return self._close(self.limit)

    def abort(self) -> None:
        """The chunk is refused: nothing of it is recorded, and what it wrote at the end of
        the file is cut off again. (A dropped connection instead calls ``keep``.)"""
        if self.file.closed:
            return
        with _progress_lock:
            self._unregister()
            received, ranges = self.upload.progress()
            others = _in_flight.get(self.upload.id, [])
            if max([received, *(b for _, b in ranges), *(b for _, b in others)]) <= self.start:
                self.file.truncate(self.start)
            self.file.close()

    def keep(self) -> None:
        """The connection dropped mid-chunk: at ``received``, the bytes that came are a
        correct prefix and count; elsewhere the chunk is sent again."""
        if not self.file.closed:
            self._close(None)

    def _close(self, end: int | None) -> int:
        """Record ``start..end`` (None: what arrived, if at ``received``) and close."""
        with _progress_lock:
            self._unregister()
            if end is None:
                end = self.position if self.start == self.upload.received else self.start
            received = self.upload.record(self.start, end)
            self.file.close()
        return received

    def _unregister(self) -> None:
        if self.registered:
            ranges = _in_flight.get(self.upload.id, [])
            ranges.remove((self.start, self.limit))
            if not ranges:
                _in_flight.pop(self.upload.id, None)
            self.registered = False


def discard(upload_id: Any, owner: str | None) -> StagedUpload:
    """Cancel: the staged bytes and the record are removed (also while a chunk is written)."""
    upload = load(upload_id, owner)
    remove(upload)
    return upload


def remove(upload: StagedUpload) -> None:
    # rename first, so a concurrent request finds nothing half-removed
    gone = upload.folder.with_name(f".removing-{upload.id}-{secrets.token_hex(4)}")
    try:
        os.replace(upload.folder, gone)
    except FileNotFoundError:
        return
    shutil.rmtree(gone, ignore_errors=True)


@contextlib.contextmanager
def holding(upload: StagedUpload) -> Iterator[None]:
    """The upload's lock for a save: no chunk can be written meanwhile. The staged bytes
    are fsynced first (they were not as they arrived)."""
    with open(upload.path, "rb") as file:
        _lock(file, upload.id)
        os.fsync(file.fileno())
        yield


def mark_saved(upload: StagedUpload, uid: str) -> None:
    """The bytes are in the instance now: keep only the record, naming the artifact."""
    upload.state, upload.artifact = COMMITTED, uid
    upload.write_meta()
    shutil.rmtree(upload.folder / "file", ignore_errors=True)


def sweep(grace_seconds: float = DEFAULT_GRACE, instance: str | None = None) -> list[str]:
    """Remove uploads untouched for ``grace_seconds`` (and old tombstones); returns their ids.

    ``instance``: only those recorded for that instance. An upload being written is kept.
    """
    return [u.id for u in abandoned(grace_seconds, instance) if _remove_unless_busy(u)]


def sweep_one(upload_id: str) -> bool:
    """Remove one upload unless a request is writing it right now."""
    upload = _read(uploads_root() / check_id(upload_id))
    return upload is not None and _remove_unless_busy(upload)


def abandoned(grace_seconds: float, instance: str | None = None) -> list[StagedUpload]:
    now = time.time()
    return [
        upload
        for upload in _all(uploads_root())
        if (instance is None or upload.instance == instance)
        and now - _last_activity(upload.folder) >= grace_seconds
    ]


def _remove_unless_busy(upload: StagedUpload) -> bool:
    if upload.state == RECEIVING:
        try:
            with holding(upload):
                pass
        except UploadBusy:
            return False
        except FileNotFoundError:
            pass
    remove(upload)
    return True


# -- helpers -------------------------------------------------------------------------------


def _new_id() -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(ID_LENGTH))


def _lock(file: BinaryIO, upload_id: str, shared: bool = False) -> None:
    try:
        fcntl.flock(file.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UploadBusy(
            f"upload {upload_id!r} is being written or saved by another request; wait for it, "
            "then ask GET uploads/{id} where to continue"
        ) from None


def _valid_id(name: str) -> str | None:
    try:
        return check_id(name)
    except NotFoundError:
        return None


def _read(folder: Path) -> StagedUpload | None:
    try:
        raw = json.loads((folder / META).read_text())
        upload = StagedUpload(**raw)
    except (OSError, ValueError, TypeError):
        return None
    upload.root = folder.parent
    return upload if upload.id == folder.name else None


def _all(root: Path) -> list[StagedUpload]:
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.name.startswith(".removing-"):
            shutil.rmtree(folder, ignore_errors=True)  # a removal cut short
            continue
        upload = _read(folder)
        if upload is not None:
            found.append(upload)
    return found


def _last_activity(folder: Path) -> float:
    stamps = []
    for path in (folder / META, folder / "file"):
        with contextlib.suppress(OSError):
            stamps.append(path.stat().st_mtime)
    with contextlib.suppress(OSError):
        for entry in (folder / "file").iterdir():
            stamps.append(entry.stat().st_mtime)
    return max(stamps, default=0.0)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"
