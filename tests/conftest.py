"""Fixtures shared by the test tiers; servers and processes they start are always stopped."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.bentoml_cli import BentomlCli
from tests.support.postgres import fresh_postgres_database
from tests.support.server import TiffinServer

ADMIN_TOKEN = "tfn_test_admin_token"


@pytest.fixture
def start_tiffin(tmp_path: Path) -> Iterator[Callable[..., TiffinServer]]:
    """Start `tiffin up` servers (all stopped at teardown, even if the test fails)."""
    started: list[TiffinServer] = []

    def start(home: Path | None = None, **env: str) -> TiffinServer:
        server = TiffinServer(home=home or tmp_path / "tiffin-home", token=ADMIN_TOKEN, extra_env=env)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.teardown()


@pytest.fixture
def tiffin(start_tiffin: Callable[..., TiffinServer]) -> TiffinServer:
    return start_tiffin()


@pytest.fixture
def bentoml_cli(tmp_path: Path) -> Callable[[str], BentomlCli]:
    """A bentoml CLI with its own BENTOML_HOME, named so one test may use several."""

    def make(name: str) -> BentomlCli:
        return BentomlCli(home=tmp_path / f"bentoml-home-{name}")

    return make


@pytest.fixture(scope="session")
def built_bento(tmp_path_factory: pytest.TempPathFactory) -> tuple[BentomlCli, str, str]:
    """One bento (using a model saved with `bentoml.models.create`), built once per run.

    Returns the CLI whose home holds it, the bento tag and the model tag.
    """
    root = tmp_path_factory.mktemp("built-bento")
    cli = BentomlCli(home=root / "bentoml-home")
    bento_tag, model_tag = cli.build_echo_bento(root / "project")
    return cli, bento_tag, model_tag


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards); skips when no server answers."""
    with fresh_postgres_database() as url:
        yield url
