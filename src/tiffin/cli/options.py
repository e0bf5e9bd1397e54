"""Options every long-running `tiffin` process takes: how its own log looks."""

from collections.abc import Callable
from typing import Any

import click

from tiffin.server import logconfig


def log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--log-level`, `--log-format` and `--access-log`, also read from TIFFIN_LOG_* variables."""
    command = click.option(
        "--access-log/--no-access-log",
        default=False,
        show_default=True,
        envvar="TIFFIN_ACCESS_LOG",
        help="Log every request to the API and to deployment URLs (env TIFFIN_ACCESS_LOG).",
    )(command)
    command = click.option(
        "--log-format",
        type=click.Choice(logconfig.FORMATS),
        default="text",
        show_default=True,
        envvar="TIFFIN_LOG_FORMAT",
        help="text for people, json (one object per line) for machines (env TIFFIN_LOG_FORMAT).",
    )(command)
    return click.option(
        "--log-level",
        type=click.Choice(logconfig.LEVELS),
        default="info",
        show_default=True,
        envvar="TIFFIN_LOG_LEVEL",
        help="The least severe lines logged (env TIFFIN_LOG_LEVEL).",
    )(command)
