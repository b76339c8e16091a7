"""Version families: each key's high-water mark, so a (uid, version) is issued only once, even
after the latest version was deleted permanently; indexes that make a save's look-ups of its
key independent of how many versions the key has.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    family = op.create_table(
        "lamin_family",
        sa.Column("key", sa.String(1024), primary_key=True),
        sa.Column("stem", sa.String(16), nullable=False),
        sa.Column("last_version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_lamin_artifact_key_version", "lamin_artifact", ["key", "version"])
    op.create_index("ix_lamin_artifact_key_latest", "lamin_artifact", ["key", "is_latest"])
    # every key seen so far, with its highest version and that version's uid stem
    conn = op.get_bind()
    found: dict[str, tuple[int, str]] = {}
    rows = conn.execute(
        sa.text("SELECT key, version, uid FROM lamin_artifact WHERE key IS NOT NULL")
    )
    for key, version, uid in rows:
        if key not in found or version > found[key][0]:
            found[key] = (version, uid[:16])
    if found:
        op.bulk_insert(
            family,
            [{"key": k, "stem": stem, "last_version": v} for k, (v, stem) in found.items()],
        )


def downgrade() -> None:
    op.drop_index("ix_lamin_artifact_key_latest", "lamin_artifact")
    op.drop_index("ix_lamin_artifact_key_version", "lamin_artifact")
    op.drop_table("lamin_family")
