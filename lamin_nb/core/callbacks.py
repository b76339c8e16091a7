"""The progress protocol: an object passed down into save, no-op by default (fsspec style).

Events for a save of N items: ``start(items)`` once, then per item ``state(i, ...)`` and
``advance(i, nbytes)``, then ``finish(report)`` once, even when the save is interrupted.
States per item (each item ends in exactly one final state and gets no event after it):

    queued -> [hashing] -> uploading -> committing -> saved
    queued -> [hashing] -> deduplicated | already saved
    queued -> [hashing] -> waiting -> ...  (another process saves the same content; the detail
                                            says which, how long at most, and what to run)
    any non-final state -> failed          (detail = the reason, e.g. "Access Denied")
    any non-final state -> rolled back     (atomic=True: another item failed, so this one
                                            was undone or never started)

``start`` gives each item's index, label and size (their sum is the overall size); an index
counts the distinct artifacts passed, as an artifact listed twice is saved once.
``advance`` reports bytes read while hashing and bytes sent while uploading (the item's
current state says which). Events of different items arrive from worker threads, in any
interleaving; the events of one item arrive in order. A hook that raises an ordinary
exception is logged and ignored (a broken display never fails a save); a KeyboardInterrupt
raised by a hook stops the save like Ctrl-C.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, TextIO

from .units import human_size

if TYPE_CHECKING:
    from .report import SaveReport  # below the report (L3) only for types; no cycle


class ItemState(str, Enum):
    """The state of one item of a save, as ``SaveCallback.state`` receives it."""

    QUEUED = "queued"
    HASHING = "hashing"
    WAITING = "waiting"
    UPLOADING = "uploading"
    COMMITTING = "committing"
    SAVED = "saved"
    DEDUPLICATED = "deduplicated"
    ALREADY_SAVED = "already saved"
    FAILED = "failed"
    ROLLED_BACK = "rolled back"

    @property
    def is_final(self) -> bool:
        """True for saved, deduplicated, already saved, failed and rolled back."""
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        ItemState.SAVED,
        ItemState.DEDUPLICATED,
        ItemState.ALREADY_SAVED,
        ItemState.FAILED,
        ItemState.ROLLED_BACK,
    }
)


@dataclass(frozen=True)
class ItemInfo:
    """One item of a save, as ``SaveCallback.start`` receives it: index, label, size."""

    index: int
    label: str
    size: int | None


@dataclass(frozen=True)
class TransactionOutcome:
    """How a ``ln.transaction()`` block ended, as ``SaveCallback.transaction_end`` receives it.

    ``committed`` is True (one commit made everything visible), False (rolled back: nothing
    of the block is visible) or None (outcome unknown: the connection was lost during COMMIT
    and could not be read back; ``ln.check()`` tells once the database is reachable).
    """

    committed: bool | None
    reason: str = ""
    saved: int = 0
    deleted: int = 0
    trashed: int = 0
    restored: int = 0

    @property
    def line(self) -> str:
        """``committed: 3 saved, 1 deleted`` or ``rolled back: <reason>``."""
        if self.committed is None:
            return f"outcome unknown: {self.reason}"
        if not self.committed:
            return f"rolled back: {self.reason}"
        counts = [
            f"{n} {what}"
            for n, what in (
                (self.saved, "saved"),
                (self.deleted, "deleted"),
                (self.trashed, "trashed"),
                (self.restored, "restored"),
            )
            if n
        ]
        return "committed" + (": " + ", ".join(counts) if counts else "")


class SaveCallback:
    """Base class and no-op default: subclasses override only what they render.

    Pass an instance as ``callback=`` to ``Artifact.save`` or ``ln.save``. For a save of N
    items it receives ``start(items)`` once, then per item ``state`` and ``advance`` events,
    then ``finish(report)`` once, even when the save is interrupted. Events of different
    items arrive from worker threads, in any interleaving; the events of one item arrive in
    order. A hook that raises an ordinary exception is logged and ignored (a broken display
    never fails a save); a KeyboardInterrupt raised by a hook stops the save like Ctrl-C.

    Each item goes ``queued -> [hashing] -> uploading -> committing -> saved``, or ends
    ``deduplicated`` or ``already saved`` after hashing; it may be ``waiting`` while
    another process saves the same content; any non-final state can end ``failed`` or
    (``atomic=True``) ``rolled back``. An item gets no event after its final state.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> class CountBytes(ln.SaveCallback):
    ...     def __init__(self) -> None:
    ...         self.nbytes = 0
    ...
    ...     def advance(self, index: int, nbytes: int) -> None:
    ...         self.nbytes += nbytes  # hashing and uploading both report bytes
    >>> progress = CountBytes()
    >>> ln.save(artifacts, callback=progress)  # doctest: +SKIP
    SaveReport(saved 2)
    """

    def start(self, items: list[ItemInfo]) -> None:
        """The save begins: called once, before any other event.

        Parameters
        ----------
        items : list of ItemInfo
            Each item's ``index``, ``label`` (its key, file name, description or uid) and
            ``size`` in bytes (their sum is the overall size). Indexes count the distinct
            artifacts passed: an artifact listed twice is saved once.

        Returns
        -------
        None
        """

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        """Item ``index`` entered ``state``.

        Parameters
        ----------
        index : int
            The item, as numbered in ``start``.
        state : ItemState
            queued, hashing, waiting, uploading, committing, or a final state: saved,
            deduplicated, already saved, failed, rolled back (``state.is_final``).
        detail : str
            For failed, the reason (e.g. ``"Access Denied"``); for deduplicated, the stored
            artifact it matched; for waiting, on which process, how long at most and what to
            run if that process is gone; else usually empty.

        Returns
        -------
        None
        """

    def advance(self, index: int, nbytes: int) -> None:
        """Item ``index`` made progress by ``nbytes`` bytes.

        Parameters
        ----------
        index : int
            The item, as numbered in ``start``.
        nbytes : int
            Bytes read while hashing or sent while uploading (the item's current state says
            which).

        Returns
        -------
        None
        """

    def more(self, items: list[ItemInfo]) -> None:
        """Items joined a running display (a ``ln.transaction()`` block's later saves).

        A transaction's display shows every item of the block: each save and each trash,
        restore or permanent delete adds its items, numbered after the earlier ones.

        Parameters
        ----------
        items : list of ItemInfo
            The new items, indexed after the ones already shown.

        Returns
        -------
        None
        """

    def transaction_end(self, outcome: TransactionOutcome) -> None:
        """A ``ln.transaction()`` block ended: called once, just before ``finish``.

        Parameters
        ----------
        outcome : TransactionOutcome
            ``committed`` (True, False or None for unknown), the ``reason`` of a rollback,
            and counts; ``outcome.line`` reads ``committed: ...`` or ``rolled back: ...``.

        Returns
        -------
        None
        """

    def finish(self, report: SaveReport) -> None:
        """The save ended: called once, also when it failed or was interrupted.

        Parameters
        ----------
        report : SaveReport
            What the save did; ``report.error`` is set when it was stopped before any item
            was tried.

        Returns
        -------
        None
        """


NO_PROGRESS = SaveCallback()


class Guarded(SaveCallback):
    """How the core calls a user's callback: a bug in a progress display is logged once and
    never fails a save; a KeyboardInterrupt raised by a hook still stops it.

    Typed methods, not calls by name: a misspelled hook is an AttributeError at once (and a
    type error for mypy), never a warning at run time.
    """

    def __init__(self, callback: SaveCallback) -> None:
        self.callback = callback
        self.broken = False

    def start(self, items: list[ItemInfo]) -> None:
        try:
            self.callback.start(items)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._broke("start", exc)

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        try:
            self.callback.state(index, state, detail)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._broke("state", exc)

    def advance(self, index: int, nbytes: int) -> None:
        try:
            self.callback.advance(index, nbytes)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._broke("advance", exc)

    def more(self, items: list[ItemInfo]) -> None:
        try:
            hook = getattr(self.callback, "more", None)  # a duck-typed callback may lack it
            if hook is not None:
                hook(items)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._broke("more", exc)

    def transaction_end(self, outcome: TransactionOutcome) -> None:
        try:
            hook = getattr(self.callback, "transaction_end", None)
            if hook is not None:
                hook(outcome)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._broke("transaction_end", exc)

    def finish(self, report: SaveReport) -> None:
        try:
            self.callback.finish(report)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._broke("finish", exc)

    def _broke(self, hook: str, exc: Exception) -> None:
        if not self.broken:
            self.broken = True
            from .errors import describe

            logging.getLogger("lamin_nb").warning(
                "progress callback %s failed: %s", hook, describe(exc)
            )


class RecordingCallback(SaveCallback):
    """Keeps every event; thread-safe. Useful in tests and for replaying into a UI."""

    def __init__(self) -> None:
        self.items: list[ItemInfo] = []
        self.events: list[tuple[int, ItemState, str]] = []
        self.bytes: dict[int, int] = {}
        self.report: SaveReport | None = None
        self.outcome: TransactionOutcome | None = None
        self._lock = threading.Lock()

    def start(self, items: list[ItemInfo]) -> None:
        self.items = list(items)

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        with self._lock:
            self.events.append((index, state, detail))

    def advance(self, index: int, nbytes: int) -> None:
        with self._lock:
            self.bytes[index] = self.bytes.get(index, 0) + nbytes

    def finish(self, report: SaveReport) -> None:
        self.report = report

    def more(self, items: list[ItemInfo]) -> None:
        with self._lock:
            self.items.extend(items)

    def transaction_end(self, outcome: TransactionOutcome) -> None:
        self.outcome = outcome

    def states_of(self, index: int) -> list[ItemState]:
        return [s for i, s, _ in self.events if i == index]


class TextProgress(SaveCallback):
    """One line per final item state and a summary: readable in a terminal and in logs.

    Waits are printed too (a wait is never silent). File names and server messages with
    control characters are shown escaped.

    Parameters
    ----------
    stream : TextIO or None
        Where the lines go; None: ``sys.stderr``.
    retry_hint : bool
        After failed items, print the line that retries only those in this process
        (``ln.retry_failed()``); a command line that ends with the save says its own.

    Examples
    --------
    >>> import sys
    >>> import lamin_nb as ln
    >>> ln.save(artifacts, callback=ln.TextProgress(sys.stdout))  # doctest: +SKIP
    saving 2 item(s), 1.5 KiB
    [1/2] runs/a.csv saved
    [2/2] runs/b.csv saved
    saved 2
    SaveReport(saved 2)
    """

    def __init__(self, stream: TextIO | None = None, retry_hint: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.retry_hint = retry_hint
        self.labels: dict[int, str] = {}
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()

    def start(self, items: list[ItemInfo]) -> None:
        """Print ``saving <n> item(s), <total size>``.

        Parameters
        ----------
        items : list of ItemInfo
            The items of the save.

        Returns
        -------
        None
        """
        self.labels = {item.index: _printable(item.label) for item in items}
        self.total = len(items)
        self.done = 0
        size = sum(item.size or 0 for item in items)
        self._write(f"saving {self.total} item(s), {human_size(size)}")

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        """Print ``[<done>/<total>] <label> <state>[: <detail>]`` for a final state, or a wait.

        Parameters
        ----------
        index : int
            The item.
        state : ItemState
            Its new state; other non-final states print nothing.
        detail : str
            The reason of a failure, or on what a wait waits.

        Returns
        -------
        None
        """
        if state is ItemState.WAITING:  # a wait is never silent
            self._write(f"{self.labels.get(index, index)} {_printable(detail)}")
            return
        if not state.is_final:
            return
        with self._lock:
            self.done += 1
            done = self.done
        suffix = f": {_printable(detail)}" if detail else ""
        self._write(f"[{done}/{self.total}] {self.labels.get(index, index)} {state.value}{suffix}")

    def more(self, items: list[ItemInfo]) -> None:
        """Print ``adding <n> item(s)`` (a later save or delete of a transaction block).

        Parameters
        ----------
        items : list of ItemInfo
            The items joining the display.

        Returns
        -------
        None
        """
        with self._lock:
            self.labels.update((item.index, _printable(item.label)) for item in items)
            self.total += len(items)
        self._write(f"adding {len(items)} item(s)")

    def transaction_end(self, outcome: TransactionOutcome) -> None:
        """Print the transaction's last line: ``committed: ...`` or ``rolled back: ...``.

        Parameters
        ----------
        outcome : TransactionOutcome
            How the block ended.

        Returns
        -------
        None
        """
        self._write(_printable(outcome.line))

    def finish(self, report: SaveReport) -> None:
        """Print the report's one-line summary, e.g. ``saved 2, failed 1``, and what follows.

        After a cancel, what it left; after failed items, the one line that retries them.

        Parameters
        ----------
        report : SaveReport
            The outcome of the save.

        Returns
        -------
        None
        """
        self._write(report.summary())
        for line in (report.cancel_summary(), report.retry_hint() if self.retry_hint else ""):
            if line:
                self._write(line)

    def _write(self, line: str) -> None:
        with self._lock:
            print(line, file=self.stream, flush=True)


def _printable(text: str) -> str:
    """File names and server messages reach a terminal: never raw escapes or bidi overrides."""
    return text if text.isprintable() else repr(text)
