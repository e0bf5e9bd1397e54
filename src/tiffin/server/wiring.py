"""Builds a ready-to-serve Tiffin from settings: store migrated, first-start bootstrap done, API built."""

from dataclasses import dataclass

from fastapi import FastAPI

from tiffin.api.app import create_api
from tiffin.api.context import ApiContext
from tiffin.api.tickets import TicketSigner
from tiffin.artifacts.storage import ArtifactStore
from tiffin.backends.capacity import detect_host_capacity
from tiffin.core.clock import Clock, SystemClock
from tiffin.core.instance_types import load_catalog
from tiffin.core.keyring import load_or_create_key
from tiffin.core.settings import Settings
from tiffin.store.db import Database, migrate
from tiffin.store.deployments import PortPool
from tiffin.store.identity import bootstrap
from tiffin.store.secret_box import SecretBox
from tiffin.store.secrets import SecretStore


@dataclass(frozen=True)
class Tiffin:
    app: FastAPI
    db: Database
    admin_token: str | None
    """The admin token's secret on first start (to print once); None afterwards."""


def build(settings: Settings, clock: Clock | None = None) -> Tiffin:
    clock = clock or SystemClock()
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    migrate(db.engine)
    with db.session() as session:
        first_start = bootstrap(session, clock.now(), settings.bootstrap_token)
    key = load_or_create_key(settings.secret_key_file)
    box = SecretBox(key)
    context = ApiContext(
        settings=settings,
        db=db,
        clock=clock,
        artifacts=ArtifactStore(settings.artifacts_dir, settings.max_upload_bytes),
        secrets=SecretStore(box),
        tickets=TicketSigner(key, settings.presign_ttl_seconds, clock),
        instance_types=load_catalog(settings.instance_types_file),
        host=detect_host_capacity(),
        box=box,
        ports=PortPool(*settings.deployment_ports),
    )
    return Tiffin(app=create_api(context), db=db, admin_token=first_start.admin_token)
