"""The autoscaling policy (issue 5, item 1): table-driven, with explicit `now` values as the fake clock."""

from typing import Any

import pytest

from tiffin.autoscaler import (
    DEFAULT_SETTINGS,
    Decision,
    Measurement,
    ScalerSettings,
    ScalerState,
    ServicePolicy,
    decide,
    is_due,
    stabilization_windows,
    targets,
)
from tiffin.core import deployment_config as dc
from tiffin.core.deployment_config import Behavior, MetricTarget, MetricType, ScalingPolicy

EXACT = ScalerSettings(tolerance=0.0)  # most tables use exact ceil(total / target) arithmetic
CPU80: tuple[tuple[MetricType, float], ...] = (("cpu", 80.0),)


def svc(
    low: int = 1,
    high: int = 100,
    metrics: tuple[tuple[MetricType, float], ...] = CPU80,
    *,
    up: Behavior = "fast",
    down: Behavior = "stable",
    up_window: int | None = None,
    down_window: int | None = None,
    concurrency: int | None = None,
) -> ServicePolicy:
    scaling = ScalingPolicy(
        metrics=tuple(MetricTarget(kind, value) for kind, value in metrics),
        scale_up_behavior=up,
        scale_down_behavior=down,
        scale_up_stabilization_window=up_window,
        scale_down_stabilization_window=down_window,
    )
    return ServicePolicy(low, high, scaling, concurrency)


def once(policy: ServicePolicy, replicas: int, settings: ScalerSettings = EXACT, **totals: float) -> Decision:
    decision, _state = decide(policy, Measurement(replicas, **totals), ScalerState(), 0.0, settings)
    return decision


def play(
    policy: ServicePolicy,
    replicas: int,
    steps: list[tuple[float, dict[str, Any]]],
    settings: ScalerSettings = EXACT,
) -> list[int]:
    """Evaluate at each (now, totals) in turn, the replicas following the decisions; the desired counts."""
    state, desired = ScalerState(), []
    for now, totals in steps:
        decision, state = decide(policy, Measurement(replicas, **totals), state, now, settings)
        replicas = decision.desired
        desired.append(replicas)
    return desired


def every(period: float, start: float, count: int, **totals: float) -> list[tuple[float, dict[str, Any]]]:
    return [(start + i * period, dict(totals)) for i in range(count)]


IDLE = {"cpu": 0.0}


# --- one metric: ceil(total / target), with HPA's tolerance ------------------------------------------


@pytest.mark.parametrize(
    ("metric", "target", "replicas", "total", "expected"),
    [
        ("cpu", 80, 2, 320.0, 4),
        ("cpu", 80, 2, 321.0, 5),
        ("cpu", 80, 4, 100.0, 2),
        ("memory", 50, 3, 200.0, 4),
        ("gpu", 70, 1, 140.0, 2),
        ("qps", 10, 2, 62.4, 6),  # 7 recommended; fast allows max(2*2, 2+4) = 6
        ("qps", 10, 2, 31.2, 4),
        ("qps", 2.5, 1, 5.0, 2),
        ("qps", 10, 3, 30.000000000000004, 3),  # float noise does not add a replica
        ("cpu", 80, 5, 0.0, 1),  # idle: the floor is min_replicas (fast down)
    ],
)
def test_recommendation_is_total_over_target(
    metric: MetricType, target: float, replicas: int, total: float, expected: int
) -> None:
    decision = once(svc(metrics=((metric, target),), down="fast"), replicas, **{metric: total})

    assert decision.desired == expected
    assert decision.metric == metric
    assert decision.target == target
    assert decision.value == pytest.approx(total / replicas)


@pytest.mark.parametrize(
    ("total", "tolerant", "exact"),
    [
        (160.0, 2, 2),  # exactly on target
        (170.0, 2, 3),  # +6%: within the 10% tolerance
        (176.0, 2, 3),  # +10%: still within
        (177.0, 3, 3),  # +10.6%: outside
        (150.0, 2, 2),  # -6%: within (and ceil says 2 anyway)
        (140.0, 2, 2),  # -12.5%: outside, ceil(1.75) = 2
        (100.0, 2, 2),
        (80.0, 1, 1),
    ],
)
def test_tolerance_like_hpa(total: float, tolerant: int, exact: int) -> None:
    policy = svc(down="fast")

    assert once(policy, 2, DEFAULT_SETTINGS, cpu=total).desired == tolerant
    assert once(policy, 2, EXACT, cpu=total).desired == exact


