"""`tiffin`: `up` runs everything in one process (state under TIFFIN_HOME); `api`, `controller` and
`gateway` run the parts of a scaled-out Tiffin; the rest are client commands."""

import sys

import click

from tiffin import __version__
from tiffin.cli.cluster import api, controller, gateway
from tiffin.cli.deployments import events, logs, replicas, restore, revisions, rollback
from tiffin.cli.options import log_options
from tiffin.core.errors import TiffinError
from tiffin.core.settings import Settings
from tiffin.server import logconfig
from tiffin.server.serve import serve
from tiffin.server.wiring import Listen, build, url_host


@click.group()
@click.version_option(__version__, prog_name="tiffin")
def main() -> None:
    """Tiffin: a self-hosted cloud for BentoML services."""


for command in (replicas, logs, revisions, rollback, restore, events, api, controller, gateway):
    main.add_command(command)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535))
@log_options
def up(host: str, port: int, log_level: str, log_format: logconfig.LogFormat, access_log: bool) -> None:
    """Start Tiffin: the API, the gateway and the deployments' replicas, in one process."""
    logconfig.configure(log_level, log_format, access_log)
    try:
        settings = Settings.from_env()
        tiffin = build(settings, listen=Listen(host, port))
    except TiffinError as exc:
        raise click.ClickException(exc.message) from None
    endpoint = f"http://{url_host(host)}:{port}"
    _announce(settings, endpoint, tiffin.admin_token)
    try:
        serve(tiffin.app, host, port, log_level, access_log)
    finally:
        tiffin.db.dispose()
    click.echo("Tiffin stopped.")


def _announce(settings: Settings, endpoint: str, admin_token: str | None) -> None:
    click.echo(f"Tiffin {__version__} serving at {endpoint} (state in {settings.home})")
    if admin_token is not None:
        click.echo("First start: created the admin API token. It is shown only this once:")
        click.echo(f"  {admin_token}")
        click.echo("Log the bentoml CLI in with:")
        click.echo(f"  bentoml cloud login --endpoint {endpoint} --api-token {admin_token}")
    sys.stdout.flush()
