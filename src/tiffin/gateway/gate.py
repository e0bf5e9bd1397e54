"""What the gateway answers itself before any replica is involved.

In order: no route on this port, `Service.get_hosts()` discovery (internal ports, no auth: the runtime
sends none), bearer auth for protected deployments, terminated deployments, and Services with no ready
replica. Auth comes before status so an unauthenticated caller learns nothing about the deployment.
"""

import json

from tiffin.gateway.auth import Lookup, TokenToCheck, authorize
from tiffin.gateway.http1 import RequestHead
from tiffin.gateway.replies import Reply, message
from tiffin.gateway.table import Route

TERMINATED = "terminated"


def local_reply(
    request: RequestHead, route: Route | None, port: int, tokens: Lookup, advertised_host: str
) -> Reply | TokenToCheck | None:
    """The reply the gateway gives itself, None when the request goes to a replica, or the token whose
    scopes must be fetched before deciding."""
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
        return _not_ready(route)
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


def _not_ready(route: Route) -> Reply:
    deployment = route.deployment
    text = deployment.message or (
        f"Deployment {deployment.name} has no ready replica of Service {route.target.service} yet:"
        " retry shortly."
    )
    return message(503, text, ("retry-after", "1"))