def test_tolerance_does_not_apply_at_zero_replicas() -> None:
    decision = once(svc(0, 10, (("qps", 10.0),)), 0, DEFAULT_SETTINGS, qps=10.5)

    assert decision.desired == 2


# --- several metrics: the largest wins ------------------------------------------------------------


@pytest.mark.parametrize(
    ("totals", "expected", "metric"),
    [
        ({"cpu": 160.0, "qps": 50.0}, 5, "qps"),
        ({"cpu": 480.0, "qps": 20.0}, 6, "cpu"),
        ({"cpu": 160.0, "qps": 20.0}, 2, "cpu"),  # a tie: the metric listed first
        ({"cpu": None, "qps": 30.0}, 3, "qps"),  # not measured: skipped
        ({"cpu": 0.0, "qps": 0.0, "memory": 900.0}, 1, "cpu"),  # memory is not one of its metrics
    ],
)
def test_several_metrics_the_largest_wins(totals: dict[str, Any], expected: int, metric: str) -> None:
    policy = svc(metrics=(("cpu", 80.0), ("qps", 10.0)), down="fast")

    decision = once(policy, 2, **totals)

    assert (decision.desired, decision.metric) == (expected, metric)


def test_nothing_measured_keeps_the_replicas() -> None:
    decision = once(svc(1, 10, (("gpu", 50.0),), down="fast"), 3, cpu=500.0)

    assert (decision.desired, decision.metric, decision.value) == (3, None, None)
    assert decision.reason == "3 replicas (no metric measured)"


# --- the default metric -----------------------------------------------------------------------------


def test_default_metric_is_cpu_80() -> None:
    assert targets(svc(metrics=())) == (MetricTarget("cpu", 80.0),)
    assert targets(svc(metrics=()), ScalerSettings(default_cpu_target=50)) == (MetricTarget("cpu", 50.0),)

    decision = once(svc(metrics=()), 2, cpu=400.0, in_flight=100)

    assert (decision.desired, decision.metric, decision.target) == (5, "cpu", 80.0)


def test_default_metric_is_concurrency_when_set() -> None:
    policy = svc(metrics=(), concurrency=4)
    assert targets(policy) == (MetricTarget("concurrency", 4.0),)

    decision = once(policy, 2, cpu=900.0, in_flight=10, queued=6)  # 16 requests / 4 per replica

    assert (decision.desired, decision.metric, decision.value) == (4, "concurrency", 8.0)


def test_explicit_metrics_win_over_concurrency() -> None:
    policy = svc(metrics=(("qps", 10.0),), concurrency=1)
    assert targets(policy) == (MetricTarget("qps", 10.0),)

    assert once(policy, 2, qps=20.0, in_flight=50).desired == 2


# --- scale up: fast, stable, disabled ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("up", "replicas", "expected"),
    [
        ("fast", 1, 5),  # +4 is more than +100%
        ("fast", 3, 7),
        ("fast", 4, 8),  # equal
        ("fast", 10, 20),  # +100% is more than +4
        ("stable", 1, 2),
        ("stable", 3, 6),
        ("stable", 10, 20),
        ("disabled", 1, 1),
        ("disabled", 10, 10),
    ],
)
def test_scale_up_caps_per_period(up: Behavior, replicas: int, expected: int) -> None:
    policy = svc(1, 1000, up=up, up_window=0)

    decision = once(policy, replicas, cpu=80.0 * 500)

    assert decision.recommendation == 500
    assert decision.desired == expected
    limit = "scale_up_behavior disabled" if up == "disabled" else "the scale-up rate"
    assert decision.limit == limit


@pytest.mark.parametrize(("up", "expected"), [("fast", [5, 10, 20, 40]), ("stable", [2, 4, 8, 16])])
def test_scale_up_step_by_step_once_per_period(up: Behavior, expected: list[int]) -> None:
    steps = every(15.0, 0.0, 4, cpu=80.0 * 100)

    assert play(svc(1, 100, up=up, up_window=0), 1, steps) == expected


