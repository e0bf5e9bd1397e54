"""How a new revision of a Service replaces the old one: BentoCloud's `deployment_strategy` names.

The names are what `bentoml deploy --strategy` accepts and config files carry; `tiffin.reconciler.rollout`
gives each its budget. Values stay the strings the client sends and reads back.
"""

from enum import StrEnum


class Strategy(StrEnum):
    ROLLING_UPDATE = "RollingUpdate"
    RECREATE = "Recreate"
    RAMPED_SLOW_ROLLOUT = "RampedSlowRollout"
    BEST_EFFORT_CONTROLLED_ROLLOUT = "BestEffortControlledRollout"


DEFAULT_STRATEGY = Strategy.RECREATE
