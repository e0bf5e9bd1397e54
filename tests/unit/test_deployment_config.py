"""The deployment config as the client sends it (docs/bentocloud-api.md §3.5, §5): validation and the
per-Service settings."""

import copy
from pathlib import Path
from typing import Any

import pytest

from tiffin.core import bento_manifest
from tiffin.core import deployment_config as dc
from tiffin.core.errors import BadRequest
from tiffin.core.instance_types import GiB, InstanceType, find, load_catalog
from tiffin.core.strategy import DEFAULT_STRATEGY, Strategy

CATALOG: list[InstanceType] = load_catalog(Path("/nonexistent/tiffin/instance_types.yaml"))
SERVICES = ["Echo"]

# docs/bentocloud-api.md §4.5 step 5 (verified), with `cpu.2` for the BentoCloud-only `cpu.small`.
FLAG_MODE_BODY: dict[str, Any] = {
    "access_authorization": True,
    "envs": [{"name": "A", "value": "1"}, {"name": "FOO", "value": "bar"}],
    "labels": [{"key": "team", "value": "x"}],
    "secrets": ["s1"],
    "services": {
        "Echo": {
            "instance_type": "cpu.2",
            "scaling": {"min_replicas": 1, "max_replicas": 3, "policy": None},
            "envs": None,
            "deployment_strategy": "Recreate",
            "extras": None,
            "cold_start_timeout": None,
            "config_overrides": {},
        }
    },
    "canary": None,
    "bento": "echo:3i4e4ahfnogwsax4",
    "name": "d1",
    "dev": False,
}

# docs/bentocloud-api.md §5.2 (verified config-file body), with `cpu.2` for `gpu.t4`.
CONFIG_FILE_BODY: dict[str, Any] = {
    "access_authorization": True,
    "envs": [{"name": "GLOBAL_ENV", "value": "g"}],
    "labels": [{"key": "team", "value": "ml"}],
    "secrets": ["s1"],
    "services": {
        "Echo": {
            "instance_type": "cpu.2",
            "scaling": {
                "min_replicas": 0,
                "max_replicas": 5,
                "policy": {
                    "metrics": [{"type": "cpu", "value": 80}, {"type": "gpu", "value": 70}],
                    "scale_down_behavior": "disabled",
                    "scale_up_behavior": "fast",
                    "scale_down_stabilization_window": 600,
                    "scale_up_stabilization_window": None,
                },
            },
            "envs": [{"name": "SVC_ENV", "value": "s"}],
            "deployment_strategy": "RampedSlowRollout",
            "extras": {
                "bento_function_overrides": {
                    "annotations": {"a": "b"},
                    "monitorExporter": None,
                    "extraPodMetadata": None,
                    "extraPodSpec": None,
                },
                "bento_request_overrides": None,
            },
            "cold_start_timeout": 900,
            "config_overrides": {"traffic": {"timeout": 120}},
        }
    },
    "canary": None,
    "bento": "echo:3i4e4ahfnogwsax4",
    "name": "d2",
    "dev": False,
}

RESOURCES = {"cpu": "2", "memory": "1Gi", "gpu": 1}


def manifest(**extra: Any) -> dict[str, Any]:
    """A bento.yaml with Services Echo (the entry, with resources) and Model."""
    return {
        "name": "echo",
        "service": "service:Echo",
        "entry_service": "Echo",
        "services": [
            {"name": "Echo", "dependencies": [{"service": "Model"}], "config": {"resources": RESOURCES}},
            {"name": "Model", "dependencies": [], "config": {}},
        ],
        **extra,
    }


def refused(config: dict[str, Any], services: list[str] | None = None) -> str:
    with pytest.raises(BadRequest) as caught:
        dc.validate(config, services or SERVICES, CATALOG)
    message = caught.value.message
    assert "\n" not in message and message.endswith("."), message
    return message


def echo(**settings: Any) -> dict[str, Any]:
    return {"services": {"Echo": settings}}


def settings_by_name(config: dict[str, Any], bento: dict[str, Any]) -> dict[str, dc.ServiceSettings]:
    return {s.name: s for s in dc.service_settings(config, bento, CATALOG)}


