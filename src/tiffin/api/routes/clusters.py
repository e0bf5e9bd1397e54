"""Clusters and instance types: one cluster, `default`, standing for this Tiffin's runtime.

Each instance type says whether this machine can run it: `schedulable` and `unschedulable_reason`
for API clients, and the same in words at the end of its `description`, the one free-text field the
bentoml client shows (`bentoml deployment list-instance-types -o json`).
"""

from typing import Any

from fastapi import APIRouter

from tiffin.api import wire
from tiffin.api.auth import Context, ReadCluster
from tiffin.backends.capacity import HostCapacity
from tiffin.core.instance_types import InstanceType
from tiffin.store.identity import find_cluster, list_clusters

router = APIRouter(prefix="/api/v1")


@router.get("/clusters")
def clusters(_: ReadCluster, context: Context) -> dict[str, Any]:
    with context.db.session() as session:
        items = [wire.cluster(row) for row in list_clusters(session)]
    return wire.page(items, 0, len(items))


@router.get("/clusters/{name}")
def cluster(name: str, _: ReadCluster, context: Context) -> dict[str, Any]:
    with context.db.session() as session:
        row = find_cluster(session, name)
        return {
            **wire.cluster(row),
            "organization": wire.organization(row.organization),
            "config": {"default_deployment_kube_namespace": "tiffin"},
            "resource_instances": _instance_types(context.instance_types, context.host),
        }


@router.get("/instance_types")
def instance_types(_: ReadCluster, context: Context, cluster: str | None = None) -> list[dict[str, Any]]:
    with context.db.session() as session:
        find_cluster(session, cluster)
    return _instance_types(context.instance_types, context.host)


def _instance_types(catalog: list[InstanceType], host: HostCapacity) -> list[dict[str, Any]]:
    return [_instance_type(index, item, host) for index, item in enumerate(catalog)]


def _instance_type(index: int, item: InstanceType, host: HostCapacity) -> dict[str, Any]:
    why_not = host.why_not(item)
    shortfall = host.shortfall(item)
    gpu_config = {"type": item.gpu_type, "memory": item.gpu_memory or ""} if item.gpu_type else None
    return {
        "uid": f"instance-type-{index}",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": None,
        "deleted_at": None,
        "name": item.name,
        "resource_type": "resource_instance",
        "labels": [],
        "display_name": item.name,
        "description": _with_where_it_runs(item.description, shortfall),
        "config": {
            "group": item.group,
            "price": item.price,
            "resources": {"requests": item.requests(), "limits": item.requests()},
            "gpu_config": gpu_config,
        },
        "schedulable": why_not is None,
        "unschedulable_reason": why_not or "",
    }


def _with_where_it_runs(description: str, shortfall: str | None) -> str:
    """`"1 NVIDIA T4, 4 CPU cores, 16 GiB memory. Not schedulable on this machine: it needs ..."`."""
    where = (
        f"Not schedulable on this machine: it {shortfall}." if shortfall else "Schedulable on this machine."
    )
    description = description.strip().removesuffix(".")
    return f"{description}. {where}" if description else where
