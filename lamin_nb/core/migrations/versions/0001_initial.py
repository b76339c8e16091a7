"""Initial schema: artifacts with their lifecycle state, and the instance identity.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lamin_instance",
        sa.Column("uid", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("storage_root", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "lamin_artifact",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(20), nullable=False, unique=True),
        sa.Column("key", sa.String(1024), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("suffix", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("hash", sa.String(64), nullable=True),
        sa.Column("hash_type", sa.String(16), nullable=True),
        sa.Column("otype", sa.String(32), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("storage", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("is_trashed", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_lamin_artifact_key", "lamin_artifact", ["key"])
    op.create_index("ix_lamin_artifact_hash", "lamin_artifact", ["hash"])
    op.create_index("ix_lamin_artifact_status", "lamin_artifact", ["status"])
    op.create_index(
        "ix_lamin_artifact_status_lease", "lamin_artifact", ["status", "lease_expires_at"]
    )


def downgrade() -> None:
    op.drop_table("lamin_artifact")
    op.drop_table("lamin_instance")