# --- validate: accepted ----------------------------------------------------------------------------


def test_the_catalog_has_the_instance_type_used_here() -> None:
    assert find(CATALOG, "cpu.2") is not None
    assert find(CATALOG, "cpu.small") is None


@pytest.mark.parametrize("body", [FLAG_MODE_BODY, CONFIG_FILE_BODY], ids=["flag-mode", "config-file"])
def test_validate_accepts_the_verified_client_bodies(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)

    dc.validate(body, SERVICES, CATALOG)

    assert body == before


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"services": {}},
        {"services": None, "envs": None, "canary": None},
        {"canary": {}},
        echo(),
        {"services": {"Echo": None}},
        echo(scaling={"min_replicas": None, "max_replicas": 2}),
        echo(scaling={"min_replicas": 0, "max_replicas": 1}),
        echo(scaling={"min_replicas": 4}),
        echo(instance_type=None, deployment_strategy=None, cold_start_timeout=0, config_overrides=None),
        echo(envs=[{"name": "_UNDER_score9", "value": ""}]),
    ],
)
def test_validate_accepts_partial_configs(config: dict[str, Any]) -> None:
    dc.validate(config, SERVICES, CATALOG)


@pytest.mark.parametrize("strategy", [str(s) for s in Strategy])
def test_validate_accepts_every_strategy(strategy: str) -> None:
    dc.validate(echo(deployment_strategy=strategy), SERVICES, CATALOG)


# --- validate: refused, naming the field ------------------------------------------------------------


def test_unknown_service_names_the_services_of_the_bento() -> None:
    message = refused({"services": {"Nope": {}}}, ["Front", "Model"])

    assert "services.Nope" in message
    assert "Front" in message and "Model" in message


def test_unknown_instance_type() -> None:
    message = refused(echo(instance_type="cpu.small"))

    assert "services.Echo.instance_type" in message
    assert "cpu.small" in message


@pytest.mark.parametrize(
    ("scaling", "field"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "services.Echo.scaling.min_replicas"),
        ({"min_replicas": -1, "max_replicas": 2}, "services.Echo.scaling.min_replicas"),
        ({"min_replicas": -1}, "services.Echo.scaling.min_replicas"),
        ({"min_replicas": 0, "max_replicas": 0}, "services.Echo.scaling.max_replicas"),
        ({"max_replicas": 0}, "services.Echo.scaling.max_replicas"),
        ({"max_replicas": -2}, "services.Echo.scaling.max_replicas"),
        ({"min_replicas": "1", "max_replicas": 2}, "services.Echo.scaling.min_replicas"),
        ({"min_replicas": 1.5, "max_replicas": 2}, "services.Echo.scaling.min_replicas"),
        ({"min_replicas": True, "max_replicas": 2}, "services.Echo.scaling.min_replicas"),
        ({"min_replicas": 1, "max_replicas": "3"}, "services.Echo.scaling.max_replicas"),
        ({"min_replicas": 1, "max_replicas": False}, "services.Echo.scaling.max_replicas"),
        ({"min_replicas": 1, "max_replicas": 2.0}, "services.Echo.scaling.max_replicas"),
    ],
)
def test_bad_scaling(scaling: dict[str, Any], field: str) -> None:
    assert f"`{field}`" in refused(echo(scaling=scaling))


def test_scaling_must_be_a_mapping() -> None:
    assert "services.Echo.scaling" in refused(echo(scaling=[1, 3]))


def test_service_settings_must_be_a_mapping() -> None:
    assert "services.Echo" in refused({"services": {"Echo": ["instance_type", "cpu.2"]}})


def test_unknown_deployment_strategy() -> None:
    message = refused(echo(deployment_strategy="BlueGreen"))

    assert "services.Echo.deployment_strategy" in message
    assert "RollingUpdate" in message


@pytest.mark.parametrize("timeout", [-1, "900", 1.5, True])
def test_bad_cold_start_timeout(timeout: object) -> None:
    assert "services.Echo.cold_start_timeout" in refused(echo(cold_start_timeout=timeout))


