"""What every client connection of one gateway shares: the current route table, token cache, settings.

`table` is replaced whole by `Gateway.apply()`; a connection reads it once per request, so each
request is routed by one consistent snapshot. `holds` keeps the requests waiting for a ready replica.
"""

from dataclasses import dataclass

from tiffin.gateway.auth import TokenCache
from tiffin.gateway.holds import Holds
from tiffin.gateway.settings import GatewaySettings
from tiffin.gateway.table import RouteTable


@dataclass(slots=True)
class GatewayContext:
    table: RouteTable
    tokens: TokenCache
    settings: GatewaySettings
    advertised_host: str  # what `Service.get_hosts()` is told the internal routes listen on
    holds: Holds
