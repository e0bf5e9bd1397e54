"""What the reconciler publishes and the gateway serves: ports, host names, Services and their ready
replicas.

A snapshot is immutable; the gateway swaps the whole thing atomically, so a request always sees one
consistent picture. With a `domain` (the operator's wildcard DNS name), each deployment is also served
at the host name `<deployment name>.<domain>` on the gateway's one shared port (where the gateway
listens is its own setting); without one, by its ports only.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from tiffin.core.deployment_status import DeploymentStatus


@dataclass(frozen=True)
class Admission:
    """How the gateway admits requests to one Service.

    Without `queue`, requests go straight to a ready replica (and its own 503 passes through); while
    there is none, they wait up to `hold_s`. With `queue`, each replica gets at most `max_concurrency`
    requests at once (0: no cap) and the rest wait in arrival order, at most `queue_capacity` of them
    (0: no bound; beyond it, 429), each up to `hold_s`. `timeout_s` bounds the wait for a replica's
    response head once a request is forwarded (0: none; then 504).
    """

    hold_s: float = 0.0
    queue: bool = False
    max_concurrency: int = 0
    queue_capacity: int = 0
    timeout_s: float = 0.0


@dataclass(frozen=True)
class ServiceRoute:
    name: str
    internal_port: int  # the loopback port other Services' replicas use as this Service's URL
    endpoints: tuple[str, ...] = ()  # base URLs of READY replicas only, e.g. "http://127.0.0.1:41234"
    admission: Admission = Admission()


@dataclass(frozen=True)
class DeploymentRoute:
    name: str
    port: int  # the deployment's public port: its URL is http://<gateway host>:<port>
    entry_service: str
    services: Mapping[str, ServiceRoute]
    protected: bool = False  # requires `Authorization: Bearer <token>` with protected_endpoint scope
    status: DeploymentStatus = DeploymentStatus.RUNNING  # e.g. terminated: the gateway answers with an error
    message: str = ""  # why traffic cannot be served, when there is no ready replica


@dataclass(frozen=True)
class RoutingSnapshot:
    """Every deployment's routes; `version` grows with each snapshot that differs from the one before."""

    deployments: Mapping[str, DeploymentRoute] = field(default_factory=dict)
    version: int = 0
    domain: str = ""  # e.g. "apps.example.com": deployment "shop" is also served as shop.apps.example.com
