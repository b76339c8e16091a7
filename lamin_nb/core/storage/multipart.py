"""S3 uploads, single PUT or multipart, and the multipart uploads a killed writer left behind.

Verified (DESIGN §9): the bytes that reach storage are the bytes that were hashed.

The source is read once; every piece read is hashed and sent, so a file rewritten while it
uploads cannot be stored under the hash of its old content: the digest of what was sent is
compared with the artifact's hash before the object can appear (before the single PUT, or
before the multipart upload is completed; a mismatch aborts it). Every request carries a
CRC32 checksum of its body, which the server verifies (a corrupted body is refused).

Resumable: a multipart upload with a journal records its upload id before the first part
moves and keeps its parts when it fails or is interrupted. Run again with what the journal
recorded, it lists the parts the server holds (the truth), checks each against the source as
the source is read (size, then CRC32 or the part's MD5 ETag) and sends only the others.
Several parts are in flight at once; a process-wide budget bounds the part buffers held.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import threading
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import IntegrityError, describe
from ..faults import fault
from ..hashing import DIGEST_BYTES, encode, new_hasher
from .base import IncompleteUpload, Journal

logger = logging.getLogger("lamin_nb")
PART_SIZE = 8 * 1024 * 1024  # files up to this size go up in one PUT; larger ones in parts
PART_SIZE_ENV = "LAMIN_NB_PART_SIZE"
MIN_PART = 5 * 1024 * 1024  # S3's smallest part (but the last)
MAX_PARTS = 9000  # below S3's 10 000: huge files get bigger parts
PARTS_IN_FLIGHT = 8  # per file: reading and hashing overlap with the sending
BUFFERS = 16  # part buffers held at once by the whole process (several files in parallel)
CHECKSUM = "CRC32"
REFRESH_CODES = (
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "TokenRefreshRequired",
)

_budget = threading.BoundedSemaphore(BUFFERS)


def part_size_for(size: int) -> int:
    """The part size of a ``size``-byte upload: ``PART_SIZE`` (or ``LAMIN_NB_PART_SIZE``),
    larger for files that would need more than ``MAX_PARTS`` parts (whole MiB)."""
    configured = os.environ.get(PART_SIZE_ENV, "").strip()
    base = max(MIN_PART, int(configured)) if configured.isdigit() else PART_SIZE
    needed = -(-size // MAX_PARTS)
    mib = 1024 * 1024
    return max(base, -(-needed // mib) * mib)


def put_verified(
    fs: Any,
    source: Path,
    path: str,
    expected_hash: str | None,
    on_bytes: Callable[[int], None] | None = None,
    journal: Journal | None = None,
) -> str:
    """Upload ``source`` to ``path`` (s3://bucket/key); the object exists only once complete
    and only if what was sent hashes to ``expected_hash`` (when given). Returns the hash of
    what was sent: the content hash of a file that was not hashed before (one read)."""
    bucket, key, _ = fs.split_path(path)
    with open(source, "rb", buffering=0) as src:
        size = os.fstat(src.fileno()).st_size
        if size <= PART_SIZE:
            data = _read_part(src, PART_SIZE + 1)
            if len(data) > PART_SIZE:  # grown since: its hash cannot be the one expected
                raise IntegrityError(f"{source} changed after it was hashed; save it again")
            digest = _digest_of(data)
            _verify(source, digest, expected_hash)
            fault("mid_upload")
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm=CHECKSUM)
            if on_bytes is not None:
                on_bytes(len(data))
            return digest
        return _Multipart(fs, bucket, key, size, on_bytes, journal).run(src, source, expected_hash)


# -- the parts' client: botocore in threads ---------------------------------------------------
#
# Parts go up through a plain (synchronous) botocore client in a thread pool, as boto3's
# TransferManager sends them, not through s3fs's event loop: SigV4 hashes every body (SHA-256
# over plain HTTP) and botocore would compute each part's CRC32 again, and on the one event
# loop thread both run one part after the other, while in threads they run in parallel (the
# hashes release the GIL). The client is made from the file system's own settings, so the
# same endpoint, region and credentials are used (refreshable ones refresh between parts).

_clients: dict[int, Any] = {}  # by the identity of the file system (equal ones may differ:
# their environment, AWS_ENDPOINT_URL, is not part of what makes them equal)
_clients_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """One pool for the process: never more parts in flight than ``BUFFERS``."""
    global _pool
    with _clients_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(BUFFERS, thread_name_prefix="lamin-nb-part")
        return _pool


def parts_client(fs: Any, bucket: str, refresh: bool = False) -> Any:
    """A botocore S3 client with the settings of ``fs`` (an s3fs file system), cached."""
    with _clients_lock:
        client = None if refresh else _clients.get(id(fs))
        if client is None:
            if id(fs) not in _clients:
                weakref.finalize(fs, _clients.pop, id(fs), None)
            client = _clients[id(fs)] = _new_client(fs, bucket)
        return client


def _new_client(fs: Any, bucket: str) -> Any:
    import botocore.session
    from botocore.config import Config

    async_client = _async_client(fs, bucket)
    allowed = set(Config.OPTION_DEFAULTS)
    config = {k: v for k, v in fs._prepare_config_kwargs().items() if k in allowed}
    config["max_pool_connections"] = max(BUFFERS, int(config.get("max_pool_connections") or 0))
    kwargs: dict[str, Any] = {
        "region_name": async_client.meta.region_name,
        "endpoint_url": async_client.meta.endpoint_url,
    }
    if getattr(fs, "anon", False):
        from botocore import UNSIGNED

        config["signature_version"] = UNSIGNED
    else:
        kwargs.update(
            aws_access_key_id=fs.key, aws_secret_access_key=fs.secret, aws_session_token=fs.token
        )
    session = botocore.session.Session(profile=getattr(fs, "kwargs", {}).get("profile"))
    return session.create_client("s3", config=Config(**config), **kwargs)


def _async_client(fs: Any, bucket: str) -> Any:
    from fsspec.asyn import sync

    fs.connect()
    return sync(fs.loop, fs.get_s3, bucket)


def _call(client: Any, method: str, **params: Any) -> Any:
    """A client call, its S3 errors as s3fs raises them (PermissionError, FileNotFoundError,
    ... with the botocore error as the cause)."""
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    try:
        return getattr(client, method)(**params)
    except ClientError as exc:
        raise translate_boto_error(exc) from exc


@dataclass
class _Sending:
    number: int
    buffer: bytearray
    body: bytearray
    future: Future[Any]
    retried: bool = False


class _Multipart:
    def __init__(
        self,
        fs: Any,
        bucket: str,
        key: str,
        size: int,
        on_bytes: Callable[[int], None] | None,
        journal: Journal | None,
    ) -> None:
        self.fs, self.bucket, self.key, self.size = fs, bucket, key, size
        self.on_bytes, self.journal = on_bytes, journal
        self.client = parts_client(fs, bucket)
        self.parts: dict[int, dict[str, Any]] = {}
        self.bytes_done = 0
        self.sending: deque[_Sending] = deque()
        self.free: list[bytearray] = []  # part buffers, reused: no allocation per part
        self.held = 0  # buffers of this upload counted in the process budget
        self.upload_id = ""
        self.part_size = part_size_for(size)

    # -- the run -------------------------------------------------------------------------

    def run(self, src: io.FileIO, source: Path, expected_hash: str | None) -> str:
        try:
            return self._run(src, source, expected_hash)
        finally:
            self.free.clear()
            for _ in range(self.held):
                _budget.release()
            self.held = 0

    def _run(self, src: io.FileIO, source: Path, expected_hash: str | None) -> str:
        existing = self._resume_or_start()
        hasher = new_hasher()
        try:
            number = 0
            while True:
                buffer = self._buffer()
                n = _fill(src, buffer)
                if not n:
                    self.free.append(buffer)
                    break
                view = memoryview(buffer)[:n]
                hasher.update(view)  # in order, as read: the hash of exactly what is sent
                number += 1
                there = existing.get(number)
                if there is not None:
                    crc = crc32_base64(view)
                    if _same_part(there, view, crc):
                        # the server has it: not sent again. Its checksum goes into the
                        # completion (some servers list parts without one, and refuse a
                        # completion that mixes parts with and without)
                        self.free.append(buffer)
                        self._done(number, {**there, "ChecksumCRC32": crc}, n)
                        continue
                # botocore takes bytes-like bodies of exactly the part's size: the full buffer,
                # or a copy of the short last part
                body = buffer if n == len(buffer) else bytearray(view)
                self._send(_Sending(number, buffer, body, self._submit(number, body)))
                if number == 1:
                    fault("mid_upload")
            while self.sending:
                self._finish_some()
            digest = encode(hasher.digest(DIGEST_BYTES))
            _verify(source, digest, expected_hash)
            self._record(force=True)
            _call(
                self.client,
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": [self.parts[n] for n in sorted(self.parts)]},
            )
            return digest
        except IntegrityError:
            self._stop()
            self._abort()  # the source changed: nothing of it may remain
            raise
        except BaseException:
            self._stop()
            if self.journal is None:
                self._abort()
            else:  # kept for a later run: it resumes from the parts the server holds
                self._record(force=True, quiet=True)
            raise

    def _resume_or_start(self) -> dict[int, dict[str, Any]]:
        """The parts already on the server (resuming), or none (a new upload, journaled
        before its first part moves)."""
        state = self.journal.resume_from if self.journal is not None else None
        if state is not None:
            try:
                existing = self._list_parts(state.transfer_id)
            except FileNotFoundError:  # NoSuchUpload: aborted (repair, lifecycle) meanwhile
                assert self.journal is not None
                self.journal.restarting("the interrupted upload is gone (aborted or expired)")
            else:
                self.upload_id, self.part_size = state.transfer_id, state.part_size
                assert self.journal is not None
                have = sum(p["Size"] for p in existing.values())
                self.journal.resuming(len(existing), self._parts_total(), self.size - have)
                return existing
        mpu = _call(
            self.client,
            "create_multipart_upload",
            Bucket=self.bucket,
            Key=self.key,
            ChecksumAlgorithm=CHECKSUM,
        )
        self.upload_id = mpu["UploadId"]
        if self.journal is not None:
            try:
                self.journal.started(self.upload_id, self.part_size, self._parts_total())
            except BaseException:
                self._abort()
                raise
        return {}

    def _parts_total(self) -> int:
        return max(1, -(-self.size // self.part_size))

    def _list_parts(self, upload_id: str) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, "UploadId": upload_id}
        while True:
            page = _call(self.client, "list_parts", **params)
            for part in page.get("Parts", []):
                found[int(part["PartNumber"])] = part
            if not page.get("IsTruncated"):
                return found
            params["PartNumberMarker"] = page["NextPartNumberMarker"]

    # -- parts in flight -----------------------------------------------------------------

    def _buffer(self) -> bytearray:
        """A free part buffer: at most ``PARTS_IN_FLIGHT`` parts of this file in flight, and
        ``BUFFERS`` buffers in the whole process (several files in parallel)."""
        while True:
            if len(self.sending) >= PARTS_IN_FLIGHT:
                self._finish_some()
            elif self.free:
                return self.free.pop()
            elif _budget.acquire(blocking=not self.sending):
                self.held += 1
                return bytearray(self.part_size)
            else:
                self._finish_some()  # frees one of ours; others free theirs as they end

    def _send(self, sending: _Sending) -> None:
        self.sending.append(sending)

    def _submit(self, number: int, body: bytearray) -> Future[dict[str, Any]]:
        return _executor().submit(self._upload_part, self.client, number, body)

    def _upload_part(self, client: Any, number: int, body: bytearray) -> dict[str, Any]:
        """In a pool thread: the part's CRC32 (the server verifies it), then the part."""
        crc = crc32_base64(body)
        result = _call(
            client,
            "upload_part",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ChecksumCRC32=crc,  # computed once, here: botocore does not compute it again
        )
        return {"ETag": result["ETag"], "ChecksumCRC32": crc}

    def _finish_some(self) -> None:
        """Wait until a part in flight ends, whichever (waiting for the oldest would let one
        slow part hold the slots of the parts that ended after it), then take every ended one."""
        wait([s.future for s in self.sending], return_when=FIRST_COMPLETED)
        for sending in [s for s in self.sending if s.future.done()]:
            self._finish(sending)

    def _finish(self, sending: _Sending) -> None:
        try:
            result = sending.future.result()
        except PermissionError as exc:
            if sending.retried or error_code(exc) not in REFRESH_CODES:
                raise
            # credentials expired over a long upload and were not refreshed in time (static
            # ones replaced in the environment or a file): read them again, send it again
            logger.info("credentials expired during the upload of %s; refreshing", self.key)
            self.client = parts_client(self.fs, self.bucket, refresh=True)
            sending.retried = True
            sending.future = self._submit(sending.number, sending.body)
            return
        self.sending.remove(sending)
        self.free.append(sending.buffer)
        self._done(sending.number, result, len(sending.body))

    def _done(self, number: int, result: dict[str, Any], size: int) -> None:
        part = {"PartNumber": number, "ETag": result["ETag"]}
        if result.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = result["ChecksumCRC32"]
        self.parts[number] = part
        self.bytes_done += size
        self._record()
        if self.on_bytes is not None:
            self.on_bytes(size)

    def _record(self, force: bool = False, quiet: bool = False) -> None:
        if self.journal is None or (not force and not self.parts):
            return
        try:
            self.journal.progressed(len(self.parts), self.bytes_done)
        except Exception as exc:  # the server's part list is the truth; this is a summary
            if not quiet:
                raise
            logger.warning("could not record the upload progress of %s: %s", self.key, exc)

    def _stop(self) -> None:
        """End the parts in flight: those not started are cancelled, those being sent end
        (a thread cannot be interrupted; their buffers are not reused before)."""
        for sending in self.sending:
            sending.future.cancel()
        for sending in self.sending:
            try:
                sending.future.result()
            except BaseException:  # noqa: BLE001, S110 - cancelled or failed: either way done
                pass
        self.sending.clear()

    def _abort(self) -> None:
        """Nothing appears: the upload is aborted (if that fails too, ``ln.repair()`` aborts
        it as an incomplete upload)."""
        try:
            _call(
                self.client,
                "abort_multipart_upload",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
            )
        except Exception as exc:  # noqa: BLE001 - repair aborts incomplete uploads later
            logger.warning("could not abort the upload of %s: %s", self.key, describe(exc))


def _same_part(there: dict[str, Any], data: memoryview, crc: str) -> bool:
    """Is the part the server holds these bytes? Its size, then its CRC32 (uploads made with
    a checksum) or the MD5 its ETag is for a plain part."""
    if int(there.get("Size", -1)) != len(data):
        return False
    there_crc = there.get("ChecksumCRC32")
    if there_crc:
        return bool(there_crc == crc)
    return bool(there.get("ETag", "").strip('"') == hashlib.md5(data).hexdigest())  # noqa: S324


def crc32_base64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def error_code(exc: BaseException) -> str:
    """The S3 error code behind an error s3fs translated (``ExpiredToken``, ...)."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
        seen = seen.__cause__
    return ""


def clock_skew(exc: BaseException) -> float | None:
    """Seconds this machine's clock is ahead (+) of the server's, for a request refused as
    ``RequestTimeTooSkewed``; None for any other error."""
    from email.utils import parsedate_to_datetime

    from ..models import utcnow

    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            error = response.get("Error", {})
            if error.get("Code") != "RequestTimeTooSkewed":
                return None
            server = error.get("ServerTime")
            try:
                if server:
                    from datetime import datetime

                    when = datetime.fromisoformat(str(server).replace("Z", "+00:00"))
                else:
                    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})["date"]
                    when = parsedate_to_datetime(date)
            except (KeyError, ValueError):
                return 0.0
            when = when.astimezone(timezone.utc).replace(tzinfo=None)
            return (utcnow() - when).total_seconds()
        seen = seen.__cause__
    return None


def _fill(src: io.FileIO, buffer: bytearray) -> int:
    """Read into ``buffer`` until it is full or the source ends; returns the bytes read."""
    view, n = memoryview(buffer), 0
    while n < len(buffer) and (got := src.readinto(view[n:])):
        n += got
    return n


def _read_part(src: BinaryIO, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0 and (chunk := src.read(size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _digest_of(data: bytes) -> str:
    hasher = new_hasher()
    hasher.update(data)
    return encode(hasher.digest(DIGEST_BYTES))


def _verify(source: Path, digest: str, expected: str | None) -> None:
    if expected is not None and digest != expected:
        raise IntegrityError(f"{source} changed after it was hashed; save it again")


def list_uploads(fs: Any, bucket: str, prefix: str) -> Iterator[IncompleteUpload]:
    """Multipart uploads under ``prefix`` that were neither completed nor aborted."""
    params = {"Bucket": bucket, "Prefix": prefix}
    while True:
        page = fs.call_s3("list_multipart_uploads", **params)
        for upload in page.get("Uploads", []):
            if upload["Key"].startswith(prefix):  # never anything outside the managed prefix
                started = upload["Initiated"]
                if started.tzinfo is not None:
                    started = started.astimezone(timezone.utc).replace(tzinfo=None)
                yield IncompleteUpload(upload["Key"][len(prefix) :], upload["UploadId"], started)
        if not page.get("IsTruncated"):
            return
        params.update(KeyMarker=page["NextKeyMarker"], UploadIdMarker=page["NextUploadIdMarker"])


def uploaded_bytes(fs: Any, bucket: str, key: str, upload_id: str) -> int:
    """What the parts of an unfinished upload hold (0 if it is gone)."""
    total, params = 0, {"Bucket": bucket, "Key": key, "UploadId": upload_id}
    try:
        while True:
            page = fs.call_s3("list_parts", **params)
            total += sum(int(p.get("Size", 0)) for p in page.get("Parts", []))
            if not page.get("IsTruncated"):
                return total
            params["PartNumberMarker"] = page["NextPartNumberMarker"]
    except FileNotFoundError:
        return total


def abort_upload(fs: Any, bucket: str, key: str, upload_id: str) -> int:
    """Abort an unfinished upload; returns the bytes its parts held."""
    held = uploaded_bytes(fs, bucket, key, upload_id)
    try:
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except FileNotFoundError:  # completed or aborted meanwhile
        return 0
    return held


def lifecycle_warning(fs: Any, bucket: str) -> str | None:
    """A warning when no lifecycle rule of ``bucket`` aborts incomplete multipart uploads."""
    try:
        config = fs.call_s3("get_bucket_lifecycle_configuration", Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 - cannot be read (permission): nothing certain
        if error_code(exc) != "NoSuchLifecycleConfiguration":
            return None
        config = {}
    for rule in config.get("Rules", []):
        if rule.get("Status") == "Enabled" and rule.get("AbortIncompleteMultipartUpload"):
            return None
    return (
        f"bucket {bucket} has no lifecycle rule that aborts incomplete multipart uploads: "
        "the parts of an interrupted upload that is never resumed are billed until "
        "ln.repair(dry_run=False) aborts it; add a rule with AbortIncompleteMultipartUpload "
        "(e.g. DaysAfterInitiation: 7)"
    )
