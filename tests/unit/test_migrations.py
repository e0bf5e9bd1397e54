"""Tests for tiffin.store.db.migrate and tiffin.store.identity.bootstrap on SQLite."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event, func, inspect, select, text
from sqlalchemy.orm import Session

from tiffin.store.db import MIGRATIONS_DIR, Database, migrate
from tiffin.store.identity import bootstrap
from tiffin.store.models import ApiToken, Base, Cluster, Organization, User
from tiffin.store.tokens import hash_token

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
WRITE_PREFIXES = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'tiffin.db'}")
    yield database
    database.dispose()


@pytest.fixture
def migrated(db: Database) -> Database:
    migrate(db.engine)
    return db


def head_revision() -> str:
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    assert len(heads) == 1, f"the migrations have more than one head: {heads}"
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def counts(session: Session) -> dict[str, int]:
    return {
        model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
        for model in (Organization, User, Cluster, ApiToken)
    }


def test_migrating_an_empty_database_creates_every_model_table(migrated: Database) -> None:
    tables = set(inspect(migrated.engine).get_table_names())
    assert tables == {*Base.metadata.tables, "alembic_version"}


def test_migrated_schema_matches_the_models_exactly(migrated: Database) -> None:
    assert schema_diff(migrated.engine) == []


def test_migrated_database_is_at_the_head_revision(db: Database) -> None:
    assert current_revision(db.engine) is None
    migrate(db.engine)
    assert current_revision(db.engine) == head_revision()


def test_migrating_twice_changes_nothing(migrated: Database) -> None:
    with migrated.session() as session:
        bootstrap(session, NOW, "tfn_kept")
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(migrated.engine, "before_cursor_execute", record)
    try:
        migrate(migrated.engine)
    finally:
        event.remove(migrated.engine, "before_cursor_execute", record)

    assert any("alembic_version" in s for s in statements), "the listener saw no statements"
    writes = [s for s in statements if s.lstrip().upper().startswith(WRITE_PREFIXES)]
    assert writes == []
    assert current_revision(migrated.engine) == head_revision()
    assert schema_diff(migrated.engine) == []
    with migrated.session() as session:
        assert counts(session) == {"organizations": 1, "users": 1, "clusters": 1, "api_tokens": 1}


def test_bootstrap_creates_the_first_rows_once(migrated: Database) -> None:
    with migrated.session() as session:
        first = bootstrap(session, NOW, None)
    assert first.admin_token
    with migrated.session() as session:
        assert counts(session) == {"organizations": 1, "users": 1, "clusters": 1, "api_tokens": 1}
        token = session.scalars(select(ApiToken)).one()
        assert token.token_hash == hash_token(first.admin_token)
        assert token.user.organization.name == "default"

    with migrated.session() as session:
        second = bootstrap(session, NOW, None)
    assert second.admin_token is None
    with migrated.session() as session:
        assert counts(session) == {"organizations": 1, "users": 1, "clusters": 1, "api_tokens": 1}


def test_bootstrap_stores_the_hash_of_a_given_admin_token(migrated: Database) -> None:
    with migrated.session() as session:
        result = bootstrap(session, NOW, "tfn_given_secret")
    assert result.admin_token == "tfn_given_secret"
    with migrated.session() as session:
        token = session.scalars(select(ApiToken)).one()
        assert token.token_hash == hash_token("tfn_given_secret")
        assert token.token_hash != "tfn_given_secret"

    with migrated.session() as session:
        assert bootstrap(session, NOW, "tfn_other_secret").admin_token is None
    with migrated.session() as session:
        assert [t.token_hash for t in session.scalars(select(ApiToken))] == [hash_token("tfn_given_secret")]


def alembic(engine: Engine, action: str, target: str) -> None:
    """`alembic upgrade|downgrade target` on `engine`, as `migrate` runs it."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, target)


def columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def scalars(engine: Engine, query: str) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(text(query)).scalars())


