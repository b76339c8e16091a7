"""Notebook widgets (ipywidgets 8) that render the core's data objects; no business logic here.

    from lamin_nb.widgets import SaveProgress, UploadWidget, ConsistencyPanel

- ``SaveProgress``: a ``SaveCallback``; pass it as ``callback=`` to ``ln.save`` /
  ``Artifact.save``. An overall bar and one row per item (name, size, bar, state: queued,
  hashing, uploading n/N, committing, saved, deduplicated, failed: reason, rolled back).
  Failed rows stay red. Updates are rendered by one thread at most ten times a second.
  Above ``max_rows`` (20) items only active and failed rows are shown, plus a "finished" list.
  Under the rows: **Cancel** while the save runs (``cancel.js``: the page asks the Jupyter
  server to interrupt this kernel; hidden where no server manages the kernel) and, after a
  save with failed items, **Retry failed** (``report.failed_records()`` saved again into a
  new panel below, which has its own buttons). A cancel's summary is the core's
  ``report.cancel_summary()``: "cancelled: nothing saved" or what was kept.
- ``UploadWidget``: pick files, set a key prefix and a description, click Save; the files are
  saved through ``ln.save`` with a ``SaveProgress`` below. Keys are ``<prefix>/<file name>``
  (or the file name); each file is atomic on its own ("all or nothing" makes the batch so).
- ``ConsistencyPanel``: counts and lists from ``ln.check()``, a refresh button, auto-refresh
  (a daemon thread; stop it with the toggle, ``panel.stop_auto_refresh()``, ``panel.close()``
  or ``ConsistencyPanel.stop_all()``), and Repair: the first click shows the dry-run plan,
  Confirm applies it. Repair leaves alone what is younger than "grace (s)" (default 3600: a
  writer may still be active) and rows whose object is missing unless "mark missing as lost"
  is ticked; set grace to 0 only when no other process is saving.
- ``UploadsPanel``: ``ln.uploads()`` (interrupted large uploads) with Resume (save the
  recorded source again: only the missing parts are sent) and Discard (abort it now).
- ``show_progress()``: the progress callback for where the code runs: a displayed
  ``SaveProgress`` in a kernel, ``TextProgress`` lines outside (or in a kernel where the widget
  cannot be built or shown), nothing when disabled. It never raises.

A ``SaveProgress`` always ends in a final state, whatever stopped the save: "nothing saved:
<reason>" with a full red bar for a validation error, an interrupt or a database that is down.

Every widget's ``repr`` is a readable text summary, and it is the ``text/plain`` of its
display: each display has a display id and is re-published when the panel reaches a final
state (a save ends, a check or repair finishes, an upload ends), so a saved notebook shows
the final state on GitHub, nbviewer, in nbconvert without widget state and in a text diff.

Status lines are coloured with JupyterLab's theme variables (``--jp-error-color1``,
``--jp-warn-color1``, ``--jp-success-color1``), so they read in the light and the dark theme.

Stable CSS classes (for browser tests and styling; ``widget.add_class`` puts them on the
widget's root DOM node, e.g. ``.lamin-save-progress .lamin-item-failed``):

Coloured text: ``lamin-tone-error``, ``lamin-tone-warn``, ``lamin-tone-ok`` (spans).

SaveProgress: ``lamin-save-progress`` (root; plus ``lamin-save-done`` once finished and
``lamin-save-failed`` when an item failed or nothing was saved), ``lamin-save-header``
(counts text), ``lamin-save-overall`` (overall bar; ``.progress-bar-success`` /
``-danger`` at the end),
``lamin-item-rows``, ``lamin-item-row`` (one row), ``lamin-item-name``, ``lamin-item-size``
(span in the name), ``lamin-item-bar``, ``lamin-item-state``, final states on the row:
``lamin-item-saved``, ``lamin-item-deduplicated``, ``lamin-item-already-saved``,
``lamin-item-failed``, ``lamin-item-rolled-back``. Large saves (more than ``max_rows``
items): ``lamin-active-rows`` (an HTML table whose ``<tr class="lamin-item-row
lamin-item-uploading">`` rows are the active items), ``lamin-failed-rows`` (widget rows as
above, red), ``lamin-finished`` (accordion), ``lamin-finished-list``, ``lamin-finished-item``.
Buttons: ``lamin-save-actions`` (their row), ``lamin-save-cancel`` (the Cancel widget; its
``data-mode`` is ``interrupt`` or ``unavailable``), ``lamin-save-cancel-button``,
``lamin-save-cancel-note``, ``lamin-retry-button``, ``lamin-save-outcome`` (a line under
the rows), ``lamin-save-retries`` (the panels of retries, each a ``lamin-save-progress``).

UploadWidget: ``lamin-upload-widget`` (root), ``lamin-upload-picker`` (FileUpload),
``lamin-upload-key``, ``lamin-upload-description``, ``lamin-upload-atomic``,
``lamin-save-button``, ``lamin-upload-status`` (plus ``lamin-status-ok`` / ``lamin-status-error``),
``lamin-upload-progress`` (holds the SaveProgress).

ConsistencyPanel: ``lamin-consistency-panel`` (root), ``lamin-consistency-status`` (plus
``lamin-consistent`` / ``lamin-inconsistent``), ``lamin-consistency-counts`` with spans
``lamin-count lamin-count-<ok|missing|orphans|mismatched|pending|deleting|lost>``,
``lamin-consistency-details`` (accordion), ``lamin-refresh-button``,
``lamin-autorefresh-toggle``, ``lamin-refresh-interval``, ``lamin-repair-button``,
``lamin-repair-grace``, ``lamin-repair-mark-lost``, ``lamin-repair-plan``,
``lamin-confirm-button``, ``lamin-cancel-button``, ``lamin-consistency-error``.

UploadsPanel: ``lamin-uploads-panel`` (root), ``lamin-upload-row``, ``lamin-upload-row-text``,
``lamin-resume-button``, ``lamin-discard-button``, ``lamin-uploads-status`` (plus
``lamin-status-error``), ``lamin-refresh-button``.
"""

