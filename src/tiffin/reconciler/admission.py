"""How the gateway admits requests to each Service, from the Service's settings and traffic config.

The two BentoCloud modes map here: an online service (`min_replicas` ≥ 1, no external queue) sends
requests straight to replicas; an on-demand function (`min_replicas: 0`, or `traffic.external_queue`)
gets the gateway's queue, so requests wait for a replica (cold start) or for room under
`max_concurrency` instead of failing.
"""

from tiffin.core.deployment_config import ServiceSettings
from tiffin.reconciler.readiness import DEFAULT_READY_TIMEOUT_S
from tiffin.routing.snapshot import Admission


def cold_start_timeout(settings: ServiceSettings) -> float:
    """How long a replica may take to get ready, and a request may wait for one."""
    timeout = settings.cold_start_timeout
    return float(timeout) if timeout else DEFAULT_READY_TIMEOUT_S


def admission(settings: ServiceSettings, queue_capacity: int) -> Admission:
    traffic = settings.traffic
    queue = traffic.external_queue or settings.min_replicas == 0
    return Admission(
        hold_s=cold_start_timeout(settings),
        queue=queue,
        max_concurrency=traffic.max_concurrency or 0,
        queue_capacity=queue_capacity if queue else 0,
        timeout_s=traffic.timeout_s,
    )
