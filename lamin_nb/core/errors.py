"""One error hierarchy; every class mixes in the builtin a caller would expect to catch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .save import SaveReport


class LaminNbError(Exception):
    """Base class of every error lamin_nb raises on purpose."""


class ValidationError(LaminNbError, ValueError):
    """Input that cannot be saved: named item, named cause, nothing written."""


class StorageError(LaminNbError, OSError):
    """The storage location refused or failed an operation."""


class DatabaseError(LaminNbError, RuntimeError):
    """The database could not be reached or refused the operation; the message says what
    state the data is in and what to run next."""


class NotFoundError(LaminNbError, LookupError):
    """No committed artifact (or instance) matches."""


class IntegrityError(LaminNbError):
    """Storage and database disagree in a way the operation cannot fix itself."""


class InstanceError(LaminNbError, RuntimeError):
    """No current instance, or the instance settings cannot be used."""


class SaveError(LaminNbError, RuntimeError):
    """A save failed; `.report` tells what was saved and what failed."""

    def __init__(self, message: str, report: SaveReport | None = None) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.report))


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
    if isinstance(exc, LaminNbError):
        return text
    return f"{text} ({type(exc).__name__})"
