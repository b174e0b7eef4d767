"""The study database: an SQLAlchemy URL (SQLite file by default, PostgreSQL on a lab server), its engine, and its
schema brought to the newest Alembic revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DATABASE_FILE = "study.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def database_url(value: str | Path) -> str:
    """An SQLAlchemy URL as given, or SQLite on a file (a study folder means its study.db)."""
    text = str(value)
    if "://" in text:
        return text
    path = Path(text)
    if path.is_dir() or not path.suffix:
        path = path / DATABASE_FILE
    return f"sqlite:///{path.resolve()}"


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    # one file shared by the server's worker threads: WAL lets readers go on while one request writes
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _pragmas(connection, _record) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    return engine


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def open_database(url: str, migrate: bool = True) -> sessionmaker[Session]:
    """Sessions on the database at `url`; with `migrate`, its schema is upgraded first, else it must be current."""
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    else:
        found, head = current_revision(engine), head_revision()
        if found != head:
            raise ValueError(f"{engine.url.render_as_string(hide_password=True)}: the study schema is at revision "
                             f"{found or 'none (not a study database)'}, this dtl needs {head}: "
                             f"run `dtl study migrate --db URL`")
    return sessionmaker(engine, expire_on_commit=False)
