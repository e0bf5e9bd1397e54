"""Deployments (docs/bentocloud-api.md §3.5): create, get, list, update, void_update, terminate, delete,
replicas and logs.

These routes only write desired state; the reconciler makes it so and reports back through `status`.
"""

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from tiffin.api import wire
from tiffin.api.auth import Context, ReadCluster, WriteCluster
from tiffin.api.bodies import CreateDeployment, DeploymentBody, Rollback
from tiffin.api.context import ApiContext
from tiffin.api.deployment_requests import check_request, new_name
from tiffin.api.query import bool_param, filter_terms, int_param
from tiffin.api.uploads import transmission_strategy
from tiffin.backends.ended import EndedReplica
from tiffin.core.errors import NotImplementedYet
from tiffin.store import deployments as store
from tiffin.store import events
from tiffin.store.db import Session
from tiffin.store.events import Kind as EventKind
from tiffin.store.identity import find_cluster
from tiffin.store.models import Deployment, ReplicaRecord, User

router = APIRouter(prefix="/api/v2/deployments")
Json = dict[str, Any]
DEFAULT_LOG_TAIL = 200
ENDED_LOGS_SHOWN = 3  # per Service, when no replica is named
DEFAULT_EVENTS = 100


@router.post("")
def create(body: CreateDeployment, principal: WriteCluster, context: Context, request: Request) -> Json:
    now = context.clock.now()
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        cluster = find_cluster(session, request.query_params.get("cluster"))
        checked = check_request(session, context, user, body)
        spec = store.NewDeployment(
            name=new_name(body.name, checked.artifact),
            artifact=checked.artifact,
            config=checked.config,
            labels=[label.model_dump() for label in body.labels or []],
            dev=bool(body.dev),
            service_names=checked.service_names,
        )
        row = store.create_deployment(session, user, cluster, spec, context.ports, context.box, now)
        return _json(session, context, row)


@router.get("")
def list_deployments(principal: ReadCluster, context: Context, request: Request) -> Json:
    params = request.query_params
    words, labels = filter_terms(params.get("search"), params.get("q"))
    page = store.DeploymentPage(
        start=int_param(params.get("start"), "start", 0),
        count=int_param(params.get("count"), "count", 20),
        search=" ".join(w for w in words if w != "is:dev") or None,
        labels=labels,
        dev_only="is:dev" in words,
    )
    with context.db.session() as session:
        if not bool_param(params.get("all")):
            find_cluster(session, params.get("cluster"))
        rows, total = store.list_deployments(session, principal.organization_id, page)
        return wire.page([_json(session, context, row) for row in rows], page.start, total)


@router.get("/{name}")
def get(name: str, principal: ReadCluster, context: Context, request: Request) -> Json:
    with context.db.session() as session:
        find_cluster(session, request.query_params.get("cluster"))
        return _json(session, context, store.find_deployment(session, principal.organization_id, name))


@router.put("/{name}")
def update(name: str, body: DeploymentBody, principal: WriteCluster, context: Context) -> Json:
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        row = store.find_deployment(session, principal.organization_id, name)
        checked = check_request(session, context, user, body)
        if body.labels is not None:
            row.labels = [label.model_dump() for label in body.labels]
        change = store.Change(user, checked.artifact, checked.config, f"{user.name} updated the deployment")
        store.roll_out(session, row, change, context.ports, context.box, context.clock.now())
        return _json(session, context, row)


@router.put("/{name}/void_update")
def void_update(name: str, principal: WriteCluster, context: Context) -> Json:
    """Redeploy unchanged: a new revision equal to the current one, so every replica is replaced."""
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        row = store.find_deployment(session, principal.organization_id, name)
        revision = store.current_revision(session, row)
        if revision is not None:
            why = f"{user.name} redeployed revision {revision.uid} unchanged"
            change = store.Change(user, revision.artifact, dict(revision.config), why)
            store.roll_out(session, row, change, context.ports, context.box, context.clock.now())
        return _json(session, context, row)


@router.post("/{name}/terminate")
def terminate(name: str, principal: WriteCluster, context: Context) -> Json:
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        row = store.find_deployment(session, principal.organization_id, name)
        store.terminate(session, row, user, context.clock.now())
        return _json(session, context, row)


@router.delete("/{name}")
def delete(name: str, principal: WriteCluster, context: Context) -> Json:
    with context.db.session() as session:
        row = store.find_deployment(session, principal.organization_id, name)
        body = _json(session, context, row)
        store.delete_deployment(session, row)
        return body


@router.get("/{name}/revisions")
def revisions(name: str, principal: ReadCluster, context: Context) -> Json:
    """Every revision, newest first; `active` marks the one the deployment runs (or would run)."""
    with context.db.session() as session:
        row = store.find_deployment(session, principal.organization_id, name)
        items = [
            wire.revision_summary(r, r.id == row.current_revision_id)
            for r in store.list_revisions(session, row)
        ]
    return {"items": items}


