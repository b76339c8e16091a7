"""One render thread per process for every running SaveProgress.

Starting (and joining) a thread per save costs scheduler round trips that show up in the wall
time of short saves on a busy machine; one daemon thread, idle while nothing is registered,
does not. Panels register in ``start`` and unregister in ``finish``; the final render happens
on the caller's thread, so nobody ever waits for this one.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Ticking(Protocol):
    interval: float

    def _tick(self) -> None: ...


class Ticker:
    def __init__(self) -> None:
        self._panels: dict[Ticking, float] = {}  # panel -> when it was last ticked
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, panel: Ticking) -> None:
        with self._wake:
            self._panels[panel] = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="lamin-nb-progress", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def remove(self, panel: Ticking) -> None:
        with self._wake:
            self._panels.pop(panel, None)

    def __contains__(self, panel: Ticking) -> bool:
        return panel in self._panels

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._panels:
                    self._wake.wait()
                now = time.monotonic()
                due = [p for p, last in self._panels.items() if now - last >= p.interval]
                for panel in due:
                    self._panels[panel] = now
            for panel in due:
                panel._tick()
            with self._wake:  # sleep until the next panel is due, or a new one arrives
                now = time.monotonic()
                wait = min(
                    (last + p.interval - now for p, last in self._panels.items()), default=0.0
                )
                if wait > 0:
                    self._wake.wait(wait)


TICKER = Ticker()
