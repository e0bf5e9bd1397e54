"""What the gateway answers itself before any replica is involved.

In order: no route on this port, `Service.get_hosts()` discovery (internal ports, no auth: the runtime
sends none), bearer auth for protected deployments, terminated deployments, and Services with no ready
replica. Auth comes before status so an unauthenticated caller learns nothing about the deployment, and
before any wait for a replica, so a request without a valid token is never held.
"""

import json
from enum import Enum

from tiffin.gateway.auth import Lookup, TokenToCheck, authorize
from tiffin.gateway.http1 import RequestHead
from tiffin.gateway.replies import Reply, message
from tiffin.gateway.table import Route

TERMINATED = "terminated"


class NotReady(Enum):
    """No ready replica yet, and the route allows waiting (`hold_s`): hold the request until one is."""

    HOLD = 0


def local_reply(
    request: RequestHead, route: Route | None, port: int, tokens: Lookup, advertised_host: str
) -> Reply | TokenToCheck | NotReady | None:
    """The reply the gateway gives itself, None when the request goes to a replica, the token whose
    scopes must be fetched before deciding, or `NotReady.HOLD` when it should wait for a replica."""
    if route is None:
        return message(404, f"No deployment is served on port {port}: check the deployment's URL.")
    if route.internal and b"resolve-runner" in request.fields.index:
        return _resolve_runner(request, route, advertised_host)
    deployment = route.deployment
    if deployment.protected:
        refusal = authorize(request.fields, deployment.name, tokens)
        if refusal is not None:
            return refusal
    if deployment.status == TERMINATED:
        return message(503, f"Deployment {deployment.name} is terminated: restore it to serve traffic.")
    if not route.target.endpoints:
        return NotReady.HOLD if deployment.hold_s > 0 else not_ready(route)
    return None


def _resolve_runner(request: RequestHead, route: Route, advertised_host: str) -> Reply:
    """`Service.get_hosts()`: where the named Service is reachable (its internal route, not replicas)."""
    raw = request.fields.get(b"runner-name")
    name = raw.decode("latin-1") if raw else route.target.service
    port = route.internal_ports.get(name)
    if port is None:
        known = ", ".join(sorted(route.internal_ports))
        return message(
            404, f"Deployment {route.deployment.name} has no Service {json.dumps(name)}: use one of {known}."
        )
    return Reply(200, {"ips": [advertised_host], "port": port})


def not_ready(route: Route) -> Reply:
    """503 for a Service with no ready replica (now, or within the route's `hold_s`)."""
    deployment = route.deployment
    text = deployment.message or (
        f"Deployment {deployment.name} has no ready replica of Service {route.target.service} yet:"
        " retry shortly."
    )
    return message(503, text, ("retry-after", "1"))


def no_longer_served(route: Route) -> Reply:
    """503 for a request that waited for a replica while its port stopped serving it (deleted, closing)."""
    return message(
        503,
        f"Deployment {route.deployment.name} stopped being served while this request waited for a ready"
        f" replica of Service {route.target.service}.",
    )
