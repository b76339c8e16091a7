"""Sizes and ages as people read them; every display (text, widgets, the REST API) uses these."""

from __future__ import annotations

from typing import Any

__all__ = ["human_age", "human_size"]


def human_size(n: Any) -> str:
    """'512 B', '4.0 KiB', '1.2 GiB'."""
    size = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def human_age(seconds: float) -> str:
    """'12 s', '3 min', '2.5 h', '2.0 d': readable at a glance in a list or a repair plan."""
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