def test_the_rate_counts_over_the_period_not_per_call() -> None:
    steps = [(0.0, {"cpu": 8000.0}), (5.0, {"cpu": 8000.0}), (14.9, {"cpu": 8000.0}), (15.0, {"cpu": 8000.0})]

    assert play(svc(1, 100), 1, steps) == [5, 5, 5, 10]


def test_the_rate_is_a_setting() -> None:
    settings = ScalerSettings(tolerance=0.0, period_s=1.0)
    steps = [(0.0, {"cpu": 8000.0}), (0.5, {"cpu": 8000.0}), (1.0, {"cpu": 8000.0})]

    assert play(svc(1, 100), 1, steps, settings) == [5, 5, 10]


def test_stable_scale_up_waits_for_a_whole_window_of_high_recommendations() -> None:
    steps = [(0.0, IDLE), *every(15.0, 15.0, 20, cpu=800.0), (315.0, {"cpu": 800.0})]

    desired = play(svc(1, 100, up="stable"), 1, steps)

    assert desired[:20] == [1] * 20  # t = 0 .. 285: the idle recommendation at t = 0 is in the window
    assert desired[20:] == [2, 4]  # t = 300 and 315: then +100% per period


def test_stable_scale_up_holds_a_one_off_spike() -> None:
    steps = [(0.0, IDLE), (15.0, {"cpu": 8000.0}), (30.0, IDLE), (330.0, IDLE)]

    decisions = play(svc(1, 100, up="stable"), 1, steps)

    assert decisions == [1, 1, 1, 1]


def test_fast_scale_up_follows_a_spike_at_once() -> None:
    steps = [(0.0, IDLE), (15.0, {"cpu": 800.0})]

    assert play(svc(1, 100), 1, steps) == [1, 5]


def test_held_by_the_up_window_is_said() -> None:
    state = ScalerState()
    _first, state = decide(svc(up="stable"), Measurement(2, cpu=160.0), state, 0.0, EXACT)

    decision, _ = decide(svc(up="stable"), Measurement(2, cpu=800.0), state, 15.0, EXACT)

    assert (decision.recommendation, decision.desired, decision.limit) == (10, 2, "the scale-up window")


# --- scale down: fast, stable, disabled -------------------------------------------------------------


@pytest.mark.parametrize(
    ("down", "expected"),
    [("fast", [1, 1]), ("stable", [10, 10]), ("disabled", [10, 10])],
)
def test_scale_down_behaviours_when_idle(down: Behavior, expected: list[int]) -> None:
    steps = [(0.0, {"cpu": 800.0}), (15.0, IDLE), (30.0, IDLE)]

    assert play(svc(1, 100, down=down), 10, steps)[1:] == expected


@pytest.mark.parametrize("down", ["fast", "stable"])
def test_scale_down_may_remove_100_percent_in_one_period(down: Behavior) -> None:
    decision = once(svc(0, 100, down=down, down_window=0), 40, cpu=0.0)

    assert decision.desired == 0


def test_stable_scale_down_waits_a_whole_window_after_the_spike() -> None:
    steps = [(0.0, {"cpu": 480.0}), (15.0, IDLE), (150.0, IDLE), (299.9, IDLE), (300.0, IDLE)]

    assert play(svc(1, 100), 6, steps) == [6, 6, 6, 6, 1]


def test_a_spike_inside_the_stable_window_restarts_it() -> None:
    steps = [
        (0.0, {"cpu": 160.0}),  # steady at 2
        (100.0, {"cpu": 480.0}),  # spike: fast up to 6
        (115.0, IDLE),
        (300.0, IDLE),  # the t = 0 recommendation left the window, the spike has not
        (399.0, IDLE),
        (400.0, IDLE),  # the spike left the window
    ]

    assert play(svc(1, 100), 2, steps) == [2, 6, 6, 6, 6, 1]


def test_held_by_the_down_window_is_said() -> None:
    steps = [(0.0, {"cpu": 480.0}), (15.0, IDLE)]
    state = ScalerState()
    for now, totals in steps:
        decision, state = decide(svc(), Measurement(6, **totals), state, now, EXACT)

    assert (decision.recommendation, decision.desired, decision.limit) == (0, 6, "the scale-down window")
    assert decision.reason == (
        "6 replicas (cpu 0% per replica, target 80%; 0 recommended, held by the scale-down window)"
    )


