"""The transaction a save, delete or query of this thread runs in (DESIGN §10), and what it
has done so far. ``transaction.py`` opens, commits and rolls it back; ``save``, ``delete`` and
``query`` ask ``joined`` / ``reading`` and record their work here instead of committing it.

Inside a transaction:
- a save reserves and uploads as usual, under the transaction's owner, and stops before its
  commit: its rows stay ``pending`` (invisible to other processes) until the block ends;
- a trash, restore or permanent delete is only recorded; the block's commit applies it;
- reads of this thread see the block's own changes (``query.visible`` asks ``reading``).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .callbacks import NO_PROGRESS, Guarded, ItemInfo, ItemState, SaveCallback
from .errors import ValidationError
from .models import PENDING
from .owners import Owner, new_owner

if TYPE_CHECKING:
    from .instance import Instance
    from .record import ArtifactRecord
    from .report import SaveReport

TX_RUN = "tx"  # an owner's run name starts with it: the rows of a transaction (ln.check says so)


def transaction_owner() -> Owner:
    """An owner whose run name says "transaction": ``check`` and ``repair`` can name it."""
    owner = new_owner()
    return Owner(owner.host, owner.pid, owner.start, TX_RUN + owner.run)


def is_transaction_owner(owner: str | None) -> bool:
    from .owners import parse

    who = parse(owner)
    return who is not None and who.run.startswith(TX_RUN)


@dataclass
class Transaction:
    """One open ``ln.transaction()`` block of one thread, on one instance."""

    inst: Instance
    identity: Owner = field(default_factory=transaction_owner)
    id: str = field(default_factory=lambda: secrets.token_hex(16))
    progress: Guarded = field(default_factory=lambda: Guarded(NO_PROGRESS))
    saved: dict[str, ArtifactRecord] = field(default_factory=dict)  # uid -> record (pending)
    trashed: dict[str, ArtifactRecord] = field(default_factory=dict)
    restored: dict[str, ArtifactRecord] = field(default_factory=dict)
    deleted: dict[str, ArtifactRecord] = field(default_factory=dict)
    doomed: BaseException | None = None  # a nested block raised: the block rolls back
    depth: int = 1
    items: int = 0  # items shown so far (saves and row changes)
    open_items: dict[int, ItemState] = field(default_factory=dict)  # not final yet
    intents: dict[str, int] = field(default_factory=dict)  # "delete:<uid>" -> item index
    keeper: Any = None  # the block's LeaseKeeper: renews every row it reserved
    _snapshots: dict[int, tuple[Any, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def owner(self) -> str:
        return str(self.identity)

    # -- records: what the block changed in memory comes back on a rollback -------------

    def remember(self, record: ArtifactRecord) -> None:
        """Keep ``record``'s state as it was before the block first touched it."""
        if id(record) not in self._snapshots:
            self._snapshots[id(record)] = (record, dict(vars(record)))

    def restore_records(self) -> None:
        """Put every record the block touched back as it was (a rollback)."""
        for record, state in self._snapshots.values():
            vars(record).clear()
            vars(record).update(state)

    def records(self) -> list[ArtifactRecord]:
        return [record for record, _ in self._snapshots.values()]

    # -- rows of this transaction -----------------------------------------------------

    def add_saved(self, record: ArtifactRecord) -> None:
        """A save of the block uploaded ``record``; its pending row waits for the commit."""
        self.saved[record.uid] = record
        if self.keeper is not None:
            self.keeper.uids.append(record.uid)

    def owns(self, row: Any) -> bool:
        """A pending row this transaction saved (visible to the block, to nobody else)."""
        return row is not None and row.status == PENDING and row.owner == self.owner

    def change(self, kind: str, record: ArtifactRecord, label: str) -> None:
        """Record a trash, restore or permanent delete, applied by the block's commit."""
        self.remember(record)
        uid = record.uid
        opposite = {"trash": self.restored, "restore": self.trashed}.get(kind)
        if opposite is not None and uid in opposite:
            opposite.pop(uid)  # trash then restore in one block: nothing to change
            self._drop_intent(("restore" if kind == "trash" else "trash") + ":" + uid)
            return
        {"trash": self.trashed, "restore": self.restored, "delete": self.deleted}[kind][uid] = (
            record
        )
        if kind == "delete":  # a trash or restore before it no longer matters
            for earlier, changes in (("trash", self.trashed), ("restore", self.restored)):
                if changes.pop(uid, None) is not None:
                    self._drop_intent(f"{earlier}:{uid}")
        index = self.add_items([ItemInfo(0, f"{kind} {label}", None)])
        self.intents[f"{kind}:{uid}"] = index
        self.progress.state(index, ItemState.QUEUED, f"{kind} when the transaction commits")

    def _drop_intent(self, name: str) -> None:
        index = self.intents.pop(name, None)
        if index is not None:
            self.open_items.pop(index, None)
            self.progress.state(index, ItemState.ROLLED_BACK, "undone in the same transaction")

    # -- progress: one display for every item of the block -----------------------------

    def add_items(self, infos: list[ItemInfo]) -> int:
        """Number ``infos`` after the items shown so far and show them; returns the first
        index."""
        with self._lock:
            first = self.items
            self.items += len(infos)
            for k in range(len(infos)):
                self.open_items[first + k] = ItemState.QUEUED
        self.progress.more([ItemInfo(first + k, i.label, i.size) for k, i in enumerate(infos)])
        return first

    def relay(self, extra: SaveCallback | None) -> SaveCallback:
        """The callback of a save inside the block: its items join the block's display."""
        return _Relay(self, extra)


class _Relay(SaveCallback):
    """A save's events, renumbered into the transaction's display (and to the save's own
    callback, if it has one). The save's ``finish`` is not the block's: the block ends later."""

    def __init__(self, tx: Transaction, extra: SaveCallback | None) -> None:
        self.tx = tx
        self.extra = Guarded(extra) if extra is not None else None
        self.offset = 0

    def start(self, items: list[ItemInfo]) -> None:
        self.offset = self.tx.add_items(items)
        if self.extra is not None:
            self.extra.start(items)

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        where = self.offset + index
        if state.is_final:
            self.tx.open_items.pop(where, None)
        else:
            self.tx.open_items[where] = state
        self.tx.progress.state(where, state, detail)
        if self.extra is not None:
            self.extra.state(index, state, detail)

    def advance(self, index: int, nbytes: int) -> None:
        self.tx.progress.advance(self.offset + index, nbytes)
        if self.extra is not None:
            self.extra.advance(index, nbytes)

    def finish(self, report: SaveReport) -> None:
        if self.extra is not None:
            self.extra.finish(report)


_local = threading.local()


def current() -> Transaction | None:
    """The innermost open transaction of this thread, on any instance."""
    return getattr(_local, "tx", None)


def set_current(tx: Transaction | None) -> None:
    _local.tx = tx


def joined(inst: Instance) -> Transaction | None:
    """The transaction a write on ``inst`` joins, or None; a write on another instance inside
    a block would escape it, so it is refused before anything is written."""
    tx = current()
    if tx is None:
        return None
    if tx.inst.settings.uid != inst.settings.uid:
        raise ValidationError(
            f"a transaction covers one instance ({tx.inst.name}); this write targets "
            f"{inst.name}: nothing was written. Write there after the block, or in a block "
            "of its own"
        )
    return tx


def reading(inst: Instance) -> Transaction | None:
    """The transaction whose changes reads of ``inst`` in this thread see, or None."""
    tx = current()
    if tx is None or tx.inst.settings.uid != inst.settings.uid:
        return None
    return tx
