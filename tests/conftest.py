"""Fixtures shared by the test tiers; servers and processes they start are always stopped."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.bentoml_cli import BentomlCli
from tests.support.postgres import fresh_postgres_database
from tests.support.server import TiffinServer

ADMIN_TOKEN = "tfn_test_admin_token"


@pytest.fixture(scope="session", autouse=True)
def shared_env_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of built bento environments for every `tiffin up` of the run, across xdist workers.

    Environments are keyed by a hash of their inputs and built under a file lock, so servers on other
    homes (and in other worker processes) reuse what the first one built instead of building again.
    """
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cache = root / "env-cache"
    cache.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIFFIN_ENV_CACHE", str(cache))
        yield cache


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
