"""What the gateway is told about each Service, and what its replicas are told in return."""

from dataclasses import replace

from tiffin.core.deployment_config import ServiceSettings
from tiffin.core.traffic_config import TrafficConfig
from tiffin.reconciler.admission import admission, replica_overrides
from tiffin.routing.snapshot import Admission

OVERRIDES = {"traffic": {"max_concurrency": 4, "timeout": 30}, "workers": 2}
SETTINGS = ServiceSettings(
    name="svc",
    min_replicas=1,
    max_replicas=2,
    instance_type=None,
    cpu_millicores=None,
    memory_bytes=None,
    gpus=0,
    envs={},
    strategy="Recreate",
    cold_start_timeout=45,
    config_overrides=OVERRIDES,
    traffic=TrafficConfig(timeout_s=30.0, max_concurrency=4),
)


def test_an_online_service_goes_straight_to_replicas_which_keep_their_own_limit() -> None:
    assert admission(SETTINGS, 100) == Admission(hold_s=45.0, max_concurrency=4, timeout_s=30.0)
    assert replica_overrides(SETTINGS) == OVERRIDES


def test_min_zero_is_queued_and_the_replica_limit_is_loosened_behind_the_gateway() -> None:
    at_zero = replace(SETTINGS, min_replicas=0)

    assert admission(at_zero, 100) == Admission(
        hold_s=45.0, queue=True, max_concurrency=4, queue_capacity=100, timeout_s=30.0
    )
    assert replica_overrides(at_zero) == {"traffic": {"max_concurrency": 8, "timeout": 30}, "workers": 2}
    assert OVERRIDES["traffic"] == {"max_concurrency": 4, "timeout": 30}, "the stored config is untouched"


def test_external_queue_queues_a_service_with_replicas_too() -> None:
    queued = replace(SETTINGS, traffic=TrafficConfig(max_concurrency=4, external_queue=True))
    assert admission(queued, 100).queue
    assert replica_overrides(queued)["traffic"]["max_concurrency"] == 8
