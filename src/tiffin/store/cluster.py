"""What the processes of a scaled-out Tiffin share through the store: published routes and gateways.

The leading controller publishes each new routing snapshot (with its version) in one row; every gateway
polls the version and loads the snapshot when it grows. Each gateway keeps a heartbeat row carrying
what it counted (per replica and per Service), which the controller sums over the gateways still
alive; a gateway is alive while its heartbeat is fresh. Payloads are JSON documents this module stores
without reading them (`tiffin.routing.codec` writes and reads them).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from tiffin.store.db import Session
from tiffin.store.models import GatewayState, PublishedRoutes

_ROW = 1


def publish_routes(session: Session, version: int, snapshot: dict[str, Any], now: datetime) -> None:
    row = session.get(PublishedRoutes, _ROW)
    if row is None:
        session.add(PublishedRoutes(id=_ROW, version=version, snapshot=snapshot, published_at=now))
        return
    row.version, row.snapshot, row.published_at = version, snapshot, now


def routes_version(session: Session) -> int:
    """The version published last (0 before any)."""
    return session.scalar(select(PublishedRoutes.version).where(PublishedRoutes.id == _ROW)) or 0


def published_routes(session: Session) -> tuple[int, dict[str, Any]] | None:
    row = session.get(PublishedRoutes, _ROW)
    return (row.version, dict(row.snapshot)) if row is not None else None


def heartbeat(
    session: Session, gateway_id: str, address: str, traffic: dict[str, Any], now: datetime
) -> None:
    """Record that a gateway is alive, with what it counted so far."""
    row = session.get(GatewayState, gateway_id)
    if row is None:
        row = GatewayState(gateway_id=gateway_id, address=address, started_at=now, heartbeat_at=now)
        session.add(row)
    row.heartbeat_at, row.traffic = now, traffic


def live_gateways(session: Session, since: datetime) -> list[tuple[str, dict[str, Any]]]:
    """(gateway id, its counts) of every gateway whose heartbeat is newer than `since`."""
    query = select(GatewayState.gateway_id, GatewayState.traffic).where(GatewayState.heartbeat_at > since)
    return [(gateway_id, dict(traffic)) for gateway_id, traffic in session.execute(query)]


def forget_gateway(session: Session, gateway_id: str) -> None:
    session.execute(delete(GatewayState).where(GatewayState.gateway_id == gateway_id))


def forget_gateways_before(session: Session, before: datetime) -> None:
    """Drop the rows of gateways long gone (killed without saying so)."""
    session.execute(delete(GatewayState).where(GatewayState.heartbeat_at < before))
