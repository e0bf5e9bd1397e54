"""What the gateway answers itself before any replica is involved, and when a request may go on.

In order: no route on this port, `Service.get_hosts()` discovery (internal ports, no auth: the runtime
sends none), bearer auth for protected deployments, terminated deployments; then admission: forward,
wait for a replica (none ready, or the Service's queue), or refuse (no waiting allowed, queue full).
Auth comes before status so an unauthenticated caller learns nothing about the deployment, and before
any wait for a replica, so a request without a valid token is never held.
"""

import json
from enum import Enum

from tiffin.gateway.auth import Lookup, TokenToCheck, authorize
from tiffin.gateway.http1 import RequestHead
from tiffin.gateway.replies import Reply, message
from tiffin.gateway.table import Route

TERMINATED = "terminated"


class Admit(Enum):
    FORWARD = 0  # a ready replica has room: send the request on now
    HOLD = 1  # wait in the Service's line for a replica with room (up to `hold_s`)


def local_reply(
    request: RequestHead, route: Route | None, port: int, tokens: Lookup, advertised_host: str
) -> Reply | TokenToCheck | None:
    """The reply the gateway gives itself, the token whose scopes must be fetched before deciding, or
    None when the request is for a replica (then `admit` says whether it goes on now)."""
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
    return None


def admit(route: Route, waiting: int, resumed: bool) -> Admit | Reply:
    """`waiting`: requests already in the Service's line; `resumed`: this one comes from its head."""
    target, rules = route.target, route.target.admission
    if has_room(route) and (resumed or not rules.queue or waiting == 0):
        return Admit.FORWARD
    if rules.queue and rules.queue_capacity and not resumed and waiting >= rules.queue_capacity:
        return message(
            429,
            f"Deployment {route.deployment.name}: Service {target.service} has {waiting} requests waiting,"
            " its queue's limit: retry later.",
            ("retry-after", "1"),
        )
    return Admit.HOLD if rules.hold_s > 0 else not_ready(route)


def has_room(route: Route) -> bool:
    """A ready replica of the route's Service can take a request now (under its `max_concurrency`)."""
    target = route.target
    cap = target.admission.max_concurrency if target.admission.queue else 0
    return any(cap == 0 or e.in_flight < cap for e in target.endpoints)


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
    """503 for a Service with no replica to serve a request (now, or within its `hold_s`)."""
    deployment = route.deployment
    text = deployment.message or (
        f"Deployment {deployment.name} has no ready replica of Service {route.target.service} yet:"
        " retry shortly."
    )
    return message(503, text, ("retry-after", "1"))


def waited_too_long(route: Route) -> Reply:
    """503 for a request whose wait in the Service's line outlasted its bound (`hold_s`)."""
    if not route.target.endpoints:
        return not_ready(route)
    return message(
        503,
        f"Deployment {route.deployment.name}: every replica of Service {route.target.service} stayed busy"
        f" for {route.target.admission.hold_s:g} s: retry shortly.",
        ("retry-after", "1"),
    )


def no_longer_served(route: Route) -> Reply:
    """503 for a request that waited for a replica while its port stopped serving it (deleted, closing)."""
    return message(
        503,
        f"Deployment {route.deployment.name} stopped being served while this request waited for a ready"
        f" replica of Service {route.target.service}.",
    )
