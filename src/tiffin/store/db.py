"""Engines, sessions and schema migrations for SQLite and PostgreSQL.

The schema is owned by Alembic: `migrate()` brings any database (empty or older) to the latest
revision, and runs at every start.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tiffin.core.errors import Conflict

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
RACED = "Another request changed the same resource at the same time: try again."
__all__ = ["Database", "Session", "migrate"]  # `Session`: the type other layers hold, never build


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain `postgresql://` URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Apply every pending Alembic migration.

    On SQLite, foreign keys are off while migrating: a batch migration rebuilds a table (copy, drop,
    rename), and dropping `deployments` with foreign keys on would cascade into its revisions, replica
    records and events. The keys are checked before they are turned back on.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # outside a transaction, or ignored
            connection.commit()
        with connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                raise RuntimeError("A migration left rows whose foreign keys point nowhere.")
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


class Database:
    """One engine plus a session factory; `session()` commits on success, rolls back on error."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error. Two requests racing to create the
        same thing is a Conflict for the loser (409: try again), not a database error."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as error:
            raise Conflict(
                "Another request changed the same resource at the same time: try again."
            ) from error

    def dispose(self) -> None:
        self.engine.dispose()
