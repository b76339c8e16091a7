"""Storage backends behind one Protocol: a local folder (``LocalStorage``) or an S3 prefix
(``S3Storage``), both through fsspec. ``open_storage`` picks the class from the root."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # the S3 backend (and the asyncio its multipart uploads use) loads with the first S3 root:
    # a connect to a local instance does not pay for it
    if name == "S3Storage":
        from .s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_storage(root: str, options: dict[str, Any] | None = None) -> Storage:
    """The backend for ``root``: ``s3://bucket/prefix`` or a local folder (nothing is
    created or contacted until it is used)."""
    if root.startswith("s3://"):
        from .s3 import S3Storage

        return S3Storage(root, options)
    return LocalStorage(root, options)
