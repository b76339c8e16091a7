"""SaveProgress: the core's progress protocol (``SaveCallback``) rendered as an ipywidgets panel.

Events arrive from the save's worker threads and only update the item's plain data (no lock,
no widget). One render thread (shared by all panels) pushes the changes to the widgets at most
``1 / interval`` times a second, so the number of comm messages grows with the duration of a
save, not with its number of items; ``finish`` renders every final state on its caller's thread.

Up to ``max_rows`` items, every item has its own row of widgets. Above that, the active items
(at most ``active_rows``) are one HTML table, each failure gets its own red row of widgets, and
a collapsed "finished" list names what happened to the rest: a 1000-item save then costs
about twenty widgets, not thousands.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import Counter
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..core.callbacks import (
    FINAL_STATES,
    ItemInfo,
    ItemState,
    SaveCallback,
    TransactionOutcome,
)
from ._common import TextRepr, Tone, esc, human_size, set_visible, toggle_class, toned
from ._ticker import TICKER
from .actions import PanelActions

if TYPE_CHECKING:
    from ..core.save import SaveReport
    from .cancel import CancelButton

logger = logging.getLogger("lamin_nb")
S = ItemState
BAR_STYLE = {
    S.SAVED: "success",
    S.DEDUPLICATED: "info",
    S.ALREADY_SAVED: "info",
    S.FAILED: "danger",
    S.ROLLED_BACK: "warning",
}
# a failed or rolled-back row shows a full bar too: red / orange must be visible at any progress
FULL_BAR = frozenset(
    {S.COMMITTING, S.SAVED, S.DEDUPLICATED, S.ALREADY_SAVED, S.FAILED, S.ROLLED_BACK}
)
ACTIVE = frozenset({S.HASHING, S.UPLOADING, S.COMMITTING})
RANK = {S.UPLOADING.value: 0, S.HASHING.value: 1, S.COMMITTING.value: 2}
FAILED = S.FAILED.value
SUMMARY_ORDER = (S.SAVED, S.DEDUPLICATED, S.ALREADY_SAVED, S.FAILED, S.ROLLED_BACK)
PERMILLE = 1000
MAX_FAILED_ROWS = 50
MAX_LISTED = 200
TEXT_LINES = 20


def _size(size: int | None) -> str:
    return "?" if size is None else human_size(size)


def css_class(state: ItemState) -> str:
    """'lamin-item-failed', 'lamin-item-rolled-back', ...: a row's final-state hook."""
    return "lamin-item-" + state.value.replace(" ", "-")


@dataclass
class ItemStatus:
    """What one row shows; plain data, readable without any widget."""

    index: int
    label: str
    size: int | None
    state: ItemState = S.QUEUED
    detail: str = ""
    done: int = 0  # bytes of the current pass: hashing, then uploading

    @property
    def bar_style(self) -> str:
        return BAR_STYLE.get(self.state, "")

    @property
    def fraction(self) -> float:
        if self.state in FULL_BAR:
            return 1.0
        return min(self.done / self.size, 1.0) if self.size else 0.0

    @property
    def waiting(self) -> bool:
        """Hashed, not yet uploading."""
        return self.state == S.HASHING and self.size is not None and self.done >= self.size

    @property
    def text(self) -> str:
        if self.waiting:
            return "hashed, waiting"
        if self.state in (S.HASHING, S.UPLOADING):
            return f"{self.state.value} {human_size(self.done)}/{_size(self.size)}"
        if self.state == S.FAILED:
            return f"failed: {self.detail or 'unknown reason'}"
        if self.state == S.WAITING and self.detail:
            return self.detail  # on whom, how long at most, what to run
        if self.state == S.DEDUPLICATED and self.detail:
            return f"deduplicated ({self.detail})"
        if self.state == S.SAVED and self.detail:
            return self.detail  # a transaction's row change: deleted, trashed, restored
        return self.state.value

    def line(self) -> str:
        return f"  {self.label}  {_size(self.size)}  {self.text}"