@pytest.mark.parametrize("overrides", [["traffic"], "traffic", 3])
def test_config_overrides_not_a_mapping(overrides: object) -> None:
    assert "services.Echo.config_overrides" in refused(echo(config_overrides=overrides))


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"cpu": "lots"}, "config_overrides.resources.cpu"),
        ({"cpu": [2]}, "config_overrides.resources.cpu"),
        ({"memory": "1 gallon"}, "config_overrides.resources.memory"),
        ({"gpu": "abc"}, "config_overrides.resources.gpu"),
        ({"gpu": -1}, "config_overrides.resources.gpu"),
        ({"gpu": "0.5"}, "config_overrides.resources.gpu"),
        ({"gpu": True}, "config_overrides.resources.gpu"),
        ("2 cpus", "config_overrides.resources"),
    ],
)
def test_bad_override_resources(resources: object, field: str) -> None:
    """Refused up front: `service_settings` (run by the reconciler) could not read them."""
    assert f"`services.Echo.{field}`" in refused(echo(config_overrides={"resources": resources}))


def test_good_override_resources_are_accepted() -> None:
    resources = {"cpu": "500m", "memory": "2Gi", "gpu": 0}

    dc.validate(echo(config_overrides={"resources": resources, "traffic": {"timeout": 5}}), SERVICES, CATALOG)
    dc.validate(
        echo(config_overrides={"resources": {"cpu": 2, "memory": 1024, "gpu": None}}), SERVICES, CATALOG
    )


def test_a_gpu_count_may_be_a_quantity_string() -> None:
    config = echo(config_overrides={"resources": {"gpu": "2"}})
    dc.validate(config, SERVICES, CATALOG)

    assert settings_by_name(config, manifest())["Echo"].gpus == 2


@pytest.mark.parametrize(
    ("envs", "field"),
    [
        ([{"name": "1ABC", "value": "x"}], "envs[0].name"),
        ([{"name": "OK", "value": "x"}, {"name": "BAD-NAME", "value": "x"}], "envs[1].name"),
        ([{"name": "", "value": "x"}], "envs[0].name"),
        ([{"name": "A B", "value": "x"}], "envs[0].name"),
        ([{"name": "A\n", "value": "x"}], "envs[0].name"),
        ([{"value": "x"}], "envs[0].name"),
        ([{"name": 5, "value": "x"}], "envs[0].name"),
        (["A=1"], "envs[0].name"),
        ({"A": "1"}, "envs"),
    ],
)
def test_bad_env_names_global_and_per_service(envs: object, field: str) -> None:
    assert f"`{field}" in refused({"envs": envs})
    assert f"`services.Echo.{field}" in refused(echo(envs=envs))


def test_canary_is_refused() -> None:
    canary = {
        "route_type": "random",
        "route_by": None,
        "versions": {"v2": {"bento": "echo:v2", "weight": 10}},
    }

    assert "canary" in refused({**FLAG_MODE_BODY, "canary": canary})


@pytest.mark.parametrize("services", [["Echo"], "Echo", 1])
def test_services_must_be_a_mapping(services: object) -> None:
    assert "`services`" in refused({"services": services})


def test_the_first_invalid_field_is_named() -> None:
    config = echo(instance_type="nope", scaling={"min_replicas": -1})

    assert "services.Echo.instance_type" in refused(config)


# --- scaling.policy and traffic.concurrency ----------------------------------------------------------


def policy(**fields: Any) -> dict[str, Any]:
    return echo(scaling={"min_replicas": 0, "max_replicas": 5, "policy": fields})


@pytest.mark.parametrize(
    "config",
    [
        echo(scaling={"min_replicas": 1, "max_replicas": 2, "policy": None}),
        policy(),
        policy(metrics=None, scale_up_behavior=None, scale_down_behavior=None),
        policy(metrics=[]),
        policy(metrics=[{"type": "qps", "value": 2.5}]),
        policy(metrics=[{"type": t, "value": 100} for t in dc.METRIC_TYPES]),
        policy(metrics=[{"type": "cpu", "value": 250}]),  # above 100%: limits may exceed requests
        policy(scale_up_behavior="stable", scale_down_behavior="fast"),
        policy(scale_up_behavior="disabled", scale_down_behavior="disabled"),
        policy(scale_up_stabilization_window=0, scale_down_stabilization_window=3600),
        echo(config_overrides={"traffic": {"concurrency": 1}}),
        echo(config_overrides={"traffic": {"concurrency": None, "timeout": 30}}),
        echo(config_overrides={"traffic": None}),
    ],
)
def test_validate_accepts_policies(config: dict[str, Any]) -> None:
    dc.validate(config, SERVICES, CATALOG)


