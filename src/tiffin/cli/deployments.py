"""`tiffin replicas` and `tiffin logs`: what runs for a deployment, and what it printed."""

from typing import Any

import click
import httpx

from tiffin.cli.login_context import LoginContext, resolve

_REPLICA_COLUMNS = ("service", "replica", "state", "restarts", "pid", "url", "reason")


def _client_options(command: Any) -> Any:
    command = click.option("--endpoint", help="Tiffin URL (default: the bentoml login context).")(command)
    return click.option("--api-token", help="API token (default: the bentoml login context).")(command)


def _get(context: LoginContext, path: str, params: dict[str, str]) -> httpx.Response:
    return _call(context, "GET", path, params=params)


def _call(context: LoginContext, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        headers = {"X-YATAI-API-TOKEN": context.token}
        response = httpx.request(method, context.endpoint + path, headers=headers, timeout=30, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"Could not reach Tiffin at {context.endpoint}: {exc}.") from None
    if response.status_code != 200:
        raise click.ClickException(_message(response))
    return response


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        return f"Tiffin answered HTTP {response.status_code}."


def _table(columns: tuple[str, ...], items: list[dict[str, Any]]) -> None:
    rows = [[str(item.get(c) if item.get(c) is not None else "-") for c in columns] for item in items]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@click.command()
@click.argument("deployment")
@_client_options
def revisions(deployment: str, endpoint: str | None, api_token: str | None) -> None:
    """List DEPLOYMENT's revisions, newest first; `*` marks the active one."""
    items = _get(resolve(endpoint, api_token), f"/api/v2/deployments/{deployment}/revisions", {}).json()[
        "items"
    ]
    for item in items:
        item["active"] = "*" if item["active"] else ""
        item["creator"] = item["creator"]["name"]
    _table(("active", "uid", "created_at", "creator", "bento"), items)


@click.command()
@click.argument("deployment")
@click.argument("revision")
@_client_options
def rollback(deployment: str, revision: str, endpoint: str | None, api_token: str | None) -> None:
    """Roll DEPLOYMENT back to REVISION (a uid from `tiffin revisions`)."""
    path = f"/api/v2/deployments/{deployment}/rollback"
    _call(resolve(endpoint, api_token), "POST", path, json={"revision": revision})
    click.echo(f"Deployment {deployment!r} is rolling back to revision {revision}.")


@click.command()
@click.argument("deployment")
@_client_options
def restore(deployment: str, endpoint: str | None, api_token: str | None) -> None:
    """Bring a terminated DEPLOYMENT back with its latest revision."""
    _call(resolve(endpoint, api_token), "POST", f"/api/v2/deployments/{deployment}/restore")
    click.echo(f"Deployment {deployment!r} is being restored.")


@click.command()
@click.argument("deployment")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="How many events."
)
@click.option("--service", default=None, help="Only this Service's events.")
@_client_options
def events(
    deployment: str, limit: int, service: str | None, endpoint: str | None, api_token: str | None
) -> None:
    """Show DEPLOYMENT's timeline, oldest first: revisions, rollouts, replicas, statuses, scaling."""
    params = {"limit": str(limit), **({"service": service} if service else {})}
    path = f"/api/v2/deployments/{deployment}/events"
    _table(
        ("time", "kind", "service", "message"),
        _get(resolve(endpoint, api_token), path, params).json()["items"],
    )


@click.command()
@click.argument("deployment")
@_client_options
def replicas(deployment: str, endpoint: str | None, api_token: str | None) -> None:
    """Show DEPLOYMENT's Services (replicas wanted within min..max, ready, requests waiting), then each
    replica: Service, state, restarts, PID, URL and last reason."""
    path = f"/api/v2/deployments/{deployment}/replicas"
    body = _get(resolve(endpoint, api_token), path, {}).json()
    services = [{"service": name, **scale} for name, scale in sorted(body.get("services", {}).items())]
    if services:
        _table(("service", "replicas", "ready", "waiting", "min_replicas", "max_replicas"), services)
        click.echo()
    _table(_REPLICA_COLUMNS, body["items"])


@click.command()
@click.argument("deployment")
@click.option("--service", default="", help="Only this Service's replicas.")
@click.option("--replica", default="", help="Only this replica.")
@click.option(
    "--tail", default=200, show_default=True, type=click.IntRange(1, 100_000), help="Lines per log."
)
@_client_options
def logs(
    deployment: str, service: str, replica: str, tail: int, endpoint: str | None, api_token: str | None
) -> None:
    """Print DEPLOYMENT's build log and replica logs."""
    params = {"service": service, "replica": replica, "tail": str(tail)}
    click.echo(
        _get(resolve(endpoint, api_token), f"/api/v2/deployments/{deployment}/logs", params).text, nl=False
    )