def _html_bar(fraction: float) -> str:
    return (
        '<div class="lamin-html-bar" style="width:8em;height:0.8em;background:#eee">'
        f'<div style="width:{fraction:.0%};height:100%;background:#2196f3"></div></div>'
    )


def _most_active(items: list[ItemStatus], values: list[str], limit: int) -> list[ItemStatus]:
    """Which active items deserve a row: uploads first, hashed-and-waiting last."""
    ranks: tuple[list[ItemStatus], ...] = ([], [], [], [])
    for item, value in zip(items, values, strict=True):
        rank = RANK.get(value)
        if rank is None:
            continue
        if rank == 1 and item.waiting:
            rank = 3
        if len(ranks[rank]) < limit:
            ranks[rank].append(replace(item))
            if rank == 0 and len(ranks[0]) == limit:
                break
    return [item for bucket in ranks for item in bucket][:limit]


# fixed column widths that never shrink for a long key: every row's bar starts and ends at the
# same place; the name is cut with an ellipsis (the full key is its tooltip)
NAME_COLUMN = w.Layout(width="35%", flex="0 0 35%", overflow="hidden")
BAR_COLUMN = w.Layout(width="35%", flex="0 0 35%")
STATE_COLUMN = w.Layout(flex="1 1 0%", min_width="0")
NAME_CELL = (
    '<div style="display:flex;min-width:0"><span title="{title}" style="overflow:hidden;'
    'text-overflow:ellipsis;white-space:nowrap;min-width:0">{label}</span>'
    '<span class="lamin-item-size" style="flex:none;margin-left:0.5em">{size}</span></div>'
)


class _RowView:
    """One row's widgets: name and size, a bar, the state text."""

    def __init__(self) -> None:
        self.name = w.HTML(layout=NAME_COLUMN)
        self.bar = w.IntProgress(min=0, max=PERMILLE, layout=BAR_COLUMN)
        self.state = w.HTML(layout=STATE_COLUMN)
        self.name.add_class("lamin-item-name")
        self.bar.add_class("lamin-item-bar")
        self.state.add_class("lamin-item-state")
        self.box = w.HBox([self.name, self.bar, self.state])
        self.box.add_class("lamin-item-row")
        self.index: int | None = None

    def show(self, item: ItemStatus) -> None:
        self.index = item.index
        label = esc(item.label)
        self.name.value = NAME_CELL.format(title=label, label=label, size=esc(_size(item.size)))
        self.bar.value = round(item.fraction * PERMILLE)
        self.bar.bar_style = item.bar_style
        self.state.value = esc(item.text)
        for state in FINAL_STATES:
            toggle_class(self.box, css_class(state), item.state == state)


