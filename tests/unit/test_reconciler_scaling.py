"""The reconciler's sizing of Services: signals sampled each step, the policy applied on its rhythm,
bounds and wake-up at once; time is a number the test moves."""

from dataclasses import replace

import pytest

from tiffin.autoscaler import ScalerSettings
from tiffin.backends import capacity
from tiffin.backends.protocol import ReplicaPhase, ReplicaStatus, Usage
from tiffin.core.deployment_config import MetricTarget, ScalingPolicy, ServiceSettings
from tiffin.reconciler.scaling import ScaledService, Scaler
from tiffin.routing.traffic import QueueStats, ReplicaTraffic, Traffic

KEY = ("d1", "svc")
SETTINGS = ScalerSettings(period_s=15.0, stable_window_s=60.0)
NO_TRAFFIC = Traffic({}, {})


def service(
    low: int = 1, high: int = 5, metrics: tuple[MetricTarget, ...] = (), **more: object
) -> ScaledService:
    settings = ServiceSettings(
        name="svc",
        min_replicas=low,
        max_replicas=high,
        instance_type=None,
        cpu_millicores=1000,
        memory_bytes=None,
        gpus=0,
        envs={},
        strategy="RollingUpdate",
        cold_start_timeout=None,
        policy=ScalingPolicy(metrics=metrics, scale_down_behavior="fast"),
    )
    return ScaledService("d1", replace(settings, **more))  # type: ignore[arg-type]


def running(count: int) -> list[ReplicaStatus]:
    return [
        ReplicaStatus(f"r{n}", "d1", "svc", "rev", ReplicaPhase.RUNNING, url=f"http://127.0.0.1:{4000 + n}")
        for n in range(count)
    ]


