"""What lamin_nb keeps in the settings folder besides settings: staging files and the S3 cache.

Both must not fill the folder that also holds the default SQLite database (a full disk there
fails commits). Staging files (``from_df``/``from_anndata`` write one per artifact) live in a
folder per process, ``staging/<pid>-<start>@<host>/``, removed when that process is gone; the
S3 read cache is bounded (``LAMIN_NB_CACHE_MAX_BYTES``, default 10 GiB) and trimmed least
recently used first.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ValidationError
from .owners import Liveness, liveness, process_owner
from .settings import home

logger = logging.getLogger("lamin_nb")
CACHE_LIMIT_ENV = "LAMIN_NB_CACHE_MAX_BYTES"
DEFAULT_CACHE_LIMIT = 10 * 1024**3
FOREIGN_STAGING_DAYS = 7  # another host's folder: its owner cannot be asked
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", re.IGNORECASE)
_swept_in: set[str] = set()  # settings folders this process has swept already
_cache_total: dict[str, int] = {}  # cache folder -> bytes, as this process last counted


@dataclass(frozen=True)
class FolderUsage:
    files: int
    bytes: int


def staging_dir() -> Path:
    """This process's staging folder (created), after a sweep of dead processes' folders."""
    base = home() / "staging"
    if str(base) not in _swept_in:
        _swept_in.add(str(base))
        sweep_staging()
    folder = base / process_owner()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sweep_staging() -> list[str]:
    """Remove the staging folders of processes that no longer run; returns their names.

    Another host's folder goes only after ``FOREIGN_STAGING_DAYS`` without a change; loose files
    (written before staging had per-process folders) after a day.
    """
    base = home() / "staging"
    removed: list[str] = []
    try:
        entries = list(os.scandir(base))
    except FileNotFoundError:
        return removed
    now = time.time()
    for entry in entries:
        try:
            age_days = (now - entry.stat(follow_symlinks=False).st_mtime) / 86400
            if entry.is_dir(follow_symlinks=False):
                alive = liveness(entry.name)
                if alive is Liveness.DEAD or (
                    alive is Liveness.UNKNOWN and age_days > FOREIGN_STAGING_DAYS
                ):
                    shutil.rmtree(entry.path)
                    removed.append(entry.name)
            elif age_days > 1:
                os.unlink(entry.path)
                removed.append(entry.name)
        except FileNotFoundError:
            continue  # removed by another process sweeping at the same time
        except OSError as exc:
            logger.warning("could not remove staging files %s: %s", entry.path, exc)
    return removed


def cache_limit() -> int:
    """Bytes the S3 read cache may hold: ``LAMIN_NB_CACHE_MAX_BYTES`` ("500M", "20G", bytes)."""
    raw = os.environ.get(CACHE_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_CACHE_LIMIT
    match = _SIZE.fullmatch(raw)
    if match is None:
        raise ValidationError(
            f"{CACHE_LIMIT_ENV} must be a size such as 500M, 20G or a number of bytes, not {raw!r}"
        )
    return int(match[1]) * _UNITS[match[2].upper()]


def cache_root() -> Path:
    return home() / "cache"


def touch(path: Path) -> None:
    """Mark a cache file as just used (the trim removes the least recently used first)."""
    now = time.time_ns()  # the file system's own clock ticks too coarsely to order two loads
    try:
        os.utime(path, ns=(now, now))
    except OSError:
        pass  # a read-only cache still serves; it only ages sooner


def trim_cache(keep: Path | None = None) -> int:
    """Remove least recently used cache files until the cache fits its limit; never ``keep``
    (the file being returned, marked as just used) nor a download in progress. Returns the
    bytes removed."""
    if keep is not None:
        touch(keep)
    limit, root = cache_limit(), str(cache_root())
    added = _size(keep)
    known = _cache_total.get(root)
    if known is not None and known + added <= limit:
        # well under the limit as this process last counted: no walk (a bulk save of many
        # frames would otherwise walk the cache once per item); other writers trim themselves
        _cache_total[root] = known + added
        return 0
    files = _cache_files()
    total = sum(size for _, size, _ in files)
    freed = 0
    for _, size, path in sorted(files):
        if total - freed <= limit:
            break
        if path == keep:
            continue
        try:
            path.unlink()
            freed += size
        except FileNotFoundError:
            freed += size
        except OSError as exc:
            logger.warning("could not trim the cache file %s: %s", path, exc)
            continue
        _drop_empty(path.parent)
    _cache_total[root] = total - freed
    return freed


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def _cache_files() -> list[tuple[float, int, Path]]:
    found: list[tuple[float, int, Path]] = []
    for folder, _, names in os.walk(cache_root()):
        for name in names:
            if name.endswith(".part"):
                continue
            path = Path(folder, name)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            found.append((st.st_mtime, st.st_size, path))
    return found


def _drop_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only succeeds when empty: the per-hash folder of a trimmed file
    except OSError:
        pass


def usage(folder: Path) -> FolderUsage:
    files = size = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.stat(os.path.join(parent, name)).st_size
                files += 1
            except FileNotFoundError:
                continue
    return FolderUsage(files, size)