@router.post("/{name}/rollback")
def rollback(name: str, body: Rollback, principal: WriteCluster, context: Context) -> Json:
    """A new revision equal to an earlier one, rolled out like any update."""
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        row = store.find_deployment(session, principal.organization_id, name)
        target = store.find_revision(session, row, body.revision)
        why = f"{user.name} rolled back to revision {target.uid}"
        change = store.Change(user, target.artifact, dict(target.config), why, EventKind.ROLLBACK)
        store.roll_out(session, row, change, context.ports, context.box, context.clock.now())
        return _json(session, context, row)


@router.post("/{name}/restore")
def restore(name: str, principal: WriteCluster, context: Context) -> Json:
    """Bring a terminated deployment back with its latest revision (`bentoml deployment start` is broken)."""
    with context.db.session() as session:
        user = session.get_one(User, principal.user_id)
        row = store.find_deployment(session, principal.organization_id, name)
        store.restore(session, row, user, context.clock.now())
        return _json(session, context, row)


@router.get("/{name}/events")
def deployment_events(name: str, principal: ReadCluster, context: Context, request: Request) -> Json:
    """The timeline, oldest first: the newest `limit` events, of one Service if `service=` is given."""
    params = request.query_params
    limit = int_param(params.get("limit"), "limit", DEFAULT_EVENTS, maximum=events.KEEP_PER_DEPLOYMENT)
    with context.db.session() as session:
        row = store.find_deployment(session, principal.organization_id, name)
        found = events.latest(session, row.id, limit, params.get("service"))
        return {"items": [wire.event(e) for e in found]}


@router.get("/{name}/replicas")
def replicas(name: str, principal: ReadCluster, context: Context) -> Json:
    """Each replica, and per Service the replicas wanted (autoscaled), ready, and requests waiting."""
    with context.db.session() as session:
        row = store.find_deployment(session, principal.organization_id, name)
        items = [
            {
                "replica": r.replica_id,
                "service": r.service,
                "revision": r.revision,
                "state": r.state,
                "reason": r.reason,
                "restarts": r.restarts,
                "url": r.url,
                "pid": r.pid,
            }
            for r in store.replica_records(session, row)
        ]
        return {"items": items, "services": row.scale}


@router.get("/{name}/logs", response_class=PlainTextResponse)
def logs(name: str, principal: ReadCluster, context: Context, request: Request) -> str:
    """The build log, then the logs of replicas that ended lately (the newest few per Service), then those
    of live replicas; `replica=` one replica, `service=` one Service's replicas (no build log)."""
    params = request.query_params
    tail = int_param(params.get("tail"), "tail", DEFAULT_LOG_TAIL, maximum=100_000)
    if context.logs is None:
        raise NotImplementedYet("This Tiffin process does not run replicas, so it has no logs to show.")
    with context.db.session() as session:
        row = store.find_deployment(session, principal.organization_id, name)
        revision = store.current_revision(session, row)
        records = store.replica_records(session, row)
        bento = f"{revision.artifact.repository.name}:{revision.artifact.version}" if revision else ""
    replica, service = params.get("replica") or "", params.get("service") or ""
    sources = _log_sources(records, context.logs.ended_replicas(name), replica)
    parts = []
    if bento and not (replica or service):
        parts.append(_section("build", context.logs.build_log(bento, tail)))
    for source in sources:
        if replica in ("", source.replica_id) and service in ("", source.service):
            parts.append(_section(source.title, context.logs.replica_log(source.replica_id, tail)))
    return "".join(parts)


@dataclass(frozen=True)
class _LogSource:
    replica_id: str
    service: str
    title: str


def _log_sources(records: list[ReplicaRecord], ended: list[EndedReplica], replica: str) -> list[_LogSource]:
    """Replicas that ended lately (the newest few per Service, or the one asked for), then live ones."""
    live = {r.replica_id for r in records}
    gone = _shown([e for e in ended if e.replica_id not in live], replica)
    return [_LogSource(e.replica_id, e.service, f"{e.replica_id} (ended: {e.reason})") for e in gone] + [
        _LogSource(r.replica_id, r.service, r.replica_id) for r in records
    ]


def _shown(ended: list[EndedReplica], replica: str) -> list[EndedReplica]:
    """The newest ENDED_LOGS_SHOWN ended replicas of each Service (oldest first), or the one asked for."""
    if replica:
        return [e for e in ended if e.replica_id == replica]
    counts: dict[str, int] = {}
    shown = []
    for one in reversed(ended):
        counts[one.service] = counts.get(one.service, 0) + 1
        if counts[one.service] <= ENDED_LOGS_SHOWN:
            shown.append(one)
    return shown[::-1]


def _section(title: str, text: str) -> str:
    return f"==> {title} <==\n{text}{'' if text.endswith(chr(10)) or not text else chr(10)}"


def _json(session: Session, context: ApiContext, row: Deployment) -> Json:
    revision = store.current_revision(session, row)
    return wire.deployment(row, revision, _url(context, row), transmission_strategy(context))


def _url(context: ApiContext, row: Deployment) -> str:
    """The one URL clients get (`urls[0]`: `get_client()`, `depends(deployment=)`, `deployment get`): by
    host name under TIFFIN_DOMAIN when one is set, else the deployment's own port. Both are served."""
    domain = context.settings.domain
    return domain.url(row.name) if domain is not None else f"http://{context.public_host}:{row.port}"
