"""Resumable transfers (DESIGN §9): a pending row records its upload before the first part
moves (S3 upload id or local partial file, part size, source fingerprint) and how far it got.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = (
    ("transfer_id", sa.String(1024)),
    ("part_size", sa.BigInteger()),
    ("parts_done", sa.Integer()),
    ("bytes_done", sa.BigInteger()),
    ("source_path", sa.Text()),
    ("source_size", sa.BigInteger()),
    ("source_mtime_ns", sa.BigInteger()),
    ("transfer_started_at", sa.DateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("lamin_artifact") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lamin_artifact") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
