"""Which pending rows are interrupted uploads that a later save may still resume (DESIGN §9).

Recovery (on connect), ``check`` and ``repair`` leave such a row alone until it is older than
the grace period; this rule lives here, below all of them.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from .models import PENDING, utcnow

GRACE_ENV = "LAMIN_NB_RESUME_GRACE_SECONDS"
DEFAULT_GRACE = 3600.0  # as long as ln.repair's default grace


def grace_seconds() -> float:
    """How long an interrupted upload is kept for a later save to resume, unless
    ``ln.repair(grace_seconds=...)`` says otherwise."""
    try:
        return float(os.environ.get(GRACE_ENV, "") or DEFAULT_GRACE)
    except ValueError:
        return DEFAULT_GRACE


def last_activity(row: Any) -> datetime:
    """When the upload last recorded a part (or started)."""
    when: datetime = row.updated_at or row.transfer_started_at or row.created_at
    return when


def is_resumable(row: Any, grace: float | None = None, now: datetime | None = None) -> bool:
    """A pending row whose upload was journaled and is younger than the grace period (its
    last recorded part counts)."""
    if row.status != PENDING or not getattr(row, "transfer_id", None):
        return False
    grace = grace_seconds() if grace is None else grace
    return ((now or utcnow()) - last_activity(row)).total_seconds() < grace
