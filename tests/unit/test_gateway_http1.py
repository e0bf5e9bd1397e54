"""The gateway's pure parts: head parsing, body framing, forwarded heads, token cache, route tables."""

import asyncio

import pytest

from tiffin.gateway.auth import TokenCache, TokenToCheck, Unknown, authorize
from tiffin.gateway.framing import Chunked, Empty, Length, UntilClose, request_framer, response_framer
from tiffin.gateway.headers import request_head, response_head
from tiffin.gateway.http1 import HttpError, parse_request, parse_response
from tiffin.gateway.table import compile_table
from tiffin.gateway.upstream import Endpoints
from tiffin.routing.snapshot import DeploymentRoute, RoutingSnapshot, ServiceRoute


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- parsing -------------------------------------------------------------------------------------------


def test_request_head_fields_are_indexed_lower_case_and_repeats_joined() -> None:
    request = parse_request(
        head("POST /a?b=1 HTTP/1.1", "Host: x", "X-Tag: one", "x-tag: two", "Accept:  */* ")
    )

    assert (request.method, request.target, request.minor) == (b"POST", b"/a?b=1", 1)
    assert request.fields.get(b"x-tag") == b"one, two"
    assert request.fields.get(b"accept") == b"*/*"
    assert request.fields.pairs[0] == (b"Host", b"x")


def test_absolute_form_target_becomes_a_path() -> None:
    request = parse_request(head("GET http://example.com/p/q?x=1 HTTP/1.1", "Host: example.com"))

    assert request.target == b"/p/q?x=1"
    assert request_head(request, "1.2.3.4").startswith(b"GET /p/q?x=1 HTTP/1.1\r\n")


@pytest.mark.parametrize(
    "raw",
    [
        head("GET / HTTP/2.0"),
        head("GET  / HTTP/1.1"),
        head("GET / HTTP/1.1", "Bad Name: x"),
        head("GET / HTTP/1.1", "X: a", " folded"),
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00\r\n\r\n",
        head("GET relative HTTP/1.1"),
    ],
)
def test_malformed_request_heads_are_refused(raw: bytes) -> None:
    with pytest.raises(HttpError) as refused:
        parse_request(raw)
    assert refused.value.status == 400


def test_response_head_keeps_its_status_line() -> None:
    response = parse_response(head("HTTP/1.1 404 Not Found", "Content-Length: 0"))

    assert (response.status, response.minor, response.status_line) == (404, 1, b"HTTP/1.1 404 Not Found")


# --- framing -------------------------------------------------------------------------------------------


def test_request_framing() -> None:
    assert isinstance(request_framer(parse_request(head("GET / HTTP/1.1"))), Empty)
    assert isinstance(request_framer(parse_request(head("POST / HTTP/1.1", "Content-Length: 5"))), Length)
    assert isinstance(
        request_framer(parse_request(head("POST / HTTP/1.1", "Transfer-Encoding: chunked"))), Chunked
    )


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (["Content-Length: 3", "Transfer-Encoding: chunked"], 400),
        (["Content-Length: 3", "Content-Length: 4"], 400),
        (["Content-Length: -1"], 400),
        (["Transfer-Encoding: gzip"], 501),
    ],
)
def test_ambiguous_request_framing_is_refused(fields: list[str], status: int) -> None:
    with pytest.raises(HttpError) as refused:
        request_framer(parse_request(head("POST / HTTP/1.1", *fields)))
    assert refused.value.status == status


def test_response_framing() -> None:
    def framer(status: str, *fields: str, method: bytes = b"GET") -> object:
        return response_framer(parse_response(head(f"HTTP/1.1 {status}", *fields)), method)

    assert isinstance(framer("204 No Content", "Content-Length: 5"), Empty)
    assert isinstance(framer("200 OK", "Content-Length: 5", method=b"HEAD"), Empty)
    assert isinstance(framer("200 OK", "Content-Length: 5, 5"), Length)
    assert isinstance(framer("200 OK", "Transfer-Encoding: chunked"), Chunked)
    assert isinstance(framer("200 OK"), UntilClose)


