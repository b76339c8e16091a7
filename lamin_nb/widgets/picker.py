"""The UploadWidget's file picker: an anywidget whose front end is ``picker.js``.

In a page served by Jupyter with the lamin_nb server extension, picked files go to the server
in chunks (any size, progress, Cancel, resume after a reload) and ``staged`` lists them; the
kernel saves them from the Jupyter host's staging folder. Elsewhere files travel in one kernel
message into ``value`` (ipywidgets ``FileUpload``'s format, so the same code reads both), and
files above ``max_message_bytes`` are refused with a reason, which arrives in ``error``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets as t
from ipywidgets.widgets.trait_types import TypedTuple
from ipywidgets.widgets.widget_upload import _value_serialization

# jupyter_server's default for one websocket message (tornado's websocket_max_message_size);
# a larger message closes the kernel's connection and the file silently never arrives
KERNEL_MESSAGE_LIMIT = 10 * 2**20


class FilePicker(anywidget.AnyWidget):
    _esm = Path(__file__).with_name("picker.js")

    description = t.Unicode("Pick files").tag(sync=True)
    accept = t.Unicode("").tag(sync=True)
    multiple = t.Bool(True).tag(sync=True)
    # files that came through the kernel message (FileUpload's value: name, type, size, content)
    value = TypedTuple(t.Dict(), help="files sent in one kernel message").tag(
        sync=True, **_value_serialization
    )
    # files sent to the Jupyter server in chunks: id, name, size, received, state, path
    staged = t.List(t.Dict()).tag(sync=True)
    mode = t.Unicode("").tag(sync=True)  # "chunked" | "kernel", set by the page
    busy = t.Bool(False).tag(sync=True)  # chunks are moving
    error = t.Unicode("").tag(sync=True)  # a file the page refused, and why
    max_message_bytes = t.Int(KERNEL_MESSAGE_LIMIT).tag(sync=True)

    def complete(self) -> list[dict[str, Any]]:
        """Staged files whose every byte reached the server."""
        return [dict(e) for e in self.staged if e.get("state") == "complete"]

    def unfinished(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self.staged if e.get("state") == "receiving"]

    def forget(self, ids: set[str]) -> None:
        self.staged = [dict(e) for e in self.staged if e.get("id") not in ids]
