"""Directory listings in name order with flat memory (what ``ln.check``'s merge consumes).

Names are compared as S3 compares keys (UTF-8 bytes, which is Python's code point order), over
the whole relative path: a sub-folder ``d`` sorts as ``d/``, so a walk that visits each folder's
entries in that order yields full paths in order. A folder with more entries than ``RUN`` is
sorted in runs that spill to an anonymous temporary file and are merged back, so a flat managed
folder of millions of objects never sits in memory at once.
"""

from __future__ import annotations

import heapq
import os
import tempfile
from collections.abc import Iterator
from typing import IO

RUN = 50_000  # entries sorted in memory at once
READ = 1 << 16
SEP = b"\0"  # a file name never contains NUL


def sorted_entries(folder: str) -> Iterator[str]:
    """The entries of ``folder`` in name order; sub-folders end with ``/``.

    Parameters
    ----------
    folder : str
        A local directory; a missing one has no entries.

    Yields
    ------
    str
        Entry names (not paths), sub-folders with a trailing ``/``.
    """
    runs: list[IO[bytes]] = []
    chunk: list[str] = []
    try:
        with os.scandir(folder) as found:
            for entry in found:
                is_dir = entry.is_dir(follow_symlinks=False)
                chunk.append(entry.name + "/" if is_dir else entry.name)
                if len(chunk) >= RUN:
                    runs.append(_spill(sorted(chunk)))
                    chunk = []
    except FileNotFoundError:
        pass
    chunk.sort()
    if not runs:
        yield from chunk
        return
    try:
        yield from heapq.merge(chunk, *(_read_run(run) for run in runs))
    finally:
        for run in runs:
            run.close()


def _spill(names: list[str]) -> IO[bytes]:
    run = tempfile.TemporaryFile()
    run.write(SEP.join(os.fsencode(name) for name in names))
    run.seek(0)
    return run


def _read_run(run: IO[bytes]) -> Iterator[str]:
    rest = b""
    while block := run.read(READ):
        parts = (rest + block).split(SEP)
        rest = parts.pop()
        for part in parts:
            yield os.fsdecode(part)
    if rest:
        yield os.fsdecode(rest)
