"""Identity, organization, instance types (docs/bentocloud-api.md §2, §3.1, §3.4, Appendix A) and the
deployment stub."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from starlette.websockets import WebSocketDisconnect

if TYPE_CHECKING:
    from conftest import Api


def test_current_user_shape(api: Api) -> None:
    user = api.ok("GET", "/api/v1/auth/current")

    assert set(user) >= {"name", "email", "first_name", "last_name"}
    assert all(isinstance(user[key], str) for key in ("name", "email", "first_name", "last_name"))
    assert (user["name"], user["email"]) == ("admin", "admin@tiffin.local")


def test_current_org_shape(api: Api) -> None:
    org = api.ok("GET", "/api/v1/current_org")

    api.assert_resource(org, "organization")
    assert org["name"] == "default"
    assert isinstance(org["description"], str)
    assert org["created_at"] == "2026-01-01T00:00:00.000000Z"


@pytest.mark.parametrize("query", ["", "?cluster=", "?cluster=default"])
def test_instance_types_are_a_bare_list(api: Api, query: str) -> None:
    items = api.ok("GET", f"/api/v1/instance_types{query}")

    assert isinstance(items, list)
    assert items
    names = [item["display_name"] for item in items]
    assert len(set(names)) == len(names)
    for item in items:
        api.assert_resource(item, "resource_instance")
        assert item["display_name"] and isinstance(item["description"], str)
        config = item["config"]
        assert isinstance(config["group"], str) and isinstance(config["price"], str)
        requests = config["resources"]["requests"]
        assert requests["cpu"] and requests["memory"]
        assert all(isinstance(value, str) for value in requests.values())


def test_instance_types_of_unknown_cluster_is_404(api: Api) -> None:
    body = api.fails(404, "GET", "/api/v1/instance_types?cluster=nope")

    assert "nope" in body["message"]


def test_deployments_still_need_a_token(api: Api) -> None:
    api.fails(401, "GET", "/api/v2/deployments", token=None)


def test_builder_pod_lookup_answers_at_once_with_no_pods(api: Api) -> None:
    """docs/bentocloud-api.md §3.7a: an accepted socket must send its snapshot immediately, or `bentoml
    deploy` hangs."""
    path = "/ws/v1/clusters/default/pods?organization_name=default&namespace=tiffin&selector=x"
    with api.client.websocket_connect(path, headers={"X-YATAI-API-TOKEN": api.admin_token}) as socket:
        message = socket.receive_json()
    assert message["type"] == "success" and message["payload"] == []


def test_builder_pod_lookup_needs_a_token(api: Api) -> None:
    with (
        pytest.raises(WebSocketDisconnect),
        api.client.websocket_connect("/ws/v1/clusters/default/pods") as socket,
    ):
        socket.receive_json()
