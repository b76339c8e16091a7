"""Scale (DESIGN §12): what a check and the status bar need at millions of rows.

- ``lamin_count``: row counts by state (``committed``, ``trashed``, ``pending``, ``deleting``,
  ``lost``), kept by triggers in the same transaction as each change, so the status bar reads
  five rows instead of counting the table.
- ``lamin_setting``: small values of the instance, e.g. when the last full check ran (what
  ``ln.check(since="last")`` looks back to).
- an index on ``updated_at`` (rows changed since a time) and, on PostgreSQL, one on ``uid`` in
  byte order (``COLLATE "C"``): the order in which storage lists object names, so the check's
  merge streams rows without a sort.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

KIND = "CASE WHEN {t}.status = 'committed' AND {t}.is_trashed THEN 'trashed' ELSE {t}.status END"

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER lamin_count_insert AFTER INSERT ON lamin_artifact BEGIN
        INSERT INTO lamin_count (kind, n) VALUES ({KIND.format(t="NEW")}, 1)
        ON CONFLICT (kind) DO UPDATE SET n = n + 1;
    END""",
    f"""CREATE TRIGGER lamin_count_delete AFTER DELETE ON lamin_artifact BEGIN
        UPDATE lamin_count SET n = n - 1 WHERE kind = {KIND.format(t="OLD")};
    END""",
    f"""CREATE TRIGGER lamin_count_update AFTER UPDATE OF status, is_trashed ON lamin_artifact
    WHEN {KIND.format(t="OLD")} <> {KIND.format(t="NEW")} BEGIN
        UPDATE lamin_count SET n = n - 1 WHERE kind = {KIND.format(t="OLD")};
        INSERT INTO lamin_count (kind, n) VALUES ({KIND.format(t="NEW")}, 1)
        ON CONFLICT (kind) DO UPDATE SET n = n + 1;
    END""",
]

# PostgreSQL: once per statement over its transition tables (a bulk insert of 100,000 rows
# updates each count once, not 100,000 times); kinds in a fixed order, so two writers never
# lock the count rows in opposite orders
PG_FUNCTION = f"""
CREATE FUNCTION lamin_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO lamin_count (kind, n)
        SELECT kind, count(*) FROM (SELECT {KIND.format(t="new_rows")} AS kind FROM new_rows) c
        GROUP BY kind ORDER BY kind
        ON CONFLICT (kind) DO UPDATE SET n = lamin_count.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO lamin_count (kind, n)
        SELECT kind, -count(*) FROM (SELECT {KIND.format(t="old_rows")} AS kind FROM old_rows) c
        GROUP BY kind ORDER BY kind
        ON CONFLICT (kind) DO UPDATE SET n = lamin_count.n + EXCLUDED.n;
    ELSE
        INSERT INTO lamin_count (kind, n)
        SELECT kind, sum(d) FROM (
            SELECT {KIND.format(t="new_rows")} AS kind, 1 AS d FROM new_rows
            UNION ALL
            SELECT {KIND.format(t="old_rows")} AS kind, -1 AS d FROM old_rows
        ) c
        GROUP BY kind HAVING sum(d) <> 0 ORDER BY kind
        ON CONFLICT (kind) DO UPDATE SET n = lamin_count.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$
"""
PG_TRIGGERS = [
    """CREATE TRIGGER lamin_count_insert AFTER INSERT ON lamin_artifact
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lamin_count_rows()""",
    """CREATE TRIGGER lamin_count_delete AFTER DELETE ON lamin_artifact
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION lamin_count_rows()""",
    """CREATE TRIGGER lamin_count_update AFTER UPDATE ON lamin_artifact
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION lamin_count_rows()""",
]


def upgrade() -> None:
    op.create_table(
        "lamin_count",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "lamin_setting",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_index("ix_lamin_artifact_updated_at", "lamin_artifact", ["updated_at"])
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute('CREATE INDEX ix_lamin_artifact_uid_bytes ON lamin_artifact (uid COLLATE "C")')
    op.execute(
        "INSERT INTO lamin_count (kind, n) SELECT kind, count(*) FROM "
        f"(SELECT {KIND.format(t='lamin_artifact')} AS kind FROM lamin_artifact) c GROUP BY kind"
    )
    if postgres:
        op.execute(PG_FUNCTION)
    for trigger in PG_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    for name in ("lamin_count_insert", "lamin_count_delete", "lamin_count_update"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON lamin_artifact" if _pg() else ""))
    if _pg():
        op.execute("DROP FUNCTION IF EXISTS lamin_count_rows()")
        op.drop_index("ix_lamin_artifact_uid_bytes", "lamin_artifact")
    op.drop_index("ix_lamin_artifact_updated_at", "lamin_artifact")
    op.drop_table("lamin_setting")
    op.drop_table("lamin_count")


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"