def test_chunked_scan_finds_the_end_across_arbitrary_splits() -> None:
    body = b"5;ext=1\r\nhello\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nTrailer: t\r\n\r\n"
    following = b"GET /next HTTP/1.1\r\n"
    for step in (1, 2, 3, 7, len(body)):
        framer, buffer, consumed = Chunked(), bytearray(), 0
        stream = body + following
        for start in range(0, len(stream), step):
            buffer += stream[start : start + step]
            taken = 0 if framer.done else framer.scan(buffer)
            consumed += taken
            del buffer[:taken]
        assert framer.done
        assert consumed == len(body)
        assert bytes(buffer) == following


@pytest.mark.parametrize("body", [b"zz\r\n", b"5\r\nhelloXX", b"1" * 5000])
def test_broken_chunked_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(HttpError):
        Chunked().scan(bytearray(body))


# --- forwarded heads -----------------------------------------------------------------------------------


def test_request_head_drops_hop_by_hop_and_adds_forwarded() -> None:
    request = parse_request(
        head(
            "GET /x HTTP/1.1",
            "Host: h:1",
            "Connection: close, X-Secret",
            "X-Secret: s",
            "Upgrade: websocket",
            "Expect: 100-continue",
            "X-Forwarded-For: 9.9.9.9",
            "X-Forwarded-Proto: https",
            "Accept: a",
        )
    )

    forwarded = request_head(request, "1.2.3.4")

    assert forwarded == head(
        "GET /x HTTP/1.1",
        "Host: h:1",
        "Accept: a",
        "x-forwarded-for: 9.9.9.9, 1.2.3.4",
        "x-forwarded-proto: http",
        "x-forwarded-host: h:1",
    )


def test_response_head_is_forwarded_verbatim_unless_it_has_hop_by_hop_fields() -> None:
    plain = parse_response(head("HTTP/1.1 200 OK", "Content-Length: 2", "X-A: b"))
    hop = parse_response(head("HTTP/1.1 200 OK", "Connection: keep-alive", "Keep-Alive: timeout=5", "X-A: b"))

    assert response_head(plain, close=False) == head("HTTP/1.1 200 OK", "Content-Length: 2", "X-A: b")
    assert response_head(hop, close=True) == head("HTTP/1.1 200 OK", "X-A: b", "connection: close")


# --- tokens --------------------------------------------------------------------------------------------


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
    fields = parse_request(head("GET / HTTP/1.1", "Authorization: Bearer t")).fields

    assert authorize(fields, "shop", lambda _: Unknown.TOKEN) == TokenToCheck("t")
    assert authorize(fields, "shop", lambda _: frozenset({"protected_endpoint:shop"})) is None
    refused = authorize(fields, "shop", lambda _: frozenset({"api"}))
    assert refused is not None and not isinstance(refused, TokenToCheck) and refused.status == 403


# --- route tables --------------------------------------------------------------------------------------


def route(name: str, port: int, internal: int, urls: tuple[str, ...] = ()) -> DeploymentRoute:
    return DeploymentRoute(name, port, "Svc", {"Svc": ServiceRoute("Svc", internal, urls)})


def test_table_maps_public_and_internal_ports() -> None:
    table = compile_table(
        RoutingSnapshot({"a": route("a", 1000, 1001, ("http://127.0.0.1:5",))}), Endpoints(), "round_robin"
    )

    assert not table.routes[1000].internal
    assert table.routes[1001].internal
    assert table.routes[1000].target is table.routes[1001].target
    assert list(table.endpoints) == ["http://127.0.0.1:5"]


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
        compile_table(snapshot, Endpoints(), "round_robin")


def test_endpoints_survive_a_new_table_that_keeps_them() -> None:
    registry = Endpoints()
    first = compile_table(
        RoutingSnapshot({"a": route("a", 1000, 1001, ("http://127.0.0.1:5",))}), registry, "round_robin"
    )
    registry.replace(dict(first.endpoints))
    second = compile_table(
        RoutingSnapshot({"a": route("a", 1000, 1001, ("http://127.0.0.1:5", "http://127.0.0.1:6"))}),
        registry,
        "round_robin",
    )
    registry.replace(dict(second.endpoints))

    assert second.endpoints["http://127.0.0.1:5"] is first.endpoints["http://127.0.0.1:5"]
    registry.replace({})
    assert first.endpoints["http://127.0.0.1:5"].retired
