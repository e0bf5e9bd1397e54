"""Rollout strategies as budgets: how many extra replicas a rollout may add, and how many may be missing.

| strategy | max surge | max unavailable | notes |
|---|---|---|---|
| RollingUpdate | 25% of replicas, rounded up | 25%, rounded down | at least one of them ≥ 1 |
| Recreate | — | — | every old replica goes before any new one starts |
| RampedSlowRollout | 1 | 0 | one replica at a time, with a pause after each old one is replaced |
| BestEffortControlledRollout | 0 | 20%, rounded down, ≥ 1 | a failing new replica rolls back |
"""

import math
from dataclasses import dataclass

from tiffin.core.strategy import Strategy

RAMP_PAUSE_S = 5.0


@dataclass(frozen=True)
class Budget:
    max_surge: int
    max_unavailable: int
    pause_s: float = 0.0
    recreate: bool = False
    roll_back_on_failure: bool = False


def budget(strategy: Strategy, replicas: int, ramp_pause_s: float = RAMP_PAUSE_S) -> Budget:
    if strategy == Strategy.ROLLING_UPDATE:
        surge, unavailable = math.ceil(replicas * 0.25), math.floor(replicas * 0.25)
        return Budget(surge if surge or unavailable else 1, unavailable)
    if strategy == Strategy.RAMPED_SLOW_ROLLOUT:
        return Budget(1, 0, pause_s=ramp_pause_s)
    if strategy == Strategy.BEST_EFFORT_CONTROLLED_ROLLOUT:
        return Budget(0, max(1, math.floor(replicas * 0.2)), roll_back_on_failure=True)
    return Budget(0, replicas, recreate=True)
