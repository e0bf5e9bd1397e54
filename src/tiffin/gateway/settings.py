"""The gateway's tunables, with defaults that suit one machine; one place to read them all."""

from dataclasses import dataclass

from tiffin.core.domain import DEFAULT_GATEWAY_PORT
from tiffin.gateway.balancer import Policy


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    balancing: Policy = "least_in_flight"
    shared_port: int = DEFAULT_GATEWAY_PORT  # serves every deployment by `Host`, if the snapshot has a domain
    token_ttl_s: float = 5.0  # how long a valid token's scopes are trusted without asking the store
    invalid_token_ttl_s: float = 1.0  # how long an unknown token stays refused without asking again
    connect_timeout_s: float = 5.0
    client_idle_timeout_s: float = 65.0  # a kept-alive connection, or a request body, with nothing read
    head_timeout_s: float = 20.0  # a request head must arrive whole this soon after its first byte (408)
    upstream_idle_timeout_s: float = 4.0  # below uvicorn's 5 s keep-alive, so replicas never close first
    max_head_bytes: int = 64 * 1024
    replay_bytes: int = 64 * 1024  # requests up to this size are kept whole, so they can be sent again
    discard_bytes: int = 64 * 1024  # a body up to this size is read past after a refusal; larger: close
    close_grace_s: float = 10.0  # how long close() lets in-flight requests finish
    sweep_interval_s: float = 1.0