class SaveProgress(TextRepr, w.VBox, SaveCallback):
    """Live progress of a save: an overall bar and a row per item; failures stay red.

    Pass it as ``callback=`` to ``ln.save`` or ``Artifact.save`` and display it; ``rows``
    gives the data behind the rows, ``row_view(i)`` the widgets of item ``i`` (when shown).
    """

    def __init__(
        self,
        title: str = "saving",
        max_rows: int = 20,
        active_rows: int = 10,
        interval: float = 0.1,
        **kwargs: Any,
    ) -> None:
        header, overall = w.HTML(), w.IntProgress(min=0, max=1, layout=w.Layout(width="auto"))
        rows_box, active, failed_box, finished_list = w.VBox(), w.HTML(), w.VBox(), w.HTML()
        finished = w.Accordion([finished_list], selected_index=None)
        super().__init__([header, overall, rows_box, active, failed_box, finished], **kwargs)
        self.header, self.overall, self.rows_box, self.active = header, overall, rows_box, active
        self.failed_box, self.finished, self.finished_list = failed_box, finished, finished_list
        for widget, name in (
            (self, "lamin-save-progress"),
            (header, "lamin-save-header"),
            (overall, "lamin-save-overall"),
            (rows_box, "lamin-item-rows"),
            (active, "lamin-active-rows"),
            (failed_box, "lamin-failed-rows"),
            (finished, "lamin-finished"),
            (finished_list, "lamin-finished-list"),
        ):
            widget.add_class(name)
        self.title, self.max_rows, self.active_rows = title, max_rows, active_rows
        self.interval = interval
        self.report: SaveReport | None = None
        self.outcome: TransactionOutcome | None = None
        self._render_lock = threading.Lock()
        self._reset([])
        for widget in (active, failed_box, finished):  # shown for large saves only
            set_visible(widget, False)
        self.finished.observe(lambda _: self._render(), names="selected_index")
        self._build_actions()
        self._render()

    # -- the progress protocol ---------------------------------------------------------
    # Events for one item come from one thread at a time (the core's phases run one after
    # the other), and only that item's fields change: no lock, so the save's worker threads
    # never wait for each other or for a render. Everything else is derived when rendering.

    def start(self, items: list[ItemInfo]) -> None:
        TICKER.remove(self)
        self._reset(items)
        self._build_views()
        self._render()
        self._actions.started()
        TICKER.add(self)

    def state(self, index: int, state: ItemState, detail: str = "") -> None:
        item = self._items.get(index)
        if item is None or item.state is S.FAILED:  # a failure is never overwritten
            return
        if state is not item.state and (state is S.HASHING or state is S.UPLOADING):
            item.done = 0  # a new pass over the bytes
        item.detail = detail
        item.state = state
        self._dirty = True

    def advance(self, index: int, nbytes: int) -> None:
        if self._actions.stop_pending:  # Cancel clicked while the shell was free (see actions)
            self._actions.stop_pending = False
            raise KeyboardInterrupt("cancelled from the progress panel")
        item = self._items.get(index)
        if item is not None:
            item.done += nbytes
            self._dirty = True

    # -- a transaction block (``ln.transaction(callback=...)``, ``%%lamin_transaction``):
    # its saves and row changes join as they run, then one line says how it ended

    def more(self, items: list[ItemInfo]) -> None:
        for info in items:
            self._items[info.index] = ItemStatus(info.index, info.label, info.size)
            self._total += info.size or 0
        self._build_views()
        self._dirty = True

    def transaction_end(self, outcome: TransactionOutcome) -> None:
        self.outcome = outcome
        self._dirty = True

    def finish(self, report: SaveReport) -> None:
        TICKER.remove(self)
        self.report = report
        self._done = True  # from now on only this final render runs (see _render)
        self._actions.finished(report)
        self._render()
        self.republish()  # the text a saved notebook keeps is the final state too

    # -- reading ---------------------------------------------------------------------

    @property
    def rows(self) -> list[ItemStatus]:
        """A snapshot of every item's status, in input order."""
        return [replace(item) for item in list(self._items.values())]

    def row_view(self, index: int) -> _RowView | None:
        """The widgets of item ``index``: every item of a small save, failures of a large one."""
        return self._views.get(index) or self._failed_views.get(index)

    @property
    def counts(self) -> dict[str, int]:
        return {state.value: n for state, n in self._count().items() if n}

    @property
    def running(self) -> bool:
        """Between ``start`` and ``finish``: the render thread updates this panel."""
        return self in TICKER

    @property
    def cancel_button(self) -> CancelButton:
        """The Cancel button (shown by the page while the save runs, where it can work)."""
        return self._actions.cancel

    @property
    def retry_button(self) -> w.Button:
        """Retry failed: shown after a save with failed items; saves only those again."""
        return self._actions.retry

    @property
    def outcome_line(self) -> w.HTML:
        """The line under the rows: what a cancel left, what a retry will do."""
        return self._actions.outcome

    @property
    def retries(self) -> list[SaveProgress]:
        """The panels of the retries started from this one, oldest first."""
        return list(self._actions.retries.children)

    def close(self) -> None:
        TICKER.remove(self)
        super().close()

    def _build_actions(self) -> None:
        self._actions = PanelActions(self)
        self.children += (self._actions.box, self._actions.retries)

    # -- internals -------------------------------------------------------------------

    def _reset(self, items: list[ItemInfo]) -> None:
        self._items = {i.index: ItemStatus(i.index, i.label, i.size) for i in items}
        self.outcome = None  # how a transaction block ended (set by transaction_end)
        self._failed_order: list[int] = []
        self._total = sum(i.size or 0 for i in items)
        self._dirty = True
        self._done = False
        self._views: dict[int, _RowView] = {}
        self._failed_views: dict[int, _RowView] = {}

    @property
    def _large(self) -> bool:
        return len(self._items) > self.max_rows

    def _count(self) -> Counter[ItemState]:
        return Counter(item.state for item in list(self._items.values()))

    def _build_views(self) -> None:
        """Rows are created here, on the caller's thread; the ticker only updates them."""
        if not self._large:
            self._views = {index: _RowView() for index in self._items}
        self.rows_box.children = tuple(v.box for v in self._views.values())
        self.failed_box.children = ()
        self.active.value = ""
        self.overall.max = max(len(self._items), 1)
        self.overall.value = 0
        self.overall.bar_style = ""  # a reused panel starts neutral again
        for widget in (self.active, self.failed_box, self.finished):
            set_visible(widget, self._large)

    def _tick(self) -> None:
        if self._dirty:
            self._render(final=False)

    def _render(self, final: bool = True) -> None:
        try:
            with self._render_lock:
                if final or not self._done:  # a late tick never follows the final render
                    self._render_locked()
        except Exception:  # noqa: BLE001 - a display problem must never fail a save
            logger.warning("could not update the progress widget", exc_info=True)

    def _render_locked(self) -> None:
        """One pass over plain attributes (10k items: a few ms); only shown items are copied."""
        self._dirty = False  # before reading: an event during this render marks it again
        items = list(self._items.values())
        values = [item.state._value_ for item in items]  # Enum hashing would run Python code
        counts = Counter({S(value): n for value, n in Counter(values).items()})
        if self._large:
            self._render_active(_most_active(items, values, self.active_rows))
            seen = set(self._failed_order)
            new_failed = [
                replace(item)
                for item, value in zip(items, values, strict=True)
                if value == FAILED and item.index not in seen
            ]
            self._failed_order += [item.index for item in new_failed]
            self._render_failed(new_failed)
            self._render_finished(counts)
        else:
            for item in items:
                self._views[item.index].show(replace(item))
        self._render_totals(counts)

    def _render_active(self, shown: list[ItemStatus]) -> None:
        rows = [
            f'<tr class="lamin-item-row {css_class(i.state)}"><td>{esc(i.label)}</td>'
            f"<td>{esc(_size(i.size))}</td><td>{_html_bar(i.fraction)}</td>"
            f"<td>{esc(i.text)}</td></tr>"
            for i in shown
        ]
        self.active.value = "<table>" + "".join(rows) + "</table>" if rows else ""

    def _render_failed(self, failed: list[ItemStatus]) -> None:
        added = []
        for item in failed:
            if len(self._failed_views) < MAX_FAILED_ROWS:
                view = self._failed_views[item.index] = _RowView()
                view.show(item)
                added.append(view.box)
        if added:
            self.failed_box.children += tuple(added)

    def _render_finished(self, counts: Counter[ItemState]) -> None:
        finished = sum(counts[s] for s in FINAL_STATES)
        self.finished.titles = (f"finished ({finished})",)
        if not (self._done or self.finished.selected_index == 0):
            return
        failed = [replace(self._items[i]) for i in self._failed_order[:MAX_LISTED]]  # first
        rest = itertools.islice(
            (
                replace(i)
                for i in list(self._items.values())
                if i.state in FINAL_STATES and i.state is not S.FAILED
            ),
            MAX_LISTED - len(failed),
        )
        lines = [
            f'<tr class="lamin-finished-item {css_class(i.state)}"><td>{esc(i.label)}'
            f"</td><td>{esc(_size(i.size))}</td><td>{esc(i.text)}</td></tr>"
            for i in itertools.chain(failed, rest)
        ]
        if finished > len(lines):
            lines.append(f"<tr><td colspan=3>... and {finished - len(lines)} more</td></tr>")
        self.finished_list.value = "<table>" + "".join(lines) + "</table>"

    def _render_totals(self, counts: Counter[ItemState]) -> None:
        finished = sum(counts[s] for s in FINAL_STATES)
        failed = counts[S.FAILED] + counts[S.ROLLED_BACK]
        stopped = self._done and self.report is not None and self.report.error is not None
        self.overall.value = finished
        if stopped or (self._done and not self._items):
            self.overall.value = self.overall.max  # a red (or green) bar at 0 % is invisible
        if failed or stopped:
            self.overall.bar_style = "danger"
        elif self._done:
            self.overall.bar_style = "success"
        summary = toned(esc(self._summary(counts)), self._tone(bool(failed or stopped)))
        self.header.value = f"<b>{esc(self.title)}</b> {summary}"
        toggle_class(self, "lamin-save-failed", bool(failed or stopped))
        toggle_class(self, "lamin-save-done", self._done)
        if self.outcome is not None:
            toggle_class(self, "lamin-transaction-committed", self.outcome.committed is True)
            toggle_class(self, "lamin-transaction-rolled-back", self.outcome.committed is False)

    def _tone(self, failed: bool) -> Tone | None:
        if failed:
            return "error"
        return "ok" if self._done else None

    def _summary(self, counts: Counter[ItemState]) -> str:
        if self._done and self.outcome is not None:  # one line for the whole block
            return f"{self.outcome.line} ({len(self._items)} items)"
        report = self.report if self._done else None
        if report is not None and self._actions.headline():
            return self._actions.headline()
        if report is not None and report.nothing_saved:
            return f"nothing saved: {report.reason()}"
        n = len(self._items)
        if not n:
            return "done: nothing to save" if self._done else "waiting to start"
        finished = sum(counts[s] for s in FINAL_STATES)
        parts = [f"{s.value} {counts[s]}" for s in SUMMARY_ORDER if counts[s]]
        active = sum(counts[s] for s in ACTIVE)
        if active:
            parts.append(f"active {active}")
        if counts[S.WAITING]:
            parts.append(f"waiting {counts[S.WAITING]}")
        if counts[S.QUEUED]:
            parts.append(f"queued {counts[S.QUEUED]}")
        status = "done" if self._done else "running"
        return f"{finished}/{n} items, {human_size(self._total)} ({status}): " + ", ".join(parts)

    def __repr__(self) -> str:
        items = self.rows
        counts = Counter(item.state for item in items)
        if self._large:
            items = [i for i in items if i.state is S.FAILED or i.state in ACTIVE]
        lines = [i.line() for i in items[:TEXT_LINES]]
        n = len(self._items)
        fraction = sum(counts[s] for s in FINAL_STATES) / n if n else float(self._done)
        bar = "#" * round(fraction * 20)
        head = f"{self.title} {fraction:4.0%}|{bar:<20}| {self._summary(counts)}"
        if self._done and self.report is not None and self.report.nothing_saved:
            head = f"{self.title}: {self._summary(counts)}"  # no bar: nothing was saved
        if len(items) > TEXT_LINES:
            lines.append(f"  ... and {len(items) - TEXT_LINES} more")
        return "\n".join([head, *lines, *self._actions.text_lines()])
