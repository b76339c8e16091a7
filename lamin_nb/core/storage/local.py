"""A local folder: writes go to ``<name>.<token>.tmp`` beside the target, are flushed to disk
(hashing what was written while the flush runs) and renamed into place."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import IntegrityError
from ..faults import fault
from ..hashing import CHUNK, hash_file, hash_stream
from ..settings import home
from .base import (
    META,
    READ_ONLY,
    RESERVED,
    FsspecStorage,
    IncompleteUpload,
    Journal,
    ObjectInfo,
    owner_of_temp,
    temp_name,
)
from .ordered import sorted_entries

COPY_STEP = 32 * 1024 * 1024  # bytes per kernel copy call (progress and cancel between calls)
PARALLEL_FLUSH = 32 * 1024 * 1024  # from this size, flush to disk while re-hashing
RESUMABLE = 64 * 1024 * 1024  # from this size a journaled copy keeps its partial file
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


class LocalStorage(FsspecStorage):
    default_workers = 8  # enough threads to overlap the flushes of small files
    has_temps = True  # a temporary name, flushed, then renamed into place

    def _make_fs(self) -> Any:
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem()

    # -- writing -----------------------------------------------------------------------

    def prepare(self) -> None:
        Path(self.managed, META).mkdir(parents=True, exist_ok=True)

    def put_file(
        self,
        source: Path,
        name: str,
        expected_hash: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
        journal: Journal | None = None,
    ) -> str:
        """Copy ``source`` to ``name`` through a temporary file, durable before the rename;
        returns the hash of the copy (read back from the page cache while it is flushed).

        A large copy with a journal records its temporary (partial) file first and keeps it
        when interrupted; run again, it re-verifies the partial file against the source and
        copies only the rest."""
        target = Path(self.managed, name)
        tmp = Path(self.managed, temp_name(name))
        if _link_staged(source, tmp):
            return _finish_linked(source, tmp, target, expected_hash, on_bytes)
        if journal is not None and source.stat().st_size >= RESUMABLE:
            return _Resumable(self, source, name, journal).run(expected_hash, on_bytes)
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
                digest = _flush_verified(dst, expected_hash, source)
                # a stored object is never edited in place (load() returns its path): read-only
                # from the moment it appears; deleting it needs only the folder's write access
                os.fchmod(dst.fileno(), READ_ONLY)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

    def sync(self) -> None:
        """Make renames in the managed folder durable (one directory fsync for a batch)."""
        fd = os.open(self.managed, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def delete(self, name: str) -> None:
        Path(self.managed, name).unlink(missing_ok=True)

    def delete_temps(self, name: str) -> None:
        for entry in Path(self.managed).glob(f"{name}.*.tmp"):
            if owner_of_temp(entry.name) == name:
                entry.unlink(missing_ok=True)

    def move(self, name: str, new_name: str) -> None:
        Path(self.managed, new_name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(Path(self.managed, name), Path(self.managed, new_name))

    def write_marker(self, name: str, data: bytes) -> None:
        Path(self.managed, META).mkdir(parents=True, exist_ok=True)
        self.fs.pipe_file(self.path(f"{META}/{name}"), data)

    # -- reading -----------------------------------------------------------------------

    def info(self, name: str) -> ObjectInfo | None:
        try:
            st = Path(self.managed, name).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(name, st.st_size, _from_ts(st.st_mtime))

    def local_path(self, name: str) -> Path | None:
        return Path(self.managed) / name

    def hash_object(self, name: str) -> tuple[str, int]:
        return hash_file(Path(self.managed, name))

    def list_objects(self, folder: str = "") -> Iterator[ObjectInfo]:
        """Every object in name order, walked lazily (memory does not grow with the count)."""
        managed = str(Path(self.managed))
        top = f"{folder.strip('/')}/" if folder else ""
        yield from self._walk(managed, top, skip_reserved=not folder)

    def _walk(self, managed: str, rel_dir: str, skip_reserved: bool) -> Iterator[ObjectInfo]:
        for entry in sorted_entries(os.path.join(managed, rel_dir) if rel_dir else managed):
            rel = rel_dir + entry
            if entry.endswith("/"):
                if not (skip_reserved and entry[:-1] in RESERVED):
                    yield from self._walk(managed, rel, False)
                continue
            try:
                st = os.stat(os.path.join(managed, rel), follow_symlinks=False)
            except FileNotFoundError:  # renamed or deleted by a writer since it was listed
                continue
            yield ObjectInfo(rel, st.st_size, _from_ts(st.st_mtime))

    def list_temps(self, names: Collection[str]) -> Iterator[ObjectInfo]:
        """One pass over the managed folder's entry names (no stat, no sort) when there are
        names to look for: a temporary's token is random, so only its prefix is known, and a
        folder has no index by prefix. Only the temporaries found are stat'ed."""
        wanted = set(names)
        if not wanted:
            return
        with os.scandir(self.managed) as entries:
            found = [e.name for e in entries if e.name.endswith(".tmp")]
        for entry in sorted(e for e in found if owner_of_temp(e) in wanted):
            info = self.info(entry)
            if info is not None:  # finished or removed since the pass
                yield info

    def find_folder(self, name: str) -> str | None:
        for folder, dirs, _ in os.walk(self.managed):
            if name in dirs:
                return f"{folder}/{name}"
        return None

    # -- uploads a killed writer left behind: temporary files, which check lists as orphans

    def incomplete_uploads(self) -> Iterator[IncompleteUpload]:
        return iter(())

    def abort_upload(self, name: str, upload_id: str) -> int:
        """Remove a partial file (``upload_id`` is its name; "" for every one of ``name``)."""
        if upload_id and owner_of_temp(upload_id) == name:
            partial = Path(self.managed, upload_id)
            try:
                held = partial.stat().st_size
            except FileNotFoundError:
                return 0
            partial.unlink(missing_ok=True)
            return held
        self.delete_temps(name)
        return 0

    def uploaded_bytes(self, name: str, upload_id: str) -> int:
        try:
            return Path(self.managed, upload_id).stat().st_size if upload_id else 0
        except FileNotFoundError:
            return 0

    def warnings(self) -> list[str]:
        return []


