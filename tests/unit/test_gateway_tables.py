"""Route tables, balancers that survive new snapshots, tokens: the gateway's pure parts, no sockets."""

import asyncio

import pytest

from tiffin.gateway.auth import TokenCache, TokenToCheck, Unknown, authorize
from tiffin.gateway.balancer import Balancers
from tiffin.gateway.parsing import Fields
from tiffin.gateway.table import compile_table, host_key
from tiffin.gateway.upstream import Endpoint, Endpoints
from tiffin.routing.snapshot import DeploymentRoute, RoutingSnapshot, ServiceRoute


def route(name: str, port: int, internal: int, urls: tuple[str, ...] = ()) -> DeploymentRoute:
    return DeploymentRoute(name, port, "Svc", {"Svc": ServiceRoute("Svc", internal, urls)})


def compiled(
    snapshot: RoutingSnapshot,
    registry: Endpoints | None = None,
    balancers: Balancers | None = None,
    shared_port: int = 0,
):  # type: ignore[no-untyped-def]
    return compile_table(
        snapshot, registry or Endpoints(), balancers or Balancers("round_robin"), shared_port
    )


def test_table_maps_public_and_internal_ports() -> None:
    table = compiled(RoutingSnapshot({"a": route("a", 1000, 1001, ("http://127.0.0.1:5",))}, version=7))

    assert not table.routes[1000].internal
    assert table.routes[1001].internal
    assert table.routes[1000].target is table.routes[1001].target
    assert list(table.endpoints) == ["http://127.0.0.1:5"]
    assert table.version == 7


# --- host names on the shared port ---------------------------------------------------------------------

SHARED = 8080
DOMAIN = "apps.example.test"


def two_shops(domain: str = DOMAIN) -> RoutingSnapshot:
    return RoutingSnapshot({"shop": route("shop", 1000, 1001), "cart": route("cart", 1002, 1003)}, 3, domain)


def test_with_a_domain_each_deployment_is_served_by_host_name_on_the_shared_port() -> None:
    table = compiled(two_shops(), shared_port=SHARED)

    assert table.ports == {1000, 1001, 1002, 1003, SHARED}
    shop = table.route(SHARED, b"shop.apps.example.test")
    assert shop is not None and shop is table.routes[1000] and not shop.internal
    cart = table.route(SHARED, b"cart.apps.example.test")
    assert cart is not None and cart.deployment.name == "cart"
    assert (table.shared_port, table.domain) == (SHARED, DOMAIN)


def test_with_a_domain_the_ports_route_as_before_whatever_the_host() -> None:
    plain = compiled(two_shops(""), shared_port=SHARED)
    table = compiled(two_shops(), shared_port=SHARED)

    for port in (1000, 1001, 1002, 1003):
        for host in (None, b"cart.apps.example.test", b"elsewhere"):
            found, before = table.route(port, host), plain.route(port, host)
            assert found is table.routes[port]
            assert before is not None and found is not None
            assert (found.deployment.name, found.target.service, found.internal) == (
                before.deployment.name,
                before.target.service,
                before.internal,
            )


@pytest.mark.parametrize(
    "host",
    [
        b"shop.apps.example.test",
        b"SHOP.Apps.Example.TEST",
        b"shop.apps.example.test:8080",
        b"shop.apps.example.test:443",  # the port a proxy in front was reached on: ignored
        b"shop.apps.example.test.",
        b"Shop.apps.example.test.:80",
        b"shop.apps.example.test:",
    ],
)
def test_host_names_match_whatever_their_case_port_or_final_dot(host: bytes) -> None:
    table = compiled(two_shops(), shared_port=SHARED)

    found = table.route(SHARED, host)

    assert found is not None and found.deployment.name == "shop"


@pytest.mark.parametrize(
    "host",
    [
        None,
        b"",
        b"apps.example.test",  # no label before the domain
        b"www.shop.apps.example.test",  # two labels before it
        b"shop.example.test",
        b"shop",
        b"shopapps.example.test",
        b"shop.apps.example.test.evil",
        b"shop.apps.example.test:80:80",
        b"127.0.0.1:8080",
        b"[::1]:8080",
        b"[::1]",
    ],
)
def test_unknown_or_missing_hosts_have_no_route_on_the_shared_port(host: bytes | None) -> None:
    table = compiled(two_shops(), shared_port=SHARED)

    assert table.route(SHARED, host) is None


@pytest.mark.parametrize(
    ("host", "key"),
    [
        (b"Shop.Apps.Example.com.:8080", b"shop.apps.example.com"),
        (b"shop.apps.example.com", b"shop.apps.example.com"),
        (b"[::1]:8080", b"[::1]"),
        (b"[::1]", b"[::1]"),
        (None, b""),
    ],
)
def test_host_key(host: bytes | None, key: bytes) -> None:
    assert host_key(host) == key


def test_without_a_domain_there_is_no_shared_port_and_no_host_routing() -> None:
    table = compiled(two_shops(""), shared_port=SHARED)

    assert table.ports == {1000, 1001, 1002, 1003}
    assert table.shared_port == 0 and not table.hosts
    assert table.route(SHARED, b"shop.apps.example.test") is None


def test_every_service_has_its_route_for_the_activator() -> None:
    table = compiled(two_shops(), shared_port=SHARED)

    assert table.services == {("shop", "Svc"): table.routes[1001], ("cart", "Svc"): table.routes[1003]}


@pytest.mark.parametrize(
    ("snapshot", "error"),
    [
        (
            RoutingSnapshot({"a": route("a", SHARED, 1001)}, domain=DOMAIN),
            "8080 is the gateway's shared port",
        ),
        (
            RoutingSnapshot({"a": route("a", 1000, 1001), "A": route("A", 1002, 1003)}, domain=DOMAIN),
            "Host name a.apps.example.test is claimed by both",
        ),
    ],
)
def test_snapshots_that_clash_with_host_routing_are_refused(snapshot: RoutingSnapshot, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        compiled(snapshot, shared_port=SHARED)


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
