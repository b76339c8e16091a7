"""Verifying a local copy: the bytes stored are the bytes hashed, and durable before the rename.

The kernel copies (``os.copy_file_range``, no trip through Python); the destination is then
read back from the page cache and hashed. For a large copy that read-back runs in a thread that
follows the copy, and the fdatasync overlaps its tail, so copy, verify and flush overlap
instead of adding up.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any, BinaryIO

from ..hashing import DIGEST_BYTES, READ_SIZE, encode, hash_stream, new_hasher

PARALLEL_FLUSH = 32 * 1024 * 1024  # from this size, verify alongside the copy and the flush


class Verifier:
    """Hashes the destination of a kernel copy while the copy runs (the bytes stored are the
    bytes hashed), then flushes it to disk.

    A large copy is read back by a thread that follows the copy piece by piece (from the page
    cache), so the verify overlaps the copy instead of following it; the fdatasync then
    overlaps the verify's tail. A small copy (or one without an expected hash) is verified
    after the copy, in this thread: a thread would cost more than it saves.
    """

    def __init__(self, fd: int, start: int, follow: bool, check: bool) -> None:
        self.fd, self.follow, self.check = fd, follow, check
        self.available = start  # bytes of the destination written so far
        self.final: int | None = None
        self.stopped = False
        self.error: BaseException | None = None
        self.digest = ""
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None
        if follow:
            self.thread = threading.Thread(target=self._run, name="lamin-nb-verify", daemon=True)
            self.thread.start()

    @classmethod
    def for_copy(
        cls, dst: BinaryIO, size: int, expected_hash: str | None, start: int = 0
    ) -> Verifier:
        check = expected_hash is not None
        return cls(dst.fileno(), start, check and size >= PARALLEL_FLUSH, check)

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop()  # before the file is closed: the thread reads its descriptor

    def written(self, upto: int) -> None:
        if self.follow:
            with self.cond:
                self.available = upto
                self.cond.notify()

    def matches(self, dst: BinaryIO, expected_hash: str | None) -> bool:
        """Flush the copy to disk; does it hash to ``expected_hash`` (True when None)?"""
        digest = self.flush_and_digest(dst)
        return expected_hash is None or digest == expected_hash

    def flush_and_digest(self, dst: BinaryIO) -> str | None:
        """Make the copy durable and return the hash of every byte written (None unchecked)."""
        if not self.check:
            os.fdatasync(dst.fileno())
            return None
        if not self.follow:
            return hash_while_flushing(dst)
        with self.cond:
            self.final = self.available = dst.tell()
            self.cond.notify()
        os.fdatasync(dst.fileno())  # while the thread hashes the last pieces
        self._stop(wait_for_end=True)
        if self.error is not None:
            raise self.error
        return self.digest

    def _stop(self, wait_for_end: bool = False) -> None:
        if self.thread is None:
            return
        if not wait_for_end:
            with self.cond:
                self.stopped = True
                self.cond.notify()
        self.thread.join()
        self.thread = None

    def _run(self) -> None:
        try:
            hasher = new_hasher()
            buffer = bytearray(READ_SIZE)
            view = memoryview(buffer)
            pos = 0
            while True:
                with self.cond:
                    while not self.stopped and self.available <= pos and self.final is None:
                        self.cond.wait()
                    if self.stopped or (self.final is not None and pos >= self.final):
                        break
                    upto = self.available
                while pos < upto:
                    n = os.preadv(self.fd, [view[: min(READ_SIZE, upto - pos)]], pos)
                    if n == 0:
                        raise OSError(errno.EIO, "the copy ended early")
                    hasher.update(view[:n])
                    pos += n
            self.digest = encode(hasher.digest(DIGEST_BYTES))
        except BaseException as exc:  # noqa: BLE001 - handed to the copying thread
            self.error = exc


def hash_while_flushing(dst: BinaryIO) -> str:
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