class _Resumable:
    """A large local copy that survives an interruption as its partial file."""

    def __init__(self, storage: LocalStorage, source: Path, name: str, journal: Journal) -> None:
        self.storage, self.source, self.name, self.journal = storage, source, name, journal
        self.size = source.stat().st_size
        self.parts_total = max(1, -(-self.size // COPY_STEP))

    def run(self, expected_hash: str | None, on_bytes: Callable[[int], None] | None) -> str:
        tmp, offset = self._resume_or_start(on_bytes)
        try:
            with open(self.source, "rb", buffering=0) as src, open(tmp, "r+b", buffering=0) as dst:
                src.seek(offset)
                dst.truncate(offset)
                dst.seek(offset)
                done = offset
                first = True
                while n := _copy_chunk(src, dst):
                    done += n
                    self.journal.progressed(done // COPY_STEP, done)
                    if on_bytes is not None:
                        on_bytes(n)
                    if first:
                        fault("mid_upload")
                        first = False
                digest = _flush_verified(dst, expected_hash, self.source)
            os.replace(tmp, Path(self.storage.managed, self.name))
            return digest
        except IntegrityError:
            tmp.unlink(missing_ok=True)  # the source changed: nothing of it may remain
            raise
        # any other failure keeps the partial file for a later run to resume

    def _resume_or_start(self, on_bytes: Callable[[int], None] | None) -> tuple[Path, int]:
        state = self.journal.resume_from
        if state is not None:
            tmp = Path(self.storage.managed, state.transfer_id)
            if owner_of_temp(state.transfer_id) == self.name and tmp.exists():
                offset = _matching_prefix(self.source, tmp, on_bytes)
                if offset > 0:
                    self.journal.resuming(offset // COPY_STEP, self.parts_total, self.size - offset)
                    return tmp, offset
                tmp.unlink(missing_ok=True)
                self.journal.restarting("the partial copy does not match the source")
            else:
                self.journal.restarting("the partial copy is gone")
        tmp = Path(self.storage.managed, temp_name(self.name))
        tmp.touch(exist_ok=False)
        try:
            self.journal.started(tmp.name, COPY_STEP, self.parts_total)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp, 0


def _link_staged(source: Path, tmp: Path) -> bool:
    """A file lamin_nb staged itself (``from_anndata``/``from_df`` write one under the settings
    folder's ``staging/``, removed after the save) becomes the object by a hard link: no copy.
    False for any other source, or when the staging folder is on another file system."""
    if Path(home(), "staging") not in source.parents:
        return False
    try:
        os.link(source, tmp)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False  # another file system, or one without hard links: copy it
        raise
    return True


def _finish_linked(
    source: Path,
    tmp: Path,
    target: Path,
    expected_hash: str | None,
    on_bytes: Callable[[int], None] | None,
) -> str:
    """Verify and flush the linked staging file like a copy (the bytes stored are the bytes
    hashed; durable before the rename), then rename it into place."""
    try:
        with open(tmp, "rb", buffering=0) as dst:
            fault("mid_upload")
            size = dst.seek(0, os.SEEK_END)
            if on_bytes is not None:
                on_bytes(size)
            digest = _flush_verified(dst, expected_hash, source)
            os.fchmod(dst.fileno(), READ_ONLY)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def _matching_prefix(source: Path, partial: Path, on_bytes: Callable[[int], None] | None) -> int:
    """How many leading bytes of ``partial`` are the source's (compared piece by piece; the
    first piece that differs ends the prefix)."""
    matched = 0
    with open(source, "rb") as src, open(partial, "rb") as part:
        while True:
            mine = part.read(CHUNK)
            if not mine:
                return matched
            if mine != src.read(len(mine)):
                return matched
            matched += len(mine)
            if on_bytes is not None:
                on_bytes(len(mine))


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


def _flush_verified(dst: BinaryIO, expected_hash: str | None, source: object) -> str:
    """Make ``dst`` durable and hash the written bytes while they are flushed; given the hash
    the save recorded, a source rewritten after it was hashed fails here, before the rename.
    Without one, the hash returned is the content's (the source was read once, by the copy)."""
    digest = _hash_while_flushing(dst)
    if expected_hash is not None and digest != expected_hash:
        raise IntegrityError(f"{source} changed after it was hashed; save it again")
    return digest


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
