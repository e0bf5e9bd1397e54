"""`tiffin up` with TIFFIN_DOMAIN: the gateway listens on its shared port and routes by Host there.

Cheap on purpose (no bento is built): routing by host name to real replicas is covered over real
sockets in tests/integration/test_gateway.py; this checks the settings and the wiring of the process.
The made-up domain does not resolve, so requests name it in `Host` only.
"""

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.server import TiffinServer, free_port

pytestmark = pytest.mark.e2e
DOMAIN = "apps.example.test"


def test_with_a_domain_the_shared_port_answers_by_host_name(
    start_tiffin: Callable[..., TiffinServer],
) -> None:
    port = free_port()
    start_tiffin(TIFFIN_DOMAIN=DOMAIN, TIFFIN_GATEWAY_PORT=str(port))

    response = _first_answer(f"http://127.0.0.1:{port}/readyz", {"Host": f"nope.{DOMAIN}"})

    assert response.status_code == 404
    assert response.json()["message"] == (
        f'No deployment is served at host "nope.{DOMAIN}": deployment URLs here have the host name'
        f" <deployment name>.{DOMAIN}."
    )


def test_the_api_and_the_shared_port_cannot_share_a_port(tmp_path: Path) -> None:
    port = free_port()
    env = {"TIFFIN_DOMAIN": DOMAIN, "TIFFIN_GATEWAY_PORT": str(port)}
    server = TiffinServer(home=tmp_path / "home", token="tfn_test_token", extra_env=env, port=port)

    try:
        with pytest.raises(RuntimeError, match=f"The API and TIFFIN_GATEWAY_PORT both want port {port}"):
            server.start()
    finally:
        server.teardown()


def _first_answer(url: str, headers: dict[str, str], timeout_s: float = 30.0) -> httpx.Response:
    """The gateway opens its ports at the reconciler's first publication, a moment after the API."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(url, headers=headers, timeout=5)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
