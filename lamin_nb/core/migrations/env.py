"""Alembic environment: lamin_nb always passes an open connection in ``config.attributes``."""

from alembic import context

from lamin_nb.core.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
