"""Jupyter integration: the IPython extension (magics), kernel detection, the server extension.

Nothing here imports IPython, ipywidgets or jupyter_server at module level: ``%load_ext
lamin_nb`` imports the magics only when it runs, and the server extension lives in
``lamin_nb.jupyter.server``.
"""

from __future__ import annotations

from typing import Any

from ..widgets._common import in_kernel

__all__ = ["in_kernel", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%lamin_init``, ``%lamin_save`` and friends on ``ipython``."""
    from .magics import LaminMagics

    ipython.register_magics(LaminMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Nothing to undo: the magics hold no state between calls."""