# --- windows: settings and explicit overrides -------------------------------------------------------


@pytest.mark.parametrize(
    ("up", "down", "up_window", "down_window", "settings", "expected"),
    [
        ("fast", "stable", None, None, DEFAULT_SETTINGS, (0.0, 300.0)),
        ("stable", "fast", None, None, DEFAULT_SETTINGS, (300.0, 0.0)),
        ("stable", "stable", None, None, ScalerSettings(stable_window_s=2), (2.0, 2.0)),
        ("fast", "fast", 30, 60, DEFAULT_SETTINGS, (30.0, 60.0)),
        ("stable", "stable", 0, 0, DEFAULT_SETTINGS, (0.0, 0.0)),
        ("disabled", "disabled", None, None, DEFAULT_SETTINGS, (0.0, 0.0)),
    ],
)
def test_stabilization_windows(
    up: Behavior,
    down: Behavior,
    up_window: int | None,
    down_window: int | None,
    settings: ScalerSettings,
    expected: tuple[float, float],
) -> None:
    policy = svc(up=up, down=down, up_window=up_window, down_window=down_window)

    assert stabilization_windows(policy.scaling, settings) == expected


def test_explicit_down_window_shortens_stable() -> None:
    steps = [(0.0, {"cpu": 480.0}), (45.0, IDLE), (60.0, IDLE)]

    assert play(svc(1, 100, down_window=60), 6, steps) == [6, 6, 1]


def test_explicit_down_window_slows_fast() -> None:
    steps = [(0.0, {"cpu": 480.0}), (15.0, IDLE), (59.0, IDLE), (60.0, IDLE)]

    assert play(svc(1, 100, down="fast", down_window=60), 6, steps) == [6, 6, 6, 1]


def test_explicit_up_window_slows_fast() -> None:
    steps = [(0.0, IDLE), (15.0, {"cpu": 400.0}), (29.0, {"cpu": 400.0}), (30.0, {"cpu": 400.0})]

    assert play(svc(1, 100, up_window=30), 1, steps) == [1, 1, 1, 5]


def test_shortened_stable_window_setting() -> None:
    settings = ScalerSettings(tolerance=0.0, period_s=1.0, stable_window_s=3.0)
    steps = [(0.0, {"cpu": 480.0}), (1.0, IDLE), (2.0, IDLE), (3.0, IDLE)]

    assert play(svc(1, 100), 6, steps, settings) == [6, 6, 6, 1]


# --- bounds -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "up", "down", "replicas", "cpu", "expected", "limit"),
    [
        (1, 3, "fast", "fast", 2, 800.0, 3, "max_replicas"),
        (2, 10, "fast", "fast", 5, 0.0, 2, "min_replicas"),
        (3, 10, "fast", "fast", 3, 0.0, 3, "min_replicas"),
        (0, 10, "fast", "fast", 5, 0.0, 0, ""),
        (1, 10, "fast", "fast", 5, 0.0, 1, "min_replicas"),
        (2, 4, "fast", "disabled", 9, 0.0, 4, "max_replicas"),  # above max after a config change
        (2, 4, "fast", "disabled", 9, 8000.0, 4, "max_replicas"),
        (5, 8, "disabled", "fast", 1, 0.0, 5, "min_replicas"),  # below min after a config change
        (5, 8, "stable", "stable", 0, 0.0, 5, "min_replicas"),  # beyond the +1 from zero of stable
        (5, 8, "fast", "fast", 0, 0.0, 5, "min_replicas"),
        (0, 50, "fast", "fast", 20, 8000.0, 40, "the scale-up rate"),
    ],
)
def test_always_within_bounds(
    low: int,
    high: int,
    up: Behavior,
    down: Behavior,
    replicas: int,
    cpu: float,
    expected: int,
    limit: str,
) -> None:
    decision = once(svc(low, high, up=up, down=down, up_window=0, down_window=0), replicas, cpu=cpu)

    assert (decision.desired, decision.limit) == (expected, limit)


# --- zero -------------------------------------------------------------------------------------------