@pytest.mark.parametrize(
    ("value", "target"), [("80", 80.0), ("4", 4.0), ("500m", 0.5), ("1.5", 1.5), (4, 4.0), (2.5, 2.5)]
)
def test_metric_values_may_be_quantity_strings(value: object, target: float) -> None:
    config = policy(metrics=[{"type": "qps", "value": value}])
    dc.validate(config, SERVICES, CATALOG)

    settings = settings_by_name(config, manifest())["Echo"]

    assert settings.policy.metrics == (dc.MetricTarget("qps", target),)


def test_a_bad_metric_value_says_what_a_quantity_looks_like() -> None:
    message = refused(policy(metrics=[{"type": "cpu", "value": "eighty"}]))

    assert message.startswith("`services.Echo.scaling.policy.metrics[0].value` must be a number or quantity")
    assert "'eighty'" in message


def test_a_bad_metric_type_is_one_sentence_naming_the_field() -> None:
    message = refused(policy(metrics=[{"type": "latency", "value": 1}]))

    assert message == "`services.Echo.scaling.policy.metrics[0].type` must be one of cpu, memory, gpu, qps."


POLICY = "services.Echo.scaling.policy"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"metrics": {"type": "cpu", "value": 80}}, "metrics"),
        ({"metrics": "cpu"}, "metrics"),
        ({"metrics": ["cpu"]}, "metrics[0]"),
        ({"metrics": [None]}, "metrics[0]"),
        ({"metrics": [{"type": "CPU", "value": 80}]}, "metrics[0].type"),
        ({"metrics": [{"value": 80}]}, "metrics[0].type"),
        ({"metrics": [{"type": "concurrency", "value": 4}]}, "metrics[0].type"),
        ({"metrics": [{"type": "cpu", "value": 80}, {"type": "rps", "value": 1}]}, "metrics[1].type"),
        ({"metrics": [{"type": "cpu", "value": 80}, {"type": "cpu", "value": 50}]}, "metrics[1].type"),
        ({"metrics": [{"type": "cpu"}]}, "metrics[0].value"),
        ({"metrics": [{"type": "cpu", "value": 0}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": -1}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": "ten"}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": "10%"}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": ""}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": "0m"}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": "-5"}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": [4]}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": True}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": float("nan")}]}, "metrics[0].value"),
        ({"metrics": [{"type": "qps", "value": float("inf")}]}, "metrics[0].value"),
        ({"scale_up_behavior": "slow"}, "scale_up_behavior"),
        ({"scale_up_behavior": "Fast"}, "scale_up_behavior"),
        ({"scale_down_behavior": 1}, "scale_down_behavior"),
        ({"scale_down_behavior": ""}, "scale_down_behavior"),
        ({"scale_up_stabilization_window": -1}, "scale_up_stabilization_window"),
        ({"scale_up_stabilization_window": 3601}, "scale_up_stabilization_window"),
        ({"scale_down_stabilization_window": 1.5}, "scale_down_stabilization_window"),
        ({"scale_down_stabilization_window": "60"}, "scale_down_stabilization_window"),
        ({"scale_down_stabilization_window": True}, "scale_down_stabilization_window"),
    ],
)
def test_bad_policy(fields: dict[str, Any], field: str) -> None:
    assert f"`{POLICY}.{field}`" in refused(policy(**fields))


@pytest.mark.parametrize("value", ["fast", ["cpu"], 80])
def test_policy_must_be_a_mapping(value: object) -> None:
    assert f"`{POLICY}`" in refused(echo(scaling={"max_replicas": 2, "policy": value}))


