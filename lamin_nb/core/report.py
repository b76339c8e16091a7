"""``SaveReport``: what a save did, item by item (DESIGN §4, bulk semantics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import describe

if TYPE_CHECKING:
    from .record import ArtifactRecord

LISTED_IN_MESSAGE = 20  # the report holds every artifact; the message stays readable


@dataclass(frozen=True)
class KeyConflict:
    """A key the user asked for that was not saved: ``artifact`` (now under ``kept_key``,
    uid ``uid``) already held the same content."""

    requested_key: str
    kept_key: str | None
    uid: str
    artifact: ArtifactRecord

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

    saved: list[ArtifactRecord] = field(default_factory=list)
    failed: list[tuple[ArtifactRecord, BaseException]] = field(default_factory=list)
    deduplicated: list[ArtifactRecord] = field(default_factory=list)
    already_saved: list[ArtifactRecord] = field(default_factory=list)
    rolled_back: list[ArtifactRecord] = field(default_factory=list)
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

    @property
    def cancelled(self) -> bool:
        """True when a KeyboardInterrupt stopped the save (Ctrl-C, the panel's Cancel button).

        What was in flight was undone; what a non-atomic save had committed before stays
        saved (``saved``). Large uploads cut short keep their parts for a resume
        (``ln.uploads()``) unless the cancel discards them.
        """
        if self.error is not None:
            return _interrupt(self.error)
        return any(_interrupt(exc) for _, exc in self.failed)

    def failed_records(self) -> list[ArtifactRecord]:
        """The artifacts a retry saves again (``ln.retry_failed``, the Retry failed button).

        Each failed item, and after an ``atomic=True`` save the items rolled back with them
        (the batch stays all or nothing). A cancelled save has nothing to retry (save again
        to start over), nor has a save stopped before any item was tried (``error``: fix the
        input first).

        Returns
        -------
        list of Artifact
            In the order the save received them; empty when there is nothing to retry.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> ln.SaveReport().failed_records()
        []
        """
        if self.cancelled or self.error is not None:
            return []
        return [a for a, _ in self.failed] + (list(self.rolled_back) if self.atomic else [])

    def retry_hint(self) -> str:
        """The one line that saves only what failed, for text output (empty if nothing to).

        Returns
        -------
        str
            For example "after fixing the cause, save only the 2 failed items again:
            ln.retry_failed()".

        Examples
        --------
        >>> import lamin_nb as ln
        >>> ln.SaveReport().retry_hint()
        ''
        """
        n = len(self.failed_records())
        if not n:
            return ""
        items = "the failed item" if n == 1 else f"the {n} failed items"
        return f"after fixing the cause, save only {items} again: ln.retry_failed()"

    def cancel_summary(self, discarded: int = 0) -> str:
        """What a cancelled save left: ``"cancelled: nothing saved"`` or what was kept.

        Parameters
        ----------
        discarded : int
            How many interrupted uploads the cancel discarded (``discard_cancelled``).

        Returns
        -------
        str
            Empty for a save that was not cancelled; else ``"cancelled: nothing saved"`` or
            ``"cancelled: kept saved 2 (committed before the cancel), 3 not saved"``, plus
            ``"; discarded 1 interrupted upload(s)"``.

        Examples
        --------
        >>> import lamin_nb as ln
        >>> ln.SaveReport(error=KeyboardInterrupt()).cancel_summary()
        'cancelled: nothing saved'
        """
        if not self.cancelled:
            return ""
        gone = f"; discarded {discarded} interrupted upload(s)" if discarded else ""
        if not (self.saved or self.deduplicated or self.already_saved):
            return "cancelled: nothing saved" + gone
        kept = [
            f"{name} {len(items)}"
            for name, items in (
                ("saved", self.saved),
                ("deduplicated", self.deduplicated),
                ("already saved", self.already_saved),
            )
            if items
        ]
        lost = len(self.failed) + len(self.rolled_back)
        kept_text = ", ".join(kept)
        return f"cancelled: kept {kept_text} (committed before the cancel), {lost} not saved{gone}"

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
        lines += listed([f"{a!r}: {describe(e)}" for a, e in self.failed], "failed")
        if self.rolled_back:
            lines.append(f"rolled back (atomic save): {len(self.rolled_back)} artifact(s)")
        lines.append(f"saved ({len(self.saved)}):")
        lines += listed([repr(a) for a in self.saved], "saved")
        if self.retry_hint():
            lines.append(self.retry_hint())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SaveReport({self.summary()})"


def _interrupt(exc: BaseException) -> bool:
    """A KeyboardInterrupt, or an item's error caused by one (the save's undo says so)."""
    return isinstance(exc, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt)


def _why(exc: BaseException) -> str:
    if not isinstance(exc, Exception):
        return f"interrupted ({type(exc).__name__})"
    return describe(exc).removesuffix("; nothing was saved")  # said once, by the caller


def listed(entries: list[str], attribute: str) -> list[str]:
    shown = [f"  - {e}" for e in entries[:LISTED_IN_MESSAGE]]
    if len(entries) > LISTED_IN_MESSAGE:
        shown.append(
            f"  ... and {len(entries) - LISTED_IN_MESSAGE} more (error.report.{attribute})"
        )
    return shown


def key_not_saved(requested: str, kept: str | None, uid: str) -> str:
    where = f"key {kept!r}" if kept is not None else "no key"
    return f"key {requested!r} not saved: same content is stored as {uid} ({where})"
