"""Storage behind one interface: a local folder or an S3 prefix, through fsspec.

Objects live flat under ``<root>/.lamindb/``. Only ``_meta/`` and ``_quarantine/`` are reserved
inside it. Local writes go to ``<name>.<token>.tmp`` beside the target, are flushed to disk and
renamed into place; S3 objects appear only when their PUT (or multipart upload) completes.
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from .errors import IntegrityError
from .faults import fault
from .hashing import CHUNK, hash_stream

MANAGED = ".lamindb"
META = "_meta"
QUARANTINE = "_quarantine"
COPY_STEP = 32 * 1024 * 1024  # bytes per kernel copy call (progress and cancel between calls)
PARALLEL_FLUSH = 32 * 1024 * 1024  # from this size, flush to disk while re-hashing
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}
RESERVED = (META, QUARANTINE)
READ_ONLY = 0o444
S3_INSTALL_HINT = "S3 storage needs s3fs: pip install 'lamin_nb[s3]'"


@dataclass(frozen=True)
class ObjectInfo:
    name: str  # path relative to the managed prefix
    size: int
    mtime: datetime  # naive UTC


def storage_failure(exc: BaseException) -> bool:
    """Raised by the storage or on the way to it: an OSError, or botocore's own errors
    (endpoint unreachable, credentials, ClientError), which are not OSErrors."""
    if isinstance(exc, OSError):
        return True
    import sys

    boto = sys.modules.get("botocore.exceptions")
    return boto is not None and isinstance(exc, (boto.BotoCoreError, boto.ClientError))


def _retry_defaults(given: dict[str, Any] | None) -> dict[str, Any]:
    """botocore's legacy retries (5 attempts) take ~9 s to report an unreachable endpoint.
    s3fs itself retries throttling ("SlowDown") and dropped connections, so botocore's
    standard mode with 2 attempts is enough, and an unreachable endpoint fails at once.
    Whatever the user configured (options, AWS_MAX_ATTEMPTS, AWS_RETRY_MODE) wins."""
    config = dict(given or {})
    if "retries" not in config and not (
        os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")
    ):
        config["retries"] = {"mode": "standard", "max_attempts": 2}
    config.setdefault("connect_timeout", 10)
    return config


def temp_name(name: str) -> str:
    return f"{name}.{secrets.token_hex(4)}.tmp"


def owner_of_temp(name: str) -> str | None:
    """The object name a temporary upload belongs to, or None if it is not one."""
    if not name.endswith(".tmp"):
        return None
    stem, _, token = name[: -len(".tmp")].rpartition(".")
    return stem if stem and len(token) == 8 else None


class Storage:
    def __init__(self, root: str, options: dict[str, Any] | None = None) -> None:
        self.root = root
        self.options = dict(options or {})
        self.is_local = not root.startswith("s3://")
        self.managed = f"{root.rstrip('/')}/{MANAGED}"
        self._fs: Any = None

    def __repr__(self) -> str:
        return f"Storage({self.root!r})"

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs = self._make_fs()
        return self._fs

    def _make_fs(self) -> Any:
        if self.is_local:
            from fsspec.implementations.local import LocalFileSystem

            return LocalFileSystem()
        try:
            import s3fs
        except ImportError as exc:
            raise ImportError(S3_INSTALL_HINT) from exc
        options = {"use_listings_cache": False, **self.options}
        options["config_kwargs"] = _retry_defaults(options.get("config_kwargs"))
        return s3fs.S3FileSystem(**options)

    def path(self, name: str) -> str:
        return f"{self.managed}/{name}"

    # -- writing -----------------------------------------------------------------------

    def prepare(self) -> None:
        if self.is_local:
            Path(self.managed, META).mkdir(parents=True, exist_ok=True)

    def put_file(
        self,
        source: Path,
        name: str,
        expected_hash: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Upload ``source`` to ``name``; the object exists only once complete."""
        if self.is_local:
            self._put_local(source, name, expected_hash, on_bytes)
        else:
            self._put_s3(source, name, expected_hash, on_bytes)

    def _put_local(
        self,
        source: Path,
        name: str,
        expected_hash: str | None,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        target = Path(self.managed, name)
        tmp = Path(self.managed, temp_name(name))
        try:
            with open(source, "rb", buffering=0) as src, open(tmp, "xb+", buffering=0) as dst:
                first = True
                while n := _copy_chunk(src, dst):
                    if on_bytes is not None:
                        on_bytes(n)
                    if os.fstat(dst.fileno()).st_nlink == 0:  # cheap, once per piece
                        raise FileNotFoundError(
                            errno.ENOENT, "the temporary upload was removed meanwhile", str(tmp)
                        )
                    if first:
                        fault("mid_upload")
                        first = False
                if expected_hash is None:
                    os.fdatasync(dst.fileno())
                elif _hash_while_flushing(dst) != expected_hash:
                    raise IntegrityError(f"{source} changed after it was hashed; save it again")
                # a stored object is never edited in place (load() returns its path): read-only
                # from the moment it appears; deleting it needs only the folder's write access
                os.fchmod(dst.fileno(), READ_ONLY)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _put_s3(
        self,
        source: Path,
        name: str,
        expected_hash: str | None,
        on_bytes: Callable[[int], None] | None,
    ) -> None:
        from .s3upload import put_verified

        put_verified(self.fs, source, self.path(name), expected_hash, on_bytes)

    def sync(self) -> None:
        """Make renames in the managed folder durable (one directory fsync for a batch)."""
        if not self.is_local:
            return
        fd = os.open(self.managed, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def delete(self, name: str) -> None:
        """Delete one object; an object that is already gone is fine."""
        if self.is_local:
            Path(self.managed, name).unlink(missing_ok=True)
            return
        try:
            self.fs.rm_file(self.path(name))
        except FileNotFoundError:
            pass

    def delete_temps(self, name: str) -> None:
        """Remove leftover temporary uploads of ``name`` (local only; S3 has none)."""
        if not self.is_local:
            return
        for entry in Path(self.managed).glob(f"{name}.*.tmp"):
            if owner_of_temp(entry.name) == name:
                entry.unlink(missing_ok=True)

    def move(self, name: str, new_name: str) -> None:
        if self.is_local:
            Path(self.managed, new_name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(self.managed, name), Path(self.managed, new_name))
        else:
            self.fs.mv(self.path(name), self.path(new_name))

    # -- reading -----------------------------------------------------------------------

    def info(self, name: str) -> ObjectInfo | None:
        try:
            if self.is_local:
                st = Path(self.managed, name).stat()
                return ObjectInfo(name, st.st_size, _from_ts(st.st_mtime))
            info = self.fs.info(self.path(name))
        except FileNotFoundError:
            return None
        return ObjectInfo(name, int(info.get("size") or 0), _s3_mtime(info))

    def exists(self, name: str) -> bool:
        return self.info(name) is not None

    def open(self, name: str) -> Any:
        return self.fs.open(self.path(name), "rb")

    def get_file(self, name: str, local: Path) -> None:
        self.fs.get_file(self.path(name), str(local))

    def list_objects(self, folder: str = "") -> Iterator[ObjectInfo]:
        """Every object under the managed prefix (or one of its folders), reserved ones excluded."""
        if self.is_local:
            yield from self._list_local(folder)
        else:
            yield from self._list_s3(folder)

    def _list_local(self, folder: str) -> Iterator[ObjectInfo]:
        managed = str(Path(self.managed))
        stack = [Path(managed, folder) if folder else Path(managed)]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(current))
            except FileNotFoundError:
                continue
            for entry in entries:
                # entries of a walk below ``managed``: slicing is ~10x cheaper than relpath
                rel = entry.path[len(managed) + 1 :].replace(os.sep, "/")
                if not folder and rel in RESERVED:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # renamed or deleted by a writer since scandir
                    continue
                yield ObjectInfo(rel, st.st_size, _from_ts(st.st_mtime))

    def _list_s3(self, folder: str) -> Iterator[ObjectInfo]:
        base = self.path(folder) if folder else self.managed
        prefix = self.managed.removeprefix("s3://") + "/"
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for path, info in found.items():
            rel = path.removeprefix("s3://").removeprefix(prefix)
            if not folder and rel.split("/", 1)[0] in RESERVED:
                continue
            if info.get("type") == "directory":
                continue
            yield ObjectInfo(rel, int(info.get("size") or 0), _s3_mtime(info))

    # -- markers -----------------------------------------------------------------------

    def read_marker(self, name: str) -> bytes | None:
        try:
            return self.fs.cat_file(self.path(f"{META}/{name}"))
        except FileNotFoundError:
            return None

    def write_marker(self, name: str, data: bytes) -> None:
        if self.is_local:
            Path(self.managed, META).mkdir(parents=True, exist_ok=True)
        self.fs.pipe_file(self.path(f"{META}/{name}"), data)


def _copy_chunk(src: BinaryIO, dst: BinaryIO) -> int:
    """Copy the next piece in the kernel (no trip through Python); 0 at the end."""
    try:
        return os.copy_file_range(src.fileno(), dst.fileno(), COPY_STEP)
    except (AttributeError, OSError) as exc:  # not Linux, or not between these filesystems
        if isinstance(exc, OSError) and exc.errno not in _NO_KERNEL_COPY:
            raise
    data = src.read(CHUNK)
    view = memoryview(data)
    while view:
        view = view[dst.write(view) :]
    return len(data)


def _hash_while_flushing(dst: BinaryIO) -> str:
    """Hash what was written (from the page cache) and make it durable.

    For large files the fdatasync runs in a thread while the hash is computed, so the disk
    writes and the CPU work overlap instead of adding up.
    """
    size = dst.tell()
    dst.seek(0)
    if size < PARALLEL_FLUSH:
        digest = hash_stream(dst, size_hint=size)[0]
        os.fdatasync(dst.fileno())
        return digest
    failures: list[OSError] = []

    def flush() -> None:
        try:
            os.fdatasync(dst.fileno())
        except OSError as exc:
            failures.append(exc)

    flusher = threading.Thread(target=flush, name="lamin-nb-fdatasync", daemon=True)
    flusher.start()
    try:
        digest = hash_stream(dst, size_hint=size)[0]
    finally:
        flusher.join()  # before the file is closed: the thread uses its descriptor
    if failures:
        raise failures[0]
    return digest


def _from_ts(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None)


def _s3_mtime(info: dict[str, Any]) -> datetime:
    value = info.get("LastModified") or info.get("last_modified")
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    return datetime.now(timezone.utc).replace(tzinfo=None)
