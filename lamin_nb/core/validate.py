"""Input checks that run before anything is written.

Everything a user passes in is checked here: keys (virtual paths), descriptions, source
files, query values and the flags and numbers of the public API. Messages show the offending
value through ``repr`` and shortened, so a control character or a bidi override in user input
can never reach a terminal raw, and a 10,000-character value never floods it.
"""

from __future__ import annotations

import math
import os
import re
import stat
import unicodedata
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ValidationError

MAX_KEY_LENGTH = 1024
MAX_DESCRIPTION_LENGTH = 10_000
MAX_QUERY_VALUES = 10_000
MAX_SECONDS = 100 * 365 * 86400  # beyond this a datetime computation overflows
MAX_WORKERS = 256
_SUFFIX_PART = re.compile(r"\.[A-Za-z0-9_-]{1,16}")
_COMPRESSION = {".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4"}
# Joiners are part of some scripts and of emoji sequences; every other format character is
# invisible and lets two different keys look the same.
_ALLOWED_FORMAT = {"\u200c", "\u200d"}
_DESCRIPTION_WHITESPACE = {"\t", "\n", "\r"}


def check_key(key: Any) -> str | None:
    """A key is a virtual, relative, forward-slash path: never absolute, never escaping.

    Returned in Unicode NFC: 'café' typed composed or decomposed is one key, not two that
    print alike. Space-like characters other than the ASCII space are refused for the same
    reason (a no-break space looks like a space)."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise TypeError(f"key must be a string or None, not {type(key).__name__}")
    shown = shorten(key)
    if not key.strip():
        raise ValidationError("key must not be empty")
    _check_unicode("key", key)
    key = normalize_key(key)
    for ch in key:
        if ch != " " and unicodedata.category(ch) == "Zs":
            name = unicodedata.name(ch, "space-like character")
            raise ValidationError(
                f"key {shown} contains U+{ord(ch):04X} ({name}), which looks like a space; "
                "use an ordinary space or none"
            )
    if len(key.encode("utf-8")) > MAX_KEY_LENGTH:
        raise ValidationError(f"key {shown} is longer than {MAX_KEY_LENGTH} bytes")
    if any(_is_hidden(ch) for ch in key):
        raise ValidationError(f"key {shown} contains a NUL, control or invisible character")
    if key != key.strip():
        raise ValidationError(f"key {shown} starts or ends with whitespace")
    for variant in {key, unicodedata.normalize("NFKC", key)}:
        if "\\" in variant:
            raise ValidationError(f"key {shown} contains a backslash; use '/' between folders")
        if variant.startswith("/") or re.match(r"^[A-Za-z]:", variant) or "://" in variant:
            raise ValidationError(f"key {shown} must be a relative path, not absolute or a URL")
        parts = variant.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValidationError(f"key {shown} has an empty, '.' or '..' path segment")
    return key


def check_key_prefix(prefix: Any) -> str | None:
    """A key prefix, normalised: None or ``""`` is no prefix; trailing ``/`` are dropped
    (``runs/`` and ``runs`` are the same prefix); the rest must be a valid key path."""
    if prefix is None or prefix == "":
        return None
    if not isinstance(prefix, str):
        raise TypeError(f"key prefix must be a string or None, not {type(prefix).__name__}")
    stripped = prefix.rstrip("/")
    if not stripped:
        raise ValidationError(f"key prefix {shorten(prefix)} has no folder name")
    return check_key(stripped)


def key_under(prefix: str | None, name: str) -> str:
    """The key of a file called ``name`` saved under ``prefix``: ``<prefix>/<name>``, or
    ``name`` alone without a prefix. Every edge (CLI, magics, widgets, REST) keys files so."""
    folder = check_key_prefix(prefix)
    key = check_key(f"{folder}/{name}" if folder is not None else name)
    assert key is not None  # a string in, a string out
    return key


def key_of_item(key: str | None, name: str, many: bool) -> str | None:
    """The key of one file of a save that was given one ``key`` for all its files.

    With several files, or a key ending in ``/``, the key is a prefix and the file's name is
    appended (``key_under``); otherwise it is the key of the one file. None: no key.
    """
    if key is None:
        return None
    if many or (isinstance(key, str) and key.endswith("/")):
        return key_under(key, name)
    return check_key(key)


def normalize_key(key: str) -> str:
    """The one spelling of a key, used to store it and to look it up."""
    return unicodedata.normalize("NFC", key)


def check_description(description: Any) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str):
        raise TypeError(f"description must be a string or None, not {type(description).__name__}")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise ValidationError(f"description is longer than {MAX_DESCRIPTION_LENGTH} characters")
    _check_unicode("description", description)
    if any(
        unicodedata.category(ch) == "Cc" and ch not in _DESCRIPTION_WHITESPACE for ch in description
    ):
        raise ValidationError(
            f"description {shorten(description)} contains a NUL or control character"
        )
    return description


def check_source(path: Any) -> Path:
    """An existing, readable, regular local file."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like object, not {type(path).__name__}")
    raw = os.fspath(path)
    if not isinstance(raw, str):
        raise TypeError(f"path must be text, not {type(raw).__name__}")
    if "\x00" in raw or not raw:
        raise ValidationError(f"path {shorten(raw)} is empty or contains a NUL character")
    if "://" in raw and not raw.startswith("file://"):
        raise ValidationError(f"path {shorten(raw)}: only local files can be saved")
    try:
        source = Path(raw.removeprefix("file://")).expanduser()
        mode = source.stat().st_mode  # one stat answers the three questions below
    except FileNotFoundError as exc:
        raise ValidationError(f"file {shorten(raw)} does not exist") from exc
    except OSError as exc:
        raise ValidationError(f"file {shorten(raw)} cannot be accessed: {exc.strerror}") from exc
    except (ValueError, RuntimeError) as exc:  # unencodable name, or no home folder for '~'
        raise ValidationError(f"path {shorten(raw)} is not a usable file name") from exc
    if stat.S_ISDIR(mode):
        raise ValidationError(f"{shorten(raw)} is a folder, not a file; use Artifact.from_dir")
    if not stat.S_ISREG(mode):
        raise ValidationError(f"{shorten(raw)} is not a regular file")
    try:
        with open(source, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ValidationError(f"file {shorten(raw)} cannot be read: {exc.strerror}") from exc
    return source.resolve()


def suffix_of(path: Path) -> str:
    """'.h5ad', '.tar.gz'; empty when the name has no plain (ASCII, short) extension."""
    suffixes = path.suffixes
    if not suffixes or not _SUFFIX_PART.fullmatch(suffixes[-1]):
        return ""
    if (
        len(suffixes) > 1
        and suffixes[-1].lower() in _COMPRESSION
        and _SUFFIX_PART.fullmatch(suffixes[-2])
    ):
        return suffixes[-2] + suffixes[-1]
    return suffixes[-1]


def is_safe_suffix(suffix: str) -> bool:
    """A suffix may become part of an object name: at most two short ASCII parts."""
    parts = suffix.split(".")[1:]
    return suffix == "" or (
        suffix.startswith(".")
        and 1 <= len(parts) <= 2
        and all(_SUFFIX_PART.fullmatch("." + p) for p in parts)
    )


# -- flags, numbers and callbacks of the public API ---------------------------------------


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")
    return value


def check_seconds(name: str, value: Any) -> float:
    """A finite, non-negative duration in seconds (bounded so date arithmetic cannot overflow)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise ValidationError(
            f"{name} must be a number >= 0 (at most {MAX_SECONDS}), not {value!r}"
        )
    return float(value)


def check_workers(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_workers must be a whole number or None, not {type(value).__name__}")
    if not 1 <= value <= MAX_WORKERS:
        raise ValidationError(f"max_workers must be between 1 and {MAX_WORKERS}, not {value}")
    return value


def check_callback(callback: Any) -> Any:
    """None or an object with the progress protocol's four methods (see callbacks.py)."""
    if callback is None:
        return None
    missing = [
        m
        for m in ("start", "state", "advance", "finish")
        if not callable(getattr(callback, m, None))
    ]
    if missing:
        raise TypeError(
            f"callback must be a lamin_nb.SaveCallback (or have start/state/advance/finish), "
            f"not {type(callback).__name__}"
        )
    return callback


# -- query values ------------------------------------------------------------------------


def check_query_value(name: str, lookup: str, value: Any, python_type: type) -> Any:
    """The value of one ``filter(name=value)`` argument, checked against its column's type.

    Without this a wrong type reaches the database, where SQLite compares anything with
    anything and PostgreSQL raises a driver error.
    """
    if lookup == "in":
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, Collection):
            raise TypeError(f"{name} expects a list of values, not {type(value).__name__}")
        if len(value) > MAX_QUERY_VALUES:
            raise ValidationError(f"{name} has more than {MAX_QUERY_VALUES} values")
        return [_check_scalar(name, v, python_type) for v in value]
    if value is None and not lookup:
        return None
    if lookup in ("startswith", "contains") and python_type is not str:
        raise ValidationError(f"{name}: '{lookup}' works on text fields only")
    if lookup and python_type is bool:
        raise ValidationError(f"{name}: a True/False field has no '{lookup}' lookup")
    return _check_scalar(name, value, python_type)


