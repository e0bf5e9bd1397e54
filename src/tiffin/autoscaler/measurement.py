"""What one evaluation of the autoscaler sees of a Service: totals over its replicas and waiting demand.

The caller (the reconciler) averages its signals over the evaluation period and sums them over the
Service's replicas; the policy divides by targets. Totals, not averages, so that a Service at zero
replicas still has a well-defined measurement.
"""

from dataclasses import dataclass

from tiffin.core.deployment_config import MetricType


@dataclass(frozen=True)
class Measurement:
    """Totals over a Service's replicas for one evaluation; None means "not measured" (metric skipped)."""

    replicas: int  # the Service's current desired replica count: the scale the recommendation starts from
    cpu: float | None = None  # sum over replicas of CPU use, in % of each replica's requested CPU
    memory: float | None = None  # sum over replicas of memory use, in % of each replica's requested memory
    gpu: float | None = None  # sum over replicas of GPU utilisation, in %
    qps: float | None = None  # requests per second answered by all replicas together
    in_flight: float = 0.0  # requests being served by the replicas
    queued: float = 0.0  # requests waiting at the gateway for a replica (a demand signal)

    @property
    def demand(self) -> float:
        """Requests in flight or waiting: while there are any, the Service must not be at zero."""
        return self.in_flight + self.queued

    def total(self, metric: MetricType) -> float | None:
        """The metric's total over replicas; `concurrency` counts waiting requests as demand too."""
        if metric == "concurrency":
            return self.demand
        totals = {"cpu": self.cpu, "memory": self.memory, "gpu": self.gpu, "qps": self.qps}
        return totals[metric]
