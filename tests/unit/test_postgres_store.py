"""The store on PostgreSQL: migrations match the models, the app serves, data outlives a restart.

Each test gets a fresh database on the local server (the `postgres_url` fixture) and skips when no
PostgreSQL answers at 127.0.0.1:5432.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.pool import NullPool

from tiffin.core.settings import Settings
from tiffin.server.wiring import build
from tiffin.store.db import MIGRATIONS_DIR, Database, migrate, normalize_url
from tiffin.store.identity import bootstrap
from tiffin.store.models import ApiToken, Base, Organization
from tiffin.store.tokens import hash_token

TOKEN = "t"
HEADERS = {"X-YATAI-API-TOKEN": TOKEN}
REPOSITORY = {"name": "echo", "description": ""}
VERSION = {
    "version": "v1",
    "description": "",
    "manifest": {"service": "s:E", "bentoml_version": "1.4.38", "size_bytes": 0},
    "build_at": "2026-01-01 00:00:00.000000",
    "labels": [],
}


@contextmanager
def database(url: str) -> Iterator[Database]:
    db = Database(url)
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def serving(home: Path, url: str) -> Iterator[tuple[TestClient, str | None]]:
    """Build the whole app on `url` and yield a client plus the first-start admin token (or None)."""
    tiffin = build(Settings(home=home, database_url=url, bootstrap_token=TOKEN))
    try:
        with TestClient(tiffin.app, headers=HEADERS) as client:
            yield client, tiffin.admin_token
    finally:
        tiffin.db.dispose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u:p@h:5433/db?sslmode=require", "postgresql+psycopg://u:p@h:5433/db?sslmode=require"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///tmp/tiffin.db", "sqlite:///tmp/tiffin.db"),
    ],
)
def test_normalize_url_uses_psycopg_3_for_postgres(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_migrated_schema_matches_the_models_on_postgres(postgres_url: str) -> None:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with database(postgres_url) as db:
        migrate(db.engine)
        migrate(db.engine)
        assert set(inspect(db.engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert context.get_current_revision() == head
            assert compare_metadata(context, Base.metadata) == []


def test_build_serves_the_api_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    with serving(tmp_path / "home", postgres_url) as (client, admin_token):
        assert admin_token == TOKEN
        response = client.get("/api/v1/auth/current")
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "admin"
        refused = client.get("/api/v1/auth/current", headers={"X-YATAI-API-TOKEN": "wrong"})
        assert refused.status_code == 401
    with database(postgres_url) as db, db.session() as session:
        assert session.scalars(select(ApiToken.token_hash)).all() == [hash_token(TOKEN)]


def test_a_bento_version_outlives_a_restart_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    home = tmp_path / "home"
    with serving(home, postgres_url) as (client, _):
        created = client.post("/api/v1/bento_repositories", json=REPOSITORY)
        assert created.status_code == 200, created.text
        version = client.post("/api/v1/bento_repositories/echo/bentos", json=VERSION)
        assert version.status_code == 200, version.text
        before = version.json()

    with serving(home, postgres_url) as (client, admin_token):
        assert admin_token is None, "a restart must not bootstrap again"
        response = client.get("/api/v1/bento_repositories/echo/bentos/v1")
        assert response.status_code == 200, response.text
        after = response.json()
        repositories = client.get("/api/v1/bento_repositories").json()

    assert after["uid"] == before["uid"]
    assert after["manifest"] == VERSION["manifest"]
    assert after["build_at"] == "2026-01-01T00:00:00.000000Z"
    assert after["created_at"] == before["created_at"]
    assert [r["name"] for r in repositories["items"]] == ["echo"]
    assert repositories["items"][0]["latest_bento"]["version"] == "v1"


def test_datetimes_round_trip_timezone_aware_on_postgres(postgres_url: str) -> None:
    # A session time zone other than UTC must not shift stored instants.
    name = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.execute(text(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'"))
    admin.dispose()

    written = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    with database(postgres_url) as db:
        migrate(db.engine)
        with db.session() as session:
            bootstrap(session, written, None)

    with database(postgres_url) as db, db.session() as session:
        read = session.scalars(select(Organization.created_at)).one()
        stored_zone = session.scalar(text("SHOW timezone"))
    assert stored_zone == "America/New_York"
    assert read.tzinfo is not None and read.utcoffset() is not None
    assert read == written
    assert read.astimezone(UTC) == datetime(2026, 3, 3, 23, 36, 7, 891011, tzinfo=UTC)
