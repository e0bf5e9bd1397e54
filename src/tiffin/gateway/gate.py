"""What the gateway answers itself before any replica is involved.

In order: no route on this port or for this host name (`unrouted`), `Service.get_hosts()` discovery
(internal ports, no auth: the runtime sends none), bearer auth for protected deployments, terminated
deployments. Auth comes before status so an unauthenticated caller learns nothing about the deployment,
and before any wait for a replica (`activator`), so a request without a valid token is never held.
"""

import json

from tiffin.gateway.activator import TERMINATED, terminated
from tiffin.gateway.auth import Lookup, TokenToCheck, authorize
from tiffin.gateway.parsing import RequestHead
from tiffin.gateway.replies import Reply, message
from tiffin.gateway.table import Route, RouteTable

_SHOWN_HOST = 200  # characters of an unknown host name quoted back


def unrouted(request: RequestHead, port: int, table: RouteTable) -> Reply:
    """404 for a request nothing is served for: what it asked for, and what to ask for instead."""
    if port != table.shared_port:
        return message(404, f"No deployment is served on port {port}: check the deployment's URL.")
    wanted = f"<deployment name>.{table.domain}"
    host = request.fields.get(b"host")
    if not host:
        return message(404, f"The request has no Host header: send the deployment's host name, {wanted}.")
    asked = json.dumps(host.decode("latin-1")[:_SHOWN_HOST])
    return message(
        404, f"No deployment is served at host {asked}: deployment URLs here have the host name {wanted}."
    )


def local_reply(
    request: RequestHead, route: Route, tokens: Lookup, advertised_host: str
) -> Reply | TokenToCheck | None:
    """The reply the gateway gives itself, the token whose scopes must be fetched before deciding, or
    None when the request is for a replica (then the activator admits it)."""
    if route.internal and request.fields.get(b"resolve-runner") is not None:
        return _resolve_runner(request, route, advertised_host)
    deployment = route.deployment
    if deployment.protected:
        refusal = authorize(request.fields, deployment.name, tokens)
        if refusal is not None:
            return refusal
    if deployment.status == TERMINATED:
        return terminated(route)
    if request.upgrade == b"websocket" and request.minor == 0:
        return message(400, "A WebSocket handshake needs HTTP/1.1.")
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