from __future__ import annotations

import logging
import sys
from importlib import import_module
from typing import TYPE_CHECKING, Any, TextIO

from ..core.callbacks import NO_PROGRESS, SaveCallback, TextProgress
from ._common import in_kernel

if TYPE_CHECKING:
    from .consistency import ConsistencyPanel
    from .progress import SaveProgress
    from .upload import UploadWidget
    from .uploads import UploadsPanel

INSTALL_HINT = "the notebook widgets need ipywidgets and anywidget: pip install 'lamin_nb[jupyter]'"
_EXPORTS = {
    "SaveProgress": "progress",
    "UploadWidget": "upload",
    "ConsistencyPanel": "consistency",
    "UploadsPanel": "uploads",
}
__all__ = [
    "ConsistencyPanel",
    "SaveProgress",
    "UploadWidget",
    "UploadsPanel",
    "in_kernel",
    "show_progress",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lamin_nb.widgets' has no attribute {name!r}")
    try:
        value = getattr(import_module(f"{__name__}.{module}"), name)
    except ImportError as exc:
        if exc.name not in ("ipywidgets", "IPython", "anywidget"):
            raise
        raise ImportError(INSTALL_HINT) from exc
    globals()[name] = value
    return value


def show_progress(
    enabled: bool = True, title: str = "saving", stream: TextIO | None = None
) -> SaveCallback:
    """A progress callback already shown: the widget in a kernel, text lines elsewhere.

    Never raises: where the widget cannot be built or shown (a kernel without ipywidgets, a
    display that fails) the progress is printed as text, and the save goes on.
    """
    if not enabled:
        return NO_PROGRESS
    if in_kernel():
        try:
            return _shown_widget(title)
        except Exception as exc:  # noqa: BLE001 - a progress display never stops a save
            logging.getLogger("lamin_nb").warning(
                "progress shown as text (%s: %s)", type(exc).__name__, exc
            )
    return TextProgress(stream or sys.stdout)


def _shown_widget(title: str) -> SaveCallback:
    from IPython.display import display

    progress: SaveProgress = __getattr__("SaveProgress")(title=title)
    display(progress)
    return progress
