"""Fault points for crash tests: ``LAMIN_NB_FAULT=point[:action]`` (action kill|raise|stop;
``stop`` freezes the process with SIGSTOP: a live writer that makes no progress).

Read once at import; when unset, ``fault()`` is a dictionary miss and nothing else.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "after_reserve",
    "mid_upload",
    "after_upload",
    "before_commit",
    "after_commit",
    "mid_delete",
    "after_object_delete",
    "tx_end",  # a transaction's block ended normally; its commit has not started
    "tx_before_commit",  # a transaction's row changes are written, its COMMIT not yet sent
    "tx_after_commit",  # committed; the objects of its permanent deletes not yet deleted
)


class InjectedFault(RuntimeError):
    """Raised at a fault point switched on with the ``raise`` action."""


def _parse(spec: str | None) -> dict[str, str]:
    table: dict[str, str] = {}
    for part in (spec or "").split(","):
        if part.strip():
            point, _, action = part.strip().partition(":")
            table[point] = action or "kill"
    return table


_ACTIVE: dict[str, str] = _parse(os.environ.get("LAMIN_NB_FAULT"))


def configure(spec: str | None) -> None:
    """Switch fault points on (or off with ``None``) inside a running process."""
    _ACTIVE.clear()
    _ACTIVE.update(_parse(spec))


def fault(point: str) -> None:
    action = _ACTIVE.get(point)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    raise InjectedFault(f"injected fault at {point}")
