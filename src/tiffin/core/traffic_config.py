"""A Service's `traffic` settings as the gateway enforces them: timeout, per-replica concurrency, queue.

bentoml reads them from `@bentoml.service(traffic={...})` (kept in the bento's manifest as the
Service's `config`) and a deployment may override them with `config_overrides.traffic`; the override
wins key by key. The gateway applies the same numbers in front of the replicas, so a queued request
never reaches a replica that is already at its limit.
"""

from dataclasses import dataclass
from typing import Annotated

from tiffin.core.config_values import AtLeastOne, ConfigModel, Flag, accepts, positive_number

BENTOML_DEFAULT_TIMEOUT_S = 60.0  # bentoml's own default for `traffic.timeout`

Seconds = Annotated[float, accepts(positive_number, "must be a positive number of seconds")]


class Traffic(ConfigModel):
    """`traffic` as a config or a bento gives it; a null or missing key leaves bentoml's default."""

    shape = "a mapping such as {timeout: 60, max_concurrency: 8}"

    timeout: Seconds | None = None
    max_concurrency: AtLeastOne | None = None  # requests in flight per replica
    concurrency: AtLeastOne | None = None  # the per-replica concurrency autoscaling aims for
    external_queue: Flag | None = None


@dataclass(frozen=True)
class TrafficConfig:
    timeout_s: float = BENTOML_DEFAULT_TIMEOUT_S
    max_concurrency: int | None = None  # requests in flight per replica
    concurrency: int | None = None  # the per-replica concurrency autoscaling aims for
    external_queue: bool = False


def traffic_config(bento: Traffic, overrides: Traffic | None) -> TrafficConfig:
    """The effective settings of one Service: the bento's own, then `config_overrides.traffic`."""
    traffic = bento.overlaid(overrides)
    return TrafficConfig(
        timeout_s=traffic.timeout or BENTOML_DEFAULT_TIMEOUT_S,
        max_concurrency=traffic.max_concurrency,
        concurrency=traffic.concurrency,
        external_queue=traffic.external_queue is True,
    )
