"""The progress panel's Cancel button: an anywidget whose front end is ``cancel.js``.

A click asks the Jupyter server to interrupt this kernel (see ``cancel.js`` for why that and
not a widget message), so the running save gets a KeyboardInterrupt and undoes what is in
flight. ``requested`` arrives from the page once the cell has ended; the panel then discards
what the interrupt kept for a resume. The kernel's id comes from its connection file
(``kernel-<id>.json``, as jupyter_server names it); without one, the page hides the button.
"""

from __future__ import annotations

import re
from pathlib import Path

import anywidget
import traitlets as t

CONNECTION_FILE = re.compile(r"kernel-(?P<id>[0-9A-Za-z-]+)\.json")


def kernel_id() -> str:
    """This kernel's id for the Jupyter server's ``api/kernels/<id>``; empty if unknown."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:  # noqa: BLE001 - no kernel app (a script, a test): no Cancel button
        return ""
    found = CONNECTION_FILE.fullmatch(name)
    return found.group("id") if found else ""


class CancelButton(anywidget.AnyWidget):
    """Shown by the page while ``running``, where a Jupyter server manages this kernel."""

    _esm = Path(__file__).with_name("cancel.js")

    kernel_id = t.Unicode("").tag(sync=True)
    running = t.Bool(False).tag(sync=True)  # set by the panel between start and finish
    requested = t.Bool(False).tag(sync=True)  # set by the page on a click
    mode = t.Unicode("").tag(sync=True)  # the page: "interrupt" | "unavailable"

    def __init__(self) -> None:
        super().__init__(kernel_id=kernel_id())
        self.add_class("lamin-save-cancel-widget")
