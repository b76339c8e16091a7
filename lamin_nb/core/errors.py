"""One error hierarchy; every class mixes in the builtin a caller would expect to catch."""

from __future__ import annotations

from typing import Any


class LaminNbError(Exception):
    """Base class of every error lamin_nb raises on purpose.

    Catch it to handle any lamin_nb failure in one place; most subclasses also mix in the
    builtin a caller would expect (``RuntimeError``, ``ValueError``, ``OSError``,
    ``LookupError``). The message names the item, the cause and what to run next, and never
    shows a password.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> issubclass(ln.SaveError, ln.LaminNbError)
    True
    """


class ValidationError(LaminNbError, ValueError):
    """Input that cannot be used: named item, named cause, nothing written.

    Raised before anything is saved: an unsafe key (absolute, ``..``, a NUL or invisible
    character, too long), a path that is not a readable regular file, an unknown filter field
    or lookup, an out-of-range number, an instance name or database URL that cannot be used,
    or a storage managed by another instance. No artifact row and no object was written; fix
    the input and call again. It is a ``ValueError``.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> ln.Artifact("results.csv", key="../escape.csv")  # doctest: +SKIP
    Traceback (most recent call last):
    ValidationError: key '../escape.csv' has an empty, '.' or '..' path segment
    """


class StorageError(LaminNbError, OSError):
    """The storage location refused or failed an operation.

    Raised when the storage root cannot be prepared or listed, or when an object cannot be
    deleted. The message says what state the data is in: after a failed permanent delete the
    artifact is either unchanged, or hidden and marked ``deleting`` until ``ln.repair()``
    finishes the delete. Inside a save it is the cause of a ``SaveError`` (found in
    ``SaveError.report.failed``), never raised on its own. It is an ``OSError``.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> try:  # doctest: +SKIP
    ...     artifact.delete(permanent=True)
    ... except ln.StorageError as exc:
    ...     print(exc)  # says whether the artifact is unchanged or waits for ln.repair()
    """


class DatabaseError(LaminNbError, RuntimeError):
    """The database could not be reached or refused the operation.

    Raised by every public path that reads or writes rows (``Artifact(path, key=...)``, which
    looks up the key's versions, ``filter``, ``get``, trash, restore, permanent delete,
    ``check``, ``repair``) when SQLAlchemy reports a failure: connection refused or lost,
    database locked. The message says what state the data is in (usually "nothing was
    changed"; after a permanent delete whose object is gone, "row left for repair") and what to
    run next. Inside a save it is the cause of a ``SaveError`` (in ``SaveError.report.failed``).

    Examples
    --------
    >>> import lamin_nb as ln
    >>> try:  # doctest: +SKIP
    ...     ln.Artifact.filter().all()
    ... except ln.DatabaseError as exc:
    ...     print(exc)  # what failed, the state of the data, what to run
    """


class NotFoundError(LaminNbError, LookupError):
    """No committed artifact matches.

    Raised by ``Artifact.get`` when no committed, untrashed artifact has the uid or key, by
    ``Artifact.delete``/``restore`` on an artifact that is not saved (anymore), and by
    ``Artifact.cache``/``load`` on an unsaved artifact without content. Nothing was changed.
    It is a ``LookupError``.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> try:  # doctest: +SKIP
    ...     ln.Artifact.get("runs/missing.csv")
    ... except ln.NotFoundError as exc:
    ...     print(exc)
    no artifact with uid or key 'runs/missing.csv'
    """


class IntegrityError(LaminNbError):
    """Storage and database disagree in a way the operation cannot fix itself.

    For example a source file that changed between hashing and upload: the upload is
    discarded, nothing is committed, and saving again stores the new content. Inside a save it
    is the cause of the item's error in ``SaveError.report.failed``. ``ln.check()`` reports
    the state of an instance and ``ln.repair()`` plans what brings it back to consistency.
    """


class KeyNotSavedWarning(UserWarning):
    """A key asked for was not saved: the same content is already stored under another key.

    Emitted (a warning, not an error) by ``ln.save`` and ``Artifact.save`` when an artifact
    was deduplicated onto an existing one with a different key: the save succeeded, the
    artifact returned is the stored one, and the key asked for exists nowhere.
    ``SaveReport.key_conflicts`` lists every case.

    Examples
    --------
    >>> import warnings
    >>> import lamin_nb as ln
    >>> with warnings.catch_warnings():  # doctest: +SKIP
    ...     warnings.simplefilter("error", ln.KeyNotSavedWarning)
    ...     ln.Artifact("copy.csv", key="runs/copy.csv").save()
    """


