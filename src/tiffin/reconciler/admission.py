"""How the gateway admits requests to each Service, from the Service's settings and traffic config.

The two BentoCloud modes map here: an online service (`min_replicas` ≥ 1, no external queue) sends
requests straight to replicas; an on-demand function (`min_replicas: 0`, or `traffic.external_queue`)
gets the gateway's queue, so requests wait for a replica (cold start) or for room under
`max_concurrency` instead of failing.
"""

from typing import Any

from tiffin.core.deployment_config import ServiceSettings
from tiffin.reconciler.readiness import DEFAULT_READY_TIMEOUT_S
from tiffin.routing.snapshot import Admission


def cold_start_timeout(settings: ServiceSettings) -> float:
    """How long a replica may take to get ready, and a request may wait for one."""
    timeout = settings.cold_start_timeout
    return float(timeout) if timeout else DEFAULT_READY_TIMEOUT_S


def queued(settings: ServiceSettings) -> bool:
    """Whether the gateway queues this Service's requests (and so enforces its `max_concurrency`)."""
    return settings.traffic.external_queue or settings.min_replicas == 0


def replica_overrides(settings: ServiceSettings) -> dict[str, Any]:
    """The Service's `config_overrides` as its replicas get them. Where the gateway enforces
    `max_concurrency`, the replica's own limit is loosened to twice it: the replica frees a slot a moment
    after its answer reaches the gateway, so an exact limit would refuse the next queued request (429)."""
    overrides = dict(settings.config_overrides)
    cap = settings.traffic.max_concurrency
    if queued(settings) and cap:
        overrides["traffic"] = {**(overrides.get("traffic") or {}), "max_concurrency": 2 * cap}
    return overrides


def admission(settings: ServiceSettings, queue_capacity: int) -> Admission:
    traffic = settings.traffic
    queue = queued(settings)
    return Admission(
        hold_s=cold_start_timeout(settings),
        queue=queue,
        max_concurrency=traffic.max_concurrency or 0,
        queue_capacity=queue_capacity if queue else 0,
        timeout_s=traffic.timeout_s,
    )
