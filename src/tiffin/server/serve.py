"""Runs the ASGI app with uvicorn until SIGINT or SIGTERM, then returns normally.

uvicorn re-raises the stop signal after shutting down, which would kill the process before Tiffin's own
cleanup runs; here both signals just ask the server to exit, so callers' `finally` blocks always run.
"""

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(app: Any, host: str, port: int, log_level: str = "info", access_log: bool = False) -> None:
    """Serve until stopped; uvicorn's lines go to the handler `tiffin.server.logconfig` configured."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, log_level=log_level, access_log=access_log
    )
    _Server(config).run()
