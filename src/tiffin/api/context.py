"""Everything a request handler needs, built once per server and shared through `app.state`."""

from dataclasses import dataclass

from fastapi import Request

from tiffin.api.tickets import TicketSigner
from tiffin.artifacts.storage import ArtifactStore
from tiffin.backends.capacity import HostCapacity
from tiffin.core.clock import Clock
from tiffin.core.instance_types import InstanceType
from tiffin.core.settings import Settings
from tiffin.store.db import Database
from tiffin.store.secrets import SecretStore


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    db: Database
    clock: Clock
    artifacts: ArtifactStore
    secrets: SecretStore
    tickets: TicketSigner
    instance_types: list[InstanceType]
    host: HostCapacity


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context
