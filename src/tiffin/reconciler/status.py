"""A deployment's status (docs/bentocloud-api.md §5.1) and message, derived from what the reconciler
knows.

Pure: the same inputs always give the same status, so the rules can be tested table by table.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from tiffin.backends.protocol import ReplicaPhase, ReplicaStatus
from tiffin.core.deployment_status import DeploymentStatus
from tiffin.reconciler.plan import DesiredService, RestartBook
from tiffin.reconciler.replica_set import ReplicaSet

UNHEALTHY_AFTER_FAILURES = 3
SCALED_TO_ZERO = "No replica runs while there is no traffic; the next request starts one and waits for it."


@dataclass(frozen=True)
class BuildState:
    phase: str  # "building" | "failed" | "ready"
    message: str = ""


@dataclass(frozen=True)
class Status:
    status: DeploymentStatus
    message: str = ""


def terminated_status(observed: Sequence[ReplicaStatus]) -> Status:
    if observed:
        return Status(DeploymentStatus.TERMINATING, f"Stopping {len(observed)} replica(s).")
    return Status(DeploymentStatus.TERMINATED, "Terminated: restore the deployment to serve traffic again.")


def build_status(build: BuildState) -> Status | None:
    if build.phase == "building":
        return Status(DeploymentStatus.IMAGE_BUILDING, "Building the bento's environment.")
    if build.phase == "failed":
        return Status(DeploymentStatus.IMAGE_BUILD_FAILED, build.message)
    return None


def runtime_status(
    desired: Sequence[DesiredService],
    observed: Sequence[ReplicaStatus],
    book: RestartBook,
    notes: Sequence[str] = (),
) -> Status:
    """running when every Service has its replicas ready; unhealthy when one keeps crashing;
    scaled-to-zero when the autoscaler has taken every Service to zero and the last replica is gone."""
    if desired and all(s.replicas == 0 for s in desired) and not observed:
        return Status(DeploymentStatus.SCALED_TO_ZERO, SCALED_TO_ZERO)
    replicas = ReplicaSet(observed)
    for service in desired:
        slot = replicas.of(*service.key)
        mine = slot.of_revision(service.revision)
        ready = mine.count(ReplicaPhase.RUNNING)
        health = book.health(service.key)
        if ready == 0 and health.consecutive_failures >= UNHEALTHY_AFTER_FAILURES:
            old_ready = slot.other_than(service.revision).count(ReplicaPhase.RUNNING)
            message = _failing(service, health.restarts, health.last_reason, old_ready)
            return Status(DeploymentStatus.UNHEALTHY, message)
        if ready < service.replicas:
            return Status(DeploymentStatus.DEPLOYING, _waiting(service, mine, ready))
    return Status(DeploymentStatus.RUNNING, " ".join(notes))


def _failing(service: DesiredService, restarts: int, reason: str, old_ready: int) -> str:
    message = f"Service {service.service} keeps failing ({restarts} restarts): {reason}"
    if old_ready:
        serving = f"the previous revision keeps serving ({old_ready} replicas)"
        return f"Rollout stuck: {message}; {serving}: roll back or fix it."
    return message


def _waiting(service: DesiredService, mine: ReplicaSet, ready: int) -> str:
    pending = [r.reason for r in mine.get(ReplicaPhase.PENDING) if r.reason]
    errors = [r.last_error for r in mine.get(ReplicaPhase.STARTING) if r.last_error]
    detail = f" Pending: {pending[0]}" if pending else ""
    if errors:
        detail += f" A starting replica reports: {errors[0]}"
    return f"Service {service.service}: {ready}/{service.replicas} replicas ready.{detail}"
