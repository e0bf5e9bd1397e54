"""Autoscaling: the pure policy that turns a Service's measured load into the replicas it should run.

It sits beside builder and routing in the layers, imports only tiffin.core, and never reads the clock:
the reconciler feeds it measurements and `now`, stores its state, and applies and logs its decisions.
"""

from tiffin.autoscaler.decision import Decision
from tiffin.autoscaler.measurement import Measurement
from tiffin.autoscaler.policy import (
    DEFAULT_SETTINGS,
    ScalerSettings,
    ServicePolicy,
    decide,
    is_due,
    stabilization_windows,
    targets,
)
from tiffin.autoscaler.state import Recommendation, ScaleEvent, ScalerState

__all__ = [
    "DEFAULT_SETTINGS",
    "Decision",
    "Measurement",
    "Recommendation",
    "ScaleEvent",
    "ScalerSettings",
    "ScalerState",
    "ServicePolicy",
    "decide",
    "is_due",
    "stabilization_windows",
    "targets",
]
