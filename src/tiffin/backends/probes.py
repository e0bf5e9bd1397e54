"""HTTP health probes of local replicas: `/readyz` decides RUNNING, `/livez` keeps it alive.

Probes go straight to 127.0.0.1 with short timeouts and without proxy settings from the
environment, so one hung replica delays the watcher by at most a timeout.
"""

import httpx

READY_PATH = "/readyz"
LIVE_PATH = "/livez"


class Prober:
    """One HTTP client shared by every probe of one backend."""

    def __init__(self, timeout_s: float) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), trust_env=False)

    def ok(self, url: str, path: str) -> bool:
        """Whether `GET url+path` answers 200 in time."""
        try:
            return self._client.get(url + path).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._client.close()
