"""The buttons under a ``SaveProgress``: Cancel while it runs, Retry failed after it.

The core decides (``SaveReport.cancelled``, ``cancel_summary``, ``failed_records``,
``retry_failed``, ``transfers.discard_cancelled``); this module only wires the buttons to it
and renders the lines it returns.

- Cancel (``CancelButton``): the page interrupts the kernel through the Jupyter server, the
  save undoes what is in flight; once the cell has ended the click's widget message arrives
  and the uploads the interrupt kept for a resume are discarded. The panel's summary then
  says "cancelled: nothing saved" (or what was kept, committed before the cancel).
- Retry failed: the kernel is idle after a save, so a click is an ordinary widget message. It
  saves ``report.failed_records()`` again into a new panel below, which has its own buttons.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from ..core.errors import LaminNbError, describe
from ._common import esc, set_visible, toned

if TYPE_CHECKING:
    from ..core.report import SaveReport
    from .progress import SaveProgress

logger = logging.getLogger("lamin_nb")


class PanelActions:
    """Cancel, Retry failed, the outcome line and the retries of one panel."""

    def __init__(self, panel: SaveProgress) -> None:
        from .cancel import CancelButton

        self.panel = panel
        self.cancel = CancelButton()
        self.retry = w.Button(description="Retry failed", button_style="warning", icon="redo")
        self.outcome = w.HTML()
        self.retries = w.VBox()
        self.box = w.HBox([self.cancel, self.retry, self.outcome])
        for widget, name in (
            (self.box, "lamin-save-actions"),
            (self.retry, "lamin-retry-button"),
            (self.outcome, "lamin-save-outcome"),
            (self.retries, "lamin-save-retries"),
        ):
            widget.add_class(name)
        self.retry.on_click(lambda _: self.retry_failed())
        self.cancel.observe(self._cancel_requested, names="requested")
        self.discarded: tuple[int, int] | None = None  # (uploads, bytes) a cancel discarded
        self.stop_pending = False  # read by the panel's next progress event
        self.problem = ""  # what went wrong in a discard or a retry
        self._lines: list[str] = []
        self._show_retry(False)
        set_visible(self.outcome, False)

    # -- the panel's life -----------------------------------------------------------------

    def started(self) -> None:
        self.cancel.requested = False  # a reused panel: a click belongs to one save
        self.stop_pending = False
        self.cancel.running = True
        self.discarded, self.problem, self._lines = None, "", []
        self._show_retry(False)
        set_visible(self.outcome, False)

    def finished(self, report: SaveReport) -> None:
        self.cancel.running = False
        self.stop_pending = False
        if self.cancel.requested:  # the click arrived before the end (a save off the shell)
            self._discard(report)
        self._show(report)

    def _cancel_requested(self, change: dict[str, Any]) -> None:
        """The click's widget message: read once the cell has ended (the shell was busy).

        If the save still runs then, it runs off the shell thread (a thread of the user's),
        where the interrupt did not reach it: the panel's next progress event raises
        KeyboardInterrupt, which stops a save like Ctrl-C (the progress protocol's rule).
        """
        report = self.panel.report
        if change["new"] and self.panel.running:
            self.stop_pending = True
            return  # finished() discards what the stop kept
        if not change["new"] or report is None:
            return
        self._discard(report)
        self._show(report)
        self.panel._render()  # the summary becomes the cancel's
        self.panel.republish()

    def _discard(self, report: SaveReport) -> None:
        from ..core.transfers import discard_cancelled

        if self.discarded is not None:
            return
        try:
            self.discarded = discard_cancelled(report)
        except Exception as exc:  # noqa: BLE001 - shown; ln.uploads() still lists them
            self.discarded = (0, 0)
            self.problem = f"could not discard the interrupted uploads: {describe(exc)}"

    # -- Retry failed -----------------------------------------------------------------

    def retry_failed(self) -> SaveProgress | None:
        """Save the failed items again into a new panel below; returns that panel."""
        from ..core.save import retry_failed
        from .progress import SaveProgress

        report = self.panel.report
        if report is None or not report.failed_records() or self.retries.children:
            return None  # a second click queued behind the first one's retry: done already
        self._show_retry(False)  # one retry per panel; the new panel offers the next one
        child = SaveProgress(title="retrying the failed items", max_rows=self.panel.max_rows)
        self.retries.children += (child,)
        try:
            retry_failed(report, callback=child)
        except KeyboardInterrupt:
            pass  # cancelled: its panel says so, the undo is done
        except LaminNbError:
            pass  # its panel shows the failure and its own Retry button
        except Exception as exc:  # noqa: BLE001 - a click handler has no caller to raise to
            self.problem = f"retry failed: {describe(exc)}"
            logger.warning("%s", self.problem)
        self._show(report)
        self.panel.republish()
        return child

    # -- rendering --------------------------------------------------------------------

    def headline(self) -> str:
        """The panel's summary once the Cancel button's message was read: the core's "cancelled:
        nothing saved" (or what was kept); empty otherwise (Ctrl-C keeps the usual summary, which
        says the parts of a large upload are kept for a resume)."""
        report = self.panel.report
        if report is None or self.discarded is None or not report.cancelled:
            return ""
        return report.cancel_summary(discarded=self.discarded[0])

    def _show(self, report: SaveReport) -> None:
        lines = []
        if self.cancel.requested and not report.cancelled:
            lines.append("too late to cancel: the save had already ended")
        if self.headline() and getattr(self.panel, "outcome", None) is not None:
            lines.append(self.headline())  # a transaction's line ("rolled back") owns the header
        if self.problem:
            lines.append(self.problem)
        self._lines = lines
        self.outcome.value = "<br>".join(
            toned(esc(line), "error" if line == self.problem else None) for line in lines
        )
        set_visible(self.outcome, bool(lines))
        n = len(report.failed_records())
        self.retry.description = f"Retry failed ({n})"
        self._show_retry(n > 0 and not self.retries.children)

    def _show_retry(self, visible: bool) -> None:
        set_visible(self.retry, visible)
        self.retry.disabled = not visible

    def text_lines(self) -> list[str]:
        """The outcome, the retry command for text output, and each retry's text, indented."""
        lines = list(self._lines)
        report = self.panel.report
        if report is not None and not self.retries.children and report.retry_hint():
            lines.append(report.retry_hint())
        for child in self.retries.children:
            lines += ["  " + line for line in repr(child).splitlines()]
        return lines
