"""A deployment's config as the bentoml client sends it, parsed once, and turned into per-Service settings.

The stored config is the client's dict, echoed back verbatim (the client rebuilds updates from it,
docs/bentocloud-api.md §3.5). The models below say what Tiffin reads of it and what each value must
be: `parse_config` turns the dict into them or refuses it with a 400 naming the first invalid field,
and `service_settings` derives what each Service runs with from them: replica counts, env vars (per
Service wins over global), resources (with the instance type's GPU type), bentoml config overrides,
the rollout strategy, and the autoscaling policy (`scaling.policy`, BentoCloud's HPAPolicy) with the
per-replica concurrency target (`config_overrides.traffic.concurrency`) it falls back on.

A request is also checked against its bento (the Services it names) and the instance-type catalog,
through the validation context; settings are derived without them, from a config already accepted.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    ModelWrapValidatorHandler,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tiffin.core.bento_manifest import Manifest, manifest_env_defaults, manifest_services, service_setting
from tiffin.core.config_errors import invalid, invalid_at, refusal, shown
from tiffin.core.config_values import (
    AtLeastOne,
    Bytes,
    ConfigModel,
    Count,
    Gpus,
    Millicores,
    a_list,
    accepts,
    leniently,
    one_of,
    required,
    text,
    whole,
)
from tiffin.core.errors import BadRequest
from tiffin.core.instance_types import InstanceType, find
from tiffin.core.quantity import positive_quantity
from tiffin.core.strategy import DEFAULT_STRATEGY, Strategy
from tiffin.core.traffic_config import Traffic, TrafficConfig, traffic_config

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEPLOYMENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,46}[a-z0-9])?$")

Config = Mapping[str, Any]

MetricType = Literal["cpu", "memory", "gpu", "qps", "concurrency"]
METRIC_TYPES: tuple[MetricType, ...] = ("cpu", "memory", "gpu", "qps")  # what a config may name
Behavior = Literal["fast", "stable", "disabled"]
BEHAVIORS: tuple[Behavior, ...] = ("fast", "stable", "disabled")
MAX_STABILIZATION_WINDOW = 3600  # seconds, as BentoCloud's docs (and Kubernetes' HPA) allow


# --- what a Service runs with ------------------------------------------------------------------------


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
    strategy: Strategy
    cold_start_timeout: int | None
    gpu_type: str | None = None  # the instance type's: its `gpus` must be of this type; None: any GPU
    config_overrides: Mapping[str, Any] = field(default_factory=dict)
    policy: ScalingPolicy = field(default_factory=ScalingPolicy)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)  # the bento's, then config_overrides

    @property
    def concurrency(self) -> int | None:
        """`traffic.concurrency`: the requests per replica autoscaling aims for by default."""
        return self.traffic.concurrency


# --- the config, as the client sends it --------------------------------------------------------------


@dataclass(frozen=True)
class BentoChecks:
    """What a request's config is checked against besides itself: the bento's Services and the catalog."""

    service_names: Sequence[str]
    catalog: Sequence[InstanceType]


def _checks(info: ValidationInfo) -> BentoChecks | None:
    return info.context if isinstance(info.context, BentoChecks) else None


def _env_name(value: object) -> str | None:
    return value if isinstance(value, str) and _ENV_NAME.fullmatch(value) else None


_ENV = "must be a valid environment variable name (letters, digits and _, not starting with a digit)"
EnvName = Annotated[str, accepts(_env_name, _ENV)]
EnvValue = Annotated[str, PlainValidator(lambda value: "" if value is None else str(value))]


class EnvVar(ConfigModel):
    """One item of `envs`; a null value is the empty string."""

    name: EnvName = required()
    value: EnvValue = ""

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, data: object) -> object:
        if not isinstance(data, Mapping):
            must = "is missing: each item must be a mapping with `name` and `value`"
            raise invalid_at(("name",), f"{must}, not {shown(data)}", data)
        return data


Envs = Annotated[list[EnvVar], a_list("{name, value} items")]


def env_map(envs: Sequence[EnvVar] | None) -> dict[str, str]:
    return {env.name: env.value for env in envs or ()}


MetricValue = Annotated[
    float,
    accepts(
        positive_quantity,
        'must be a number or quantity above 0 such as 80, "80" or "500m" (percent for cpu, memory and gpu,'
        " requests per second per replica for qps)",
    ),
]


class Metric(ConfigModel):
    shape = "a mapping with `type` and `value`"

    type: Annotated[MetricType, one_of(*METRIC_TYPES)] = required()
    value: MetricValue = required()


def _each_once(metrics: list[Metric]) -> list[Metric]:
    seen: set[str] = set()
    for index, metric in enumerate(metrics):
        if metric.type in seen:
            must = f"names {metric.type} a second time; give each metric once"
            raise invalid_at((index, "type"), must, metric.type)
        seen.add(metric.type)
    return metrics


Metrics = Annotated[list[Metric], a_list("{type, value} items"), AfterValidator(_each_once)]
BehaviorName = Annotated[Behavior, one_of(*BEHAVIORS)]
Window = Annotated[
    int,
    accepts(
        whole(0, MAX_STABILIZATION_WINDOW),
        f"must be a whole number of seconds from 0 to {MAX_STABILIZATION_WINDOW}",
    ),
]


class Policy(ConfigModel):
    """`scaling.policy`: BentoCloud's HPAPolicy."""

    shape = "a mapping with `metrics` and the scale-up/down settings"

    metrics: Metrics | None = None
    scale_up_behavior: BehaviorName | None = None
    scale_down_behavior: BehaviorName | None = None
    scale_up_stabilization_window: Window | None = None
    scale_down_stabilization_window: Window | None = None

    def scaling_policy(self) -> ScalingPolicy:
        """With BentoCloud's defaults for what the config leaves null."""
        default = ScalingPolicy()
        return ScalingPolicy(
            metrics=tuple(MetricTarget(m.type, m.value) for m in self.metrics or ()),
            scale_up_behavior=self.scale_up_behavior or default.scale_up_behavior,
            scale_down_behavior=self.scale_down_behavior or default.scale_down_behavior,
            scale_up_stabilization_window=self.scale_up_stabilization_window,
            scale_down_stabilization_window=self.scale_down_stabilization_window,
        )