ROWS_0004 = (
    "INSERT INTO repositories (id, organization_id, kind, name, description, uid, created_at)"
    " VALUES (1, 1, 'bento', 'echo', '', 'rep1', '2026-01-01')",
    "INSERT INTO artifacts (id, repository_id, version, description, labels, upload_status,"
    " upload_finished_reason, image_build_status, size_bytes, uid, created_at)"
    " VALUES (1, 1, 'v1', '', '[]', 'success', '', 'success', 0, 'art1', '2026-01-01')",
    "INSERT INTO deployments (id, organization_id, cluster_id, creator_id, name, labels, dev, lifecycle,"
    " current_revision_id, port, internal_ports, replica_token_ciphertext, status, status_message, uid,"
    " created_at, scale) VALUES (1, 1, 1, 1, 'd1', '[]', 0, 'active', 2, 31000, '{}', 'sealed-d1',"
    " 'running', '', 'dep1', '2026-01-01', '{}')",
    "INSERT INTO deployment_revisions (id, deployment_id, artifact_id, creator_id, config, uid, created_at)"
    " VALUES (1, 1, 1, 1, '{}', 'old', '2026-01-01'), (2, 1, 1, 1, '{}', 'cur', '2026-01-02')",
    "INSERT INTO deployment_events (deployment_id, created_at, kind, service, message)"
    " VALUES (1, '2026-01-02', 'revision', '', 'kept')",
    "INSERT INTO api_tokens (user_id, name, description, token_hash, scopes, uid, created_at)"
    " VALUES (1, 'replica:d1', '', 'hash-d1', '[]', 'tok1', '2026-01-02')",
)


def test_upgrading_from_0003_keeps_every_revision_and_event(db: Database) -> None:
    """0004 rebuilds `deployments`; with foreign keys on, dropping the old table would cascade."""
    alembic(db.engine, "upgrade", "0003")
    with db.session() as session:
        bootstrap(session, NOW, "tfn_kept")
    with db.engine.begin() as connection:
        for statement in ROWS_0004:
            connection.execute(text(statement.replace(", scale)", ")").replace(", '{}')", ")")))

    migrate(db.engine)

    assert scalars(db.engine, "SELECT uid FROM deployment_revisions ORDER BY id") == ["old", "cur"]
    assert scalars(db.engine, "SELECT message FROM deployment_events") == ["kept"]
    assert scalars(db.engine, "SELECT name FROM deployments") == ["d1"]
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1, "back on after migrating"


def test_0005_moves_the_deployment_token_onto_its_current_revision_and_back(db: Database) -> None:
    alembic(db.engine, "upgrade", "0004")
    with db.session() as session:
        bootstrap(session, NOW, "tfn_kept")
    with db.engine.begin() as connection:
        for statement in ROWS_0004:
            connection.execute(text(statement))

    migrate(db.engine)
    assert "replica_token_ciphertext" not in columns(db.engine, "deployments")
    query = "SELECT uid || '=' || replica_token_ciphertext FROM deployment_revisions ORDER BY id"
    assert scalars(db.engine, query) == ["old=", "cur=sealed-d1"]
    assert scalars(db.engine, "SELECT name FROM api_tokens ORDER BY id") == ["admin", "replica:d1:cur"]
    assert scalars(db.engine, "SELECT message FROM deployment_events") == ["kept"], "nothing cascaded"
    assert schema_diff(db.engine) == []

    alembic(db.engine, "downgrade", "0004")
    assert "replica_token_ciphertext" not in columns(db.engine, "deployment_revisions")
    assert scalars(db.engine, "SELECT replica_token_ciphertext FROM deployments") == ["sealed-d1"]
    assert scalars(db.engine, "SELECT name FROM api_tokens ORDER BY id") == ["admin", "replica:d1"]
    assert len(scalars(db.engine, "SELECT id FROM deployment_revisions")) == 2
