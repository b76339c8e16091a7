"""Rebuilding lost metadata from the objects: ``ln.init(storage, adopt=True)``.

An object's name is its uid (16-char family stem + 4-char version) and suffix, so a committed
row can be rebuilt from the object alone, re-hashing every byte. What lives only in the
database cannot: keys, descriptions, trash state and who saved it. The report says so.
"""

from __future__ import annotations

import getpass
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select

from . import rows
from .errors import describe
from .hashing import HASH_TYPE
from .models import COMMITTED, ArtifactRow, utcnow
from .resources import Resources
from .storage import ObjectInfo, owner_of_temp
from .workers import run_parallel

logger = logging.getLogger("lamin_nb")
_UID = re.compile(r"[0-9A-Za-z]{20}")
_SUFFIX = re.compile(r"(\.[^/]{1,63})?")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
OTYPE_BY_SUFFIX = {".h5ad": "AnnData", ".parquet": "DataFrame"}  # what from_anndata/from_df write
NOT_RECOVERABLE = (
    "keys, descriptions, trash state and creators live only in the database and cannot be "
    "rebuilt from storage: adopted artifacts have no key (find them by uid), trashed ones are "
    "visible again, and AnnData/DataFrame types are inferred from the suffix"
)
WORKERS = 8


@dataclass
class AdoptReport:
    """What ``adopt=True`` rebuilt (uids) and which objects it left alone, with why."""

    adopted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (object name, reason)

    def summary(self) -> str:
        text = f"adopted {len(self.adopted)} object(s) from storage as committed artifacts"
        if self.skipped:
            names = ", ".join(f"{n} ({why})" for n, why in self.skipped[:5])
            more = f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            text += f"; left {len(self.skipped)} alone: {names}{more}"
        return f"{text}; {NOT_RECOVERABLE}" if self.adopted else text

    def __repr__(self) -> str:
        return f"AdoptReport(adopted={len(self.adopted)}, skipped={len(self.skipped)})"


def parse_object_name(name: str) -> tuple[str, str] | None:
    """``(uid, suffix)`` of a name lamin_nb gives objects, or None for any other name."""
    uid, suffix = name[:20], name[20:]
    if _UID.fullmatch(uid) and _SUFFIX.fullmatch(suffix):
        return uid, suffix
    return None


def version_of(uid: str) -> int:
    n = 0
    for char in uid[16:]:
        n = n * 62 + _BASE62.index(char)
    return n + 1


def adopt_objects(inst: Resources) -> AdoptReport:
    """Give every object under the managed prefix that has no row a committed row."""
    report = AdoptReport()
    with inst.db.read() as session:
        known = set(session.scalars(select(ArtifactRow.uid)))
    todo: list[tuple[ObjectInfo, str, str]] = []
    for info in inst.storage.list_objects():
        parsed = parse_object_name(info.name)
        if owner_of_temp(info.name) is not None:
            report.skipped.append((info.name, "an unfinished upload; ln.repair() removes it"))
        elif parsed is None:
            report.skipped.append((info.name, "not an object name lamin_nb writes"))
        elif parsed[0] not in known:
            todo.append((info, *parsed))
    values, lock = [], threading.Lock()

    def rebuild(entry: tuple[ObjectInfo, str, str]) -> None:
        try:
            row = _row(inst, *entry)
        except Exception as exc:  # noqa: BLE001 - one unreadable object must not stop the rest
            with lock:
                report.skipped.append((entry[0].name, f"cannot be read: {describe(exc)}"))
            return
        with lock:
            values.append(row)

    run_parallel(todo, rebuild, WORKERS, threading.Event())
    values.sort(key=lambda v: (v["created_at"], v["uid"]))
    with inst.db.write_rows() as conn:
        for part in rows.chunks(values):
            conn.execute(insert(ArtifactRow), list(part))
    report.adopted = [v["uid"] for v in values]
    report.skipped.sort()
    if report.adopted or report.skipped:
        logger.warning("%s: %s", inst.name, report.summary())
    return report


def _row(inst: Resources, info: ObjectInfo, uid: str, suffix: str) -> dict[str, Any]:
    digest, size = inst.storage.hash_object(info.name)
    return {
        "uid": uid,
        "key": None,
        "description": None,
        "suffix": suffix,
        "size": size,
        "hash": digest,
        "hash_type": HASH_TYPE,
        "otype": OTYPE_BY_SUFFIX.get(suffix),
        "version": version_of(uid),
        "is_latest": True,  # no key: each artifact is its own family's latest
        "storage": inst.storage.root,
        "created_at": info.mtime,
        "created_by": _user(),
        "status": COMMITTED,
        "is_trashed": False,
        "owner": None,
        "lease_expires_at": None,
        "updated_at": utcnow(),
    }


def _user() -> str:
    try:
        return getpass.getuser()[:128]
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
