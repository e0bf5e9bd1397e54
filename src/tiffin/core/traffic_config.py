"""A Service's `traffic` settings as the gateway enforces them: timeout, per-replica concurrency, queue.

bentoml reads them from `@bentoml.service(traffic={...})` (kept in the bento's manifest as the
Service's `config`) and a deployment may override them with `config_overrides.traffic`; the override
wins key by key. The gateway applies the same numbers in front of the replicas, so a queued request
never reaches a replica that is already at its limit.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiffin.core.errors import BadRequest

BENTOML_DEFAULT_TIMEOUT_S = 60.0  # bentoml's own default for `traffic.timeout`


@dataclass(frozen=True)
class TrafficConfig:
    timeout_s: float = BENTOML_DEFAULT_TIMEOUT_S
    max_concurrency: int | None = None  # requests in flight per replica
    concurrency: int | None = None  # the per-replica concurrency autoscaling aims for
    external_queue: bool = False


def traffic_config(service_config: Mapping[str, Any], overrides: Mapping[str, Any]) -> TrafficConfig:
    """The effective settings of one Service: its manifest `config`, then `config_overrides`."""
    merged = {**_traffic(service_config), **_traffic(overrides)}
    timeout = merged.get("timeout")
    return TrafficConfig(
        timeout_s=float(timeout)
        if isinstance(timeout, int | float) and timeout > 0
        else BENTOML_DEFAULT_TIMEOUT_S,
        max_concurrency=_whole(merged.get("max_concurrency")),
        concurrency=_whole(merged.get("concurrency")),
        external_queue=merged.get("external_queue") is True,
    )


def check_traffic(where: str, traffic: object) -> None:
    """Refuse `config_overrides.traffic` values the gateway could not apply, naming the field."""
    if traffic is None:
        return
    if not isinstance(traffic, Mapping):
        raise BadRequest(f"`{where}` must be a mapping such as {{timeout: 60, max_concurrency: 8}}.")
    if traffic.get("timeout") is not None and not _positive_number(traffic["timeout"]):
        raise BadRequest(
            f"`{where}.timeout` must be a positive number of seconds, not {traffic['timeout']!r}."
        )
    for key in ("max_concurrency", "concurrency"):
        if traffic.get(key) is not None and _whole(traffic[key]) is None:
            raise BadRequest(f"`{where}.{key}` must be a whole number of at least 1, not {traffic[key]!r}.")
    if traffic.get("external_queue") not in (None, True, False):
        raise BadRequest(f"`{where}.external_queue` must be true or false.")


def _traffic(config: Mapping[str, Any]) -> dict[str, Any]:
    traffic = config.get("traffic")
    return {k: v for k, v in traffic.items() if v is not None} if isinstance(traffic, Mapping) else {}


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None
