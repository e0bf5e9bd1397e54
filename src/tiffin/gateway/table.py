"""The routing snapshot compiled for the hot path: listening port, or host name -> what a request needs.

A `RoutingSnapshot` is organised by deployment; a request arrives on a port, and on the shared port
(only with a domain) names its deployment in `Host`. Compiling once per `apply()` turns every
per-request decision into one dict lookup, and validates the snapshot before it replaces the one in
service, so a bad snapshot changes nothing. Host names are keyed as `host_key` writes the field: lower
case, no port, no final dot; a key is exactly `<deployment name>.<domain>`, so a name with more or
fewer labels before the domain is simply not found.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

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
    routes: Mapping[int, Route]  # by port: each deployment's public port and each Service's internal one
    endpoints: Mapping[str, Endpoint]
    version: int = 0  # the snapshot's: a table is only rebuilt for a newer one
    hosts: Mapping[bytes, Route] = field(default_factory=dict)  # by host key: b"shop.apps.example.com"
    shared_port: int = 0  # the port that routes by `Host`; 0: none (the snapshot has no domain)
    domain: str = ""
    services: Mapping[tuple[str, str], Route] = field(default_factory=dict)  # each Service's internal route

    @property
    def ports(self) -> frozenset[int]:
        """Every port to listen on."""
        return frozenset([*self.routes, self.shared_port] if self.shared_port else self.routes)

    def route(self, port: int, host: bytes | None) -> Route | None:
        """The route of a request that arrived on `port` with this `Host` field (None: no route)."""
        if port == self.shared_port:
            return self.hosts.get(host_key(host))
        return self.routes.get(port)


def host_key(host: bytes | None) -> bytes:
    """A `Host` field as the table's host keys are written: lower case, without its port or a final dot
    (b"Shop.Apps.Example.com.:8080" -> b"shop.apps.example.com")."""
    if not host:
        return b""
    key = host.lower()
    name, colon, port = key.rpartition(b":")
    if colon and (not port or port.isdigit()):  # an IPv6 literal without a port ends in "]": kept
        key = name
    return key[:-1] if key.endswith(b".") else key


def compile_table(
    snapshot: RoutingSnapshot, registry: Endpoints, balancers: Balancers, shared_port: int = 0
) -> RouteTable:
    """Raise ValueError (and change nothing) when two routes claim a port or a host name, or an endpoint
    is no URL. The table routes by host name on `shared_port` only when the snapshot has a domain."""
    domain = snapshot.domain.lower().removesuffix(".")
    endpoints: dict[str, Endpoint] = {}
    routes: dict[int, Route] = {}
    hosts: dict[bytes, Route] = {}
    services: dict[tuple[str, str], Route] = {}
    for deployment in snapshot.deployments.values():
        targets = {
            name: _target(deployment.name, name, service, registry, endpoints, balancers)
            for name, service in deployment.services.items()
        }
        public, internal = _routes(deployment, targets)
        for port, route in [(deployment.port, public), *internal]:
            _claim(routes, port, route)
        services.update((route.target.key, route) for _, route in internal)
        if domain:
            _claim_host(hosts, f"{deployment.name}.{domain}".lower().encode(), public)
    shared = shared_port if domain else 0
    if shared in routes:
        raise ValueError(
            f"Port {shared} is the gateway's shared port (deployments by host name) and is claimed by"
            f" {_describe(routes[shared])} too: ports must be unique."
        )
    balancers.keep_only({route.target.key for route in routes.values()})
    return RouteTable(routes, endpoints, snapshot.version, hosts, shared, domain, services)


def _routes(
    deployment: DeploymentRoute, targets: Mapping[str, ServiceTarget]
) -> tuple[Route, list[tuple[int, Route]]]:
    """The deployment's public route, and each Service's internal route with its port."""
    entry = targets.get(deployment.entry_service)
    if entry is None:
        raise ValueError(
            f"Deployment {deployment.name}: entry Service {deployment.entry_service} is missing."
        )
    ports = {name: service.internal_port for name, service in deployment.services.items()}
    public = Route(deployment, entry, internal=False, internal_ports=ports)
    internal = [(ports[name], Route(deployment, target, True, ports)) for name, target in targets.items()]
    return public, internal


def _claim(routes: dict[int, Route], port: int, route: Route) -> None:
    taken = routes.get(port)
    if taken is not None:
        raise ValueError(
            f"Port {port} is claimed by both {_describe(taken)} and {_describe(route)}: ports must be unique."
        )
    routes[port] = route


def _claim_host(hosts: dict[bytes, Route], host: bytes, route: Route) -> None:
    taken = hosts.get(host)
    if taken is not None:
        raise ValueError(
            f"Host name {host.decode()} is claimed by both deployment {taken.deployment.name} and"
            f" deployment {route.deployment.name}: host names must be unique."
        )
    hosts[host] = route


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
