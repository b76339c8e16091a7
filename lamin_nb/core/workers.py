"""Bounded parallelism that Ctrl-C stops cleanly, and lease renewal for a batch in flight.

``ThreadPoolExecutor`` is not used: a KeyboardInterrupt that lands inside ``submit`` (while it
waits for a new thread to start) leaves a running worker that ``shutdown`` never joins, so an
undo could run while that worker still uploads. Here every call in flight is counted under one
lock, and the caller returns only once the count is back to zero.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from . import rows
from .errors import describe

T = TypeVar("T")
logger = logging.getLogger("lamin_nb")


def run_parallel(
    items: Sequence[T], fn: Callable[[T], None], workers: int, stop: threading.Event
) -> None:
    """Call ``fn`` on each item, at most ``workers`` at a time; nothing new starts once ``stop``
    is set. If ``fn`` raises, or the caller is interrupted, ``stop`` is set, the calls in flight
    are waited for (they are expected to watch ``stop``) and the exception is re-raised."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            if stop.is_set():
                return
            fn(item)
        return
    batch = _Batch(items, fn, stop)
    try:
        if not batch.start_threads(min(workers, len(items))):
            batch.work()  # no thread could be started: do the work here
        batch.wait_all()
    except BaseException:
        batch.halt()
        raise
    if batch.error is not None:
        raise batch.error


class _Batch(Generic[T]):
    def __init__(self, items: Sequence[T], fn: Callable[[T], None], stop: threading.Event) -> None:
        self.todo = deque(items)
        self.fn = fn
        self.stop = stop
        self.cond = threading.Condition()
        self.in_flight = 0
        self.error: BaseException | None = None

    def start_threads(self, n: int) -> int:
        started = 0
        for _ in range(n):
            thread = threading.Thread(target=self.work, name="lamin-nb-worker", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # "can't start new thread": fewer workers will do
                break
            started += 1
        return started

    def work(self) -> None:
        while True:
            with self.cond:
                if self.stop.is_set() or not self.todo:
                    return
                item = self.todo.popleft()
                self.in_flight += 1
            try:
                self.fn(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                with self.cond:
                    self.error = self.error or exc
                self.stop.set()
            finally:
                with self.cond:
                    self.in_flight -= 1
                    if self.in_flight == 0 and (self.stop.is_set() or not self.todo):
                        self.cond.notify_all()

    def _idle(self) -> bool:
        return self.in_flight == 0 and (self.stop.is_set() or not self.todo)

    def wait_all(self) -> None:
        with self.cond:
            while not self._idle():
                self.cond.wait()

    def halt(self) -> None:
        """Stop handing out items and wait for the calls in flight, whatever interrupts us."""
        with self.cond:
            self.stop.set()
        while True:
            try:
                with self.cond:
                    while self.in_flight:
                        self.cond.wait()
                return
            except KeyboardInterrupt:  # a second Ctrl-C: the calls in flight end at their
                continue  # next progress tick, so waiting stays short


@contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Hold Ctrl-C back until the block ends (an undo must not be cut short by a second one).

    Yields the list of signals held; the caller decides what to raise afterwards. Only the main
    thread can install a handler; elsewhere (no signals arrive there anyway) nothing changes.
    """
    held: list[int] = []

    def hold(signum: int, _frame: Any) -> None:
        if not held:
            logger.warning("interrupt received: finishing the undo of this save first")
        held.append(signum)

    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield held
    finally:
        signal.signal(
            signal.SIGINT, previous if previous is not None else signal.default_int_handler
        )


def wait_for_writers(inst: Any, hashes: set[str], seconds: float, uids: Sequence[str] = ()) -> bool:
    """Poll until no live writer holds a pending row with one of ``hashes`` (or one of
    ``uids``: one-read uploads, which have no hash yet); False on timeout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
        with inst.db.read_rows() as session:
            found = [r for rs in rows.by_hashes(session, hashes).values() for r in rs]
            found += rows.by_uids(session, list(uids)).values()
        if not any(rows.in_flight(r) for r in found):
            return True
    return False


class LeaseKeeper:
    """Renews the leases of a batch in flight so a slow upload is never taken for a crash.

    One shared daemon thread serves every batch of the process: a thread per save would cost
    more than a small save itself.
    """

    _lock = threading.Lock()
    _active: dict[int, LeaseKeeper] = {}
    _thread: threading.Thread | None = None

    def __init__(self, inst: Any, owner: str, uids: Sequence[str]) -> None:
        self.inst, self.owner, self.uids = inst, owner, list(uids)
        self.due = time.monotonic() + _renew_interval()

    def __enter__(self) -> LeaseKeeper:
        cls = type(self)
        with cls._lock:
            cls._active[id(self)] = self
            if cls._thread is None or not cls._thread.is_alive():
                cls._thread = threading.Thread(
                    target=cls._serve, name="lamin-nb-lease", daemon=True
                )
                cls._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        with type(self)._lock:
            type(self)._active.pop(id(self), None)

    @classmethod
    def _serve(cls) -> None:
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            with cls._lock:
                due = [k for k in cls._active.values() if k.due <= now]
            for keeper in due:
                keeper.due = now + _renew_interval()
                keeper._renew()

    def _renew(self) -> None:
        try:
            with self.inst.db.write_rows() as session:
                rows.renew_leases(session, self.uids, self.owner)
        except Exception as exc:  # noqa: BLE001 - the next round or recovery copes
            logger.warning("could not renew upload leases: %s", describe(exc))


def _renew_interval() -> float:
    return max(rows.lease_seconds() / 3, 1.0)
