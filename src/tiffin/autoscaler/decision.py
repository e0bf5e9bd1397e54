"""What one evaluation decided and why, in data and in one line a person can read in the event timeline.

The reconciler turns a changed Decision into an event such as
"Service Echo: 2 → 4 replicas (qps 31.2 per replica, target 10)".
"""

from dataclasses import dataclass

PERCENT_METRICS = ("cpu", "memory", "gpu")


@dataclass(frozen=True)
class Decision:
    current: int  # replicas before this evaluation (Measurement.replicas)
    desired: int  # replicas to run now, always within [min_replicas, max_replicas]
    recommendation: int  # what the metrics (and demand) recommended, before windows, rates and bounds
    metric: str | None  # what drove the recommendation: a metric type, "demand", or None (nothing measured)
    value: float | None  # that metric per current replica (its total at 0 replicas); demand: requests
    target: float | None  # the metric's target per replica; None for demand
    limit: str = ""  # what held `desired` away from `recommendation`, e.g. "the scale-up rate"; "" if nothing

    @property
    def changed(self) -> bool:
        return self.desired != self.current

    @property
    def reason(self) -> str:
        """e.g. "2 → 4 replicas (qps 31.2 per replica, target 10)" or "3 replicas (cpu 50% ...; ...)"."""
        counts = f"{self.current} → {self.desired}" if self.changed else f"{self.desired}"
        return f"{counts} replicas ({self._why()})"

    def describe(self, service: str) -> str:
        return f"Service {service}: {self.reason}"

    def _why(self) -> str:
        why = self._signal()
        if self.limit:
            why += f"; {self.recommendation} recommended, held by {self.limit}"
        return why

    def _signal(self) -> str:
        if self.metric is None or self.value is None:
            return "no metric measured"
        if self.metric == "demand":
            return f"{_number(self.value)} requests waiting or in flight"
        unit = "%" if self.metric in PERCENT_METRICS else ""
        where = "per replica" if self.current else "in total"
        target = f"{_number(self.target)}{unit}" if self.target is not None else "none"
        return f"{self.metric} {_number(self.value)}{unit} {where}, target {target}"


def _number(value: float) -> str:
    """One decimal at most: 31.25 → "31.2", 10.0 → "10"."""
    text = f"{value:.1f}"
    return text.removesuffix(".0")
