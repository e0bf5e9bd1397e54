"""The routing snapshot compiled for the hot path: listening port -> everything a request needs.

A `RoutingSnapshot` is organised by deployment; a request arrives on a port. Compiling once per
`apply()` turns every per-request decision into one dict lookup, and validates the snapshot before it
replaces the one in service, so a bad snapshot changes nothing.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from tiffin.gateway.balancer import Balancer, Balancers
from tiffin.gateway.upstream import Endpoint, Endpoints
from tiffin.routing.snapshot import Admission, DeploymentRoute, RoutingSnapshot, ServiceRoute


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """One Service of one deployment: its ready endpoints and how to choose among them."""

    deployment: str
    service: str
    endpoints: tuple[Endpoint, ...]
    balancer: Balancer
    admission: Admission

    @property
    def key(self) -> tuple[str, str]:
        return (self.deployment, self.service)


@dataclass(frozen=True, slots=True)
class Route:
    """What a port serves: a deployment's entry Service (public) or one Service (internal)."""

    deployment: DeploymentRoute
    target: ServiceTarget
    internal: bool
    internal_ports: Mapping[str, int]  # the deployment's Service name -> internal port


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: Mapping[int, Route]
    endpoints: Mapping[str, Endpoint]
    version: int = 0  # the snapshot's: a table is only rebuilt for a newer one


def compile_table(snapshot: RoutingSnapshot, registry: Endpoints, balancers: Balancers) -> RouteTable:
    """Raise ValueError (and change nothing) when two routes claim a port or an endpoint is no URL."""
    endpoints: dict[str, Endpoint] = {}
    routes: dict[int, Route] = {}
    for deployment in snapshot.deployments.values():
        targets = {
            name: _target(deployment.name, name, service, registry, endpoints, balancers)
            for name, service in deployment.services.items()
        }
        for port, route in _routes(deployment, targets):
            _claim(routes, port, route)
    balancers.keep_only({route.target.key for route in routes.values()})
    return RouteTable(routes, endpoints, snapshot.version)


def _routes(deployment: DeploymentRoute, targets: Mapping[str, ServiceTarget]) -> list[tuple[int, Route]]:
    entry = targets.get(deployment.entry_service)
    if entry is None:
        raise ValueError(
            f"Deployment {deployment.name}: entry Service {deployment.entry_service} is missing."
        )
    ports = {name: service.internal_port for name, service in deployment.services.items()}
    public = (deployment.port, Route(deployment, entry, internal=False, internal_ports=ports))
    internal = [(ports[name], Route(deployment, target, True, ports)) for name, target in targets.items()]
    return [public, *internal]


def _claim(routes: dict[int, Route], port: int, route: Route) -> None:
    taken = routes.get(port)
    if taken is not None:
        raise ValueError(
            f"Port {port} is claimed by both {_describe(taken)} and {_describe(route)}: ports must be unique."
        )
    routes[port] = route


def _describe(route: Route) -> str:
    kind = f"Service {route.target.service} (internal)" if route.internal else "public URL"
    return f"deployment {route.deployment.name} {kind}"


def _target(
    deployment: str,
    name: str,
    service: ServiceRoute,
    registry: Endpoints,
    endpoints: dict[str, Endpoint],
    balancers: Balancers,
) -> ServiceTarget:
    chosen = tuple(_endpoint(url, registry, endpoints) for url in dict.fromkeys(service.endpoints))
    balancer = balancers.of((deployment, name), chosen)
    return ServiceTarget(deployment, name, chosen, balancer, service.admission)


def _endpoint(url: str, registry: Endpoints, endpoints: dict[str, Endpoint]) -> Endpoint:
    endpoint = endpoints.get(url)
    if endpoint is None:
        endpoint = endpoints[url] = registry.get(url)
    return endpoint