class Scaling(ConfigModel):
    shape = "a mapping with `min_replicas` and `max_replicas`"

    min_replicas: Count | None = None
    max_replicas: AtLeastOne | None = None
    policy: Policy | None = None

    @model_validator(mode="after")
    def _min_within_max(self) -> Self:
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise invalid_at(("min_replicas",), f"must not exceed `max_replicas` ({high}), not {low}", low)
        return self

    def bounds(self) -> tuple[int, int]:
        """(min, max) as the client fills them in: max defaults to min (at least 1), min to 1 (≤ max)."""
        high = self.max_replicas or max(self.min_replicas or 1, 1)
        return min(high, 1 if self.min_replicas is None else self.min_replicas), high

    def scaling_policy(self) -> ScalingPolicy:
        return self.policy.scaling_policy() if self.policy else ScalingPolicy()


class Resources(ConfigModel):
    """What a replica reserves, from `config_overrides.resources` or the bento's own `resources`."""

    shape = "a mapping with `cpu`, `memory` and `gpu`"

    cpu: Millicores | None = None
    memory: Bytes | None = None
    gpu: Gpus | None = None


class ConfigOverrides(ConfigModel):
    """`config_overrides`: given to bentoml as they are; Tiffin also reads `resources` and `traffic`."""

    shape = "a mapping of bentoml settings"

    resources: Resources | None = None
    traffic: Traffic | None = None
    _given: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_as_given(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        overrides = handler(data)
        if isinstance(data, Mapping):  # not an instance passed on as it is
            overrides._given = dict(data)
        return overrides

    @property
    def given(self) -> dict[str, Any]:
        return dict(self._given)


StrategyName = Annotated[Strategy, one_of(*Strategy)]
InstanceTypeName = Annotated[str, accepts(text, "must be the name of an instance type such as cpu.2")]


class ServiceConfig(ConfigModel):
    """One Service's settings; `extras` (Kubernetes pod overrides) and unknown keys are ignored."""

    shape = "a mapping of the Service's settings"

    instance_type: InstanceTypeName | None = None
    scaling: Scaling | None = None
    envs: Envs | None = None
    deployment_strategy: StrategyName | None = None
    cold_start_timeout: Count | None = None
    config_overrides: ConfigOverrides | None = None

    @field_validator("instance_type")
    @classmethod
    def _in_the_catalog(cls, name: str | None, info: ValidationInfo) -> str | None:
        checks = _checks(info)
        if name and checks and find(checks.catalog, name) is None:
            raise invalid(
                f"names an unknown instance type {name!r}; run `bentoml deployment list-instance-types`"
                " to see the choices"
            )
        return name


def _not_yet(canary: object) -> object:
    if canary:
        raise invalid("is not supported by Tiffin yet: deploy without it")
    return canary


class DeploymentConfig(ConfigModel):
    """The config of a create or update: `labels`, `secrets` and `access_authorization` are read where
    they are used, and canary versions are refused for now."""

    canary: Annotated[Any, AfterValidator(_not_yet)] = None
    envs: Envs | None = None
    services: dict[str, ServiceConfig | None] | None = None

    @field_validator("services", mode="before")
    @classmethod
    def _services_of_the_bento(cls, services: object, info: ValidationInfo) -> object:
        if services is None:
            return None
        if not isinstance(services, Mapping):
            raise invalid(f"must be a mapping of Service name to its settings, not {shown(services)}")
        checks = _checks(info)
        unknown = next((name for name in services if checks and name not in checks.service_names), None)
        if checks and unknown is not None:
            must = f"is not a Service of the bento, whose Services are {', '.join(checks.service_names)}"
            raise invalid_at((unknown,), must, unknown)
        return services

    def service(self, name: str) -> ServiceConfig:
        """The Service's settings; one the config leaves out gets the defaults."""
        return (self.services or {}).get(name) or ServiceConfig()


def parse_config(config: Config, checks: BentoChecks | None = None) -> DeploymentConfig:
    """The config as models, or a 400 naming its first invalid field (checked against `checks` if any)."""
    try:
        return DeploymentConfig.model_validate(config, context=checks)
    except ValidationError as error:
        raise refusal(error) from None


def validate(
    config: Config, service_names: Sequence[str], catalog: Sequence[InstanceType]
) -> DeploymentConfig:
    """A request's config, checked against its bento's Services and the instance-type catalog."""
    return parse_config(config, BentoChecks(service_names, catalog))


def check_deployment_name(name: str) -> str:
    if not _DEPLOYMENT_NAME.fullmatch(name):
        raise BadRequest(
            f"`name` {name!r} is not a valid deployment name: use up to 48 lowercase letters, digits"
            " and '-', starting and ending with a letter or digit."
        )
    return name


# --- from the config to the settings -----------------------------------------------------------------


def service_settings(
    config: Config, manifest: Manifest, catalog: Sequence[InstanceType]
) -> list[ServiceSettings]:
    """Effective settings of every Service of the bento, listed in the config or not."""
    parsed = parse_config(config)
    global_envs = {**manifest_env_defaults(manifest), **env_map(parsed.envs)}
    return [
        _settings_of(service, parsed.service(str(service["name"])), global_envs, catalog)
        for service in manifest_services(manifest)
    ]


def _settings_of(
    service: Manifest, given: ServiceConfig, global_envs: Mapping[str, str], catalog: Sequence[InstanceType]
) -> ServiceSettings:
    scaling = given.scaling or Scaling()
    low, high = scaling.bounds()
    overrides = given.config_overrides or ConfigOverrides()
    cpu, memory, gpus, gpu_type = _resources(given.instance_type, service, overrides.resources, catalog)
    return ServiceSettings(
        name=str(service["name"]),
        min_replicas=low,
        max_replicas=high,
        instance_type=given.instance_type,
        cpu_millicores=cpu,
        memory_bytes=memory,
        gpus=gpus,
        envs={**global_envs, **env_map(given.envs)},
        strategy=given.deployment_strategy or DEFAULT_STRATEGY,
        cold_start_timeout=given.cold_start_timeout,
        gpu_type=gpu_type,
        config_overrides=overrides.given,
        policy=scaling.scaling_policy(),
        traffic=traffic_config(leniently(Traffic, service_setting(service, "traffic")), overrides.traffic),
    )


def _resources(
    instance_type: str | None, service: Manifest, overrides: Resources | None, catalog: Sequence[InstanceType]
) -> tuple[int | None, int | None, int, str | None]:
    """CPU, memory, GPUs and GPU type from the instance type if given, else the Service's own
    `resources` (overrides win), whose GPUs may be of any type (bentoml's `gpu_type` there is only a
    hint for choosing an instance type)."""
    chosen = find(catalog, instance_type) if instance_type else None
    if chosen is not None:
        return chosen.cpu_millicores, chosen.memory_bytes, chosen.gpu_count, chosen.gpu_type
    resources = leniently(Resources, service_setting(service, "resources")).overlaid(overrides)
    return resources.cpu, resources.memory, resources.gpu or 0, None
