"""Small helpers shared by the widgets: HTML escaping, sizes, ages, status colours, and the
text repr that a saved notebook keeps (re-published when a panel reaches its final state)."""

from __future__ import annotations

import html
import logging
import sys
from typing import Any, Literal

from ..core.units import human_age, human_size

__all__ = [
    "TextRepr",
    "Tone",
    "toned",
    "human_age",
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


Tone = Literal["error", "warn", "ok"]
# JupyterLab's theme variables, so a status reads at a glance in the light and the dark theme;
# the fallbacks (Lab's light values) serve front ends without them
TONE_COLOR: dict[str, str] = {
    "error": "var(--jp-error-color1, #d32f2f)",
    "warn": "var(--jp-warn-color1, #f57c00)",
    "ok": "var(--jp-success-color1, #388e3c)",
}


def toned(markup: str, tone: Tone | None) -> str:
    """``markup`` (already escaped) coloured as an error, a warning or a success."""
    if tone is None:
        return markup
    return f'<span class="lamin-tone-{tone}" style="color: {TONE_COLOR[tone]}">{markup}</span>'


def set_visible(widget: Any, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


def toggle_class(widget: Any, name: str, on: bool) -> None:
    if on and name not in widget._dom_classes:
        widget.add_class(name)
    elif not on and name in widget._dom_classes:
        widget.remove_class(name)


class TextRepr:
    """Mixin for widgets: ``text/plain`` is the whole text repr, and it is kept up to date.

    ipywidgets cuts ``text/plain`` at 110 characters and fixes it at display time; a saved
    notebook (GitHub, nbviewer, nbconvert without widget state, a text diff) would show
    "waiting to start" next to a finished save. So every display gets a display id, and
    ``republish()`` (called when a panel reaches a final state) replaces the saved bundle.
    """

    _lamin_handles: list[Any] | None = None
    _lamin_published: str | None = None

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if data is not None:
            data["text/plain"] = repr(self)
        return data

    def _ipython_display_(self) -> None:
        from IPython.display import display

        bundle = self._repr_mimebundle_()
        if bundle is None:
            return
        if not in_kernel():  # a terminal shows text once; there is nothing to update later
            display(bundle, raw=True)
            return
        handle = display(bundle, raw=True, display_id=True)
        self._lamin_handles = [*(self._lamin_handles or []), handle]
        self._lamin_published = bundle["text/plain"]

    def republish(self) -> None:
        """Send the current state to every display of this widget, if its text changed."""
        if not self._lamin_handles:
            return
        try:
            bundle = self._repr_mimebundle_()
            if bundle is None or bundle["text/plain"] == self._lamin_published:
                return
            self._lamin_published = bundle["text/plain"]
            for handle in self._lamin_handles:
                handle.update(bundle, raw=True)
        except Exception:  # noqa: BLE001 - a display problem must never fail a save or repair
            logging.getLogger("lamin_nb").warning("could not update a display", exc_info=True)
