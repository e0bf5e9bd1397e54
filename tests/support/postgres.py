"""A throwaway PostgreSQL database per test on the local server, dropped at teardown; skips if absent."""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

HOST = "127.0.0.1"
PORT = 5432
ADMIN_DATABASE = "test"
USERS = ("root", "postgres")
CONNECT_TIMEOUT_S = 3

_unreachable: list[str] = []
"""Why the server could not be reached, once known, so later tests skip without waiting again."""


def server_url(user: str, database: str) -> str:
    return f"postgresql+psycopg://{user}@{HOST}:{PORT}/{database}"


def _admin_engine() -> tuple[Engine, str]:
    """An AUTOCOMMIT engine on the `test` database as the first user that may connect, and that user."""
    if _unreachable:
        pytest.skip(_unreachable[0])
    errors: list[str] = []
    for user in USERS:
        engine = create_engine(
            server_url(user, ADMIN_DATABASE),
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except OperationalError as exc:
            engine.dispose()
            errors.append(f"as {user}: {' '.join(str(exc.orig).split())}")
            continue
        return engine, user
    _unreachable.append(f"PostgreSQL not reachable at {HOST}:{PORT}: {'; '.join(errors)}")
    pytest.skip(_unreachable[0])


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create `tiffin_test_<hex>`, yield its SQLAlchemy URL, then drop it (closing any connections left)."""
    admin, user = _admin_engine()
    name = f"tiffin_test_{secrets.token_hex(8)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server_url(user, name)
        finally:
            with admin.connect() as connection:
                connection.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                    {"name": name},
                )
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
