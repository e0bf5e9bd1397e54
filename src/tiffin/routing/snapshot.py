"""What the reconciler publishes and the gateway serves: ports, Services and their ready replicas.

A snapshot is immutable; the gateway swaps the whole thing atomically, so a request always sees one
consistent picture.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceRoute:
    name: str
    internal_port: int  # the loopback port other Services' replicas use as this Service's URL
    endpoints: tuple[str, ...] = ()  # base URLs of READY replicas only, e.g. "http://127.0.0.1:41234"


@dataclass(frozen=True)
class DeploymentRoute:
    name: str
    port: int  # the deployment's public port: its URL is http://<gateway host>:<port>
    entry_service: str
    services: Mapping[str, ServiceRoute]
    protected: bool = False  # requires `Authorization: Bearer <token>` with protected_endpoint scope
    status: str = "running"  # e.g. "terminated": the gateway answers with a clear error instead
    message: str = ""  # why traffic cannot be served, when there is no ready replica
    hold_s: float = 0.0  # how long a request may wait for a ready replica (0: answer 503 at once)


@dataclass(frozen=True)
class RoutingSnapshot:
    deployments: Mapping[str, DeploymentRoute] = field(default_factory=dict)
