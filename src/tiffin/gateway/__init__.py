"""The data plane: each deployment's URL and each Service's internal route, balanced over ready replicas.

An HTTP/1.1 reverse proxy on asyncio protocols and llhttp (httptools), fed by routing snapshots
(`Gateway.apply`). Imports only `tiffin.routing` and `tiffin.core` below it.
"""

from tiffin.gateway.auth import TokenCheck
from tiffin.gateway.gateway import Gateway
from tiffin.gateway.settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings", "TokenCheck"]
