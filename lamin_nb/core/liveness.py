"""Who owns a file in the settings folder, and whether that owner still runs.

An owner is ``<pid>-<start>@<host>``: the start time (clock ticks since boot, from
``/proc/<pid>/stat``) tells a live process from a later one that reuses its pid. On another
host nothing can be told, so the answer is ``None`` there.
"""

from __future__ import annotations

import os
import re
import socket

_TOKEN = re.compile(r"(?P<pid>\d+)-(?P<start>\d+|x)@(?P<host>[^/]+)")


def process_start(pid: int) -> str | None:
    """The start time of ``pid`` (a string of clock ticks), or None if it does not run."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (not Linux): the pid alone has to do
        return "x" if _pid_exists(pid) else None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def host() -> str:
    return socket.gethostname()[:80]


def this_process() -> str:
    pid = os.getpid()
    return f"{pid}-{process_start(pid) or 'x'}@{host()}"


def is_alive(token: str) -> bool | None:
    """True/False for an owner on this host; None when it cannot be told (another host, or
    not an owner token)."""
    match = _TOKEN.fullmatch(token)
    if match is None or match["host"] != host():
        return None
    start = process_start(int(match["pid"]))
    if start is None:
        return False
    return match["start"] == "x" or start == "x" or start == match["start"]
