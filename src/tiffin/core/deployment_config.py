"""A deployment's config as the bentoml client sends it, checked, and turned into per-Service settings.

The stored config is echoed back verbatim (the client rebuilds updates from it, docs/bentocloud-api.md §3.5);
this module only validates it against the bento's manifest and the instance-type catalog, and derives what
each Service runs with: replica counts, env vars (per Service wins over global), resources, bentoml config
overrides, and the autoscaling policy (`scaling.policy`, BentoCloud's HPAPolicy) with the per-replica
concurrency target (`config_overrides.traffic.concurrency`) it falls back on.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from tiffin.core.errors import BadRequest
from tiffin.core.instance_types import InstanceType, find, parse_cpu, parse_memory
from tiffin.core.quantity import parse_quantity, positive_quantity
from tiffin.core.traffic_config import TrafficConfig, check_traffic, traffic_config

STRATEGIES = ("RollingUpdate", "Recreate", "RampedSlowRollout", "BestEffortControlledRollout")
DEFAULT_STRATEGY = "Recreate"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEPLOYMENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,46}[a-z0-9])?$")

Config = Mapping[str, Any]

MetricType = Literal["cpu", "memory", "gpu", "qps", "concurrency"]
METRIC_TYPES: tuple[MetricType, ...] = ("cpu", "memory", "gpu", "qps")  # what a config may name
Behavior = Literal["fast", "stable", "disabled"]
BEHAVIORS: tuple[Behavior, ...] = ("fast", "stable", "disabled")
MAX_STABILIZATION_WINDOW = 3600  # seconds, as BentoCloud's docs (and Kubernetes' HPA) allow


@dataclass(frozen=True)
class MetricTarget:
    """One autoscaling metric and its target per replica.

    `cpu`, `memory` and `gpu` targets are percent (of the replica's requested CPU and memory, and of GPU
    utilisation), `qps` is requests per second, `concurrency` requests in flight. A config names only the
    first four; `concurrency` is the default metric when `traffic.concurrency` is set.
    """

    type: MetricType
    value: float


@dataclass(frozen=True)
class ScalingPolicy:
    """`services.<S>.scaling.policy` parsed, with BentoCloud's defaults filled in."""

    metrics: tuple[MetricTarget, ...] = ()  # empty: the default metric (see tiffin.autoscaler)
    scale_up_behavior: Behavior = "fast"
    scale_down_behavior: Behavior = "stable"
    scale_up_stabilization_window: int | None = None  # seconds; None: the behaviour's own window
    scale_down_stabilization_window: int | None = None


@dataclass(frozen=True)
class ServiceSettings:
    """What one Service of a deployment runs with, after defaults and precedence are applied."""

    name: str
    min_replicas: int
    max_replicas: int
    instance_type: str | None
    cpu_millicores: int | None
    memory_bytes: int | None
    gpus: int
    envs: Mapping[str, str]
    strategy: str
    cold_start_timeout: int | None
    config_overrides: Mapping[str, Any] = field(default_factory=dict)
    policy: ScalingPolicy = field(default_factory=ScalingPolicy)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)  # the bento's, then config_overrides

    @property
    def concurrency(self) -> int | None:
        """`traffic.concurrency`: the requests per replica autoscaling aims for by default."""
        return self.traffic.concurrency


def check_deployment_name(name: str) -> str:
    if not _DEPLOYMENT_NAME.fullmatch(name):
        raise BadRequest(
            f"`name` {name!r} is not a valid deployment name: use up to 48 lowercase letters, digits"
            " and '-', starting and ending with a letter or digit."
        )
    return name


def validate(config: Config, service_names: Sequence[str], catalog: Sequence[InstanceType]) -> None:
    """Raise a 400 naming the first invalid field of `config`; nothing else is checked here."""
    if config.get("canary"):
        raise BadRequest("`canary` is not supported by Tiffin yet: deploy without it.")
    _check_envs(config.get("envs"), "envs")
    services = config.get("services") or {}
    if not isinstance(services, Mapping):
        raise BadRequest("`services` must be a mapping of Service name to its settings.")
    for name, settings in services.items():
        if name not in service_names:
            raise BadRequest(
                f"`services.{name}`: the bento has no Service named {name!r}; its Services are"
                f" {', '.join(service_names)}."
            )
        _check_service(f"services.{name}", settings or {}, catalog)


