"""Routing snapshots and traffic counts as JSON documents, for processes that share only the store.

Scaled out, the controller publishes snapshots and gateways report what they counted through the
database, not through memory; these functions are the one encoding of both. Decoding rebuilds the same
immutable values, so `snapshot_from_json(snapshot_to_json(s)) == s`.
"""

import dataclasses
from typing import Any

from tiffin.core.deployment_status import DeploymentStatus
from tiffin.routing.snapshot import Admission, DeploymentRoute, RoutingSnapshot, ServiceRoute
from tiffin.routing.traffic import QueueStats, ReplicaTraffic, Traffic

Json = dict[str, Any]


def snapshot_to_json(snapshot: RoutingSnapshot) -> Json:
    return {
        "version": snapshot.version,
        "domain": snapshot.domain,
        "deployments": [_deployment_to_json(d) for d in snapshot.deployments.values()],
    }


def snapshot_from_json(data: Json) -> RoutingSnapshot:
    deployments = [_deployment_from_json(d) for d in data.get("deployments") or []]
    version, domain = int(data.get("version") or 0), str(data.get("domain") or "")
    return RoutingSnapshot({d.name: d for d in deployments}, version, domain)


def _deployment_to_json(route: DeploymentRoute) -> Json:
    fields = {f.name: getattr(route, f.name) for f in dataclasses.fields(route) if f.name != "services"}
    services = [dataclasses.asdict(service) for service in route.services.values()]
    return {**fields, "services": services}


def _deployment_from_json(data: Json) -> DeploymentRoute:
    fields = {k: v for k, v in data.items() if k != "services"}
    fields["status"] = DeploymentStatus(fields.get("status", DeploymentStatus.RUNNING))
    services = [_service_from_json(s) for s in data.get("services") or []]
    return DeploymentRoute(**fields, services={s.name: s for s in services})


def _service_from_json(data: Json) -> ServiceRoute:
    fields = dict(data)
    fields["endpoints"] = tuple(fields.get("endpoints") or ())
    fields["admission"] = Admission(**(fields.get("admission") or {}))
    return ServiceRoute(**fields)


def traffic_to_json(traffic: Traffic) -> Json:
    return {
        "replicas": {url: [t.requests, t.errors, t.in_flight] for url, t in traffic.replicas.items()},
        "queues": [[*key, q.waiting, q.oldest_wait_s] for key, q in traffic.queues.items()],
        "arrivals": [[*key, count] for key, count in traffic.arrivals.items()],
    }


def traffic_from_json(data: Json) -> Traffic:
    replicas = {
        url: ReplicaTraffic(*map(int, counts)) for url, counts in (data.get("replicas") or {}).items()
    }
    queues = {(d, s): QueueStats(int(w), float(age)) for d, s, w, age in data.get("queues") or []}
    arrivals = {(d, s): int(n) for d, s, n in data.get("arrivals") or []}
    return Traffic(replicas, queues, arrivals)