class InstanceError(LaminNbError, RuntimeError):
    """No current instance, or the instance settings cannot be used.

    Raised when no instance was created yet (run ``ln.init(storage=...)``), when the named
    instance has no settings under ``LAMIN_NB_HOME`` or they cannot be read, when the
    database schema cannot be created or upgraded, and when the SQLite file was deleted or
    replaced while this process had it open. Nothing was written by the failing call; the
    message says what to run next. It is a ``RuntimeError``.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> try:  # doctest: +SKIP
    ...     ln.connect("no-such-instance")
    ... except ln.InstanceError as exc:
    ...     print(exc)
    no instance named 'no-such-instance' under the settings folder; run ln.init(storage=...)
    """


class SaveError(LaminNbError, RuntimeError):
    """A save failed; ``.report`` tells what was saved and what failed.

    Raised by ``Artifact.save`` and ``ln.save`` after every item was tried. Each failed item
    was undone: its upload deleted and its pending row removed (if the cleanup itself could
    not run, the pending row stays and ``ln.repair()`` or the next connect finishes it). With
    ``atomic=False`` the items that succeeded stay saved and are listed in the message; with
    ``atomic=True`` nothing of the batch is saved. Running the same save again saves only what
    failed. It is a ``RuntimeError``, chained from the first item's cause.

    Parameters
    ----------
    message : str
        What failed, and what was saved.
    report : SaveReport or None
        The report of the save.

    Attributes
    ----------
    report : SaveReport or None
        ``.saved``, ``.failed`` as ``(artifact, exception)`` pairs, ``.deduplicated``,
        ``.rolled_back`` and the rest of the save's outcome.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> try:  # doctest: +SKIP
    ...     ln.save(artifacts)
    ... except ln.SaveError as exc:
    ...     retry = [artifact for artifact, _ in exc.report.failed]
    """

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        # a SaveReport (core/report.py), not imported: the errors sit below everything
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.report))


class TransactionError(LaminNbError, RuntimeError):
    """A ``ln.transaction()`` block did not commit, or its outcome could not be learned.

    The message says the state the data is in: "rolled back" (nothing of the block is
    visible; its uploads and pending rows were removed), or "outcome unknown" (the connection
    was lost during COMMIT and the database could not be read back: either everything of the
    block is committed or nothing; nothing was deleted; ``ln.check()`` then
    ``ln.repair(dry_run=False)`` finishes it once the database is reachable). It is a
    ``RuntimeError``, chained from its cause.

    Attributes
    ----------
    committed : bool or None
        False: rolled back. None: outcome unknown (see above).

    Examples
    --------
    >>> import lamin_nb as ln
    >>> try:  # doctest: +SKIP
    ...     with ln.transaction():
    ...         ln.Artifact("model.pt", key="runs/7/model.pt").save()
    ...         raise ValueError("bad metrics")
    ... except ValueError:
    ...     pass  # nothing of the block was saved
    """

    def __init__(self, message: str, committed: bool | None = False) -> None:
        super().__init__(message)
        self.committed = committed

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.committed))


class TransactionConflict(TransactionError):
    """Another writer changed what a transaction relies on; the transaction was rolled back.

    Raised at the end of a ``ln.transaction()`` block when, since the block reserved it,
    another writer committed a higher version of a key the block adds a version to, or
    deleted or changed an artifact the block trashes, restores or deletes. Nothing of the
    block was saved (never two versions with one number, never a lost save); run the block
    again to save on top of the other writer's work.

    Examples
    --------
    >>> import lamin_nb as ln
    >>> try:  # doctest: +SKIP
    ...     with ln.transaction():
    ...         ln.Artifact("model.pt", key="runs/model.pt").save()
    ... except ln.TransactionConflict as exc:
    ...     print(exc)  # names the key and the version the other writer committed
    """


def describe(exc: BaseException) -> str:
    """A short, user-facing cause: 'Access Denied (Forbidden)', never a traceback."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException) and hasattr(exc, "statement"):
        # a SQLAlchemy error: the driver's first line names the cause; the SQL text and its
        # parameters (one per row of a bulk save) would bury it and show row data
        lines = str(orig).strip().splitlines()
        return f"{lines[0] if lines else type(orig).__name__} ({type(orig).__name__})"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, PermissionError) and "access denied" not in text.lower():
        text = f"Access Denied ({text})"
    if isinstance(exc, LaminNbError) or text == type(exc).__name__:
        return text  # a bare KeyboardInterrupt reads "KeyboardInterrupt", not twice
    return f"{text} ({type(exc).__name__})"
