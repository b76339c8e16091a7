"""The schema's version and the names a connect reads before SQLAlchemy is imported.

``models.py`` (the SQLAlchemy models) re-exports these; ``db.py`` reads them to check an
instance's schema with one plain query.
"""

from __future__ import annotations

SCHEMA_VERSION = "0006"
ARTIFACT_TABLE = "lamin_artifact"

PENDING = "pending"
COMMITTED = "committed"
DELETING = "deleting"
LOST = "lost"
STATUSES = (PENDING, COMMITTED, DELETING, LOST)
UNFINISHED = (PENDING, DELETING)  # the rows recovery finishes
