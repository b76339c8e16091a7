"""Storage backends behind one Protocol: a local folder (``LocalStorage``) or an S3 prefix
(``S3Storage``), both through fsspec. ``open_storage`` picks the class from the root."""

from __future__ import annotations

from typing import Any

from .base import (
    MANAGED,
    META,
    QUARANTINE,
    READ_ONLY,
    RESERVED,
    IncompleteUpload,
    Journal,
    ObjectInfo,
    Storage,
    TransferState,
    owner_of_temp,
    storage_failure,
    temp_name,
)
from .local import LocalStorage
from .s3 import S3Storage

__all__ = [
    "MANAGED",
    "META",
    "QUARANTINE",
    "READ_ONLY",
    "RESERVED",
    "IncompleteUpload",
    "Journal",
    "LocalStorage",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "TransferState",
    "open_storage",
    "owner_of_temp",
    "storage_failure",
    "temp_name",
]


def open_storage(root: str, options: dict[str, Any] | None = None) -> Storage:
    """The backend for ``root``: ``s3://bucket/prefix`` or a local folder (nothing is
    created or contacted until it is used)."""
    if root.startswith("s3://"):
        return S3Storage(root, options)
    return LocalStorage(root, options)
