"""A real `tiffin up` storing its state in PostgreSQL, driven by the real bentoml CLI (push, then pull)."""

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.support.bentoml_cli import BentomlCli
from tests.support.server import TiffinServer

pytestmark = pytest.mark.e2e


def stored_versions(url: str) -> set[tuple[str, str, str]]:
    """(kind, repository, version) of every artifact in the database, read straight from it."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT r.kind, r.name, a.version FROM artifacts a"
                    " JOIN repositories r ON r.id = a.repository_id"
                )
            )
            return {(kind, name, version) for kind, name, version in rows}
    finally:
        engine.dispose()


def test_push_then_pull_through_a_server_on_postgres(
    tmp_path: Path,
    postgres_url: str,
    start_tiffin: Callable[..., TiffinServer],
    bentoml_cli: Callable[[str], BentomlCli],
) -> None:
    server = start_tiffin(TIFFIN_DATABASE_URL=postgres_url)
    assert not (server.home / "tiffin.db").exists(), "the server must not fall back to SQLite"

    pusher = bentoml_cli("a")
    pusher.login(server.endpoint, server.token)
    bento_tag, model_tag = pusher.build_echo_bento(tmp_path / "proj")
    pusher.run("push", bento_tag)

    bento_name, bento_version = bento_tag.split(":")
    model_name, model_version = model_tag.split(":")
    assert stored_versions(postgres_url) >= {
        ("bento", bento_name, bento_version),
        ("model", model_name, model_version),
    }

    puller = bentoml_cli("b")
    puller.login(server.endpoint, server.token)
    puller.run("pull", bento_tag, "--with-models")
    assert bento_tag in puller.run("list").stdout
    assert model_tag in puller.run("models", "list").stdout
    assert (puller.home / "bentos" / bento_name / bento_version / "bento.yaml").is_file()
    assert (puller.home / "models" / model_name / model_version / "weights.txt").read_text() == "tiny weights"
