"""What the work below the instance needs of it: a name, a database and a storage.

Recovery (run on every connect) and adopt (run by ``init(adopt=True)``) act on rows and
objects only; typed by this Protocol they sit below ``instance.py``, which calls them, and an
``Instance`` is passed as is.
"""

from __future__ import annotations

from typing import Protocol

from .db import Database
from .storage import Storage


class Resources(Protocol):
    """An instance's database and storage (``Instance`` is one)."""

    db: Database
    storage: Storage

    @property
    def name(self) -> str: ...
