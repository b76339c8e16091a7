"""ConsistencyPanel: ``ln.check()`` rendered live, with a two-step ``ln.repair()``.

Auto-refresh runs ``ln.check`` on a daemon thread every ``interval`` seconds, so saves made in
other processes show up without rerunning the cell; the kernel stays responsive because the
check never runs on the kernel's event loop. Stop it with the toggle, ``stop_auto_refresh()``,
``close()``, or ``ConsistencyPanel.stop_all()`` (every panel of this kernel).

Repair is two clicks: Repair shows the dry-run plan, Confirm applies it. If the plan changed
in between (another process saved or repaired), Confirm shows the new plan instead.

Interrupted uploads waiting to be resumed (DESIGN §9) are listed below the counts with Resume
and Discard: the ``UploadsPanel`` of ``%lamin_uploads``, refreshed with every check.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

import ipywidgets as w

from ..core.errors import describe
from ._common import TextRepr, Tone, esc, human_age, human_size, set_visible, toggle_class, toned
from .uploads import UploadsPanel

FULL_EVERY = 3600.0  # seconds between the auto-refresh's full checks (incremental between)

if TYPE_CHECKING:
    from ..core.consistency import ConsistencyReport
    from ..core.repair import RepairPlan

MAX_LISTED = 100
LEFT_ALONE_HINT = (
    "(left alone: anything younger than 'grace (s)', since a writer may still be "
    "active, and missing objects unless 'mark missing as lost' is ticked)"
)
# long plan lines wrap between words (a 60-character object name still breaks if it must)
PLAN_TEXT = "white-space: pre-wrap; word-break: normal; overflow-wrap: break-word"
CATEGORIES = (
    ("missing", "missing objects"),
    ("orphans", "orphans"),
    ("mismatched", "size/hash mismatches"),
    ("pending", "pending rows"),
    ("deleting", "deleting rows"),
    ("lost", "lost (marked by repair)"),
)


class ConsistencyPanel(TextRepr, w.VBox):
    """Counts and lists from ``ln.check()``; refresh, auto-refresh and repair controls."""

    _running: ClassVar[weakref.WeakSet[ConsistencyPanel]] = weakref.WeakSet()

    def __init__(
        self,
        deep: bool = False,
        report: ConsistencyReport | None = None,
        auto_refresh: bool = False,
        interval: float = 5.0,
        grace_seconds: int = 3600,
        mark_lost: bool = False,
        **kwargs: Any,
    ) -> None:
        import lamin_nb as ln

        first = report if report is not None else ln.check(deep=deep)
        parts = _Parts(interval, grace_seconds, mark_lost)
        # resumable uploads, with Resume and Discard; either changes what the check finds
        self.uploads = UploadsPanel(after_action=self._uploads_changed, embedded=True)
        super().__init__([*parts.children()[:3], self.uploads, *parts.children()[3:]], **kwargs)
        self.add_class("lamin-consistency-panel")
        self.deep, self.parts = deep, parts
        self.report: ConsistencyReport = first
        self.plan: RepairPlan | None = None
        self.error: str | None = None
        self._lock = threading.Lock()  # one check or repair at a time, whoever asks
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        parts.refresh_button.on_click(lambda _: self.refresh())
        parts.repair_button.on_click(lambda _: self.show_plan())
        parts.confirm_button.on_click(lambda _: self.apply_plan())
        parts.cancel_button.on_click(lambda _: self.cancel_plan())
        parts.auto_toggle.observe(self._toggled, names="value")
        self._render_report()
        if auto_refresh:
            self.start_auto_refresh()

    # -- actions -----------------------------------------------------------------------

    def refresh(self, since: str | None = None) -> ConsistencyReport | None:
        """Run ``ln.check`` now; on failure keep the last report and show why.

        Parameters
        ----------
        since : str or None
            None: a full check. ``"last"``: only what changed since the last full check (what
            the auto-refresh runs, cheap on a large instance), or a full check if the last
            one is ``FULL_EVERY`` seconds old (only a full check finds objects written
            outside lamin_nb).

        Returns
        -------
        ConsistencyReport or None
            The new report, or None if the check failed.
        """
        import lamin_nb as ln
        from lamin_nb.core import incremental
        from lamin_nb.core.instance import current

        with self._lock:
            try:
                if since == "last":
                    since = incremental.refresh_since(current(), FULL_EVERY)
                self.report = ln.check(deep=self.deep, since=since)
                self.error = None
            except Exception as exc:  # noqa: BLE001 - shown in the panel; the loop goes on
                self.error = f"refresh failed: {describe(exc)}"
            self.uploads.refresh()
            self._render_report()
        return None if self.error else self.report

    def show_plan(self) -> RepairPlan | None:
        """Repair, step 1: the dry run. Confirm appears only if there is something to do."""
        import lamin_nb as ln

        with self._lock:
            try:
                self.plan = ln.repair(dry_run=True, **self._repair_options())
                self.error = None
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                self.plan, self.error = None, f"repair plan failed: {describe(exc)}"
            else:
                self.report = self.plan.report
            self._render_report()
            self._render_plan("review the plan, then confirm" if self._pending() else "")
        return self.plan

    def apply_plan(self) -> RepairPlan | None:
        """Repair, step 2: apply the plan shown, unless it changed since it was shown."""
        import lamin_nb as ln

        with self._lock:
            if not self._pending():
                return None
            options = self._repair_options()
            assert self.plan is not None
            try:
                fresh = ln.repair(dry_run=True, **options)
                if _targets(fresh) != _targets(self.plan):
                    self.plan, self.report = fresh, fresh.report
                    self._render_report()
                    self._render_plan(
                        "the plan changed since it was shown: review and confirm again"
                    )
                    return None
                self.plan = ln.repair(dry_run=False, **options)
                self.error = None
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                self.error = f"repair failed: {describe(exc)}"
                self._render_report()
                return None
            self.report = self.plan.after or self.plan.report
            self.uploads.refresh()  # repair may have aborted expired ones
            self._render_report()
            self._render_plan("")
        return self.plan

    def _uploads_changed(self) -> None:
        self.refresh()

    def cancel_plan(self) -> None:
        self.plan = None
        self._render_plan("")

    # -- auto-refresh --------------------------------------------------------------------

    def start_auto_refresh(self, interval: float | None = None) -> None:
        if interval is not None:
            self.parts.interval.value = interval
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(self._stop,), daemon=True, name="lamin-nb-consistency-refresh"
        )
        self._thread.start()
        ConsistencyPanel._running.add(self)
        self.parts.auto_toggle.value = True

    def stop_auto_refresh(self, timeout: float | None = None) -> None:
        """Stop the thread and wait for it (a check already running is allowed to end)."""
        stop, thread = getattr(self, "_stop", None), getattr(self, "_thread", None)
        if stop is None:  # __init__ failed (e.g. no instance): nothing was started
            return
        stop.set()
        self._thread = None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        ConsistencyPanel._running.discard(self)
        self.parts.auto_toggle.value = False

    @property
    def auto_refreshing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @classmethod
    def stop_all(cls) -> None:
        """Stop every auto-refreshing panel (e.g. after rerunning cells that made new ones)."""
        for panel in list(cls._running):
            panel.stop_auto_refresh()

    def close(self) -> None:
        self.stop_auto_refresh()
        super().close()

    def _toggled(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.start_auto_refresh()
        else:
            self.stop_auto_refresh()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(max(float(self.parts.interval.value), 0.1)):
            self.refresh(since="last")

    # -- rendering -----------------------------------------------------------------------

    def _repair_options(self) -> dict[str, Any]:
        return {"grace_seconds": self.parts.grace.value, "mark_lost": self.parts.mark_lost.value}

    def _pending(self) -> bool:
        return self.plan is not None and not self.plan.applied and bool(self.plan.actions)

    def _render_report(self) -> None:
        report, parts = self.report, self.parts
        verdict = "consistent" if report.is_consistent else "NOT consistent"
        checked = report.checked_at.strftime("%H:%M:%S")
        mode = "deep" if report.deep else "sizes"
        if report.since is not None:
            mode += f", changes since {report.since:%H:%M:%S}"
        mark = "&#10004;" if report.is_consistent else "&#10008;"
        parts.status.value = (
            toned(f"<b>{mark} storage and database are {verdict}</b>", _tone(report))
            + f" &middot; {esc(report.storage)} &middot; checked {checked} UTC ({mode})"
        )
        if report.not_looked_for:  # incremental: strays written outside lamin_nb not looked for
            note = esc(report.not_looked_for)
            parts.status.value += f'<br><span class="lamin-note">{note}</span>'
        toggle_class(parts.status, "lamin-consistent", report.is_consistent)
        toggle_class(parts.status, "lamin-inconsistent", not report.is_consistent)
        counts = [("ok", report.n_ok)] + [(n, report.count(n)) for n, _ in CATEGORIES]
        parts.counts.value = " &middot; ".join(
            f'<span class="lamin-count lamin-count-{n}">{n}: {c}</span>' for n, c in counts
        )
        parts.details.titles = tuple(
            f"{title} ({len(getattr(report, n))})" for n, title in CATEGORIES
        )
        for (name, _), html_widget in zip(CATEGORIES, parts.lists, strict=True):
            html_widget.value = _entries_html(getattr(report, name))
        parts.error.value = toned(esc(self.error or ""), "error")
        set_visible(parts.error, self.error is not None)
        self.republish()  # what a saved notebook shows: the last check, not the first

    def _render_plan(self, note: str) -> None:
        parts, plan = self.parts, self.plan
        if plan is None:
            parts.plan.value = ""
        else:
            parts.plan.value = (
                f"<b>{esc(plan.summary())}</b>"
                + (f"<br>{toned(f'<i>{esc(note)}</i>', 'warn')}" if note else "")
                + f'<pre style="{PLAN_TEXT}">{esc(_plan_lines(plan))}</pre>'
            )
        set_visible(parts.plan, plan is not None)
        set_visible(parts.confirm_button, self._pending())
        set_visible(parts.cancel_button, self._pending())
        self.republish()

    def __repr__(self) -> str:
        lines = [repr(self.report)]
        if self.uploads.uploads or self.uploads.message:
            lines.append(repr(self.uploads))
        if self.error:
            lines.append(self.error)
        if self.plan is not None:
            lines.append(repr(self.plan))
        if self.auto_refreshing:
            lines.append(f"auto-refresh every {self.parts.interval.value:g} s")
        return "\n".join(lines)


class _Parts:
    """The panel's widgets, built in one place so the panel's logic stays readable."""

    def __init__(self, interval: float, grace: int, mark_lost: bool) -> None:
        self.status, self.counts, self.error, self.plan = w.HTML(), w.HTML(), w.HTML(), w.HTML()
        self.lists = [w.HTML() for _ in CATEGORIES]
        self.details = w.Accordion(self.lists, selected_index=None)
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.auto_toggle = w.ToggleButton(value=False, description="auto-refresh", icon="clock-o")
        self.interval = w.BoundedFloatText(
            value=interval,
            min=0.2,
            max=3600,
            step=1,
            description="every (s)",
            layout=w.Layout(width="150px"),
        )
        self.repair_button = w.Button(
            description="Repair...", icon="wrench", button_style="warning"
        )
        self.grace = w.BoundedIntText(
            value=grace, min=0, max=10**9, description="grace (s)", layout=w.Layout(width="170px")
        )
        self.mark_lost = w.Checkbox(
            value=mark_lost, description="mark missing as lost", indent=False
        )
        self.confirm_button = w.Button(description="Confirm repair", button_style="danger")
        self.cancel_button = w.Button(description="Cancel")
        for widget, name in (
            (self.status, "lamin-consistency-status"),
            (self.counts, "lamin-consistency-counts"),
            (self.details, "lamin-consistency-details"),
            (self.refresh_button, "lamin-refresh-button"),
            (self.auto_toggle, "lamin-autorefresh-toggle"),
            (self.interval, "lamin-refresh-interval"),
            (self.repair_button, "lamin-repair-button"),
            (self.grace, "lamin-repair-grace"),
            (self.mark_lost, "lamin-repair-mark-lost"),
            (self.plan, "lamin-repair-plan"),
            (self.confirm_button, "lamin-confirm-button"),
            (self.cancel_button, "lamin-cancel-button"),
            (self.error, "lamin-consistency-error"),
        ):
            widget.add_class(name)
        for widget in (self.plan, self.confirm_button, self.cancel_button, self.error):
            set_visible(widget, False)

    def children(self) -> list[Any]:
        return [
            self.status,
            self.counts,
            self.details,
            w.HBox([self.refresh_button, self.auto_toggle, self.interval]),
            w.HBox([self.repair_button, self.grace, self.mark_lost]),
            self.plan,
            w.HBox([self.confirm_button, self.cancel_button]),
            self.error,
        ]


def _entries_html(entries: list[Any]) -> str:
    if not entries:
        return "<i>none</i>"
    rows = [f'<tr class="lamin-entry">{_entry_cells(e)}</tr>' for e in entries[:MAX_LISTED]]
    if len(entries) > MAX_LISTED:
        rows.append(f"<tr><td colspan=4>... and {len(entries) - MAX_LISTED} more</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _entry_cells(entry: Any) -> str:
    """One row of a list: what it is, where it is, and what is wrong with it."""
    kind = type(entry).__name__
    if kind == "Orphan":
        cells = [entry.name, human_size(entry.size), f"{human_age(entry.age_seconds)} old", ""]
    elif kind == "Mismatch":
        cells = [
            entry.key or entry.uid,
            entry.name,
            f"{entry.kind} mismatch",
            f"expected {entry.expected}, found {entry.actual}",
        ]
    elif kind == "InFlight":
        state = (
            "owner not alive: repair finishes it"
            if getattr(entry, "owner_alive", None) is False
            else "lease expired: repair finishes it"
            if entry.expired
            else "in flight"
        )
        cells = [
            entry.key or entry.uid,
            entry.name,
            f"age {human_age(entry.age_seconds)}, {state}",
            f"owner {entry.owner}",
        ]
    else:
        cells = [entry.key or entry.uid, entry.name, entry.detail, ""]
    return "".join(f"<td>{esc(c)}</td>" for c in cells)


def _plan_lines(plan: RepairPlan) -> str:
    lines = [
        f"{a.kind}: {a.target} {a.detail}"
        + (f" -> error: {a.error}" if a.error else " -> done" if a.done else "")
        for a in plan.actions[:MAX_LISTED]
    ]
    lines += [f"left alone: {a.kind}: {a.target} {a.detail}" for a in plan.skipped[:MAX_LISTED]]
    if plan.skipped and not plan.applied:
        lines.append(LEFT_ALONE_HINT)
    return "\n".join(lines) or "nothing to do"


def _tone(report: ConsistencyReport) -> Tone:
    """Green when consistent; red when an object is missing, orphaned or mismatched; orange
    when the only findings are stuck rows that ``repair`` finishes."""
    if report.is_consistent:
        return "ok"
    return "error" if report.missing or report.orphans or report.mismatched else "warn"


def _targets(plan: RepairPlan) -> set[tuple[str, str]]:
    return {(a.kind, a.target) for a in plan.actions}
