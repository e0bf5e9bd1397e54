"""The real bentoml CLI against a real `tiffin up`: login, push/pull, tokens, secrets, instance types."""

import json
from collections.abc import Callable

import pytest

from tests.support.bentoml_cli import BentomlCli
from tests.support.server import TiffinServer

pytestmark = pytest.mark.e2e

Built = tuple[BentomlCli, str, str]


@pytest.mark.parametrize("mode", ["proxy", "presigned", "multipart"])
def test_push_then_pull_into_an_empty_home(
    mode: str,
    start_tiffin: Callable[..., TiffinServer],
    built_bento: Built,
    bentoml_cli: Callable[[str], BentomlCli],
) -> None:
    server = start_tiffin(TIFFIN_UPLOAD_MODE=mode)
    pusher, bento_tag, model_tag = built_bento
    pusher.login(server.endpoint, server.token)

    first = pusher.run("push", bento_tag)
    assert "already exists" not in first.stdout + first.stderr
    second = pusher.run("push", bento_tag)
    assert "Push skipped" in second.stdout + second.stderr

    puller = bentoml_cli("puller")
    puller.login(server.endpoint, server.token)
    puller.run("pull", bento_tag, "--with-models")
    assert bento_tag in puller.run("list").stdout
    assert model_tag in puller.run("models", "list").stdout
    pulled = puller.home / "bentos" / bento_tag.replace(":", "/") / "bento.yaml"
    original = pusher.home / "bentos" / bento_tag.replace(":", "/") / "bento.yaml"
    assert pulled.read_text() == original.read_text()


def test_models_push_and_pull(
    tiffin: TiffinServer, built_bento: Built, bentoml_cli: Callable[[str], BentomlCli]
) -> None:
    pusher, _, model_tag = built_bento
    pusher.login(tiffin.endpoint, tiffin.token)
    pusher.run("models", "push", model_tag)

    puller = bentoml_cli("model-puller")
    puller.login(tiffin.endpoint, tiffin.token)
    puller.run("models", "pull", model_tag)
    weights = puller.home / "models" / model_tag.replace(":", "/") / "weights.txt"
    assert weights.read_text() == "tiny weights"


def test_instance_types_are_listed(tiffin: TiffinServer, bentoml_cli: Callable[[str], BentomlCli]) -> None:
    cli = bentoml_cli("it")
    cli.login(tiffin.endpoint, tiffin.token)
    listed = json.loads(cli.run("deployment", "list-instance-types", "-o", "json").stdout)
    by_name = {item["name"]: item for item in listed}
    assert set(by_name) >= {"cpu.1", "cpu.2", "cpu.4", "cpu.8", "gpu.t4.1", "gpu.l4.1", "gpu.a100.1"}
    assert (by_name["cpu.1"]["cpu"], by_name["cpu.1"]["memory"]) == ("500m", "2Gi")
    assert by_name["gpu.t4.1"]["gpu"] == "1"


def test_api_token_lifecycle(tiffin: TiffinServer, bentoml_cli: Callable[[str], BentomlCli]) -> None:
    admin = bentoml_cli("admin")
    admin.login(tiffin.endpoint, tiffin.token)
    output = admin.run("api-token", "create", "ci-token", "--scope", "api", "--expires", "30d", "-o", "json")
    created = json.loads(output.stdout[output.stdout.index("\n{") :])
    uid, secret = created["uid"], created["token"]
    assert secret and created["scopes"] == ["api"]

    assert "ci-token" in admin.run("api-token", "list").stdout
    assert json.loads(admin.run("api-token", "get", uid, "-o", "json").stdout)["name"] == "ci-token"

    user = bentoml_cli("user")
    user.login(tiffin.endpoint, secret)
    admin.run("api-token", "delete", uid)
    assert "ci-token" not in admin.run("api-token", "list").stdout
    refused = user.run("cloud", "login", "--endpoint", tiffin.endpoint, "--api-token", secret, check=False)
    assert refused.returncode != 0
    assert "401" in refused.stdout + refused.stderr


def test_secret_lifecycle(tiffin: TiffinServer, bentoml_cli: Callable[[str], BentomlCli]) -> None:
    cli = bentoml_cli("secrets")
    cli.login(tiffin.endpoint, tiffin.token)
    cli.run("secret", "create", "db-creds", "USER=app", "PASSWORD=hunter2")
    cli.run("secret", "create", "cfg", "settings.json=1", "--type", "file")
    listed = cli.run("secret", "list").stdout
    assert "db-creds" in listed and "cfg" in listed and "hunter2" not in listed
    cli.run("secret", "delete", "db-creds")
    assert "db-creds" not in cli.run("secret", "list").stdout


def test_login_with_a_wrong_token_fails(
    tiffin: TiffinServer, bentoml_cli: Callable[[str], BentomlCli]
) -> None:
    cli = bentoml_cli("wrong")
    result = cli.run("cloud", "login", "--endpoint", tiffin.endpoint, "--api-token", "nope", check=False)
    assert result.returncode != 0
    assert "401" in result.stdout + result.stderr
    assert not (cli.home / ".yatai.yaml").exists() or "nope" not in (cli.home / ".yatai.yaml").read_text()
