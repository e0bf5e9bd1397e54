"""The autoscaling policy: how many replicas a Service should run, as a pure function of what was measured.

`decide(policy, measurement, state, now, settings)` never reads a clock and never sleeps: `now` is the
caller's monotonic time in seconds, and all it remembers travels in the `ScalerState` it takes and
returns. The semantics are BentoCloud's `scaling.policy` (Kubernetes HPA behaviours), applied in order:

1. Targets: the policy's `metrics`, in order. With none: `concurrency` (requests in flight or waiting, per
   replica) at `config_overrides.traffic.concurrency` when that is set, else `cpu` at
   `ScalerSettings.default_cpu_target` (80 %).
2. Per metric, from its total T over the N current replicas: ceil(T / target). A metric not measured
   (None) is skipped. Tolerance, as HPA: when N ≥ 1 and |T / (N × target) − 1| ≤ `tolerance` (0.1), the
   metric recommends N, so small deviations do not move the Service.
3. The largest recommendation wins (on a tie, the metric listed first). Nothing measured: N.
4. Demand: while requests are in flight or waiting, the recommendation is at least 1.
5. Stabilization, as HPA: every recommendation is remembered; scaling up goes only as far as the smallest
   recommendation made inside the up-window, scaling down only as far as the largest inside the
   down-window (inside a window of W s = made after now − W; the current one always counts). Windows:
   the explicit `scale_up/down_stabilization_window`, else `stable_window_s` (300 s) for `stable` and
   no window for `fast` and `disabled`.
6. Rate, per `period_s` (15 s): S is the replica count at the start of the period (N less what decisions
   of the last `period_s` added, or plus what they removed). Scale up to at most: `fast` max(2S, S + 4),
   so 4 from zero; `stable` max(2S, S + 1), so 1 from zero; `disabled` N. Scale down to at least:
   `fast` and `stable` 0 (−100 % is always at least −4); `disabled` N.
7. Bounds: [min_replicas, max_replicas] win over the rates and `disabled`, so a Service outside them
   (after a config change) moves into them at once.
8. Wake-up: while there is demand, at least 1 replica, whatever windows, rates and `disabled` say: a
   waiting request never waits for a window. (The down-window then keeps that replica, since step 4
   made the recommendations it remembers at least 1.)

A Service evaluated for the first time (an empty `ScalerState`) counts its current replicas as a
recommendation made now, as HPA does: a fresh start of Tiffin does not skip the down-window. So a
Service reaches zero only with min_replicas 0 and no demand for a whole down-window.
"""

import math
from dataclasses import dataclass, field

from tiffin.autoscaler.decision import Decision
from tiffin.autoscaler.measurement import Measurement
from tiffin.autoscaler.state import Recommendation, ScalerState, changes_in_period, remember, stabilize
from tiffin.core.deployment_config import Behavior, MetricTarget, ScalingPolicy, ServiceSettings
from tiffin.core.settings import DEFAULT_AUTOSCALE_PERIOD_S, DEFAULT_AUTOSCALE_WINDOW_S

UP_PERCENT = 100  # each period may add 100% of the replicas at its start...
FAST_UP_REPLICAS = 4  # ...or, for `fast`, 4 replicas, whichever is more
DOWN_PERCENT = 100  # each period may remove 100%...
FAST_DOWN_REPLICAS = 4  # ...or, for `fast`, 4, whichever is more (so 100%)
_EPSILON = 1e-9  # float noise: 30.000000000000004 / 10 recommends 3, and 176 / 160 is within 10%


@dataclass(frozen=True)
class ScalerSettings:
    """Tiffin-wide knobs; the defaults are BentoCloud's, tests and integration runs shorten them."""

    period_s: float = DEFAULT_AUTOSCALE_PERIOD_S  # evaluation period, and the period rate limits count over
    stable_window_s: float = DEFAULT_AUTOSCALE_WINDOW_S  # stabilization window of the `stable` behaviours
    tolerance: float = 0.1  # a metric within ±10% of its target recommends no change
    default_cpu_target: float = 80.0  # percent, the metric when a policy names none and no concurrency


DEFAULT_SETTINGS = ScalerSettings()


@dataclass(frozen=True)
class ServicePolicy:
    """Everything the policy needs to know about one Service's configuration."""

    min_replicas: int
    max_replicas: int
    scaling: ScalingPolicy = field(default_factory=ScalingPolicy)
    concurrency: int | None = None  # `traffic.concurrency`: the default metric's target when set

    @classmethod
    def of(cls, settings: ServiceSettings) -> "ServicePolicy":
        return cls(settings.min_replicas, settings.max_replicas, settings.policy, settings.concurrency)


@dataclass(frozen=True)
class _Proposal:
    replicas: int
    metric: str | None = None
    value: float | None = None
    target: float | None = None


def is_due(state: ScalerState, now: float, settings: ScalerSettings = DEFAULT_SETTINGS) -> bool:
    """Whether a period has passed since the last evaluation (the caller evaluates on this rhythm)."""
    return state.last_evaluated is None or now - state.last_evaluated >= settings.period_s


