"""Small helpers shared by the widgets: HTML escaping, sizes, ages, full text reprs."""

from __future__ import annotations

import html
from typing import Any

from ..core.callbacks import human_size

__all__ = ["TextRepr", "age", "esc", "human_size", "set_visible", "toggle_class"]


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def age(seconds: float) -> str:
    """'12 s', '3 min', '2.5 h', '4 d': the core's one age format (as in the repair plan)."""
    from ..core.callbacks import human_age

    return human_age(seconds)


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
