"""What every benchmark does while it watches a Tiffin server: poll until something holds, read one
deployment from the API, and turn the API's timestamps into epoch seconds."""

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tests.support.server import TiffinServer


def wait_for(check: Callable[[], bool], what: str, timeout: float, poll_s: float = 0.02) -> float:
    """Poll `check` until true; returns the moment it was seen true (exits after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(poll_s)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def deployment_api(server: TiffinServer, name: str, path: str = "") -> Any:
    """`GET /api/v2/deployments/<name><path>`, decoded."""
    with server.client() as client:
        response = client.get(f"/api/v2/deployments/{name}{path}")
    response.raise_for_status()
    return response.json()


def epoch(stamp: str) -> float:
    """An API timestamp (ISO 8601, `Z` for UTC) in seconds since the epoch."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