def test_bad_behavior_names_the_choices() -> None:
    assert "fast, stable, disabled" in refused(policy(scale_down_behavior="slow"))


@pytest.mark.parametrize(
    ("traffic", "field"),
    [
        ({"concurrency": 0}, "traffic.concurrency"),
        ({"concurrency": -2}, "traffic.concurrency"),
        ({"concurrency": "4"}, "traffic.concurrency"),
        ({"concurrency": 2.5}, "traffic.concurrency"),
        ({"concurrency": True}, "traffic.concurrency"),
        ("fast", "traffic"),
        ([{"concurrency": 4}], "traffic"),
        ({"timeout": 0}, "traffic.timeout"),
        ({"timeout": "60s"}, "traffic.timeout"),
        ({"max_concurrency": 0}, "traffic.max_concurrency"),
        ({"max_concurrency": 1.5}, "traffic.max_concurrency"),
        ({"external_queue": "yes"}, "traffic.external_queue"),
    ],
)
def test_bad_traffic(traffic: object, field: str) -> None:
    assert f"`services.Echo.config_overrides.{field}`" in refused(echo(config_overrides={"traffic": traffic}))


# --- service_settings -------------------------------------------------------------------------------


def test_traffic_is_the_bentos_own_then_config_overrides_key_by_key() -> None:
    bento = manifest()
    bento["services"][0]["config"] = {
        "traffic": {"timeout": 10, "max_concurrency": 4, "external_queue": True}
    }
    config = echo(config_overrides={"traffic": {"timeout": 42, "concurrency": 2}})

    traffic = settings_by_name(config, bento)["Echo"].traffic
    defaults = settings_by_name({}, bento)["Model"].traffic

    assert (traffic.timeout_s, traffic.max_concurrency, traffic.external_queue) == (42.0, 4, True)
    assert traffic.concurrency == 2 == settings_by_name(config, bento)["Echo"].concurrency
    assert (defaults.timeout_s, defaults.max_concurrency, defaults.external_queue) == (60.0, None, False)


def test_services_not_listed_get_the_defaults() -> None:
    settings = dc.service_settings({"services": {}}, manifest(), CATALOG)

    assert [s.name for s in settings] == ["Echo", "Model"]
    model = settings[1]
    assert (model.min_replicas, model.max_replicas) == (1, 1)
    assert model.strategy == "Recreate" == DEFAULT_STRATEGY
    assert model.instance_type is None
    assert (model.cpu_millicores, model.memory_bytes, model.gpus) == (None, None, 0)
    assert model.cold_start_timeout is None
    assert model.config_overrides == {}
    assert dict(model.envs) == {}


def test_the_verified_bodies_give_settings_for_every_service() -> None:
    flag = settings_by_name(FLAG_MODE_BODY, manifest())
    config_file = settings_by_name(CONFIG_FILE_BODY, manifest())

    assert (flag["Echo"].min_replicas, flag["Echo"].max_replicas, flag["Echo"].strategy) == (1, 3, "Recreate")
    assert dict(flag["Echo"].envs) == {"A": "1", "FOO": "bar"}
    assert dict(flag["Model"].envs) == {"A": "1", "FOO": "bar"}
    echo_settings = config_file["Echo"]
    assert (echo_settings.min_replicas, echo_settings.max_replicas) == (0, 5)
    assert echo_settings.strategy == "RampedSlowRollout"
    assert echo_settings.cold_start_timeout == 900
    assert echo_settings.config_overrides == {"traffic": {"timeout": 120}}
    assert dict(echo_settings.envs) == {"GLOBAL_ENV": "g", "SVC_ENV": "s"}
    assert dict(config_file["Model"].envs) == {"GLOBAL_ENV": "g"}