def decide(
    policy: ServicePolicy,
    measurement: Measurement,
    state: ScalerState,
    now: float,
    settings: ScalerSettings = DEFAULT_SETTINGS,
) -> tuple[Decision, ScalerState]:
    """The replicas to run now and why, and the state to pass to the next evaluation."""
    current = measurement.replicas
    if state.last_evaluated is None:
        state = ScalerState(recommendations=(Recommendation(now, current),))
    proposal = _propose(targets(policy, settings), measurement, settings.tolerance)
    windows = stabilization_windows(policy.scaling, settings)
    stable = stabilize(state.recommendations, proposal.replicas, current, now, windows)
    desired, limit = _bounded(stable, policy, measurement, state, now, settings)
    if not limit and proposal.replicas not in (stable, desired):
        limit = "the scale-up window" if proposal.replicas > stable else "the scale-down window"
    decision = Decision(
        current, desired, proposal.replicas, proposal.metric, proposal.value, proposal.target, limit
    )
    keep = (max(windows), settings.period_s)
    return decision, remember(state, now, Recommendation(now, proposal.replicas), desired - current, keep)


def targets(policy: ServicePolicy, settings: ScalerSettings = DEFAULT_SETTINGS) -> tuple[MetricTarget, ...]:
    """The metrics the Service scales on: its policy's, else concurrency if set, else cpu 80%."""
    if policy.scaling.metrics:
        return policy.scaling.metrics
    if policy.concurrency:
        return (MetricTarget("concurrency", float(policy.concurrency)),)
    return (MetricTarget("cpu", settings.default_cpu_target),)


def stabilization_windows(
    scaling: ScalingPolicy, settings: ScalerSettings = DEFAULT_SETTINGS
) -> tuple[float, float]:
    """(up-window, down-window) in seconds: explicit ones win over the behaviours' own."""
    return (
        _window(scaling.scale_up_behavior, scaling.scale_up_stabilization_window, settings),
        _window(scaling.scale_down_behavior, scaling.scale_down_stabilization_window, settings),
    )


def _window(behavior: Behavior, explicit: int | None, settings: ScalerSettings) -> float:
    if explicit is not None:
        return float(explicit)
    return settings.stable_window_s if behavior == "stable" else 0.0


def _propose(goals: tuple[MetricTarget, ...], measurement: Measurement, tolerance: float) -> _Proposal:
    """Steps 2 to 4: the largest per-metric recommendation, at least 1 while there is demand."""
    proposals = [p for goal in goals if (p := _propose_one(goal, measurement, tolerance)) is not None]
    best = max(proposals, key=lambda p: p.replicas, default=_Proposal(measurement.replicas))
    if measurement.demand > 0 and best.replicas < 1:
        return _Proposal(1, "demand", measurement.demand)
    return best


def _propose_one(goal: MetricTarget, measurement: Measurement, tolerance: float) -> _Proposal | None:
    total = measurement.total(goal.type)
    if total is None:
        return None
    current = measurement.replicas
    if current and abs(total / (current * goal.value) - 1) <= tolerance + _EPSILON:
        replicas = current
    else:
        replicas = max(0, math.ceil(total / goal.value - _EPSILON))
    return _Proposal(replicas, goal.type, total / current if current else total, goal.value)


def _bounded(
    stable: int,
    policy: ServicePolicy,
    measurement: Measurement,
    state: ScalerState,
    now: float,
    settings: ScalerSettings,
) -> tuple[int, str]:
    """Steps 6 to 8: `stable` within the period's rates and the bounds, raised to 1 for demand."""
    current = measurement.replicas
    added, removed = changes_in_period(state.events, now, settings.period_s)
    high, high_why = _high(policy, _up_limit(policy.scaling.scale_up_behavior, current, added))
    low, low_why = _low(policy, _down_limit(policy.scaling.scale_down_behavior, current, removed))
    floor = 1 if measurement.demand > 0 else 0
    if stable > high:
        return max(high, floor), high_why
    if stable < low:
        return max(low, floor), low_why
    return max(stable, floor), ""


def _up_limit(behavior: Behavior, current: int, added: int) -> int:
    if behavior == "disabled":
        return current
    start = current - added
    step = FAST_UP_REPLICAS if behavior == "fast" else 1
    return max(math.ceil(start * (1 + UP_PERCENT / 100)), start + step, current)


def _down_limit(behavior: Behavior, current: int, removed: int) -> int:
    if behavior == "disabled":
        return current
    start = current + removed
    step = FAST_DOWN_REPLICAS if behavior == "fast" else 0
    return max(0, min(math.floor(start * (1 - DOWN_PERCENT / 100)), start - step, current))


def _high(policy: ServicePolicy, up_limit: int) -> tuple[int, str]:
    """The most replicas allowed now, and what sets it; min_replicas wins over everything."""
    if policy.max_replicas <= up_limit:
        high, why = policy.max_replicas, "max_replicas"
    else:
        high, why = up_limit, _rate_reason(policy.scaling.scale_up_behavior, "up")
    return (policy.min_replicas, "min_replicas") if high < policy.min_replicas else (high, why)


def _low(policy: ServicePolicy, down_limit: int) -> tuple[int, str]:
    """The fewest replicas allowed now, and what sets it; max_replicas wins over everything."""
    if policy.min_replicas >= down_limit:
        low, why = policy.min_replicas, "min_replicas"
    else:
        low, why = down_limit, _rate_reason(policy.scaling.scale_down_behavior, "down")
    return (policy.max_replicas, "max_replicas") if low > policy.max_replicas else (low, why)


def _rate_reason(behavior: Behavior, direction: str) -> str:
    if behavior == "disabled":
        return f"scale_{direction}_behavior disabled"
    return f"the scale-{direction} rate"
