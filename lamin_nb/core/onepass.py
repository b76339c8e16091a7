"""One read for large new content (DESIGN §9): which items are hashed while they are written.

A save hashes a file before it reserves it, so that content already stored is deduplicated
before a byte is sent. For a large file that is new, that costs a second full read: the
upload (or the local copy's verify pass) hashes what it writes anyway. So a large file whose
size no row has (committed or pending, any owner) is reserved without a hash, written once,
and its hash is the digest of what was written; the dedup then happens at the commit, under
the write lock (a committed row with the same hash: ours is removed, the existing artifact is
returned). A file of a size that is already stored is hashed first, as before: re-running the
cell of a saved large file still sends nothing.

An interrupted one-read upload has a pending row without a hash; a later save of the same
file resumes it when the source's fingerprint (path, size, mtime) is the one its journal
recorded (its parts are re-verified against the source, as for any resume).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Row, bindparam, select

from . import rows
from .models import PENDING

ENV = "LAMIN_NB_ONE_READ_BYTES"
# from this size (64 MiB, where local copies become resumable; S3 ones are from 8 MiB) a
# second read costs more than the rare upload a dedup at the commit throws away. Every one-read
# item is thus journaled, so an interrupted one can be resumed.
DEFAULT_THRESHOLD = 64 * 1024 * 1024
TABLE = rows.TABLE
_BY_SIZE = select(TABLE).where(TABLE.c.size.in_(bindparam("sizes", expanding=True)))


def threshold() -> int:
    """Files of at least this many bytes may be hashed while written (``LAMIN_NB_ONE_READ_BYTES``;
    0 turns it off)."""
    configured = os.environ.get(ENV, "").strip()
    if configured.isdigit():
        return int(configured) or -1
    return DEFAULT_THRESHOLD


def rows_of_sizes(session: Any, sizes: Iterable[int]) -> dict[int, list[Row[Any]]]:
    """Every row (any status) of each size: one indexed query per chunk (migration 0006)."""
    found: dict[int, list[Row[Any]]] = defaultdict(list)
    for part in rows.chunks(sorted(set(sizes))):
        for row in session.execute(_BY_SIZE, {"sizes": list(part)}):
            found[int(row.size)].append(row)
    return found


def same_source(row: Any, source: Path, stat: tuple[int, int]) -> bool:
    """Did ``row``'s journal record this very file, unchanged (path, size, mtime)?"""
    return (
        row.source_path == str(source)
        and row.source_size == stat[0]
        and row.source_mtime_ns == stat[1]
    )


def hashless_upload_of(row: Any, source: Path, stat: tuple[int, int]) -> bool:
    """A pending one-read upload (no hash yet, journaled) of this very file."""
    return (
        row.status == PENDING
        and row.hash is None
        and bool(row.transfer_id)
        and same_source(row, source, stat)
    )


def choose(
    source: Path, stat: tuple[int, int], in_batch: int, same_size: list[Row[Any]]
) -> tuple[bool, list[str]]:
    """The rule: (hash while written?, uids of interrupted one-read uploads of this file).

    Written once when no other item of the batch and no row has the size, except interrupted
    one-read uploads of this very file (the save resumes one of them). Anything else of the
    same size may be the same content: hash first, dedup before sending."""
    if stat[0] < threshold() or threshold() < 0:
        return False, []
    mine = [r.uid for r in same_size if hashless_upload_of(r, source, stat)]
    return in_batch == 1 and len(mine) == len(same_size), mine
