"""`tiffin up` keeps all state across restarts, prints the admin token once, and stops cleanly on Ctrl-C."""

import signal
from collections.abc import Callable

import pytest

from tests.support.bentoml_cli import BentomlCli
from tests.support.server import TiffinServer

pytestmark = pytest.mark.e2e


def test_state_survives_a_restart(
    start_tiffin: Callable[..., TiffinServer],
    built_bento: tuple[BentomlCli, str, str],
    bentoml_cli: Callable[[str], BentomlCli],
) -> None:
    first = start_tiffin()
    pusher, bento_tag, model_tag = built_bento
    pusher.login(first.endpoint, first.token)
    pusher.run("push", bento_tag)
    pusher.run("secret", "create", "kept", "A=1")
    token = first.client().post("/api/v1/api_tokens", json={"name": "kept-token"}).json()["token"]

    assert first.stop(signal.SIGINT) == 0
    assert "Tiffin stopped." in first.output()
    assert first.output().count(first.token) == 2  # the token itself and the login line

    second = start_tiffin(home=first.home)
    assert first.token not in second.output()
    puller = bentoml_cli("after-restart")
    puller.login(second.endpoint, token)
    puller.run("pull", bento_tag, "--with-models")
    assert model_tag in puller.run("models", "list").stdout
    assert "kept" in puller.run("secret", "list").stdout
    assert second.stop(signal.SIGTERM) == 0


def test_bad_settings_are_refused_with_a_sentence(start_tiffin: Callable[..., TiffinServer]) -> None:
    with pytest.raises(RuntimeError, match="TIFFIN_UPLOAD_MODE must be one of"):
        start_tiffin(TIFFIN_UPLOAD_MODE="carrier-pigeon")
