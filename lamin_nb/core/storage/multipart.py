"""S3 uploads, single PUT or multipart, and the multipart uploads a killed writer left behind.

Verified (DESIGN §9): the bytes that reach storage are the bytes that were hashed.

The source is read once; every piece read is hashed and sent, so a file rewritten while it
uploads cannot be stored under the hash of its old content: the digest of what was sent is
compared with the artifact's hash before the object can appear (before the single PUT, or
before the multipart upload is completed; a mismatch aborts it). Every request carries a
CRC32 checksum of its body, which the server verifies (a corrupted body is refused).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import timezone
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import IntegrityError, describe
from ..faults import fault
from ..hashing import DIGEST_BYTES, encode, new_hasher
from .base import IncompleteUpload

logger = logging.getLogger("lamin_nb")
PART_SIZE = 16 * 1024 * 1024  # files up to this size go up in one PUT
PARTS_IN_FLIGHT = 4  # per file: reading and hashing overlap with the sending
CHECKSUM = "CRC32"


def put_verified(
    fs: Any,
    source: Path,
    path: str,
    expected_hash: str | None,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Upload ``source`` to ``path`` (s3://bucket/key); the object exists only once complete
    and only if what was sent hashes to ``expected_hash``."""
    bucket, key, _ = fs.split_path(path)
    with open(source, "rb", buffering=0) as src:
        data = _read_part(src, PART_SIZE + 1)
        if len(data) <= PART_SIZE:
            _verify(source, _digest_of(data), expected_hash)
            fault("mid_upload")
            fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm=CHECKSUM)
            if on_bytes is not None:
                on_bytes(len(data))
            return
        _Multipart(fs, bucket, key, on_bytes).run(src, data, source, expected_hash)


class _Multipart:
    def __init__(
        self, fs: Any, bucket: str, key: str, on_bytes: Callable[[int], None] | None
    ) -> None:
        self.fs, self.bucket, self.key, self.on_bytes = fs, bucket, key, on_bytes
        self.parts: list[dict[str, Any]] = []
        self.sending: deque[tuple[int, int, Future[Any]]] = deque()
        self.upload_id = ""

    def run(self, src: BinaryIO, head: bytes, source: Path, expected_hash: str | None) -> None:
        mpu = self.fs.call_s3(
            "create_multipart_upload", Bucket=self.bucket, Key=self.key, ChecksumAlgorithm=CHECKSUM
        )
        self.upload_id = mpu["UploadId"]
        hasher = new_hasher()
        try:
            pending = head  # the first read went one byte past a part: keep it for the next
            number = 0
            while True:
                data, pending = pending[:PART_SIZE], pending[PART_SIZE:]
                data += _read_part(src, PART_SIZE - len(data))
                if not data:
                    break
                hasher.update(data)
                number += 1
                self._send(number, data)
                if number == 1:
                    fault("mid_upload")
                while len(self.sending) >= PARTS_IN_FLIGHT:
                    self._finish_oldest()
            while self.sending:
                self._finish_oldest()
            _verify(source, encode(hasher.digest(DIGEST_BYTES)), expected_hash)
            self.fs.call_s3(
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        except BaseException:
            self._abort()
            raise

    def _send(self, number: int, data: bytes) -> None:
        call = self.fs._call_s3(
            "upload_part",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm=CHECKSUM,
        )
        self.sending.append(
            (number, len(data), asyncio.run_coroutine_threadsafe(call, self.fs.loop))
        )

    def _finish_oldest(self) -> None:
        number, size, future = self.sending.popleft()
        result = future.result()
        part = {"PartNumber": number, "ETag": result["ETag"]}
        if result.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = result["ChecksumCRC32"]
        self.parts.append(part)
        if self.on_bytes is not None:
            self.on_bytes(size)

    def _abort(self) -> None:
        """Nothing appears: parts in flight end first, then the upload is aborted (if that
        fails too, ``ln.repair()`` aborts it as an incomplete upload)."""
        for _, _, future in self.sending:
            future.cancel()
        for _, _, future in self.sending:
            try:
                future.result()
            except BaseException:  # noqa: BLE001, S110 - cancelled or failed: either way done
                pass
        self.sending.clear()
        try:
            self.fs.call_s3(
                "abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )
        except Exception as exc:  # noqa: BLE001 - repair aborts incomplete uploads later
            logger.warning("could not abort the upload of %s: %s", self.key, describe(exc))


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


def abort_upload(fs: Any, bucket: str, key: str, upload_id: str) -> None:
    try:
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)
    except FileNotFoundError:  # completed or aborted meanwhile
        pass