def test_env_precedence_manifest_defaults_then_global_then_per_service() -> None:
    bento = manifest(
        envs=[
            {"name": "FROM_BENTO", "value": "bento"},
            {"name": "SHARED", "value": "bento"},
            {"name": "REQUIRED", "value": ""},
            {"name": "NO_VALUE"},
            {"name": "BUILD_ONLY", "value": "b", "stage": "build"},
            {"name": "RUN_ONLY", "value": "r", "stage": "run"},
            {"name": "ALL", "value": "a", "stage": "all"},
        ]
    )
    config = {
        "envs": [{"name": "SHARED", "value": "global"}, {"name": "GLOBAL", "value": "g"}],
        "services": {
            "Echo": {"envs": [{"name": "SHARED", "value": "echo"}, {"name": "FROM_BENTO", "value": "echo"}]}
        },
    }

    settings = settings_by_name(config, bento)

    assert dict(settings["Echo"].envs) == {
        "FROM_BENTO": "echo",
        "SHARED": "echo",
        "RUN_ONLY": "r",
        "ALL": "a",
        "GLOBAL": "g",
    }
    assert dict(settings["Model"].envs) == {
        "FROM_BENTO": "bento",
        "SHARED": "global",
        "RUN_ONLY": "r",
        "ALL": "a",
        "GLOBAL": "g",
    }


def test_manifest_env_defaults_keep_only_run_time_values() -> None:
    bento = {
        "envs": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": ""},
            {"name": "C", "value": "3", "stage": "build"},
            {"name": "D", "value": "4", "stage": "run"},
            "not-a-mapping",
        ]
    }

    assert bento_manifest.manifest_env_defaults(bento) == {"A": "1", "D": "4"}
    assert bento_manifest.manifest_env_defaults({}) == {}


def test_env_map_turns_null_values_into_empty_strings() -> None:
    config = dc.parse_config({"envs": [{"name": "A", "value": None}, {"name": "B", "value": "2"}]})

    assert dc.env_map(config.envs) == {"A": "", "B": "2"}
    assert dc.env_map(None) == {}


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [
        (None, (1, 1)),
        ({}, (1, 1)),
        ({"min_replicas": None, "max_replicas": 3, "policy": None}, (1, 3)),
        ({"max_replicas": 1}, (1, 1)),
        ({"min_replicas": 0, "max_replicas": 5}, (0, 5)),
        ({"min_replicas": 0}, (0, 1)),
        ({"min_replicas": 3}, (3, 3)),
        ({"min_replicas": 2, "max_replicas": 4}, (2, 4)),
    ],
)
def test_scaling_defaults(scaling: dict[str, Any] | None, expected: tuple[int, int]) -> None:
    (settings, _model) = dc.service_settings(echo(scaling=scaling), manifest(), CATALOG)

    assert (settings.min_replicas, settings.max_replicas) == expected


def test_instance_type_gives_resources_from_the_catalog() -> None:
    chosen = find(CATALOG, "cpu.2")
    assert chosen is not None
    config = echo(instance_type="cpu.2", config_overrides={"resources": {"cpu": "8", "memory": "32Gi"}})

    (settings, _model) = dc.service_settings(config, manifest(), CATALOG)

    assert settings.instance_type == "cpu.2"
    assert (settings.cpu_millicores, settings.memory_bytes, settings.gpus) == (
        chosen.cpu_millicores,
        chosen.memory_bytes,
        chosen.gpu_count,
    )
    assert (settings.cpu_millicores, settings.memory_bytes, settings.gpus) == (1000, 2 * GiB, 0)


def test_gpu_instance_type_gives_its_gpus() -> None:
    (settings, _model) = dc.service_settings(echo(instance_type="gpu.t4.1"), manifest(), CATALOG)

    assert (settings.cpu_millicores, settings.memory_bytes, settings.gpus) == (4000, 16 * GiB, 1)


def test_no_instance_type_uses_the_services_own_resources() -> None:
    (settings, model) = dc.service_settings(echo(instance_type=None), manifest(), CATALOG)

    assert (settings.cpu_millicores, settings.memory_bytes, settings.gpus) == (2000, GiB, 1)
    assert (model.cpu_millicores, model.memory_bytes, model.gpus) == (None, None, 0)


def test_config_override_resources_win_over_the_manifests() -> None:
    config = echo(config_overrides={"resources": {"cpu": "500m", "gpu": 0}, "traffic": {"timeout": 5}})

    (settings, _model) = dc.service_settings(config, manifest(), CATALOG)

    assert (settings.cpu_millicores, settings.memory_bytes, settings.gpus) == (500, GiB, 0)
    assert settings.config_overrides == {"resources": {"cpu": "500m", "gpu": 0}, "traffic": {"timeout": 5}}


