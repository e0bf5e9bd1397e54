"""Everything a request handler needs, built once per server and shared through `app.state`."""

from dataclasses import dataclass
from typing import Protocol

from fastapi import Request

from tiffin.api.tickets import TicketSigner
from tiffin.artifacts.storage import ArtifactStore
from tiffin.backends.capacity import HostCapacity
from tiffin.backends.ended import EndedReplica
from tiffin.core.clock import Clock
from tiffin.core.instance_types import InstanceType
from tiffin.core.settings import Settings
from tiffin.store.db import Database
from tiffin.store.deployments import PortPool
from tiffin.store.secret_box import SecretBox
from tiffin.store.secrets import SecretStore


class LogReader(Protocol):
    """Where replica and build logs come from (the backend and the builder, wired together)."""

    def replica_log(self, replica_id: str, tail: int) -> str: ...

    def build_log(self, bento_tag: str, tail: int) -> str: ...

    def ended_replicas(self, deployment: str) -> list[EndedReplica]: ...


@dataclass(frozen=True)
class ApiContext:
    """`instance_types` is the catalog this Tiffin offers: without an operator's `instance-types.yaml`,
    the built-ins plus one type for each GPU type of this machine they do not name (made here, so that
    listing, validating and running deployments all see the same catalog)."""

    settings: Settings
    db: Database
    clock: Clock
    artifacts: ArtifactStore
    secrets: SecretStore
    tickets: TicketSigner
    instance_types: list[InstanceType]
    host: HostCapacity
    box: SecretBox
    ports: PortPool
    public_host: str = "127.0.0.1"
    logs: LogReader | None = None


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context
