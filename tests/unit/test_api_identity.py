"""Identity, organization, instance types (docs/bentocloud-api.md §2, §3.1, §3.4, Appendix A) and the
deployment stub."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from bentoml._internal.cloud.deployment import DeploymentAPI
from bentoml._internal.cloud.schemas.schemasv1 import ResourceInstanceSchema
from bentoml._internal.cloud.schemas.utils import schema_from_object
from starlette.websockets import WebSocketDisconnect

from tiffin.backends.capacity import GpuInfo, HostCapacity
from tiffin.core.instance_types import GiB, MiB
from tiffin.server import wiring

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import Api

H100_MACHINE = HostCapacity(16000, 128 * GiB, (GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559 * MiB),))
H100_DESCRIPTION = (
    "1 NVIDIA H100 80GB HBM3 (79.6 GiB), 12 CPU cores, 96 GiB memory. Schedulable on this machine."
)


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


def test_a_t4_type_on_an_h100_machine(make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "detect_host_capacity", lambda: H100_MACHINE)
    api = make_api()

    items = {item["display_name"]: item for item in api.ok("GET", "/api/v1/instance_types")}

    t4 = items["gpu.t4.1"]
    why = "needs an nvidia-tesla-t4 GPU; this machine has none (it has 1 nvidia-h100)"
    assert (t4["schedulable"], t4["unschedulable_reason"]) == (False, f"Instance type 'gpu.t4.1' {why}.")
    assert (
        t4["description"]
        == f"1 NVIDIA T4, 4 CPU cores, 16 GiB memory. Not schedulable on this machine: it {why}."
    )
    assert t4["config"]["gpu_config"] == {"type": "nvidia-tesla-t4", "memory": "16Gi"}
    h100 = items["gpu.h100.1"]
    assert (h100["schedulable"], h100["unschedulable_reason"]) == (True, "")
    assert h100["description"] == H100_DESCRIPTION
    assert h100["config"]["gpu_config"] == {"type": "nvidia-h100", "memory": "81559Mi"}
    assert h100["config"]["resources"]["requests"] == {"cpu": "12", "memory": "96Gi", "gpu": "1"}
    assert items["cpu.1"]["description"] == "0.5 CPU core, 2 GiB memory. Schedulable on this machine."


def test_the_client_reads_the_gpu_types(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `bentoml deployment list-instance-types` shows, parsed by the client's own code."""
    monkeypatch.setattr(wiring, "detect_host_capacity", lambda: H100_MACHINE)
    body = make_api().ok("GET", "/api/v1/instance_types")

    def listed(_cluster: str | None) -> list[ResourceInstanceSchema]:
        return schema_from_object(body, list[ResourceInstanceSchema])

    client: Any = SimpleNamespace(v2=SimpleNamespace(list_instance_types=listed))
    shown = {info.name: info.to_dict() for info in DeploymentAPI(client).list_instance_types()}

    assert shown["gpu.h100.1"] == {
        "name": "gpu.h100.1",
        "price": "3.1859",
        "description": H100_DESCRIPTION,
        "cpu": "12",
        "memory": "96Gi",
        "gpu": "1",
        "gpu_type": "nvidia-h100",
    }
    assert shown["gpu.t4.1"]["gpu_type"] == "nvidia-tesla-t4"
    assert "Not schedulable on this machine" in shown["gpu.t4.1"]["description"]


def test_an_operator_catalog_gets_no_machine_types(
    make_api: Callable[..., Api], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(wiring, "detect_host_capacity", lambda: H100_MACHINE)
    home = tmp_path / "home0"  # make_api's first home
    home.mkdir()
    (home / "instance-types.yaml").write_text(
        "instance_types:\n"
        "  - {name: gpu.t4, description: One T4, price: '1', cpu: 2, memory: 4Gi,"
        " gpu: 1, gpu_type: nvidia-tesla-t4}\n"
    )
    items = make_api().ok("GET", "/api/v1/instance_types")

    assert [item["display_name"] for item in items] == ["gpu.t4"]
    assert items[0]["schedulable"] is False


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
