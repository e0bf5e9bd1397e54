"""Where the `tiffin` client commands send requests: the same endpoint and token bentoml uses.

Precedence follows the bentoml client (docs/bentocloud-api.md §1.1): explicit options, then
BENTO_CLOUD_API_KEY (with BENTO_CLOUD_API_ENDPOINT), then the current context of `$BENTOML_HOME/.yatai.yaml`.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import click
import yaml


@dataclass(frozen=True)
class LoginContext:
    endpoint: str
    token: str


def resolve(endpoint: str | None, token: str | None) -> LoginContext:
    if endpoint and token:
        return LoginContext(endpoint.rstrip("/"), token)
    if os.environ.get("BENTO_CLOUD_API_KEY"):
        env_endpoint = os.environ.get("BENTO_CLOUD_API_ENDPOINT", "")
        return LoginContext(
            (endpoint or env_endpoint).rstrip("/"), token or os.environ["BENTO_CLOUD_API_KEY"]
        )
    saved = _saved_context()
    return LoginContext((endpoint or saved.endpoint).rstrip("/"), token or saved.token)


def _saved_context() -> LoginContext:
    path = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml") / ".yatai.yaml"
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    current = config.get("current_context_name")
    for context in config.get("contexts") or []:
        if context.get("name") == current:
            return LoginContext(str(context.get("endpoint", "")), str(context.get("api_token", "")))
    raise click.ClickException(
        "Not logged in: run `bentoml cloud login --endpoint <tiffin url> --api-token <token>`,"
        " or pass --endpoint and --api-token."
    )
