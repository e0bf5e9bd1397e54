"""Route tables, balancers that survive new snapshots, tokens: the gateway's pure parts, no sockets."""

import asyncio

import pytest

from tiffin.gateway.auth import TokenCache, TokenToCheck, Unknown, authorize
from tiffin.gateway.balancer import Balancers
from tiffin.gateway.parsing import Fields
from tiffin.gateway.table import compile_table
from tiffin.gateway.upstream import Endpoint, Endpoints
from tiffin.routing.snapshot import DeploymentRoute, RoutingSnapshot, ServiceRoute


def route(name: str, port: int, internal: int, urls: tuple[str, ...] = ()) -> DeploymentRoute:
    return DeploymentRoute(name, port, "Svc", {"Svc": ServiceRoute("Svc", internal, urls)})


def compiled(
    snapshot: RoutingSnapshot, registry: Endpoints | None = None, balancers: Balancers | None = None
):  # type: ignore[no-untyped-def]
    return compile_table(snapshot, registry or Endpoints(), balancers or Balancers("round_robin"))


def test_table_maps_public_and_internal_ports() -> None:
    table = compiled(RoutingSnapshot({"a": route("a", 1000, 1001, ("http://127.0.0.1:5",))}, version=7))

    assert not table.routes[1000].internal
    assert table.routes[1001].internal
    assert table.routes[1000].target is table.routes[1001].target
    assert list(table.endpoints) == ["http://127.0.0.1:5"]
    assert table.version == 7


@pytest.mark.parametrize(
    ("snapshot", "error"),
    [
        (RoutingSnapshot({"a": route("a", 1000, 1001), "b": route("b", 1001, 1002)}), "claimed by both"),
        (RoutingSnapshot({"a": route("a", 1000, 1001, ("ftp://x:1",))}), "not an http://host:port URL"),
        (
            RoutingSnapshot({"a": DeploymentRoute("a", 1000, "Missing", {})}),
            "entry Service Missing is missing",
        ),
    ],
)
def test_inconsistent_snapshots_are_refused(snapshot: RoutingSnapshot, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        compiled(snapshot)


def test_endpoints_survive_a_new_table_that_keeps_them() -> None:
    registry = Endpoints()
    first = compiled(RoutingSnapshot({"a": route("a", 1000, 1001, ("http://127.0.0.1:5",))}), registry)
    registry.replace(dict(first.endpoints))
    both = ("http://127.0.0.1:5", "http://127.0.0.1:6")
    second = compiled(RoutingSnapshot({"a": route("a", 1000, 1001, both)}), registry)
    registry.replace(dict(second.endpoints))

    assert second.endpoints["http://127.0.0.1:5"] is first.endpoints["http://127.0.0.1:5"]
    registry.replace({})
    assert first.endpoints["http://127.0.0.1:5"].retired


URLS = ("http://127.0.0.1:5", "http://127.0.0.1:6", "http://127.0.0.1:7")


@pytest.mark.parametrize("policy", ["round_robin", "least_in_flight"])
def test_sequential_requests_rotate_over_every_replica_across_new_snapshots(policy: str) -> None:
    """A new snapshot every request (as the reconciler once published every 0.5 s) must not restart the
    rotation at the first replica."""
    registry, balancers = Endpoints(), Balancers(policy)  # type: ignore[arg-type]
    reached = []
    for number in range(30):
        table = compiled(
            RoutingSnapshot({"a": route("a", 1000, 1001, URLS)}, version=number + 1), registry, balancers
        )
        registry.replace(dict(table.endpoints))
        endpoint = table.routes[1000].target.balancer.pick()
        assert endpoint is not None
        reached.append(endpoint.url)

    assert {url: reached.count(url) for url in URLS} == dict.fromkeys(URLS, 10)


def test_least_in_flight_prefers_the_idlest_replica_and_respects_a_cap() -> None:
    balancers = Balancers("least_in_flight")
    endpoints = tuple(Endpoint(url) for url in URLS)
    balancer = balancers.of(("a", "Svc"), endpoints)
    endpoints[0].in_flight, endpoints[1].in_flight, endpoints[2].in_flight = 3, 1, 2

    assert balancer.pick() is endpoints[1]
    assert balancer.pick(exclude=[endpoints[1]]) is endpoints[2]
    assert balancer.pick(cap=1) is None, "every replica is at its max_concurrency"
    assert balancer.pick(cap=2) is endpoints[1]


def test_balancers_of_removed_services_are_forgotten() -> None:
    balancers = Balancers("round_robin")
    kept = balancers.of(("a", "Svc"), ())
    balancers.of(("b", "Svc"), ())
    balancers.keep_only({("a", "Svc")})

    assert balancers.of(("a", "Svc"), ()) is kept
    assert balancers.of(("b", "Svc"), ()) is not kept


def test_token_cache_answers_from_memory_until_the_ttl_passes() -> None:
    now = [0.0]
    calls: list[str] = []

    async def check(token: str) -> frozenset[str] | None:
        calls.append(token)
        await asyncio.sleep(0)
        return frozenset({"protected_endpoint"}) if token == "good" else None

    async def scenario() -> None:
        cache = TokenCache(check, ttl=5.0, negative_ttl=1.0, now=lambda: now[0])
        assert cache.lookup("good") is Unknown.TOKEN
        results = await asyncio.gather(*(cache.fetch("good") for _ in range(10)))
        assert set(results) == {frozenset({"protected_endpoint"})}
        assert calls == ["good"]  # ten concurrent misses, one check
        assert await cache.fetch("bad") is None
        now[0] = 4.0
        assert cache.lookup("good") == frozenset({"protected_endpoint"})
        assert cache.lookup("bad") is Unknown.TOKEN  # invalid answers are kept for a shorter time
        now[0] = 5.5
        assert cache.lookup("good") is Unknown.TOKEN

    asyncio.run(scenario())


def test_authorize() -> None:
    fields = Fields.of(((b"Host", b"x"), (b"Authorization", b"Bearer t")))

    assert authorize(fields, "shop", lambda _: Unknown.TOKEN) == TokenToCheck("t")
    assert authorize(fields, "shop", lambda _: frozenset({"protected_endpoint:shop"})) is None
    refused = authorize(fields, "shop", lambda _: frozenset({"api"}))
    assert refused is not None and not isinstance(refused, TokenToCheck) and refused.status == 403
    missing = authorize(Fields.of(((b"Host", b"x"),)), "shop", lambda _: None)
    assert missing is not None and not isinstance(missing, TokenToCheck) and missing.status == 401
