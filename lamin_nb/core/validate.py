"""Input checks that run before anything is written."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from .errors import ValidationError

MAX_KEY_LENGTH = 1024
MAX_DESCRIPTION_LENGTH = 10_000
_SUFFIX_PART = re.compile(r"^\.[A-Za-z0-9_-]{1,16}$")
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def check_key(key: Any) -> str | None:
    """A key is a virtual, relative, forward-slash path: never absolute, never escaping."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise TypeError(f"key must be a string or None, not {type(key).__name__}")
    shown = _shorten(key)
    if not key.strip():
        raise ValidationError("key must not be empty")
    if len(key.encode("utf-8")) > MAX_KEY_LENGTH:
        raise ValidationError(f"key {shown} is longer than {MAX_KEY_LENGTH} bytes")
    if _CONTROL.search(key):
        raise ValidationError(f"key {shown} contains a NUL or control character")
    if "\\" in key:
        raise ValidationError(f"key {shown} contains a backslash; use '/' between folders")
    if key != key.strip():
        raise ValidationError(f"key {shown} starts or ends with whitespace")
    for variant in {key, unicodedata.normalize("NFKC", key)}:
        if variant.startswith("/") or re.match(r"^[A-Za-z]:", variant) or "://" in variant:
            raise ValidationError(f"key {shown} must be a relative path, not absolute or a URL")
        parts = variant.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValidationError(f"key {shown} has an empty, '.' or '..' path segment")
    return key


def check_description(description: Any) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str):
        raise TypeError(f"description must be a string or None, not {type(description).__name__}")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise ValidationError(f"description is longer than {MAX_DESCRIPTION_LENGTH} characters")
    if "\x00" in description:
        raise ValidationError("description contains a NUL character")
    return description


def check_source(path: Any) -> Path:
    """An existing, readable, regular local file."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like object, not {type(path).__name__}")
    raw = os.fspath(path)
    if isinstance(raw, bytes):
        raise TypeError("path must be text, not bytes")
    if "\x00" in raw or not raw:
        raise ValidationError(f"path {_shorten(raw)} is empty or contains a NUL character")
    if "://" in raw and not raw.startswith("file://"):
        raise ValidationError(f"path {_shorten(raw)}: only local files can be saved")
    source = Path(raw.removeprefix("file://")).expanduser()
    try:
        st = source.stat()
    except FileNotFoundError as exc:
        raise ValidationError(f"file {_shorten(raw)} does not exist") from exc
    except OSError as exc:
        raise ValidationError(f"file {_shorten(raw)} cannot be accessed: {exc.strerror}") from exc
    if source.is_dir():
        raise ValidationError(f"{_shorten(raw)} is a folder, not a file; use Artifact.from_dir")
    if not source.is_file():
        raise ValidationError(f"{_shorten(raw)} is not a regular file")
    try:
        with open(source, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ValidationError(f"file {_shorten(raw)} cannot be read: {exc.strerror}") from exc
    del st
    return source.resolve()


def suffix_of(path: Path) -> str:
    """'.h5ad', '.tar.gz'; empty when the name has no plain extension."""
    suffixes = path.suffixes
    if not suffixes or not _SUFFIX_PART.match(suffixes[-1]):
        return ""
    if len(suffixes) > 1 and suffixes[-1].lower() in _COMPRESSION and _SUFFIX_PART.match(suffixes[-2]):
        return suffixes[-2] + suffixes[-1]
    return suffixes[-1]


def _shorten(text: str, limit: int = 80) -> str:
    shown = text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"
    return repr(shown)
