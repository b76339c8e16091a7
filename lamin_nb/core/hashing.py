"""Full-content hashing: every byte, BLAKE3, url-safe base64 of a 16-byte digest."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

HASH_TYPE = "blake3"
CHUNK = 8 * 1024 * 1024
DIGEST_BYTES = 16


def new_hasher() -> Any:
    import blake3

    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def encode(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest[:DIGEST_BYTES]).decode().rstrip("=")


def hash_stream(fh: BinaryIO, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    hasher = new_hasher()
    size = 0
    while chunk := fh.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
        if on_bytes is not None:
            on_bytes(len(chunk))
    return encode(hasher.digest(DIGEST_BYTES)), size


def hash_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    with open(path, "rb") as fh:
        return hash_stream(fh, on_bytes)
