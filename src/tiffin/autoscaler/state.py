"""What the autoscaler remembers between evaluations, and the two rules that read it.

Kubernetes' HPA keeps the same memory: past recommendations (for stabilization windows) and past scale
events (for per-period rate limits). Keeping it in an immutable value that `decide` takes and returns is
what keeps the policy a pure function: the caller stores the state, the policy never reads a clock.
"""

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Recommendation:
    at: float  # monotonic seconds
    replicas: int  # what the metrics recommended then, before windows, rates and bounds


@dataclass(frozen=True)
class ScaleEvent:
    at: float  # monotonic seconds
    change: int  # replicas added (> 0) or removed (< 0) by that decision


@dataclass(frozen=True)
class ScalerState:
    """One Service's autoscaling memory; `ScalerState()` is the state of a Service never evaluated."""

    recommendations: tuple[Recommendation, ...] = ()  # those inside the longest window in effect
    events: tuple[ScaleEvent, ...] = ()  # those inside the current rate-limit period
    last_evaluated: float | None = None


def stabilize(
    history: Iterable[Recommendation], proposal: int, current: int, now: float, windows: tuple[float, float]
) -> int:
    """HPA stabilization: up to the smallest proposal in the up-window, down to the largest in the down one.

    A recommendation is inside a window of W seconds when it was made after `now - W`; the proposal being
    made now is always inside, so a window of 0 means "no window".
    """
    up_window, down_window = windows
    up, down = proposal, proposal
    for past in history:
        if past.at > now - up_window:
            up = min(up, past.replicas)
        if past.at > now - down_window:
            down = max(down, past.replicas)
    return min(max(current, up), down)


def changes_in_period(events: Iterable[ScaleEvent], now: float, period: float) -> tuple[int, int]:
    """Replicas added and removed by decisions made after `now - period`."""
    recent = [e.change for e in events if e.at > now - period]
    return sum(c for c in recent if c > 0), -sum(c for c in recent if c < 0)


def remember(
    state: ScalerState, now: float, recommendation: Recommendation, change: int, keep: tuple[float, float]
) -> ScalerState:
    """The state after this evaluation: history bounded to `keep` = (longest window, period) seconds."""
    window, period = keep
    events = (*state.events, ScaleEvent(now, change)) if change else state.events
    return ScalerState(
        recommendations=tuple(r for r in (*state.recommendations, recommendation) if r.at > now - window),
        events=tuple(e for e in events if e.at > now - period),
        last_evaluated=now,
    )
