"""The pieces separate processes share through the store: snapshots and counts as JSON, counts of
several gateways summed, queue capacity shared, published routes and heartbeats, the leader lock."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tiffin.core.deployment_status import DeploymentStatus
from tiffin.routing.codec import snapshot_from_json, snapshot_to_json, traffic_from_json, traffic_to_json
from tiffin.routing.snapshot import Admission, DeploymentRoute, RoutingSnapshot, ServiceRoute
from tiffin.routing.traffic import QueueStats, ReplicaTraffic, Traffic, merge
from tiffin.server.gateway_process import share
from tiffin.store.cluster import heartbeat, live_gateways, publish_routes, published_routes, routes_version
from tiffin.store.db import Database, migrate
from tiffin.store.leader import AdvisoryLock, FileLock

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
QUEUED = Admission(hold_s=30, queue=True, max_concurrency=4, queue_capacity=1000, timeout_s=60)
SNAPSHOT = RoutingSnapshot(
    {
        "shop": DeploymentRoute(
            "shop",
            31000,
            "Api",
            {
                "Api": ServiceRoute("Api", 31001, ("http://10.0.0.7:41000",), QUEUED),
                "Model": ServiceRoute("Model", 31002, ()),
            },
            protected=True,
            status=DeploymentStatus.SCALED_TO_ZERO,
            message="asleep",
        )
    },
    version=7,
    domain="apps.example.test",
)
TRAFFIC = Traffic(
    {"http://10.0.0.7:41000": ReplicaTraffic(10, 2, 1)},
    {("shop", "Api"): QueueStats(3, 1.5)},
    {("shop", "Api"): 13},
)


def test_a_snapshot_and_counts_survive_json() -> None:
    assert snapshot_from_json(snapshot_to_json(SNAPSHOT)) == SNAPSHOT
    assert traffic_from_json(traffic_to_json(TRAFFIC)) == TRAFFIC


def test_counts_of_several_gateways_are_summed() -> None:
    other = Traffic(
        {"http://10.0.0.7:41000": ReplicaTraffic(5, 0, 2), "http://10.0.0.8:41000": ReplicaTraffic(1, 1, 0)},
        {("shop", "Api"): QueueStats(1, 4.0)},
        {("shop", "Api"): 6, ("blog", "Web"): 2},
    )

    total = merge([TRAFFIC, other])

    assert total.replicas == {
        "http://10.0.0.7:41000": ReplicaTraffic(15, 2, 3),
        "http://10.0.0.8:41000": ReplicaTraffic(1, 1, 0),
    }
    assert total.queues == {("shop", "Api"): QueueStats(4, 4.0)}
    assert total.arrivals == {("shop", "Api"): 19, ("blog", "Web"): 2}
    assert merge([]) == Traffic({}, {}, {})


def test_each_gateway_takes_its_share_of_the_queue_capacity() -> None:
    def capacity(snapshot: RoutingSnapshot) -> int:
        return snapshot.deployments["shop"].services["Api"].admission.queue_capacity

    assert capacity(share(SNAPSHOT, 1)) == 1000
    assert capacity(share(SNAPSHOT, 3)) == 334, "rounded up: the cluster's total is never below the limit"
    assert share(SNAPSHOT, 3).deployments["shop"].services["Model"].admission.queue_capacity == 0
    assert share(SNAPSHOT, 2).domain == "apps.example.test" and share(SNAPSHOT, 2).version == 0


def test_published_routes_and_heartbeats(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 't.db'}")
    migrate(db.engine)
    with db.session() as session:
        assert routes_version(session) == 0 and published_routes(session) is None
        publish_routes(session, 1, {"v": 1}, NOW)
        publish_routes(session, 2, {"v": 2}, NOW)
        heartbeat(session, "old", "10.0.0.7", {"n": 1}, NOW - timedelta(seconds=30))
        heartbeat(session, "fresh", "10.0.0.8", {"n": 2}, NOW)
    with db.session() as session:
        assert routes_version(session) == 2 and published_routes(session) == (2, {"v": 2})
        assert live_gateways(session, NOW - timedelta(seconds=5)) == [("fresh", {"n": 2})]
    db.dispose()


def test_one_file_lock_holder_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "controller.lock"
    first, second = FileLock(path), FileLock(path)

    assert first.try_acquire() and first.held()
    assert not second.try_acquire() and not second.held()
    first.release()
    assert second.try_acquire()
    second.release()


def test_one_advisory_lock_holder_at_a_time_on_postgres(postgres_url: str) -> None:
    one, two = Database(postgres_url), Database(postgres_url)
    first, second = AdvisoryLock(one), AdvisoryLock(two)
    try:
        assert first.try_acquire() and first.held()
        assert not second.try_acquire()
        first.release()
        assert second.try_acquire(), "a released lock (or a dead leader's session) frees it"
    finally:
        first.release()
        second.release()
        one.dispose()
        two.dispose()
