"""What every client connection of one gateway shares: the current route table, token cache, settings.

`table` is replaced whole by `Gateway.apply()`; a connection reads it once per request, so each
request is routed by one consistent snapshot. `holds` keeps the requests waiting for a replica;
`on_demand` hears when one waits for a Service that has none ready (so one can be started at once).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

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
    on_demand: Callable[[tuple[str, str]], None]  # a request waits for a Service with no ready replica
    arrivals: dict[tuple[str, str], int] = field(default_factory=dict)  # requests so far, by Service
