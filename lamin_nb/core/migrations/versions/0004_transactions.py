"""Transactions (DESIGN §10): a marker row per committed ``ln.transaction()``, written in the
same commit as its rows, so a commit whose reply was lost is resolved by reading it back.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lamin_transaction",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("committed_at", sa.DateTime(), nullable=False),
        sa.Column("n_saved", sa.Integer(), nullable=False),
        sa.Column("n_deleted", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lamin_transaction")