def test_service_settings_do_not_change_the_config() -> None:
    config = copy.deepcopy(CONFIG_FILE_BODY)

    dc.service_settings(config, manifest(), CATALOG)

    assert config == CONFIG_FILE_BODY


def test_a_legacy_bento_without_services_is_one_service_named_after_it() -> None:
    legacy = {"name": "echo", "service": "service:svc"}

    assert [s.name for s in dc.service_settings({}, legacy, CATALOG)] == ["echo"]
    assert bento_manifest.entry_service(legacy) == "echo"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "Echo"),
        ({"entry_service": "Model"}, "Model"),
        ({"entry_service": None}, "Echo"),
        ({"entry_service": "Gone"}, "Echo"),
    ],
)
def test_entry_service(extra: dict[str, Any], expected: str) -> None:
    bento = {**manifest(), **extra}
    if "entry_service" not in extra:
        del bento["entry_service"]

    assert bento_manifest.entry_service(bento) == expected


# --- service_settings: the scaling policy -----------------------------------------------------------


def test_no_policy_gives_bentoclouds_defaults() -> None:
    (settings, model) = dc.service_settings(
        echo(scaling={"max_replicas": 3, "policy": None}), manifest(), CATALOG
    )

    for service in (settings, model):
        assert service.policy == dc.ScalingPolicy(
            metrics=(),
            scale_up_behavior="fast",
            scale_down_behavior="stable",
            scale_up_stabilization_window=None,
            scale_down_stabilization_window=None,
        )
        assert service.concurrency is None


def test_the_verified_config_file_policy_is_parsed() -> None:
    settings = settings_by_name(CONFIG_FILE_BODY, manifest())["Echo"]

    assert settings.policy == dc.ScalingPolicy(
        metrics=(dc.MetricTarget("cpu", 80.0), dc.MetricTarget("gpu", 70.0)),
        scale_up_behavior="fast",
        scale_down_behavior="disabled",
        scale_up_stabilization_window=None,
        scale_down_stabilization_window=600,
    )


def test_null_behaviors_take_the_defaults_and_values_become_floats() -> None:
    config = policy(
        metrics=[{"type": "qps", "value": 10}],
        scale_up_behavior=None,
        scale_down_behavior=None,
        scale_up_stabilization_window=0,
    )

    (settings, _model) = dc.service_settings(config, manifest(), CATALOG)

    assert settings.policy.metrics == (dc.MetricTarget("qps", 10.0),)
    assert isinstance(settings.policy.metrics[0].value, float)
    assert (settings.policy.scale_up_behavior, settings.policy.scale_down_behavior) == ("fast", "stable")
    assert settings.policy.scale_up_stabilization_window == 0


def test_traffic_concurrency_is_read_per_service() -> None:
    config = {
        "services": {
            "Echo": {"config_overrides": {"traffic": {"concurrency": 8, "timeout": 30}}},
            "Model": {"config_overrides": {"traffic": {"timeout": 30}}},
        }
    }

    settings = settings_by_name(config, manifest())

    assert (settings["Echo"].concurrency, settings["Model"].concurrency) == (8, None)


def test_scaling_policy_of_null_is_the_default() -> None:
    assert dc.Scaling(policy=None).scaling_policy() == dc.ScalingPolicy()
    assert dc.Policy().scaling_policy() == dc.ScalingPolicy()


