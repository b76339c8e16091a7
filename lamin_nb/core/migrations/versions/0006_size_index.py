"""One read for large new content (DESIGN §9): an index on ``size``.

A save decides, for each large file, whether to hash it while it is written (one read) or
first (today's path, which deduplicates before anything is sent): it hashes first only when
some row already has the same size. That look-up runs on every save of a large file, so it
must not scan the table.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_lamin_artifact_size", "lamin_artifact", ["size"])


def downgrade() -> None:
    op.drop_index("ix_lamin_artifact_size", "lamin_artifact")
