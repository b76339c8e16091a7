"""lamin_nb: data artifacts in storage, metadata in SQL, always in sync.

    import lamin_nb as ln
    ln.init(storage="./data")
    ln.Artifact("results.csv", key="runs/results.csv").save()

Names are imported lazily so ``import lamin_nb`` stays fast and Jupyter-free.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "init": "lamin_nb.core.instance",
    "connect": "lamin_nb.core.instance",
    "disconnect": "lamin_nb.core.instance",
    "Artifact": "lamin_nb.core.artifact",
    "save": "lamin_nb.core.save",
    "retry_failed": "lamin_nb.core.save",
    "SaveReport": "lamin_nb.core.report",
    "check": "lamin_nb.core.consistency",
    "ConsistencyReport": "lamin_nb.core.consistency",
    "repair": "lamin_nb.core.repair",
    "RepairPlan": "lamin_nb.core.repair",
    "restore_quarantined": "lamin_nb.core.repair",
    "list_quarantined": "lamin_nb.core.repair",
    "settings": "lamin_nb.core.public",
    "LaminNbError": "lamin_nb.core.errors",
    "SaveError": "lamin_nb.core.errors",
    "ValidationError": "lamin_nb.core.errors",
    "StorageError": "lamin_nb.core.errors",
    "DatabaseError": "lamin_nb.core.errors",
    "NotFoundError": "lamin_nb.core.errors",
    "IntegrityError": "lamin_nb.core.errors",
    "KeyNotSavedWarning": "lamin_nb.core.errors",
    "InstanceError": "lamin_nb.core.errors",
    "SaveCallback": "lamin_nb.core.callbacks",
    "TextProgress": "lamin_nb.core.callbacks",
    "uploads": "lamin_nb.core.transfers",
    "transaction": "lamin_nb.core.transaction",
    "TransactionError": "lamin_nb.core.errors",
    "TransactionConflict": "lamin_nb.core.errors",
}

__all__ = [
    "Artifact",
    "ConsistencyReport",
    "DatabaseError",
    "InstanceError",
    "IntegrityError",
    "KeyNotSavedWarning",
    "LaminNbError",
    "NotFoundError",
    "RepairPlan",
    "SaveCallback",
    "SaveError",
    "SaveReport",
    "StorageError",
    "TextProgress",
    "TransactionConflict",
    "TransactionError",
    "ValidationError",
    "check",
    "connect",
    "disconnect",
    "init",
    "list_quarantined",
    "repair",
    "restore_quarantined",
    "retry_failed",
    "save",
    "settings",
    "transaction",
    "uploads",
]

if TYPE_CHECKING:
    from lamin_nb.core.artifact import Artifact
    from lamin_nb.core.callbacks import SaveCallback, TextProgress
    from lamin_nb.core.consistency import ConsistencyReport, check
    from lamin_nb.core.errors import (
        DatabaseError,
        InstanceError,
        IntegrityError,
        KeyNotSavedWarning,
        LaminNbError,
        NotFoundError,
        SaveError,
        StorageError,
        TransactionConflict,
        TransactionError,
        ValidationError,
    )
    from lamin_nb.core.instance import connect, disconnect, init
    from lamin_nb.core.public import settings
    from lamin_nb.core.repair import RepairPlan, list_quarantined, repair, restore_quarantined
    from lamin_nb.core.report import SaveReport
    from lamin_nb.core.save import retry_failed, save
    from lamin_nb.core.transaction import transaction
    from lamin_nb.core.transfers import uploads


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lamin_nb' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext lamin_nb``: register the magics (imports IPython only now)."""
    from lamin_nb.jupyter import load_ipython_extension as load

    load(ipython)