def test_min_zero_goes_to_zero_after_a_whole_idle_window() -> None:
    steps = [(0.0, IDLE), (15.0, IDLE), (299.0, IDLE), (300.0, IDLE)]

    assert play(svc(0, 5), 1, steps) == [1, 1, 1, 0]


def test_min_zero_with_fast_down_goes_to_zero_at_once() -> None:
    assert play(svc(0, 5, down="fast"), 3, [(0.0, IDLE)]) == [0]


def test_min_one_never_reaches_zero() -> None:
    steps = [(0.0, IDLE), *every(15.0, 300.0, 5, cpu=0.0)]

    assert set(play(svc(1, 5, down="fast"), 3, steps)) == {1}


@pytest.mark.parametrize(
    ("up", "up_window", "queued", "in_flight", "expected"),
    [
        ("fast", None, 1, 0, 1),
        ("fast", None, 0, 1, 1),
        ("stable", None, 3, 0, 1),  # the up-window of idle zeros does not hold a waiting request
        ("stable", 0, 3, 0, 1),
        ("disabled", None, 3, 0, 1),
        ("fast", 600, 3, 0, 1),
        ("fast", None, 0, 0, 0),
    ],
)
def test_demand_at_zero_wakes_at_least_one(
    up: Behavior, up_window: int | None, queued: float, in_flight: float, expected: int
) -> None:
    policy = svc(0, 10, up=up, up_window=up_window)
    steps = [(0.0, IDLE), (15.0, IDLE), (30.0, {"cpu": 0.0, "queued": queued, "in_flight": in_flight})]

    assert play(policy, 0, steps) == [0, 0, expected]


@pytest.mark.parametrize(("up", "expected"), [("fast", 4), ("stable", 1)])
def test_scale_up_from_zero(up: Behavior, expected: int) -> None:
    policy = svc(0, 10, metrics=(), up=up, up_window=0, concurrency=2)

    decision = once(policy, 0, queued=40)

    assert (decision.recommendation, decision.desired) == (20, expected)
    assert decision.reason == (
        f"0 → {expected} replicas (concurrency 40 in total, target 2; 20 recommended, held by the"
        " scale-up rate)"
    )


@pytest.mark.parametrize(("up", "expected"), [("fast", 4), ("stable", 1), ("disabled", 0)])
def test_metrics_alone_scale_up_from_zero(up: Behavior, expected: int) -> None:
    """No demand signal: the rate from zero is the behaviour's own (+4 fast, +1 stable)."""
    decision = once(svc(0, 10, (("qps", 10.0),), up=up, up_window=0), 0, qps=50.0)

    assert (decision.recommendation, decision.desired) == (5, expected)


def test_a_woken_service_keeps_its_replica_for_the_down_window() -> None:
    steps = [
        (0.0, IDLE),
        (15.0, {"cpu": 0.0, "queued": 1}),
        (30.0, IDLE),
        (314.0, IDLE),
        (315.0, IDLE),
    ]

    assert play(svc(0, 5), 0, steps) == [0, 1, 1, 1, 0]


def test_requests_in_flight_keep_one_replica_even_with_fast_down() -> None:
    decision = once(svc(0, 5, down="fast"), 2, cpu=0.0, in_flight=1)

    assert (decision.recommendation, decision.desired) == (1, 1)


def test_demand_drives_the_decision_when_metrics_say_zero() -> None:
    decision = once(svc(0, 5), 0, cpu=0.0, queued=3)

    assert (decision.metric, decision.value, decision.target) == ("demand", 3.0, None)
    assert decision.describe("Echo") == "Service Echo: 0 → 1 replicas (3 requests waiting or in flight)"