def _check_scalar(name: str, value: Any, python_type: type) -> Any:
    expected = {
        str: "a string",
        int: "a whole number",
        bool: "True or False",
        datetime: "a datetime",
    }.get(python_type, python_type.__name__)
    if python_type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not -(2**63) <= value < 2**63:
            raise ValidationError(f"{name}: {value} is out of range")
    else:
        ok = isinstance(value, python_type)
    if not ok:
        raise TypeError(f"{name} must be {expected}, not {type(value).__name__}")
    if isinstance(value, str):
        _check_unicode(name, value)
        if "\x00" in value:
            raise ValidationError(f"{name} {shorten(value)} contains a NUL character")
        if len(value) > MAX_DESCRIPTION_LENGTH:
            raise ValidationError(f"{name} is longer than {MAX_DESCRIPTION_LENGTH} characters")
    return value


# -- helpers -----------------------------------------------------------------------------


def _check_unicode(name: str, text: str) -> None:
    """Lone surrogates cannot be stored or encoded: refuse them up front."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(
            f"{name} {shorten(text)} is not valid text (lone surrogate at {exc.start})"
        ) from exc


def _is_hidden(ch: str) -> bool:
    category = unicodedata.category(ch)
    if category == "Cf":
        return ch not in _ALLOWED_FORMAT
    return category in ("Cc", "Cs", "Zl", "Zp")


def shorten(text: str, limit: int = 80) -> str:
    shown = text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"
    return repr(shown)  # repr escapes control and bidi characters
