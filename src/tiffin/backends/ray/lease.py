"""The lease: a replica on a node cut off from the cluster fences itself before it is replaced.

Ray declares a node dead when its raylet fails `health_check_failure_threshold` health checks
`health_check_period_ms` apart; the controller then replaces the node's replicas elsewhere. But a
node can be cut off and still alive (a partition, a hung raylet), and its replicas would go on
running beside their replacements. So each actor holds a lease on its replica: it asks Ray's head
about its own node every `LeaseTerms.check_s`, and fences (kills) its replica as soon as the head
says the node is dead, or once the head has not answered for `fence_after_s`. `fence_after_s` is half
the quickest time Ray can declare a node dead (but never under `MIN_FENCE_AFTER_S`, so a slow answer
on a busy node does not kill a healthy replica): a node that loses the head fences before the head
gives up on it. A node that still reaches the head learns of its death within `check_s`, so the
controller holds a dead node's replicas for `LeaseTerms.hold_s` before it reports them failed and
the reconciler replaces them. The decisions are pure functions; the actor runs them.
"""

from dataclasses import dataclass

MIN_FENCE_AFTER_S = 5.0
CHECK_S = 1.0
ANSWER_MARGIN_S = 1.0  # what a node's question to the head may take, on top of `check_s`


@dataclass(frozen=True)
class LeaseTerms:
    """How an actor keeps its lease: how often it asks, and how long it may go without an answer."""

    fence_after_s: float = 7.5  # for Ray's defaults: 5 health checks 3 s apart
    check_s: float = CHECK_S

    @property
    def hold_s(self) -> float:
        """How long after Ray declared a node dead its replicas have certainly fenced themselves."""
        return self.check_s + ANSWER_MARGIN_S


def terms_for(health_check_period_ms: int, health_check_failure_threshold: int) -> LeaseTerms:
    """The lease for a cluster that declares nodes dead after these health checks."""
    quickest_s = health_check_period_ms * health_check_failure_threshold / 1000
    return LeaseTerms(fence_after_s=max(quickest_s / 2, MIN_FENCE_AFTER_S))


@dataclass(frozen=True)
class Heard:
    """What the node last heard from Ray's head about itself."""

    at: float  # when (the monotonic clock)
    alive: bool  # whether the head still counts the node alive


def fence_reason(terms: LeaseTerms, heard: Heard, now: float) -> str | None:
    """Why the replica must be fenced now, or None while the lease holds."""
    if not heard.alive:
        return "Ray's head declared its node dead"
    silent_s = now - heard.at
    if silent_s >= terms.fence_after_s:
        return f"its node has not reached Ray's head for {silent_s:.0f} s"
    return None
