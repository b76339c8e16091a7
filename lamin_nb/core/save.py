"""``ln.save`` and ``artifact.save()``: validate everything, run the save protocol, report.

The protocol itself (hash, dedup, reserve, upload, commit, undo) lives in ``bulk.py``. Rows
move ``pending -> committed``; a pending row carries its owner and a lease so that a crashed
writer's leftovers can be told from a live upload.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .artifact import Artifact
from .bulk import SaveRun, key_not_saved
from .callbacks import NO_PROGRESS, Guarded, ItemState, SaveCallback
from .callbacks import item_label as label
from .errors import KeyNotSavedWarning, SaveError, StorageError, ValidationError, describe
from .instance import Instance, current
from .validate import (
    MAX_WORKERS,
    check_callback,
    check_description,
    check_flag,
    check_key,
    check_workers,
)

WORKERS_ENV = "LAMIN_NB_MAX_WORKERS"
LISTED_IN_MESSAGE = 20  # the report holds every artifact; the message stays readable


@dataclass(frozen=True)
class KeyConflict:
    """A key the user asked for that was not saved: ``artifact`` (now under ``kept_key``,
    uid ``uid``) already held the same content."""

    requested_key: str
    kept_key: str | None
    uid: str
    artifact: Artifact

    def __str__(self) -> str:
        return key_not_saved(self.requested_key, self.kept_key, self.uid)


@dataclass
class SaveReport:
    """What a save did, item by item. ``failed`` holds ``(artifact, exception)`` pairs.

    Returned by ``ln.save``, carried by ``SaveError.report``, and passed to
    ``SaveCallback.finish``. Every artifact passed ends in exactly one of ``saved``,
    ``deduplicated``, ``already_saved``, ``rolled_back`` or ``failed``.

    Attributes
    ----------
    saved : list of Artifact
        Uploaded and committed by this save.
    failed : list of tuple
        ``(artifact, exception)`` pairs: items that were not saved, and why (each was
        undone).
    deduplicated : list of Artifact
        The same content was already stored: nothing was uploaded, and the artifact now
        holds the stored one's fields.
    already_saved : list of Artifact
        Artifacts that were saved before this call, left untouched.
    rolled_back : list of Artifact
        With ``atomic=True``: undone (or never started) because another item failed.
    key_conflicts : list of KeyConflict
        Deduplicated items whose requested key was not saved: ``requested_key``,
        ``kept_key``, ``uid`` and ``artifact`` of each.
    atomic : bool
        Whether the save was all or nothing.
    error : BaseException or None
        What stopped the save before any item was tried (invalid input, no instance, an
        interrupt); that exception is raised to the caller, so only a callback's ``finish``
        sees a report with it.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> report = ln.save(artifacts)  # doctest: +SKIP
    >>> report  # doctest: +SKIP
    SaveReport(saved 3, deduplicated 1)
    >>> [a.key for a in report.saved]  # doctest: +SKIP
    ['runs/a.csv', 'runs/b.csv', 'runs/c.csv']
    """

    saved: list[Artifact] = field(default_factory=list)
    failed: list[tuple[Artifact, BaseException]] = field(default_factory=list)
    deduplicated: list[Artifact] = field(default_factory=list)
    already_saved: list[Artifact] = field(default_factory=list)
    rolled_back: list[Artifact] = field(default_factory=list)
    key_conflicts: list[KeyConflict] = field(default_factory=list)
    atomic: bool = False
    # what stopped the save before any item was tried: invalid input, no instance, a database
    # that cannot be reached, an interrupt; the exception itself is raised to the caller
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """True when no item failed and nothing stopped the save."""
        return not self.failed and self.error is None

    @property
    def nothing_saved(self) -> bool:
        """The save failed or was stopped and no item is in the instance because of it."""
        kept = self.saved or self.deduplicated or self.already_saved
        return not kept and (bool(self.failed) or self.error is not None)

    def reason(self) -> str:
        """Why the save stopped or failed, in a few words (empty if it did not).

        Returns
        -------
        str
            The cause shared by every failed item (e.g. ``"Access Denied (...)"``), else
            ``"<n> items failed"``; empty for a save that succeeded.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> ln.SaveReport().reason()
        ''
        """
        if self.error is not None:
            return _why(self.error)
        reasons = {_why(exc) for _, exc in self.failed}
        if len(reasons) == 1:
            return reasons.pop()
        return f"{len(self.failed)} items failed" if self.failed else ""

    def summary(self) -> str:
        """One line: how many items were saved, deduplicated, already saved, failed, ....

        Returns
        -------
        str
            For example ``"saved 3, deduplicated 1"``, or ``"nothing saved: <reason>"`` when
            the save was stopped before any item was tried.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> ln.SaveReport().summary()
        'saved 0'
        """
        if self.error is not None:
            return f"nothing saved: {self.reason()}"
        parts = [f"saved {len(self.saved)}"]
        for name, items in (
            ("deduplicated", self.deduplicated),
            ("already saved", self.already_saved),
            ("failed", self.failed),
            ("rolled back", self.rolled_back),
        ):
            if items:
                parts.append(f"{name} {len(items)}")
        if self.key_conflicts:
            parts.append(f"keys not saved {len(self.key_conflicts)} (see .key_conflicts)")
        return ", ".join(parts)

    def message(self) -> str:
        """The text of the ``SaveError``: what failed and why, and what was saved.

        At most 20 artifacts are listed per group; the report holds them all.

        Returns
        -------
        str
            Several lines, or one for a single failed item.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> try:  # doctest: +SKIP
        ...     ln.save(artifacts)
        ... except ln.SaveError as exc:
        ...     print(exc.report.message())
        1 of 3 artifacts could not be saved:
          - Artifact(uid=...): could not upload runs/a.csv: Access Denied (...)
        saved (2):
          - Artifact(uid=...)
          - Artifact(uid=...)
        """
        if len(self.failed) == 1 and not (self.saved or self.rolled_back or self.deduplicated):
            artifact, exc = self.failed[0]
            return f"could not save {artifact!r}: {describe(exc)}"
        total = len(self.saved) + len(self.failed) + len(self.rolled_back)
        lines = [f"{len(self.failed)} of {total} artifacts could not be saved:"]
        lines += _listed([f"{a!r}: {describe(e)}" for a, e in self.failed], "failed")
        if self.rolled_back:
            lines.append(f"rolled back (atomic save): {len(self.rolled_back)} artifact(s)")
        lines.append(f"saved ({len(self.saved)}):")
        lines += _listed([repr(a) for a in self.saved], "saved")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SaveReport({self.summary()})"


def _why(exc: BaseException) -> str:
    if not isinstance(exc, Exception):
        return f"interrupted ({type(exc).__name__})"
    return describe(exc).removesuffix("; nothing was saved")  # said once, by the caller


def _listed(entries: list[str], attribute: str) -> list[str]:
    shown = [f"  - {e}" for e in entries[:LISTED_IN_MESSAGE]]
    if len(entries) > LISTED_IN_MESSAGE:
        shown.append(
            f"  ... and {len(entries) - LISTED_IN_MESSAGE} more (error.report.{attribute})"
        )
    return shown


def save(
    records: Any,
    atomic: bool = False,
    *,
    callback: SaveCallback | None = None,
    max_workers: int | None = None,
) -> SaveReport:
    """Save many artifacts. Each is atomic on its own; ``atomic=True`` makes the batch so.

    Items that succeed stay saved; if any fails, the others are still tried, then
    ``SaveError`` (a RuntimeError) is raised with the ``SaveReport`` as ``.report``. Running the
    same call again saves only what failed. Every artifact is validated before anything is
    written. Content already stored is deduplicated (nothing uploaded), artifacts saved before
    are reported as such and left untouched, and an artifact listed twice is saved once. A
    KeyboardInterrupt undoes what is in flight, then propagates.

    Parameters
    ----------
    records : Artifact or iterable of Artifact
        The artifacts to save.
    atomic : bool
        False (default): every item is atomic on its own. True: all or nothing; any failure
        rolls back every item of the batch.
    callback : SaveCallback or None
        Receives progress events (for example ``ln.TextProgress()``); a broken callback
        never fails the save.
    max_workers : int or None
        Bounds parallel hashing and uploads, 1 to 256 (default: ``LAMIN_NB_MAX_WORKERS``,
        else 8 for a local folder and 16 for S3).

    Returns
    -------
    SaveReport
        What was saved, deduplicated and already saved (nothing failed).

    Raises
    ------
    SaveError
        At least one item failed (each was undone). ``.report`` tells what was saved and what
        failed; with ``atomic=True`` nothing of the batch was saved.
    ValidationError
        An unsaved artifact's file, key or description cannot be used, or ``max_workers``
        (or ``LAMIN_NB_MAX_WORKERS``) is out of range; nothing was written.
    InstanceError
        There is no current instance (run ``ln.init``).
    TypeError
        ``records`` is not an iterable of artifacts (the message names the index and the
        type), or another argument has the wrong type; nothing was written.

    Warns
    -----
    KeyNotSavedWarning
        Some requested keys were not saved because their content is already stored under
        another key (listed in ``SaveReport.key_conflicts``).

    Examples
    --------
    >>> import lamin_nb as ln
    >>> artifacts = [ln.Artifact(p, key=f"runs/{p}") for p in ("a.csv", "b.csv")]  # doctest: +SKIP
    >>> ln.save(artifacts, callback=ln.TextProgress())  # doctest: +SKIP
    SaveReport(saved 2)
    >>> try:  # doctest: +SKIP
    ...     ln.save(artifacts, atomic=True)
    ... except ln.SaveError as exc:
    ...     print(exc.report.summary())
    """
    progress = Guarded(check_callback(callback) or NO_PROGRESS)
    report = SaveReport(atomic=atomic)
    try:
        check_flag("atomic", atomic)
        max_workers = check_workers(max_workers)
        artifacts = check_records(records)
        inst = _target(artifacts)
        run = SaveRun(inst, artifacts, atomic, progress, max_workers or _default_workers(inst))
    except BaseException as exc:
        report.error = exc
        progress.finish(report)  # a display shown for this save ends too: "nothing saved"
        raise
    try:
        run.execute()
    finally:
        _fill(report, run)
        progress.finish(report)
    for artifact in report.saved + report.deduplicated:
        artifact._instance = inst
    if report.key_conflicts:
        _warn_key_conflicts(report.key_conflicts)
    if report.failed:
        raise SaveError(report.message(), report) from report.failed[0][1]
    return report


def _target(artifacts: list[Artifact]) -> Instance:
    """The current instance; for artifacts that are all saved in one instance, that one (a
    saved artifact acts on its own instance, even after another became current)."""
    homes = {h.settings.uid: h for h in (a._home() for a in artifacts if a._is_saved)}
    if len(homes) == 1 and all(a._is_saved for a in artifacts):
        return next(iter(homes.values()))
    return current()


def save_one(artifact: Artifact, callback: SaveCallback | None = None) -> Artifact:
    save([artifact], atomic=True, callback=callback)
    return artifact


def check_records(records: Any) -> list[Artifact]:
    """Everything is validated before anything is written; a non-artifact is a TypeError."""
    if isinstance(records, Artifact):
        records = [records]
    if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
        raise TypeError(f"ln.save expects a list of artifacts, not {type(records).__name__}")
    artifacts: list[Artifact] = []
    seen: set[int] = set()
    for index, record in enumerate(records):
        if not isinstance(record, Artifact):
            raise TypeError(
                f"item {index} is a {type(record).__name__} ({_short(record)}), not an Artifact; "
                "nothing was saved"
            )
        if id(record) not in seen:
            seen.add(id(record))
            artifacts.append(record)
    for index, artifact in enumerate(artifacts):
        if not artifact._is_saved:
            try:
                _check_unsaved(artifact)
            except ValidationError as exc:
                raise ValidationError(
                    f"item {index} ({label(artifact)}): {exc}; nothing was saved"
                ) from exc
    return artifacts


def _check_unsaved(artifact: Artifact) -> None:
    """What may have changed since the artifact was built: its fields, and its source file."""
    artifact.key = check_key(artifact.key)
    check_description(artifact.description)
    if artifact._source is None:
        raise ValidationError("it has no content to save")
    try:
        # one open + fstat: the full checks ran at construction and the path is resolved
        fd = os.open(artifact._source, os.O_RDONLY)
        try:
            mode = os.fstat(fd).st_mode
        finally:
            os.close(fd)
    except FileNotFoundError as exc:
        raise ValidationError(f"file {str(artifact._source)!r} does not exist") from exc
    except OSError as exc:
        raise ValidationError(
            f"file {str(artifact._source)!r} cannot be read: {exc.strerror}"
        ) from exc
    if not stat.S_ISREG(mode):
        raise ValidationError(f"{str(artifact._source)!r} is no longer a regular file")


def _fill(report: SaveReport, run: SaveRun) -> None:
    buckets = {
        ItemState.SAVED: report.saved,
        ItemState.DEDUPLICATED: report.deduplicated,
        ItemState.ALREADY_SAVED: report.already_saved,
        ItemState.ROLLED_BACK: report.rolled_back,
    }
    for item in run.items:
        if item.key_conflict is not None and item.state == ItemState.DEDUPLICATED:
            report.key_conflicts.append(KeyConflict(*item.key_conflict, item.artifact))
        if item.state in buckets:
            buckets[item.state].append(item.artifact)
        else:  # failed, or left unfinished by an interrupt
            report.failed.append((item.artifact, item.error or StorageError("not saved")))


def _warn_key_conflicts(conflicts: list[KeyConflict]) -> None:
    lines = [f"{len(conflicts)} key(s) not saved, their content is already stored:"]
    lines += _listed([str(c) for c in conflicts], "key_conflicts")
    lines.append("the artifacts returned are the stored ones (SaveReport.key_conflicts)")
    # shown in the notebook cell and on the terminal; stacklevel points past lamin_nb
    warnings.warn("\n".join(lines), KeyNotSavedWarning, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """The first frame outside lamin_nb, so the warning names the user's line."""
    import sys

    frame: Any = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("lamin_nb."):
        frame, level = frame.f_back, level + 1
    return level


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _default_workers(inst: Instance) -> int:
    """``LAMIN_NB_MAX_WORKERS`` if set; else enough threads to overlap local flushes, and
    more for S3, where each worker mostly waits on the network."""
    configured = os.environ.get(WORKERS_ENV, "").strip()
    if configured:
        try:
            return check_workers(int(configured)) or 1
        except ValueError as exc:
            raise ValidationError(
                f"{WORKERS_ENV} must be a whole number between 1 and "
                f"{MAX_WORKERS}, not {configured!r}"
            ) from exc
    return inst.storage.default_workers
