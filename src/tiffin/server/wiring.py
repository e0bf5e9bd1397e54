"""Builds a ready-to-serve Tiffin from settings: store migrated, first-start bootstrap done, API built,
and (for `tiffin up`) the runtime that runs deployments attached to the API's lifespan."""

import dataclasses
import os
from dataclasses import dataclass

from cryptography.fernet import InvalidToken
from fastapi import FastAPI

from tiffin.api.app import create_api
from tiffin.api.context import ApiContext
from tiffin.api.tickets import TicketSigner
from tiffin.artifacts.storage import ArtifactStore
from tiffin.autoscaler import ScalerSettings
from tiffin.backends.capacity import HostCapacity, detect_host_capacity, with_machine_gpus
from tiffin.backends.local import LocalBackend
from tiffin.backends.protocol import Backend
from tiffin.builder import Builder
from tiffin.builder.fetch import ApiMaterializer
from tiffin.builder.materialize import local_materializer
from tiffin.core.clock import Clock, SystemClock
from tiffin.core.errors import BadRequest
from tiffin.core.instance_types import InstanceType, load_catalog
from tiffin.core.keyring import load_or_create_key
from tiffin.core.settings import Settings
from tiffin.reconciler.loop import ReconcilerDeps
from tiffin.server.runtime import Runtime, make_runtime
from tiffin.store.db import Database, migrate
from tiffin.store.deployments import PortPool
from tiffin.store.identity import bootstrap
from tiffin.store.node_tokens import node_token
from tiffin.store.secret_box import SecretBox
from tiffin.store.secrets import SecretStore

NODE_TOKEN_FILE = "ray-nodes.token"  # the sealed secret of the token Ray nodes download bentos with


@dataclass(frozen=True)
class Tiffin:
    app: FastAPI
    db: Database
    admin_token: str | None
    """The admin token's secret on first start (to print once); None afterwards."""


@dataclass(frozen=True)
class Listen:
    """Where `tiffin up` listens: the API's address, also the host of every deployment URL."""

    host: str
    port: int


def build(settings: Settings, clock: Clock | None = None, listen: Listen | None = None) -> Tiffin:
    """The API only; with `listen`, also the runtime that builds and runs deployments."""
    clock = clock or SystemClock()
    if listen is not None:
        _check_ports(settings, listen)
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    migrate(db.engine)
    with db.session() as session:
        first_start = bootstrap(session, clock.now(), settings.bootstrap_token)
    context = _api_context(settings, db, clock)
    if listen is None:
        return Tiffin(create_api(context), db, first_start.admin_token)
    runtime = _runtime(settings, context, listen)
    context = dataclasses.replace(context, public_host=url_host(listen.host), logs=runtime)
    app = create_api(context, lifespan=lambda _app: runtime.running())
    return Tiffin(app, db, first_start.admin_token)


def _check_ports(settings: Settings, listen: Listen) -> None:
    if settings.domain is not None and listen.port == settings.gateway_port:
        raise BadRequest(
            f"The API and TIFFIN_GATEWAY_PORT both want port {listen.port}: give `tiffin up` another --port"
            " or set another TIFFIN_GATEWAY_PORT."
        )


def _api_context(settings: Settings, db: Database, clock: Clock) -> ApiContext:
    host = detect_host_capacity()
    key = load_or_create_key(settings.secret_key_file)
    box = SecretBox(key)
    return ApiContext(
        settings=settings,
        db=db,
        clock=clock,
        artifacts=ArtifactStore(settings.artifacts_dir, settings.max_upload_bytes),
        secrets=SecretStore(box),
        tickets=TicketSigner(key, settings.presign_ttl_seconds, clock),
        instance_types=catalog(settings, host),
        host=host,
        box=box,
        ports=PortPool(*settings.deployment_ports),
    )


def _runtime(settings: Settings, context: ApiContext, listen: Listen) -> Runtime:
    deps = reconciler_deps(settings, context, f"http://{url_host(listen.host)}:{listen.port}")
    return make_runtime(deps, listen.host, settings.reconcile_interval_s, settings.gateway_port)


def reconciler_deps(
    settings: Settings,
    context: ApiContext,
    api_endpoint: str,
    gateway_host: str = "127.0.0.1",
    ray_address: str | None = None,
) -> ReconcilerDeps:
    """What the reconciler runs with: a backend (local, or with `ray_address` the Ray cluster there),
    the builder, the store; replicas reach the API at `api_endpoint` and other Services through a
    gateway at `gateway_host`."""
    builder = Builder(settings.builds_dir, env_cache=settings.env_cache)
    if ray_address is None:
        backend: Backend = LocalBackend(
            settings.replicas_dir, context.host, local_materializer(builder, context.artifacts)
        )
    else:
        backend = _ray_backend(settings, context, ray_address, api_endpoint)
    return ReconcilerDeps(
        db=context.db,
        backend=backend,
        builder=builder,
        artifacts=context.artifacts,
        secrets=context.secrets,
        box=context.box,
        catalog=context.instance_types,
        api_endpoint=api_endpoint,
        clock=context.clock,
        ports=context.ports,
        queue_capacity=settings.queue_capacity,
        scaler=ScalerSettings(
            period_s=settings.autoscale_period_s, stable_window_s=settings.autoscale_window_s
        ),
        gateway_host=gateway_host,
        domain=settings.domain.name if settings.domain is not None else "",
    )


def _ray_backend(settings: Settings, context: ApiContext, address: str, api_endpoint: str) -> Backend:
    """Replicas as actors on the Ray cluster at `address`; nodes fetch bentos from `api_endpoint`."""
    from tiffin.backends.ray.backend import RayBackend  # noqa: PLC0415 - Ray is optional

    return RayBackend(address, ApiMaterializer(api_endpoint, _node_token(settings, context)))


def _node_token(settings: Settings, context: ApiContext) -> str:
    """The `ray-nodes` token's secret, kept sealed in TIFFIN_HOME so later controllers reuse it."""
    path = settings.home / NODE_TOKEN_FILE
    try:
        known = str(context.box.open(path.read_text(encoding="utf-8")))
    except (OSError, InvalidToken, ValueError):
        known = None
    with context.db.session() as session:
        secret = node_token(session, known, context.clock.now())
    if secret != known:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(context.box.seal(secret))
    return secret


def open_database(settings: Settings) -> Database:
    """The store, migrated to the latest schema."""
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    migrate(db.engine)
    return db


def open_store(settings: Settings, clock: Clock) -> tuple[Database, ApiContext]:
    """The migrated store and what the processes that run deployments share (keys, artifacts, catalog)."""
    db = open_database(settings)
    return db, _api_context(settings, db, clock)


def catalog(settings: Settings, host: HostCapacity) -> list[InstanceType]:
    """The operator's instance types if they wrote a file; else the built-ins and one type for each GPU
    model this machine has that none of them names."""
    types = load_catalog(settings.instance_types_file)
    return types if settings.instance_types_file.exists() else with_machine_gpus(types, host)


def url_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
