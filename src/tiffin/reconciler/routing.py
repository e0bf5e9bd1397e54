"""Builds the routing snapshot the gateway serves from deployments and the replicas observed.

The operator's domain (`TIFFIN_DOMAIN`) travels in the snapshot, so every gateway serves the same host
names as the API hands out.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from tiffin.backends.protocol import ReplicaPhase, ReplicaStatus
from tiffin.core.deployment_status import DeploymentStatus
from tiffin.reconciler.replica_set import ReplicaSet
from tiffin.routing.snapshot import Admission, DeploymentRoute, RoutingSnapshot, ServiceRoute


@dataclass(frozen=True)
class RouteInput:
    name: str
    port: int
    entry_service: str
    internal_ports: Mapping[str, int]
    protected: bool
    status: DeploymentStatus
    message: str
    admissions: Mapping[str, Admission] = field(default_factory=dict)  # by Service; default: no waiting


def newer(published: RoutingSnapshot | None, built: RoutingSnapshot) -> RoutingSnapshot | None:
    """`built` with the next version if it routes differently from `published`, else None (nothing to
    publish: gateways keep their tables, balancers and pools untouched)."""
    if published is not None and replace(published, version=built.version) == built:
        return None  # the same deployments under the same domain
    version = published.version + 1 if published is not None else 1
    return replace(built, version=version)


def snapshot(
    deployments: Sequence[RouteInput], observed: Sequence[ReplicaStatus], domain: str = ""
) -> RoutingSnapshot:
    """Only RUNNING replicas get traffic, whatever revision they belong to; with a `domain`, every
    deployment is also served at `<name>.<domain>`."""
    replicas = ReplicaSet(observed)
    return RoutingSnapshot({d.name: _route(d, replicas) for d in deployments}, domain=domain)


def _route(deployment: RouteInput, observed: ReplicaSet) -> DeploymentRoute:
    services = {
        name: ServiceRoute(
            name,
            port,
            _endpoints(deployment.name, name, observed),
            deployment.admissions.get(name, Admission()),
        )
        for name, port in deployment.internal_ports.items()
    }
    return DeploymentRoute(
        name=deployment.name,
        port=deployment.port,
        entry_service=deployment.entry_service,
        services=services,
        protected=deployment.protected,
        status=deployment.status,
        message=deployment.message,
    )


def _endpoints(deployment: str, service: str, observed: ReplicaSet) -> tuple[str, ...]:
    ready = observed.of(deployment, service).get(ReplicaPhase.RUNNING)
    return tuple(sorted(r.url for r in ready if r.url))
