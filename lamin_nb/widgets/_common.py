"""Small helpers shared by the widgets: HTML escaping, sizes, ages, full text reprs."""

from __future__ import annotations

import html
import sys
from typing import Any

from ..core.callbacks import human_size

__all__ = [
    "TextRepr",
    "age",
    "esc",
    "human_size",
    "in_kernel",
    "set_visible",
    "toggle_class",
]


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where widgets render), False in a terminal or a script.

    Checked like ``tqdm.autonotebook``: never imports IPython if nothing else did.
    """
    if "ipykernel.zmqshell" not in sys.modules or "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def age(seconds: float) -> str:
    """'12 s', '3 min', '2.5 h', '4 d': readable at a glance in a table cell."""
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def set_visible(widget: Any, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


def toggle_class(widget: Any, name: str, on: bool) -> None:
    if on and name not in widget._dom_classes:
        widget.add_class(name)
    elif not on and name in widget._dom_classes:
        widget.remove_class(name)


class TextRepr:
    """Mixin for widgets: ``text/plain`` carries the whole text repr.

    ipywidgets cuts ``text/plain`` at 110 characters; executed notebooks and logs should keep
    the full summary (tqdm's notebook bar does the same).
    """

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if data is not None:
            data["text/plain"] = repr(self)
        return data
