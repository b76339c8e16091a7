"""Who holds a reservation, and whether that writer can still be alive.

A pending or deleting row names its owner: ``host:pid:start:run``. ``start`` identifies the
process beyond its pid (boot id, pid namespace and the kernel's start time of the process), so
a pid reused by another process never passes for the writer; ``run`` names one save, delete or
recovery inside that process. Recovery prefixes the owner with ``recovery:``.

From that string a process can tell, at once and without waiting for a lease:
- a writer on this host whose process is gone (or whose pid now belongs to someone else) is
  dead;
- a run of this very process that is no longer running (an undo cut short, a database that was
  unreachable during cleanup) has abandoned its rows;
- anything else (another host, another pid namespace, an owner written by an older version)
  is unknown, and its lease decides.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

RECOVERY = "recovery"
HOST_CHARS = 56  # owner is String(128): host + pid + start + run + "recovery:" stay below


class Liveness(str, Enum):
    ALIVE = "alive"
    DEAD = "not alive"
    UNKNOWN = "unknown"  # another host: its lease decides


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    start: str  # "" for owners written before process identities were recorded
    run: str
    recovery: bool = False

    def __str__(self) -> str:
        text = f"{self.host}:{self.pid}:{self.start}:{self.run}"
        return f"{RECOVERY}:{text}" if self.recovery else text

    @property
    def where(self) -> str:
        """How a person names this writer: 'process 1234 on host-x'."""
        return f"process {self.pid} on {self.host}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _machine() -> str:
    """This kernel's boot and pid namespace: a pid means the same process only within them."""
    boot = _read("/proc/sys/kernel/random/boot_id").replace("-", "")[:8]
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        namespace = ""
    return f"{boot}-{namespace}"


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot); None if there is no such
    process; "" where /proc does not tell (then only existence is known)."""
    raw = _read(f"/proc/{pid}/stat")
    if raw:
        fields = raw[raw.rindex(")") + 2 :].split()
        return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has exited
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # exists, owned by someone else
    return "" if not Path("/proc/self/stat").exists() else None


_HOST = socket.gethostname()[:HOST_CHARS].replace(":", "_") or "localhost"
_identity: tuple[int, str] | None = None  # (pid, start) of this process; a fork gets its own
_live: set[str] = set()
_lock = threading.Lock()


def _this_start() -> str:
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{_machine()}-{process_start(pid) or ''}")
    return _identity[1]


def new_owner(recovery: bool = False) -> Owner:
    return Owner(_HOST, os.getpid(), _this_start(), secrets.token_hex(4), recovery)


def process_owner() -> str:
    """This process as an owner without a run: names what lives as long as the process does
    (its staging folder)."""
    return str(Owner(_HOST, os.getpid(), _this_start(), ""))


@contextmanager
def running(owner: Owner | None = None, recovery: bool = False) -> Iterator[str]:
    """Hold an owner name for the duration of one save, delete or recovery.

    Rows this process reserved under a name that is no longer held are abandoned: the process
    itself (and ``ln.check``) recognises them at once.
    """
    name = str(owner or new_owner(recovery))
    with _lock:
        _live.add(name)
    try:
        yield name
    finally:
        with _lock:
            _live.discard(name)


def parse(owner: str | None) -> Owner | None:
    """The parts of an owner string; old forms (``host:pid``, ``recovery:token:host:pid``)
    parse with an empty ``start``; anything else is None."""
    if not owner:
        return None
    parts = owner.split(":")
    recovery = parts[0] == RECOVERY
    if recovery:
        parts = parts[1:]
        if len(parts) == 3:  # the old recovery form: token, host, pid
            parts = [parts[1], parts[2], "", parts[0]]
    if len(parts) == 2:
        parts = [parts[0], parts[1], "", ""]
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return Owner(parts[0], int(parts[1]), parts[2], parts[3], recovery)


def liveness(owner: str | None) -> Liveness:
    """Whether the writer named ``owner`` can still be working on its rows."""
    who = parse(owner)
    if who is None or who.host != _HOST:
        return Liveness.UNKNOWN
    this = _this_start()
    machine = this.rsplit("-", 1)[0]
    if who.start and not who.start.startswith(machine + "-"):
        return Liveness.UNKNOWN  # another boot or pid namespace under the same host name
    if who.pid == os.getpid() and who.start == this:
        if not who.run:  # the process itself, not one of its runs
            return Liveness.ALIVE
        with _lock:
            return Liveness.ALIVE if owner in _live else Liveness.DEAD
    started = process_start(who.pid)
    if started is None:
        return Liveness.DEAD
    if not who.start or not started:
        return Liveness.UNKNOWN  # an old owner, or no /proc: the pid may have been reused
    return Liveness.ALIVE if who.start == f"{machine}-{started}" else Liveness.DEAD


def is_dead(owner: str | None) -> bool:
    return liveness(owner) is Liveness.DEAD


def describe_owner(owner: str | None) -> str:
    who = parse(owner)
    return who.where if who is not None else f"writer {owner!r}"
