"""The items of a save run and what the protocol says about them (``save.py`` drives)."""

from __future__ import annotations

import functools
import getpass
import os
import warnings
from typing import Any

from sqlalchemy import Row

from .callbacks import ItemState
from .errors import DatabaseError, KeyNotSavedWarning, LaminNbError, StorageError, describe
from .owners import describe_owner
from .record import ArtifactRecord, item_label
from .report import KeyConflict, SaveReport, listed
from .transfers import RowJournal

S = ItemState


class Item:
    """One artifact of a run and how far the protocol got with it."""

    # a bulk save holds one per file for the whole run: slots, not a dict per item
    __slots__ = (
        "index",
        "artifact",
        "state",
        "error",
        "reserved",
        "upload_started",
        "uploaded",
        "leader",
        "waiting",
        "requested_key",
        "key_conflict",
        "waits_for",
        "resume_row",
        "journal",
        "restart_note",
        "keep",
        "one_read",
        "source_stat",
        "resumable",
        "sets_hash",
        "hash_first",
    )

    def __init__(self, index: int, artifact: ArtifactRecord) -> None:
        self.index = index
        self.artifact = artifact
        self.state = S.QUEUED
        self.error: BaseException | None = None
        self.reserved = False
        self.upload_started = False  # from here on an object (or a temp file) may exist
        self.uploaded = False
        self.leader: Item | None = None  # same content earlier in this batch
        self.waiting = False  # same content is being saved by another process
        self.requested_key = artifact.key  # what the user asked for, before any dedup
        self.key_conflict: tuple[str, str | None, str] | None = None  # (requested, kept, uid)
        self.waits_for: Row[Any] | None = None  # that process's row
        self.resume_row: Row[Any] | None = None  # an interrupted upload this item took over
        self.journal: RowJournal | None = None  # the upload's record in its pending row
        self.restart_note = ""  # why an interrupted upload of its source starts over
        self.keep = False  # interrupted: its row and parts stay for a later save to resume
        self.one_read = False  # hashed while written (``onepass``): reserved without a hash
        self.source_stat: tuple[int, int] | None = None  # (size, mtime_ns) when planned
        self.resumable: list[str] = []  # uids of interrupted one-read uploads of its source
        self.sets_hash = False  # its pending row has no hash: the commit records it
        self.hash_first = False  # a one-read item that must be hashed first after all

    @property
    def done(self) -> bool:
        return self.state.is_final


class Cancelled(Exception):
    """A transfer stopped because the run is cancelled."""


def db_kind(exc: BaseException) -> type[LaminNbError]:
    from sqlalchemy.exc import SQLAlchemyError

    return DatabaseError if isinstance(exc, SQLAlchemyError) else StorageError


def db_error(what: str, exc: BaseException) -> LaminNbError:
    """A database failure of a save step: nothing of the item was saved; run it again."""
    kind = db_kind(exc)
    then = "; nothing was saved; save again once the database is reachable"
    return kind(f"{what}: {describe(exc)}" + (then if kind is DatabaseError else ""))


class Abandoned(Exception):
    """Rows whose writer is gone stand in the way of a reservation: finish them first."""

    def __init__(self, dead: list[Row[Any]]) -> None:
        super().__init__(f"{len(dead)} abandoned row(s)")
        self.rows = dead


RESERVATION_GONE = (
    "your reservation expired and was rolled back by another process (ln.repair, or recovery "
    "after its lease ran out); nothing of it was saved; save it again"
)
REPAIR_HINT = (
    "if that process is gone (and no other writer runs), run "
    "ln.repair(dry_run=False, grace_seconds=0)"
)


def writer(row: Row[Any] | None) -> str:
    return describe_owner(row.owner) if row is not None else "another process"


def waiting_for(row: Row[Any] | None, seconds: float) -> str:
    """'waiting for process 123 on host-a, saving the same content as ... (at most 600 s; ...)'"""
    what = "the same content"
    if row is not None:
        what += f" as {row.uid}" + (f" (key {row.key!r})" if row.key else "")
    return (
        f"waiting for {writer(row)}, which is saving {what}; at most {seconds:.0f} s; {REPAIR_HINT}"
    )


def deleted_elsewhere(artifact: ArtifactRecord) -> str:
    return (
        f"{item_label(artifact)} ({artifact.uid}) was deleted permanently; nothing to save. "
        "To store the file again, build a new ln.Artifact from it"
    )


@functools.cache  # a password-database lookup per save cost more than a small save's SQL
def user_name() -> str:
    try:
        return getpass.getuser()[:128]
    except Exception:  # noqa: BLE001 - no login name in some containers
        return str(os.getuid())


def fill_report(report: SaveReport, items: list[Item]) -> None:
    """Every item ends in exactly one list of the report."""
    buckets = {
        ItemState.SAVED: report.saved,
        ItemState.DEDUPLICATED: report.deduplicated,
        ItemState.ALREADY_SAVED: report.already_saved,
        ItemState.ROLLED_BACK: report.rolled_back,
    }
    for item in items:
        if item.key_conflict is not None and item.state == ItemState.DEDUPLICATED:
            report.key_conflicts.append(KeyConflict(*item.key_conflict, item.artifact))
        if item.state in buckets:
            buckets[item.state].append(item.artifact)
        else:  # failed, or left unfinished by an interrupt
            report.failed.append((item.artifact, item.error or StorageError("not saved")))


def warn_key_conflicts(conflicts: list[KeyConflict]) -> None:
    lines = [f"{len(conflicts)} key(s) not saved, their content is already stored:"]
    lines += listed([str(c) for c in conflicts], "key_conflicts")
    lines.append("the artifacts returned are the stored ones (SaveReport.key_conflicts)")
    # shown in the notebook cell and on the terminal; stacklevel points past lamin_nb
    warnings.warn("\n".join(lines), KeyNotSavedWarning, stacklevel=user_stacklevel())


def user_stacklevel() -> int:
    """The first frame outside lamin_nb, so the warning names the user's line."""
    import sys

    frame: Any = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("lamin_nb."):
        frame, level = frame.f_back, level + 1
    return level