# --- check_deployment_name --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["d1", "a", "0", "my-deploy-1", "9lives", "a-b-c", "x" * 48, "a" + "-" * 46 + "z"]
)
def test_valid_deployment_names(name: str) -> None:
    assert dc.check_deployment_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Bad_Name", "UPPER", "a_b", "a.b", "a b", "-a", "a-", "-", "x" * 49, "d1\n", "é", "a/b"],
)
def test_invalid_deployment_names(name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        dc.check_deployment_name(name)

    assert "`name`" in caught.value.message


# --- parsing once: the models ----------------------------------------------------------------------


def test_parse_config_gives_typed_values() -> None:
    parsed = dc.parse_config(CONFIG_FILE_BODY)

    echo_config = parsed.service("Echo")
    assert echo_config.deployment_strategy is Strategy.RAMPED_SLOW_ROLLOUT
    assert echo_config.scaling is not None and echo_config.scaling.bounds() == (0, 5)
    assert parsed.service("Model") == dc.ServiceConfig()
    assert settings_by_name(CONFIG_FILE_BODY, manifest())["Model"].strategy is Strategy.RECREATE


@pytest.mark.parametrize(
    ("config", "first"),
    [
        (echo(scaling={"min_replicas": "x"}, cold_start_timeout="y"), "services.Echo.scaling.min_replicas"),
        (
            policy(metrics=[{"type": "cpu", "value": "eighty"}], scale_up_behavior="slow"),
            f"{POLICY}.metrics[0].value",
        ),
        ({"envs": [{"name": "1A"}], "services": {"Echo": {"instance_type": "nope"}}}, "envs[0].name"),
    ],
)
def test_only_the_first_invalid_field_is_named(config: dict[str, Any], first: str) -> None:
    message = refused(config)

    assert message.startswith(f"`{first}` ")
    assert message.count("`services.") + message.count("`envs") == 1


def test_a_long_refused_value_is_cut_short() -> None:
    message = refused(echo(config_overrides={"resources": {"cpu": list(range(1000))}}))

    assert len(message) < 300
    assert message.startswith("`services.Echo.config_overrides.resources.cpu` must be a number of cores")


def test_a_config_that_is_not_a_mapping_is_refused() -> None:
    assert refused(["services"]).startswith("`config` must be a mapping")  # type: ignore[arg-type]


def test_unknown_keys_are_ignored_at_every_level() -> None:
    config = {
        "surprise": 1,
        "services": {
            "Echo": {
                "extras": {"anything": [1, 2]},
                "new_bentocloud_key": None,
                "scaling": {"min_replicas": 1, "max_replicas": 2, "later": True, "policy": {"x": 1}},
                "config_overrides": {"traffic": {"timeout": 5, "unknown": "k"}, "workers": 2},
            }
        },
    }

    dc.validate(config, SERVICES, CATALOG)
    (settings, _model) = dc.service_settings(config, manifest(), CATALOG)

    assert settings.config_overrides == {"traffic": {"timeout": 5, "unknown": "k"}, "workers": 2}
    assert settings.traffic.timeout_s == 5.0


def test_the_bentos_own_unreadable_settings_fall_back_to_the_defaults() -> None:
    """The reconciler derives settings from the bento's manifest too; a value Tiffin cannot read there
    must not stop the deployment."""
    bento = manifest()
    bento["services"][0]["config"] = {
        "resources": {"cpu": "lots", "memory": "1Gi", "gpu": 0.5},
        "traffic": {"timeout": "soon", "max_concurrency": 4, "external_queue": "yes"},
    }

    (settings, _model) = dc.service_settings({}, bento, CATALOG)

    assert (settings.cpu_millicores, settings.memory_bytes, settings.gpus) == (None, GiB, 0)
    assert (settings.traffic.timeout_s, settings.traffic.max_concurrency) == (60.0, 4)
    assert settings.traffic.external_queue is False


def test_a_null_override_leaves_the_bentos_value() -> None:
    overrides = {"resources": {"cpu": None, "memory": "2Gi"}, "traffic": {"timeout": None}}
    config = echo(config_overrides=overrides)

    (settings, _model) = dc.service_settings(config, manifest(), CATALOG)

    assert (settings.cpu_millicores, settings.memory_bytes, settings.gpus) == (2000, 2 * GiB, 1)
    assert settings.traffic.timeout_s == 60.0


@pytest.mark.parametrize(("value", "expected"), [("1", "1"), (None, ""), (0, "0"), ("", "")])
def test_per_service_env_values_become_strings(value: object, expected: str) -> None:
    config = echo(envs=[{"name": "A", "value": value}])

    assert settings_by_name(config, manifest())["Echo"].envs["A"] == expected