def answered(replicas: list[ReplicaStatus], requests: int, waiting: int = 0) -> Traffic:
    """`requests` arrived so far, spread over `replicas` as answered; `waiting` in the queue now."""
    per = {r.url or "": ReplicaTraffic(requests // len(replicas)) for r in replicas} if replicas else {}
    return Traffic(per, {KEY: QueueStats(waiting, 0.0)} if waiting else {}, {KEY: requests + waiting})


def test_a_service_starts_at_min_and_a_new_bound_applies_at_once() -> None:
    scaler = Scaler(SETTINGS)
    scaler.step([service(low=2)], [], NO_TRAFFIC, {}, 0.0)
    assert scaler.counts[KEY] == 2

    said = scaler.step([service(low=4)], running(2), NO_TRAFFIC, {}, 1.0)

    assert scaler.counts[KEY] == 4
    assert [h.event.message for h in said] == [
        "Service svc: 2 → 4 replicas (min_replicas 4, max_replicas 5)."
    ]


def test_qps_above_target_scales_up_at_the_next_evaluation_and_says_why() -> None:
    scaler, qps10 = Scaler(SETTINGS), service(metrics=(MetricTarget("qps", 10),))
    replicas = running(1)
    scaler.step([qps10], replicas, answered(replicas, 0), {}, 0.0)
    assert scaler.step([qps10], replicas, answered(replicas, 150), {}, 7.5) == [], "not due before 15 s"

    said = scaler.step([qps10], replicas, answered(replicas, 300), {}, 15.0)

    assert scaler.counts[KEY] == 2
    assert said[0].event.message == "Service svc: 1 → 2 replicas (qps 20 per replica, target 10)."
    assert said[0].event.kind == "scaling" and said[0].event.service == "svc"


def test_cpu_is_measured_against_the_replica_request() -> None:
    scaler, replicas = Scaler(SETTINGS), running(1)
    for second in range(16):  # 0.95 of a core used, 1 core requested: 95% against the default 80%
        usage = {"r0": Usage(cpu_seconds=0.95 * second, memory_bytes=1)}
        scaler.step([service()], replicas, NO_TRAFFIC, usage, float(second))
    assert scaler.counts[KEY] == 2


def test_a_waiting_request_wakes_a_service_at_zero_at_once() -> None:
    scaler = Scaler(SETTINGS)
    scaler.step([service(low=0)], [], NO_TRAFFIC, {}, 0.0)
    assert scaler.counts[KEY] == 0

    said = scaler.step([service(low=0)], [], answered([], 0, waiting=1), {}, 0.5)

    assert scaler.counts[KEY] == 1, "woken without waiting for the next evaluation"
    assert "0 → 1 replicas" in said[0].event.message


def test_an_idle_service_with_min_zero_goes_to_zero_after_the_window() -> None:
    scaler, qps10 = Scaler(SETTINGS), service(low=0, metrics=(MetricTarget("qps", 10),))
    replicas = running(1)
    scaler.counts[KEY] = 1
    now = 0.0
    while scaler.counts[KEY] and now < 300:
        scaler.step([qps10], replicas, answered(replicas, 0), {}, now)
        now += 0.5
    assert scaler.counts[KEY] == 0
    assert now > 15.0


def test_services_no_longer_deployed_are_forgotten() -> None:
    scaler = Scaler(SETTINGS)
    scaler.step([service()], [], NO_TRAFFIC, {}, 0.0)
    scaler.step([], [], NO_TRAFFIC, {}, 1.0)
    assert scaler.counts == {} and scaler.states == {}


def test_gpu_utilisation_of_each_replica_drives_a_gpu_metric() -> None:
    scaler, gpu50 = Scaler(SETTINGS), service(metrics=(MetricTarget("gpu", 50),))
    replicas, said = running(1), []
    for second in range(16):
        usage = {"r0": Usage(cpu_seconds=0.0, memory_bytes=1, gpu_percent=90.0)}
        said += scaler.step([gpu50], replicas, NO_TRAFFIC, usage, float(second))
    assert scaler.counts[KEY] == 2
    assert (
        len(said) == 1
        and said[0].event.message == "Service svc: 1 → 2 replicas (gpu 90% per replica, target 50%)."
    )


def test_gpu_utilisation_is_read_per_index_from_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "_query_nvidia_smi", lambda fields: "0, 87\n1, [N/A]\n2, 3\nbogus")
    assert capacity.gpu_utilisation() == {0: 87.0, 2: 3.0}
    monkeypatch.setattr(capacity, "_query_nvidia_smi", lambda fields: "")
    assert capacity.gpu_utilisation() == {}


def test_qps_counts_arrivals_so_a_backlog_behind_a_cold_start_scales_up() -> None:
    scaler, qps10 = Scaler(SETTINGS), service(low=0, metrics=(MetricTarget("qps", 10),))
    scaler.step([qps10], [], NO_TRAFFIC, {}, 0.0)
    replicas = running(1)
    for tick in range(1, 32):  # 40 requests/s arrive; the one replica answers only 2/s of them
        now, arrived = tick * 0.5, tick * 20
        traffic = Traffic(
            {"http://127.0.0.1:4000": ReplicaTraffic(tick)}, {KEY: QueueStats(arrived - tick)}, {KEY: arrived}
        )
        scaler.step([qps10], replicas, traffic, {}, now)
    assert scaler.counts[KEY] == 4, "40 requests/s against a target of 10"


def test_a_queue_under_pressure_is_evaluated_before_the_period_ends() -> None:
    scaler, qps10 = Scaler(SETTINGS), service(metrics=(MetricTarget("qps", 10),))
    replicas = running(1)
    scaler.step([qps10], replicas, answered(replicas, 0), {}, 0.0)
    calm = Traffic({}, {KEY: QueueStats(5, oldest_wait_s=0.5)}, {KEY: 20})
    scaler.step([qps10], replicas, calm, {}, 0.5)
    assert scaler.counts[KEY] == 1, "a short wait is no reason to evaluate early"

    pressed = Traffic({}, {KEY: QueueStats(40, oldest_wait_s=1.5)}, {KEY: 80})
    said = scaler.step([qps10], replicas, pressed, {}, 2.0)

    assert scaler.counts[KEY] == 4, "80 arrivals in 2 s: 40/s against 10 per replica, well before 15 s"
    assert "1 → 4 replicas" in said[0].event.message
