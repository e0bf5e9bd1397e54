"""`tiffin api`, `tiffin controller`, `tiffin gateway`: the processes of a scaled-out Tiffin.

They share only the store (`TIFFIN_DATABASE_URL`, PostgreSQL), so each runs wherever it is needed: the
API once or more behind a load balancer, two controllers (one leads), a gateway on every machine that
serves traffic. Ctrl-C or SIGTERM stops each cleanly.
"""

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from tiffin.cli.options import log_options
from tiffin.core.clock import SystemClock
from tiffin.core.errors import TiffinError
from tiffin.core.settings import Settings
from tiffin.server import logconfig
from tiffin.server.controller import LeadershipLost, build_controller
from tiffin.server.gateway_process import build_gateway
from tiffin.server.serve import serve
from tiffin.server.wiring import build

T = TypeVar("T")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535))
@log_options
def api(host: str, port: int, log_level: str, log_format: logconfig.LogFormat, access_log: bool) -> None:
    """Serve the API (what the bentoml CLI talks to); it runs no replica."""
    logconfig.configure(log_level, log_format, access_log)
    tiffin = _or_exit(lambda: build(Settings.from_env()))
    if tiffin.admin_token is not None:
        click.echo(f"First start: created the admin API token (shown only this once): {tiffin.admin_token}")
    try:
        serve(tiffin.app, host, port, log_level, access_log)
    finally:
        tiffin.db.dispose()


@click.command()
@log_options
def controller(log_level: str, log_format: logconfig.LogFormat, access_log: bool) -> None:
    """Reconcile: run deployments' replicas and publish their routes, or stand by while another leads."""
    logconfig.configure(log_level, log_format, access_log)
    process = _or_exit(lambda: build_controller(Settings.from_env(), SystemClock()))
    try:
        _run_until_stopped(process.run)
    except LeadershipLost as lost:
        raise click.ClickException(str(lost)) from None


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address the deployments' ports bind to."
)
@log_options
def gateway(host: str, log_level: str, log_format: logconfig.LogFormat, access_log: bool) -> None:
    """Serve deployment URLs and internal routes from the routes the leading controller publishes."""
    logconfig.configure(log_level, log_format, access_log)
    process = _or_exit(lambda: build_gateway(Settings.from_env(), SystemClock(), host))
    _run_until_stopped(process.run)


def _or_exit(make: Callable[[], T]) -> T:
    try:
        return make()
    except TiffinError as error:
        raise click.ClickException(error.message) from None


def _run_until_stopped(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` on an event loop (uvloop where it installs) until SIGINT or SIGTERM."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await main(stop)

    try:
        import uvloop  # noqa: PLC0415 - optional: Windows has none

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())
