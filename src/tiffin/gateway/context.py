"""What every client connection of one gateway shares: the route table, the activator, tokens, settings.

`table` is replaced whole by `Gateway.apply()`; a connection reads it once per request, so each request
is routed by one consistent snapshot. The activator decides admission; `clock` is the event loop's
(injected, like everything here, so tests can pass fakes).
"""

from dataclasses import dataclass

from tiffin.gateway.activator import Activator, LoopClock
from tiffin.gateway.auth import TokenCache
from tiffin.gateway.settings import GatewaySettings
from tiffin.gateway.table import RouteTable


@dataclass(slots=True)
class GatewayContext:
    table: RouteTable
    tokens: TokenCache
    settings: GatewaySettings
    advertised_host: str  # what `Service.get_hosts()` is told the internal routes listen on
    activator: Activator
    clock: LoopClock