# --- decisions in words -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "text"),
    [
        (Decision(2, 4, 4, "qps", 15.6, 10.0), "Service S: 2 → 4 replicas (qps 15.6 per replica, target 10)"),
        (
            Decision(2, 4, 4, "qps", 31.25, 10.0),
            "Service S: 2 → 4 replicas (qps 31.2 per replica, target 10)",
        ),
        (Decision(3, 3, 3, "cpu", 75.0, 80.0), "Service S: 3 replicas (cpu 75% per replica, target 80%)"),
        (
            Decision(1, 5, 9, "gpu", 700.0, 80.0, "the scale-up rate"),
            "Service S: 1 → 5 replicas (gpu 700% per replica, target 80%; 9 recommended, held by the"
            " scale-up rate)",
        ),
        (
            Decision(0, 1, 1, "demand", 2.0, None),
            "Service S: 0 → 1 replicas (2 requests waiting or in flight)",
        ),
        (Decision(4, 4, 4, None, None, None), "Service S: 4 replicas (no metric measured)"),
    ],
)
def test_describe(decision: Decision, text: str) -> None:
    assert decision.describe("S") == text
    assert decision.changed == (decision.current != decision.desired)


def test_a_real_decision_in_words() -> None:
    decision = once(svc(1, 10, (("qps", 10.0),)), 2, qps=62.4)

    assert decision.describe("Echo") == (
        "Service Echo: 2 → 6 replicas (qps 31.2 per replica, target 10; 7 recommended, held by the"
        " scale-up rate)"
    )


# --- state ------------------------------------------------------------------------------------------


def test_state_is_bounded_to_the_longest_window_and_the_period() -> None:
    state = ScalerState()
    for i in range(200):
        _decision, state = decide(svc(), Measurement(1, cpu=8000.0 if i % 2 else 0.0), state, i * 15.0, EXACT)

    assert 19 <= len(state.recommendations) <= 20  # 300 s / 15 s
    assert all(r.at > 199 * 15.0 - 300.0 for r in state.recommendations)
    assert all(e.at > 199 * 15.0 - 15.0 for e in state.events)
    assert state.last_evaluated == 199 * 15.0


def test_decide_is_pure() -> None:
    state = ScalerState()
    _d, state = decide(svc(), Measurement(6, cpu=480.0), state, 0.0, EXACT)

    first = decide(svc(), Measurement(6, cpu=0.0), state, 15.0, EXACT)
    again = decide(svc(), Measurement(6, cpu=0.0), state, 15.0, EXACT)

    assert first == again
    assert first[1] != state


def test_scale_events_are_remembered_for_the_period() -> None:
    _d, state = decide(svc(), Measurement(1, cpu=800.0), ScalerState(), 0.0, EXACT)

    assert [(e.at, e.change) for e in state.events] == [(0.0, 4)]
    assert [(r.at, r.replicas) for r in state.recommendations] == [(0.0, 1), (0.0, 10)]  # seeded, then


@pytest.mark.parametrize(("down", "expected"), [("stable", 4), ("fast", 1)])
def test_a_first_evaluation_counts_the_current_replicas_as_a_recommendation(
    down: Behavior, expected: int
) -> None:
    """As HPA: a fresh state (say, after Tiffin restarted) does not skip the down-window."""
    assert once(svc(1, 10, down=down), 4, cpu=0.0).desired == expected


@pytest.mark.parametrize(
    ("last", "now", "settings", "due"),
    [
        (None, 0.0, DEFAULT_SETTINGS, True),
        (0.0, 14.9, DEFAULT_SETTINGS, False),
        (0.0, 15.0, DEFAULT_SETTINGS, True),
        (10.0, 11.0, ScalerSettings(period_s=1.0), True),
        (10.0, 10.5, ScalerSettings(period_s=1.0), False),
    ],
)
def test_is_due(last: float | None, now: float, settings: ScalerSettings, due: bool) -> None:
    assert is_due(ScalerState(last_evaluated=last), now, settings) is due


def test_service_policy_from_the_deployment_config() -> None:
    config = {
        "services": {
            "Echo": {
                "scaling": {
                    "min_replicas": 0,
                    "max_replicas": 5,
                    "policy": {"metrics": [{"type": "qps", "value": 10}], "scale_down_behavior": "fast"},
                },
                "config_overrides": {"traffic": {"concurrency": 8}},
            }
        }
    }
    manifest = {"name": "echo", "services": [{"name": "Echo", "config": {}}]}
    (settings,) = dc.service_settings(config, manifest, [])

    policy = ServicePolicy.of(settings)

    assert policy == ServicePolicy(
        0, 5, ScalingPolicy((MetricTarget("qps", 10.0),), "fast", "fast", None, None), concurrency=8
    )
