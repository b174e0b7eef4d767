"""Alembic environment of the study database: run by experiments.study.migrate, online only."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from experiments.study.models import Base

config = context.config
connection = config.attributes.get("connection")


def run(connection) -> None:
    # batch mode: SQLite alters tables by copying them
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.",
                                poolclass=pool.NullPool)
    with engine.connect() as connection:
        run(connection)