def _check_service(where: str, settings: Config, catalog: Sequence[InstanceType]) -> None:
    if not isinstance(settings, Mapping):
        raise BadRequest(f"`{where}` must be a mapping of the Service's settings.")
    instance_type = settings.get("instance_type")
    if instance_type and find(catalog, instance_type) is None:
        raise BadRequest(
            f"`{where}.instance_type`: unknown instance type {instance_type!r}; run"
            " `bentoml deployment list-instance-types` to see the choices."
        )
    _check_scaling(f"{where}.scaling", settings.get("scaling") or {})
    _check_envs(settings.get("envs"), f"{where}.envs")
    strategy = settings.get("deployment_strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise BadRequest(f"`{where}.deployment_strategy` must be one of {', '.join(STRATEGIES)}.")
    _check_non_negative(settings.get("cold_start_timeout"), f"{where}.cold_start_timeout")
    overrides = settings.get("config_overrides") or {}
    if not isinstance(overrides, Mapping):
        raise BadRequest(f"`{where}.config_overrides` must be a mapping of bentoml settings.")
    _check_resources(f"{where}.config_overrides.resources", overrides.get("resources"))
    check_traffic(f"{where}.config_overrides.traffic", overrides.get("traffic"))


def _check_resources(where: str, resources: object) -> None:
    """Resources that `service_settings` can read: CPU and memory amounts and a whole number of GPUs."""
    if resources is None:
        return
    if not isinstance(resources, Mapping):
        raise BadRequest(f"`{where}` must be a mapping with `cpu`, `memory` and `gpu`.")
    for key, parse in (("cpu", parse_cpu), ("memory", parse_memory)):
        if resources.get(key) is not None:
            try:
                parse(resources[key])
            except BadRequest as exc:
                raise BadRequest(f"`{where}.{key}`: {exc.message}") from None
    if resources.get("gpu") is not None and gpu_count(resources["gpu"]) is None:
        raise BadRequest(f"`{where}.gpu` must be a whole number of GPUs, not {resources['gpu']!r}.")


def _check_scaling(where: str, scaling: Config) -> None:
    if not isinstance(scaling, Mapping):
        raise BadRequest(f"`{where}` must be a mapping with `min_replicas` and `max_replicas`.")
    low, high = scaling.get("min_replicas"), scaling.get("max_replicas")
    _check_non_negative(low, f"{where}.min_replicas")
    _check_non_negative(high, f"{where}.max_replicas")
    if high is not None and high < 1:
        raise BadRequest(f"`{where}.max_replicas` must be at least 1.")
    if low is not None and high is not None and low > high:
        raise BadRequest(f"`{where}.min_replicas` ({low}) must not exceed `max_replicas` ({high}).")
    _check_policy(f"{where}.policy", scaling.get("policy"))


def _check_policy(where: str, policy: object) -> None:
    if policy is None:
        return
    if not isinstance(policy, Mapping):
        raise BadRequest(f"`{where}` must be a mapping with `metrics` and the scale-up/down settings.")
    _check_metrics(f"{where}.metrics", policy.get("metrics"))
    for key in ("scale_up_behavior", "scale_down_behavior"):
        if policy.get(key) is not None and policy[key] not in BEHAVIORS:
            raise BadRequest(f"`{where}.{key}` must be one of {', '.join(BEHAVIORS)}.")
    for key in ("scale_up_stabilization_window", "scale_down_stabilization_window"):
        window = policy.get(key)
        if window is not None and (not _is_whole(window) or not 0 <= window <= MAX_STABILIZATION_WINDOW):
            raise BadRequest(
                f"`{where}.{key}` must be a whole number of seconds from 0 to {MAX_STABILIZATION_WINDOW},"
                f" not {window!r}."
            )


def _check_metrics(where: str, metrics: object) -> None:
    if metrics is None:
        return
    if not isinstance(metrics, list):
        raise BadRequest(f"`{where}` must be a list of {{type, value}} items.")
    seen: set[str] = set()
    for index, metric in enumerate(metrics):
        kind = _check_metric(f"{where}[{index}]", metric)
        if kind in seen:
            raise BadRequest(f"`{where}[{index}].type` names {kind} a second time; give each metric once.")
        seen.add(kind)


def _check_metric(where: str, metric: object) -> str:
    """The metric's type, once the item is known to be a valid {type, value}."""
    if not isinstance(metric, Mapping):
        raise BadRequest(f"`{where}` must be a mapping with `type` and `value`.")
    if metric.get("type") not in METRIC_TYPES:
        raise BadRequest(f"`{where}.type` must be one of {', '.join(METRIC_TYPES)}.")
    value = metric.get("value")
    if positive_quantity(value) is None:
        raise BadRequest(
            f'`{where}.value` must be a number or quantity above 0 such as 80, "80" or "500m"'
            f" (percent for cpu, memory and gpu, requests per second per replica for qps), not {value!r}."
        )
    return str(metric["type"])


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_non_negative(value: object, where: str) -> None:
    if value is None:
        return
    if not _is_whole(value) or cast(int, value) < 0:
        raise BadRequest(f"`{where}` must be a whole number of at least 0, not {value!r}.")


def _check_envs(envs: object, where: str) -> None:
    if envs is None:
        return
    if not isinstance(envs, list):
        raise BadRequest(f"`{where}` must be a list of {{name, value}} items.")
    for index, item in enumerate(envs):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise BadRequest(f"`{where}[{index}].name` must be a valid environment variable name.")


def service_settings(
    config: Config, manifest: Config, catalog: Sequence[InstanceType]
) -> list[ServiceSettings]:
    """Effective settings of every Service of the bento, listed in the config or not."""
    given = config.get("services") or {}
    global_envs = {**manifest_env_defaults(manifest), **env_map(config.get("envs"))}
    return [
        _settings_of(svc, given.get(svc["name"]) or {}, global_envs, catalog)
        for svc in manifest_services(manifest)
    ]


def _settings_of(
    service: Config, given: Config, global_envs: Mapping[str, str], catalog: Sequence[InstanceType]
) -> ServiceSettings:
    scaling = given.get("scaling") or {}
    high = scaling.get("max_replicas") or max(scaling.get("min_replicas") or 1, 1)
    low = scaling.get("min_replicas")
    overrides = dict(given.get("config_overrides") or {})
    cpu, memory, gpus = _resources(given.get("instance_type"), service, overrides, catalog)
    return ServiceSettings(
        name=service["name"],
        min_replicas=min(high, 1 if low is None else low),
        max_replicas=high,
        instance_type=given.get("instance_type"),
        cpu_millicores=cpu,
        memory_bytes=memory,
        gpus=gpus,
        envs={**global_envs, **env_map(given.get("envs"))},
        strategy=given.get("deployment_strategy") or DEFAULT_STRATEGY,
        cold_start_timeout=given.get("cold_start_timeout"),
        config_overrides=overrides,
        policy=scaling_policy(scaling.get("policy")),
        traffic=traffic_config(service.get("config") or {}, overrides),
    )


def scaling_policy(policy: Config | None) -> ScalingPolicy:
    """A validated `scaling.policy` (or null) as a ScalingPolicy, BentoCloud's defaults filled in."""
    policy = policy or {}
    return ScalingPolicy(
        metrics=tuple(
            MetricTarget(type=m["type"], value=positive_quantity(m["value"]) or 0.0)
            for m in policy.get("metrics") or ()
        ),
        scale_up_behavior=policy.get("scale_up_behavior") or "fast",
        scale_down_behavior=policy.get("scale_down_behavior") or "stable",
        scale_up_stabilization_window=policy.get("scale_up_stabilization_window"),
        scale_down_stabilization_window=policy.get("scale_down_stabilization_window"),
    )


def _resources(
    instance_type: str | None, service: Config, overrides: Config, catalog: Sequence[InstanceType]
) -> tuple[int | None, int | None, int]:
    """From the instance type if given, else the Service's own `resources` (overrides win)."""
    chosen = find(catalog, instance_type) if instance_type else None
    if chosen is not None:
        return chosen.cpu_millicores, chosen.memory_bytes, chosen.gpu_count
    resources = {
        **((service.get("config") or {}).get("resources") or {}),
        **(overrides.get("resources") or {}),
    }
    cpu, memory = resources.get("cpu"), resources.get("memory")
    return (
        parse_cpu(cpu) if cpu is not None else None,
        parse_memory(memory) if memory is not None else None,
        gpu_count(resources.get("gpu") or 0) or 0,
    )


def gpu_count(value: object) -> int | None:
    """A whole, non-negative number of GPUs given as a number or quantity (`1`, `"1"`); else None."""
    amount = parse_quantity(value)
    if amount is None or amount < 0 or amount != amount.to_integral_value():
        return None
    return int(amount)


def manifest_services(manifest: Config) -> list[Config]:
    """The bento's Services (a legacy bento without `services` counts as one named after it)."""
    services = manifest.get("services") or []
    if services:
        return [s for s in services if isinstance(s, Mapping) and s.get("name")]
    return [{"name": manifest.get("name") or "service", "config": {}}]


def entry_service(manifest: Config) -> str:
    names = [str(s["name"]) for s in manifest_services(manifest)]
    entry = manifest.get("entry_service")
    return str(entry) if entry in names else names[0]


def manifest_env_defaults(manifest: Config) -> dict[str, str]:
    """Env vars the bento declares with a default value for run time."""
    return {
        e["name"]: e["value"]
        for e in manifest.get("envs") or []
        if isinstance(e, Mapping) and e.get("value") and e.get("stage", "all") != "build"
    }


def env_map(envs: object) -> dict[str, str]:
    if not isinstance(envs, list):
        return {}
    return {str(e["name"]): str(e.get("value") or "") for e in envs if isinstance(e, Mapping)}
