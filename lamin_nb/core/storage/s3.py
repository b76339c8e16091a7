"""An S3 prefix (any S3-compatible server, configured as boto is): an object appears only when
its PUT or multipart upload completes, so there are no temporary names to clean up."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..hashing import hash_stream
from . import multipart, s3list
from .base import META, RESERVED, FsspecStorage, IncompleteUpload, Journal, ObjectInfo

S3_INSTALL_HINT = "S3 storage needs s3fs: pip install 'lamin_nb[s3]'"
SCHEME = "s3://"


class S3Storage(FsspecStorage):
    default_workers = 16  # each worker mostly waits on the network
    has_temps = False  # an object appears only when its PUT (or multipart upload) completes
    list_connections = s3list.DEFAULT_CONNECTIONS

    def __init__(self, root: str, options: dict[str, Any] | None = None) -> None:
        super().__init__(root, options)
        self.listing = s3list.ListingStats()  # LIST requests sent so far (benchmarks read it)

    def _make_fs(self) -> Any:
        try:
            import s3fs
        except ImportError as exc:
            raise ImportError(S3_INSTALL_HINT) from exc
        options = {"use_listings_cache": False, **self.options}
        options["config_kwargs"] = _retry_defaults(options.get("config_kwargs"))
        return s3fs.S3FileSystem(**options)

    def _bucket_and_prefix(self) -> tuple[str, str]:
        """``(bucket, key prefix of the managed folder, ending in /)``."""
        bucket, _, prefix = self.managed.removeprefix(SCHEME).partition("/")
        return bucket, prefix + "/"

    # -- writing -----------------------------------------------------------------------

    def prepare(self) -> None:
        """Nothing to create: S3 has no folders."""

    def put_file(
        self,
        source: Path,
        name: str,
        expected_hash: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
        journal: Journal | None = None,
    ) -> str:
        try:
            return multipart.put_verified(
                self.fs, source, self.path(name), expected_hash, on_bytes, journal
            )
        except PermissionError as exc:
            skew = multipart.clock_skew(exc)
            if skew is None:
                raise
            raise StorageError(
                f"the server refused the request because your clock is {abs(skew):.0f} s "
                f"{'ahead' if skew > 0 else 'behind'}; correct the system time (enable NTP) "
                "and save again: the parts already sent are kept"
            ) from exc

    def sync(self) -> None:
        """Nothing to do: a completed PUT is durable."""

    def delete(self, name: str) -> None:
        try:
            self.fs.rm_file(self.path(name))
        except FileNotFoundError:
            pass

    def delete_temps(self, name: str) -> None:
        """Nothing to do: S3 uploads write no temporary objects."""

    def move(self, name: str, new_name: str) -> None:
        self.fs.mv(self.path(name), self.path(new_name))

    def write_marker(self, name: str, data: bytes) -> None:
        self.fs.pipe_file(self.path(f"{META}/{name}"), data)

    # -- reading -----------------------------------------------------------------------

    def info(self, name: str) -> ObjectInfo | None:
        """One HEAD request (``fs.info`` would follow a miss with a LIST, looking for a
        folder: the incremental check must not list)."""
        bucket, prefix = self._bucket_and_prefix()
        try:
            head = self.fs.call_s3("head_object", Bucket=bucket, Key=prefix + name)
        except FileNotFoundError:
            return None
        return ObjectInfo(name, int(head.get("ContentLength") or 0), _s3_mtime(head))

    def local_path(self, name: str) -> Path | None:
        return None

    def hash_object(self, name: str) -> tuple[str, int]:
        with self.open(name) as fh:
            return hash_stream(fh)

    def list_objects(self, folder: str = "") -> Iterator[ObjectInfo]:
        """Every object in key order; the whole managed prefix is listed in parallel over
        name ranges (``s3list``), at most ``list_connections`` requests at a time."""
        bucket, prefix = self._bucket_and_prefix()
        if folder:
            prefix += folder.strip("/") + "/"
        entries = s3list.list_ordered(
            self.fs,
            bucket,
            prefix,
            connections=self.list_connections if not folder else 1,
            stats=self.listing,
        )
        for rel, size, mtime in entries:
            if not folder and rel.split("/", 1)[0] in RESERVED:
                continue
            yield ObjectInfo(f"{folder.strip('/')}/{rel}" if folder else rel, size, mtime)

    def find_folder(self, name: str) -> str | None:
        marker = f"/{name}/"
        base = self.managed.removeprefix(SCHEME)
        try:
            found = self.fs.find(self.managed)
        except FileNotFoundError:
            return None
        for path in found:
            rest = path[len(base) :]
            if marker in rest:
                return SCHEME + base + rest[: rest.index(marker) + len(marker) - 1]
        return None

    # -- uploads a killed writer left behind: invisible, but billed ---------------------

    def incomplete_uploads(self) -> Iterator[IncompleteUpload]:
        bucket, prefix = self._bucket_and_prefix()
        return multipart.list_uploads(self.fs, bucket, prefix)

    def abort_upload(self, name: str, upload_id: str) -> int:
        bucket, prefix = self._bucket_and_prefix()
        return multipart.abort_upload(self.fs, bucket, prefix + name, upload_id)

    def uploaded_bytes(self, name: str, upload_id: str) -> int:
        bucket, prefix = self._bucket_and_prefix()
        return multipart.uploaded_bytes(self.fs, bucket, prefix + name, upload_id)

    def warnings(self) -> list[str]:
        bucket, _ = self._bucket_and_prefix()
        found = multipart.lifecycle_warning(self.fs, bucket)
        return [found] if found else []


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
    # botocore's pool holds 10: the parallel listing keeps up to 16 requests in flight
    config.setdefault("max_pool_connections", s3list.DEFAULT_CONNECTIONS)
    return config


def _s3_mtime(info: dict[str, Any]) -> datetime:
    value = info.get("LastModified") or info.get("last_modified")
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    return datetime.now(timezone.utc).replace(tzinfo=None)
