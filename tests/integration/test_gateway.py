"""The gateway over real loopback sockets, with small in-process uvicorn apps standing in for replicas.

Each fake replica records what it received, so a test can say which replica served a request and
what it saw; the SSE and slow routes wait on an event the test sets, so streaming and draining are
checked by ordering, never by timing.
"""

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support.server import free_port
from tiffin.gateway import Gateway, GatewaySettings
from tiffin.routing.snapshot import Admission, DeploymentRoute, RoutingSnapshot, ServiceRoute
from tiffin.routing.traffic import ReplicaTraffic

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PICKLE = "application/vnd.bentoml+pickle"
MiB = 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- fake replicas -----------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Replica:
    """A fake replica: an ASGI app on its own port that records every request."""

    name: str
    port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    server: uvicorn.Server | None = None
    task: "asyncio.Task[None] | None" = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "Replica":
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", interface="asgi3"
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.005)
        return self

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        seen = Seen(scope["method"], scope["path"], scope["query_string"].decode(), headers, bytes(body))
        self.seen.append(seen)
        handlers = {"/sse": self._sse, "/download": self._download, "/slow": self._slow, "/fail": self._fail}
        handler = handlers.get(seen.path, self._echo)
        await handler(seen, send)

    async def _echo(self, seen: Seen, send: Send) -> None:
        if seen.headers.get("content-type") == PICKLE:
            await _respond(send, 200, seen.body, PICKLE)
            return
        answer = {
            "replica": self.name,
            "path": seen.path,
            "query": seen.query,
            "length": len(seen.body),
            "sha256": hashlib.sha256(seen.body).hexdigest(),
        }
        await _respond(send, 200, json.dumps(answer).encode(), "application/json")

    async def _sse(self, seen: Seen, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        await self.gate.wait()  # set by the test only once it has received the first event
        await send({"type": "http.response.body", "body": b"data: two\n\n", "more_body": False})

    async def _download(self, seen: Seen, send: Send) -> None:
        data = _pattern(int(seen.query.removeprefix("size=")))
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(len(data)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for start in range(0, len(data), 64 * 1024):
            more = start + 64 * 1024 < len(data)
            await send(
                {"type": "http.response.body", "body": data[start : start + 64 * 1024], "more_body": more}
            )

    async def _fail(self, seen: Seen, send: Send) -> None:
        await _respond(send, 500, b'{"error": "on purpose"}', "application/json")

    async def _slow(self, seen: Seen, send: Send) -> None:
        await self.gate.wait()
        await _respond(send, 200, b'{"slow": true}', "application/json")


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _pattern(size: int) -> bytes:
    block = hashlib.sha256(b"tiffin").digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
async def replicas() -> AsyncIterator[Callable[[str], Awaitable[Replica]]]:
    started: list[Replica] = []

    async def start(name: str) -> Replica:
        replica = await Replica(name).start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.gate.set()
        await replica.stop()


# --- the gateway ---------------------------------------------------------------------------------------


class Tokens:
    """A fake token store: token -> scopes; counts how often it is asked."""

    def __init__(self, scopes: Mapping[str, Iterable[str]] | None = None) -> None:
        self.scopes = {token: frozenset(values) for token, values in (scopes or {}).items()}
        self.calls = 0

    async def check(self, token: str) -> frozenset[str] | None:
        self.calls += 1
        return self.scopes.get(token)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(
        {
            "all": ["protected_endpoint"],
            "mine": ["protected_endpoint:shop"],
            "other": ["protected_endpoint:elsewhere", "api"],
        }
    )


@pytest.fixture
async def gateway(tokens: Tokens) -> AsyncIterator[Gateway]:
    gateway = Gateway("127.0.0.1", tokens.check, GatewaySettings(balancing="round_robin"))
    yield gateway
    await gateway.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def deployment(
    name: str,
    services: Mapping[str, Iterable[Replica | str]],
    entry: str | None = None,
    port: int | None = None,
    internal: Mapping[str, int] | None = None,
    hold_s: float = 0.0,
    admission: Admission | None = None,
    **fields: Any,
) -> DeploymentRoute:
    """A DeploymentRoute; endpoints are fake replicas (or raw URLs); ports are fresh unless given; every
    Service gets `admission`, or by default none but waiting up to `hold_s` for a replica."""
    internal = dict(internal or {})
    routes = {
        service: ServiceRoute(
            service,
            internal.get(service) or free_port(),
            tuple(e.url if isinstance(e, Replica) else e for e in endpoints),
            admission or Admission(hold_s=hold_s),
        )
        for service, endpoints in services.items()
    }
    return DeploymentRoute(name, port or free_port(), entry or next(iter(services)), routes, **fields)


def snapshot(*deployments: DeploymentRoute) -> RoutingSnapshot:
    return RoutingSnapshot({d.name: d for d in deployments})


def url(port: int, path: str = "/") -> str:
    return f"http://127.0.0.1:{port}{path}"


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


# --- routing -------------------------------------------------------------------------------------------


async def test_public_port_serves_the_entry_service_at_the_root(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api, model = await replicas("api"), await replicas("model")
    shop = deployment("shop", {"Api": [api], "Model": [model]}, entry="Api")
    await gateway.apply(snapshot(shop))

    response = await client.post(url(shop.port, "/predict/v1?x=1&y=2"), json={"a": 1})

    assert response.status_code == 200
    assert response.json()["replica"] == "api"
    assert (api.seen[0].method, api.seen[0].path, api.seen[0].query) == ("POST", "/predict/v1", "x=1&y=2")
    assert model.seen == []


async def test_internal_port_serves_its_own_service(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api, model = await replicas("api"), await replicas("model")
    shop = deployment("shop", {"Api": [api], "Model": [model]}, entry="Api")
    await gateway.apply(snapshot(shop))

    response = await client.post(url(shop.services["Model"].internal_port, "/embed"), json={})

    assert response.json()["replica"] == "model"
    assert api.seen == []


async def test_round_robin_over_two_endpoints(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    first, second = await replicas("first"), await replicas("second")
    shop = deployment("shop", {"Api": [first, second]})
    await gateway.apply(snapshot(shop))

    served = [(await client.get(url(shop.port))).json()["replica"] for _ in range(6)]

    assert served == ["first", "second"] * 3


async def test_least_in_flight_prefers_the_idle_replica(
    tokens: Tokens, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    first, second = await replicas("first"), await replicas("second")
    shop = deployment("shop", {"Api": [first, second]})
    gateway = Gateway("127.0.0.1", tokens.check, GatewaySettings(balancing="least_in_flight"))
    try:
        await gateway.apply(snapshot(shop))
        slow = asyncio.create_task(client.get(url(shop.port, "/slow")))  # occupies one replica
        while not (first.seen or second.seen):
            await asyncio.sleep(0.005)
        busy = "first" if first.seen else "second"
        served = {(await client.get(url(shop.port))).json()["replica"] for _ in range(4)}
        assert served == {"second" if busy == "first" else "first"}
        first.gate.set()
        second.gate.set()
        assert (await slow).status_code == 200
    finally:
        await gateway.close()


async def test_only_listed_endpoints_get_traffic(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    listed, also_listed, unlisted = await replicas("a"), await replicas("b"), await replicas("c")
    shop = deployment("shop", {"Api": [listed, also_listed]})
    await gateway.apply(snapshot(shop))

    for _ in range(10):
        assert (await client.get(url(shop.port))).status_code == 200

    assert len(listed.seen) == len(also_listed.seen) == 5
    assert unlisted.seen == []


async def test_apply_moves_traffic_and_closes_removed_ports(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    old, new = await replicas("old"), await replicas("new")
    shop = deployment("shop", {"Api": [old]})
    gone = deployment("gone", {"Api": [old]})
    await gateway.apply(snapshot(shop, gone))
    assert (await client.get(url(gone.port))).status_code == 200
    in_flight = asyncio.create_task(client.get(url(gone.port, "/slow")))
    while len(old.seen) < 2:
        await asyncio.sleep(0.005)

    moved = deployment(
        "shop", {"Api": [new]}, port=shop.port, internal={"Api": shop.services["Api"].internal_port}
    )
    await gateway.apply(snapshot(moved))

    assert (await client.get(url(shop.port))).json()["replica"] == "new"
    assert gone.port not in gateway.ports
    with pytest.raises(httpx.ConnectError):
        await httpx.AsyncClient().get(url(gone.port))
    old.gate.set()
    finished = await in_flight  # a request in flight on a removed port still finishes
    assert finished.status_code == 200
    assert finished.json() == {"slow": True}


async def test_an_inconsistent_snapshot_changes_nothing(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    await gateway.apply(snapshot(shop))
    clash = deployment("clash", {"Api": [api]}, port=shop.port)

    with pytest.raises(ValueError, match="claimed by both"):
        await gateway.apply(snapshot(shop, clash))

    assert (await client.get(url(shop.port))).json()["replica"] == "api"


# --- auth and status -----------------------------------------------------------------------------------


async def test_protected_deployment_wants_a_token_with_the_right_scope(
    gateway: Gateway, client: httpx.AsyncClient, tokens: Tokens, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]}, protected=True)
    await gateway.apply(snapshot(shop))

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    missing = await client.get(url(shop.port))
    invalid = await client.get(url(shop.port), headers=bearer("nope"))
    wrong = await client.get(url(shop.port), headers=bearer("other"))
    scoped = await client.get(url(shop.port), headers=bearer("mine"))
    wide = await client.get(url(shop.port), headers=bearer("all"))

    assert (missing.status_code, invalid.status_code, wrong.status_code) == (401, 401, 403)
    assert "Authorization: Bearer" in missing.json()["message"]
    assert "invalid or expired" in invalid.json()["message"]
    assert "protected_endpoint:shop" in wrong.json()["message"]
    assert (scoped.status_code, wide.status_code) == (200, 200)
    assert len(api.seen) == 2


async def test_token_checks_are_cached(
    gateway: Gateway, client: httpx.AsyncClient, tokens: Tokens, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]}, protected=True)
    await gateway.apply(snapshot(shop))

    for _ in range(5):
        response = await client.get(url(shop.port), headers={"Authorization": "Bearer mine"})
        assert response.status_code == 200

    assert tokens.calls == 1


async def test_internal_port_of_a_protected_deployment_wants_a_token_too(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api, model = await replicas("api"), await replicas("model")
    shop = deployment("shop", {"Api": [api], "Model": [model]}, protected=True)
    await gateway.apply(snapshot(shop))
    internal = shop.services["Model"].internal_port

    assert (await client.get(url(internal))).status_code == 401
    assert (await client.get(url(internal), headers={"Authorization": "Bearer mine"})).status_code == 200


async def test_resolve_runner_is_answered_without_auth(gateway: Gateway, client: httpx.AsyncClient) -> None:
    shop = deployment("shop", {"Api": [refused_url()], "Model": []}, protected=True)
    await gateway.apply(snapshot(shop))
    headers = {"Resolve-Runner": "1", "Runner-Name": "Model"}

    response = await client.get(url(shop.services["Api"].internal_port), headers=headers)

    assert response.status_code == 200
    assert response.json() == {"ips": ["127.0.0.1"], "port": shop.services["Model"].internal_port}


async def test_terminated_deployment_answers_503_with_a_message(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]}, status="terminated")
    await gateway.apply(snapshot(shop))

    response = await client.get(url(shop.port))

    assert response.status_code == 503
    assert response.json() == {"message": "Deployment shop is terminated: restore it to serve traffic."}
    assert api.seen == []


async def test_no_ready_endpoint_answers_503_retry_after(gateway: Gateway, client: httpx.AsyncClient) -> None:
    shop = deployment(
        "shop", {"Api": []}, status="deploying", message="Deployment shop is starting: retry soon."
    )
    await gateway.apply(snapshot(shop))

    response = await client.post(url(shop.port, "/predict"), json={"x": 1})

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"message": "Deployment shop is starting: retry soon."}
    assert (await client.get(url(shop.port))).status_code == 503  # the connection stayed usable


# --- pass-through --------------------------------------------------------------------------------------


async def test_headers_pass_through_without_hop_by_hop_and_with_forwarded(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    await gateway.apply(snapshot(shop))
    headers = {
        "X-Custom": "kept",
        "Connection": "keep-alive, X-Private",
        "X-Private": "dropped",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "X-Forwarded-For": "10.1.2.3",
        "Authorization": "Bearer passed-on",
    }

    await client.get(url(shop.port, "/h"), headers=headers)

    seen = api.seen[0].headers
    assert seen["x-custom"] == "kept"
    assert seen["authorization"] == "Bearer passed-on"
    assert "x-private" not in seen
    assert "keep-alive" not in seen
    assert "te" not in seen
    assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == f"127.0.0.1:{shop.port}"


async def test_sse_events_arrive_as_they_are_produced(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    await gateway.apply(snapshot(shop))

    async with client.stream("GET", url(shop.port, "/sse")) as response:
        chunks = response.aiter_raw()
        first = await asyncio.wait_for(anext(chunks), 10)
        assert first == b"data: one\n\n"
        assert not api.gate.is_set()  # the replica is still holding the second event back
        api.gate.set()
        rest = b"".join([chunk async for chunk in chunks])

    assert rest == b"data: two\n\n"


async def test_large_upload_and_download_pass_intact(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    await gateway.apply(snapshot(shop))
    upload = os.urandom(5 * MiB)

    sent = await client.put(url(shop.port, "/upload"), content=upload)
    fetched = await client.get(url(shop.port, f"/download?size={5 * MiB}"))

    assert sent.json() == {
        "replica": "api",
        "path": "/upload",
        "query": "",
        "length": len(upload),
        "sha256": hashlib.sha256(upload).hexdigest(),
    }
    assert fetched.content == _pattern(5 * MiB)


async def test_chunked_upload_passes_intact(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    await gateway.apply(snapshot(shop))
    parts = [os.urandom(100_000) for _ in range(7)]

    async def stream() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    response = await client.post(url(shop.port, "/chunks"), content=stream())

    assert response.json()["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert api.seen[0].headers.get("transfer-encoding") == "chunked"


async def test_pickle_bodies_pass_byte_identical(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    model = await replicas("model")
    shop = deployment("shop", {"Api": [refused_url()], "Model": [model]})
    await gateway.apply(snapshot(shop))
    body = os.urandom(300_000) + b"\r\n\r\n0\r\n\r\n"
    headers = {"Content-Type": PICKLE, "Runner-Name": "Model"}

    response = await client.post(
        url(shop.services["Model"].internal_port, "/call"), content=body, headers=headers
    )

    assert model.seen[0].body == body
    assert response.headers["content-type"] == PICKLE
    assert response.content == body


# --- failures ------------------------------------------------------------------------------------------


async def test_refused_connection_is_retried_on_another_endpoint(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [refused_url(), api]})
    await gateway.apply(snapshot(shop))

    statuses = [(await client.post(url(shop.port), json={"n": n})).status_code for n in range(4)]

    assert statuses == [200] * 4
    assert len(api.seen) == 4


async def test_traffic_counts_requests_errors_and_in_flight_per_replica(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api, refused = await replicas("api"), refused_url()
    shop = deployment("shop", {"Api": [refused, api]})
    await gateway.apply(snapshot(shop))
    for path in ("/", "/", "/fail", "/", "/fail", "/"):
        await client.get(url(shop.port, path))
    slow = asyncio.create_task(client.get(url(shop.port, "/slow")))
    while len(api.seen) < 7:
        await asyncio.sleep(0.005)

    traffic = gateway.traffic()

    assert traffic.replicas[api.url] == ReplicaTraffic(requests=6, errors=2, in_flight=1)
    assert traffic.replicas[refused].requests == traffic.replicas[refused].errors >= 1, "refused: an error"
    api.gate.set()
    assert (await slow).status_code == 200
    assert gateway.traffic().replicas[api.url] == ReplicaTraffic(requests=7, errors=2, in_flight=0)


async def test_no_endpoint_accepting_answers_502_with_a_message(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    shop = deployment("shop", {"Api": [refused_url(), refused_url()]})
    await gateway.apply(snapshot(shop))

    response = await client.post(url(shop.port), json={"x": 1})

    assert response.status_code == 502
    message = response.json()["message"]
    assert message.startswith("Deployment shop: no replica of Service Api accepted a connection")
    assert (await client.get(url(shop.port))).status_code == 502  # and the client connection survived


async def test_replica_closing_without_answer_is_a_502(gateway: Gateway, client: httpx.AsyncClient) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        shop = deployment("shop", {"Api": [f"http://127.0.0.1:{port}"]})
        await gateway.apply(snapshot(shop))
        response = await client.get(url(shop.port))
    finally:
        server.close()

    assert response.status_code == 502
    assert "closed the connection before answering" in response.json()["message"]


async def test_pooled_connection_closed_by_the_replica_is_replaced(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    answered = 0

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        await reader.readuntil(b"\r\n\r\n")
        answered += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive announced, then closed: the pooled connection is stale

    server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        shop = deployment("shop", {"Api": [f"http://127.0.0.1:{port}"]})
        await gateway.apply(snapshot(shop))
        statuses = [(await client.get(url(shop.port))).status_code for _ in range(3)]
    finally:
        server.close()

    assert statuses == [200, 200, 200]
    assert answered == 3


async def test_malformed_requests_get_a_json_400(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    await gateway.apply(snapshot(shop))

    async def send(raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", shop.port)
        writer.write(raw)
        answer = await reader.read()
        writer.close()
        return answer

    smuggle = await send(
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    folded = await send(b"GET / HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n")
    garbage = await send(b"HELLO\r\n\r\n")

    for answer in (smuggle, folded, garbage):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), answer
        assert json.loads(body)["message"].endswith(".")
    assert api.seen == []


async def test_expect_100_continue_is_answered_by_the_gateway(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    await gateway.apply(snapshot(shop))
    reader, writer = await asyncio.open_connection("127.0.0.1", shop.port)
    try:
        writer.write(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.write(b"hello")
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200 ")
    assert api.seen[0].body == b"hello"
    assert "expect" not in api.seen[0].headers


async def test_http_1_0_clients_get_their_answer_and_a_closed_connection(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    await gateway.apply(snapshot(shop))
    reader, writer = await asyncio.open_connection("127.0.0.1", shop.port)
    try:
        writer.write(b"GET /old HTTP/1.0\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)  # read() returns once the gateway closes
    finally:
        writer.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["path"] == "/old"


async def test_a_port_that_cannot_be_bound_does_not_hold_back_the_others(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    squatter = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    taken = squatter.sockets[0].getsockname()[1]
    try:
        blocked = deployment("blocked", {"Api": [api]}, port=taken)
        shop = deployment("shop", {"Api": [api]})
        await gateway.apply(snapshot(blocked, shop))

        assert taken not in gateway.ports
        assert (await client.get(url(shop.port))).status_code == 200
    finally:
        squatter.close()
    await gateway.apply(snapshot(blocked, shop))  # the next apply binds it
    assert taken in gateway.ports


async def test_idle_client_connections_are_closed(
    tokens: Tokens, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    settings = GatewaySettings(client_idle_timeout_s=0.05, sweep_interval_s=0.02)
    gateway = Gateway("127.0.0.1", tokens.check, settings)
    try:
        await gateway.apply(snapshot(shop))
        reader, writer = await asyncio.open_connection("127.0.0.1", shop.port)
        writer.write(b"GET / HTT")  # a head that never completes
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the gateway
        writer.close()
    finally:
        await gateway.close()


# --- holding requests while a Service has no ready replica ----------------------------------------------


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` holds (the gateway acts in its callbacks), failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.002)


def with_ready(route: DeploymentRoute, ready: Mapping[str, Iterable[Replica]]) -> DeploymentRoute:
    """`route` (same ports, same hold_s) with these Services' replicas ready."""
    services = {
        name: replace(service, endpoints=tuple(r.url for r in ready[name])) if name in ready else service
        for name, service in route.services.items()
    }
    return replace(route, services=services)


async def test_a_held_request_is_forwarded_once_an_apply_publishes_a_replica(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": []}, status="deploying", hold_s=5)
    await gateway.apply(snapshot(shop))
    body = os.urandom(1000)

    pending = asyncio.create_task(client.post(url(shop.port, "/predict"), content=body))
    await eventually(lambda: gateway.waiting == 1)
    assert not pending.done()  # held: no answer before the apply
    await gateway.apply(snapshot(with_ready(shop, {"Api": [api]})))
    response = await asyncio.wait_for(pending, 10)

    assert response.status_code == 200
    assert response.json()["replica"] == "api"
    assert api.seen[0].body == body  # the body that arrived while it waited was kept
    assert gateway.waiting == 0


async def test_a_held_streamed_body_passes_intact(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": []}, hold_s=5)
    await gateway.apply(snapshot(shop))
    upload = os.urandom(2 * MiB)  # more than the gateway reads ahead: the client is held back meanwhile

    pending = asyncio.create_task(client.put(url(shop.port, "/upload"), content=upload))
    await eventually(lambda: gateway.waiting == 1)
    assert not pending.done()
    await gateway.apply(snapshot(with_ready(shop, {"Api": [api]})))
    response = await asyncio.wait_for(pending, 10)

    assert response.json()["sha256"] == hashlib.sha256(upload).hexdigest()


async def test_an_internal_port_holds_requests_for_its_own_service(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api, model = await replicas("api"), await replicas("model")
    shop = deployment("shop", {"Api": [api], "Model": []}, hold_s=5)
    await gateway.apply(snapshot(shop))

    assert (await client.get(url(shop.port))).json()["replica"] == "api"  # the entry Service is ready
    pending = asyncio.create_task(client.post(url(shop.services["Model"].internal_port, "/embed"), json={}))
    await eventually(lambda: gateway.waiting == 1)
    assert not pending.done()
    await gateway.apply(snapshot(with_ready(shop, {"Model": [model]})))

    assert (await asyncio.wait_for(pending, 10)).json()["replica"] == "model"


async def test_held_requests_are_served_in_arrival_order_through_the_balancer(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    first, second = await replicas("first"), await replicas("second")
    shop = deployment("shop", {"Api": []}, hold_s=5)
    await gateway.apply(snapshot(shop))

    pending: list[asyncio.Task[httpx.Response]] = []
    for n in range(4):
        pending.append(asyncio.create_task(client.get(url(shop.port, f"/{n}"))))
        await eventually(lambda: gateway.waiting == len(pending))
    await gateway.apply(snapshot(shop))  # an apply without a replica: they wait on
    assert gateway.waiting == 4
    assert not any(task.done() for task in pending)
    await gateway.apply(snapshot(with_ready(shop, {"Api": [first, second]})))
    responses = await asyncio.wait_for(asyncio.gather(*pending), 10)

    assert [r.json()["path"] for r in responses] == ["/0", "/1", "/2", "/3"]
    assert [r.json()["replica"] for r in responses] == ["first", "second", "first", "second"]
    assert gateway.waiting == 0


async def test_a_held_request_gets_503_retry_after_once_its_bound_passes(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    shop = deployment(
        "shop", {"Api": []}, status="deploying", message="Deployment shop is starting.", hold_s=0.2
    )
    await gateway.apply(snapshot(shop))
    loop = asyncio.get_running_loop()

    started = loop.time()
    response = await client.post(url(shop.port, "/predict"), json={"x": 1})
    waited = loop.time() - started

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {"message": "Deployment shop is starting."}
    assert 0.15 <= waited < 5
    assert gateway.waiting == 0
    assert (await client.get(url(shop.port))).status_code == 503  # the connection stayed usable


async def test_a_protected_route_refuses_a_request_without_a_valid_token_before_holding_it(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    shop = deployment("shop", {"Api": []}, protected=True, hold_s=5)
    await gateway.apply(snapshot(shop))
    loop = asyncio.get_running_loop()

    started = loop.time()
    missing = await client.get(url(shop.port))
    invalid = await client.get(url(shop.port), headers={"Authorization": "Bearer nope"})
    waited = loop.time() - started

    assert (missing.status_code, invalid.status_code) == (401, 401)
    assert waited < 2.5  # far below hold_s: answered at once
    assert gateway.waiting == 0


async def test_a_protected_route_holds_a_request_with_a_valid_token(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": []}, protected=True, hold_s=5)
    await gateway.apply(snapshot(shop))

    pending = asyncio.create_task(client.get(url(shop.port), headers={"Authorization": "Bearer mine"}))
    await eventually(lambda: gateway.waiting == 1)
    await gateway.apply(snapshot(with_ready(shop, {"Api": [api]})))

    assert (await asyncio.wait_for(pending, 10)).status_code == 200


async def test_a_terminated_route_answers_503_at_once_even_with_hold_s(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    shop = deployment("shop", {"Api": []}, status="terminated", hold_s=5)
    await gateway.apply(snapshot(shop))
    loop = asyncio.get_running_loop()

    started = loop.time()
    response = await client.get(url(shop.port))

    assert loop.time() - started < 2.5
    assert response.status_code == 503
    assert response.json() == {"message": "Deployment shop is terminated: restore it to serve traffic."}
    assert gateway.waiting == 0


async def test_a_held_request_whose_client_leaves_is_forgotten(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": []}, hold_s=5)
    await gateway.apply(snapshot(shop))
    _, writer = await asyncio.open_connection("127.0.0.1", shop.port)
    writer.write(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(lambda: gateway.waiting == 1)

    writer.close()
    await writer.wait_closed()
    await eventually(lambda: gateway.waiting == 0)
    await gateway.apply(snapshot(with_ready(shop, {"Api": [api]})))

    assert api.seen == []  # nothing was forwarded for the departed client


async def test_deleting_the_deployment_answers_held_requests_503(
    gateway: Gateway, client: httpx.AsyncClient
) -> None:
    shop = deployment("shop", {"Api": [], "Model": []}, hold_s=5)
    await gateway.apply(snapshot(shop))
    public = asyncio.create_task(client.get(url(shop.port)))
    internal = asyncio.create_task(client.get(url(shop.services["Model"].internal_port)))
    await eventually(lambda: gateway.waiting == 2)

    await gateway.apply(snapshot())
    responses = await asyncio.wait_for(asyncio.gather(public, internal), 2.5)  # well before hold_s

    assert [r.status_code for r in responses] == [503, 503]
    assert all("stopped being served" in r.json()["message"] for r in responses)
    assert gateway.waiting == 0


async def test_close_answers_held_requests(tokens: Tokens, client: httpx.AsyncClient) -> None:
    gateway = Gateway("127.0.0.1", tokens.check, GatewaySettings(close_grace_s=30))
    shop = deployment("shop", {"Api": []}, hold_s=30)
    await gateway.apply(snapshot(shop))
    pending = asyncio.create_task(client.get(url(shop.port)))
    await eventually(lambda: gateway.waiting == 1)

    await asyncio.wait_for(gateway.close(), 5)  # neither hold_s nor the grace period is waited out
    response = await asyncio.wait_for(pending, 5)

    assert response.status_code == 503
    assert response.headers["connection"] == "close"
    assert gateway.waiting == 0


# --- the external queue, traffic.timeout and demand ---------------------------------------------------


def queued(max_concurrency: int = 1, capacity: int = 0, **more: float) -> Admission:
    return Admission(hold_s=5, queue=True, max_concurrency=max_concurrency, queue_capacity=capacity, **more)


async def test_the_queue_keeps_each_replica_under_max_concurrency_and_serves_in_arrival_order(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]}, admission=queued(max_concurrency=1))
    await gateway.apply(snapshot(shop))

    pending = []
    for n in range(3):
        pending.append(asyncio.create_task(client.get(url(shop.port, f"/slow?n={n}"))))
        await eventually(lambda: len(api.seen) + gateway.waiting == len(pending))
    assert len(api.seen) == 1 and gateway.waiting == 2, "one at the replica, two in line"
    assert gateway.traffic().queues[("shop", "Api")].waiting == 2
    api.gate.set()
    responses = await asyncio.wait_for(asyncio.gather(*pending), 10)

    assert [r.status_code for r in responses] == [200] * 3
    assert [seen.query for seen in api.seen] == ["n=0", "n=1", "n=2"]
    assert gateway.waiting == 0 and gateway.traffic().queues == {}
    assert gateway.traffic().arrivals == {("shop", "Api"): 3}, "each request counted once, held or not"


async def test_a_full_queue_answers_429_with_retry_after(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]}, admission=queued(max_concurrency=1, capacity=2))
    await gateway.apply(snapshot(shop))
    pending = [asyncio.create_task(client.get(url(shop.port, "/slow"))) for _ in range(3)]
    await eventually(lambda: len(api.seen) == 1 and gateway.waiting == 2)

    refused = await client.get(url(shop.port, "/slow"))

    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["message"] == (
        "Deployment shop: Service Api has 2 requests waiting, its queue's limit: retry later."
    )
    api.gate.set()
    assert [r.status_code for r in await asyncio.gather(*pending)] == [200] * 3


async def test_without_the_queue_max_concurrency_is_the_replicas_business(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]}, admission=Admission(hold_s=5, max_concurrency=1))
    await gateway.apply(snapshot(shop))

    pending = [asyncio.create_task(client.get(url(shop.port, "/slow"))) for _ in range(3)]
    await eventually(lambda: len(api.seen) == 3)

    assert gateway.waiting == 0
    api.gate.set()
    assert [r.status_code for r in await asyncio.gather(*pending)] == [200] * 3


async def test_a_request_waiting_for_a_service_with_no_replica_is_announced_as_demand(
    tokens: Tokens, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    heard: list[tuple[str, str]] = []
    gateway = Gateway("127.0.0.1", tokens.check, on_demand=heard.append)
    api = await replicas("api")
    shop = deployment("shop", {"Api": []}, admission=queued())
    try:
        await gateway.apply(snapshot(shop))
        pending = asyncio.create_task(client.get(url(shop.port, "/wake")))
        await eventually(lambda: gateway.waiting == 1)
        assert heard == [("shop", "Api")]
        await gateway.apply(snapshot(shop))  # still no replica: it waits on, announced only once
        assert heard == [("shop", "Api")] and gateway.waiting == 1
        await gateway.apply(snapshot(with_ready(shop, {"Api": [api]})))
        assert (await asyncio.wait_for(pending, 10)).status_code == 200
    finally:
        await gateway.close()


async def test_a_replica_slower_than_traffic_timeout_gets_a_504(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]}, admission=Admission(timeout_s=0.3))
    await gateway.apply(snapshot(shop))

    slow = await client.get(url(shop.port, "/slow"))
    quick = await client.get(url(shop.port, "/"))

    assert slow.status_code == 504
    assert slow.json()["message"] == (
        "Deployment shop: Service Api did not answer within its traffic.timeout of 0.3 s."
    )
    assert quick.status_code == 200, "the connection and the replica stay usable"
    assert gateway.traffic().replicas[api.url] == ReplicaTraffic(requests=2, errors=1, in_flight=0)


async def test_a_queued_request_that_outwaits_its_bound_says_the_replicas_stayed_busy(
    gateway: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]}, admission=replace(queued(max_concurrency=1), hold_s=0.3))
    await gateway.apply(snapshot(shop))
    busy = asyncio.create_task(client.get(url(shop.port, "/slow")))
    await eventually(lambda: len(api.seen) == 1)

    late = await client.get(url(shop.port, "/"))

    assert late.status_code == 503 and late.headers["retry-after"] == "1"
    assert (
        late.json()["message"]
        == "Deployment shop: every replica of Service Api stayed busy for 0.3 s: retry shortly."
    )
    api.gate.set()
    assert (await busy).status_code == 200


# --- host names on the shared port ---------------------------------------------------------------------

DOMAIN = "apps.example.test"


@pytest.fixture
def shared_port() -> int:
    return free_port()


@pytest.fixture
async def hosted(tokens: Tokens, shared_port: int) -> AsyncIterator[Gateway]:
    """A gateway whose shared port serves deployments by host name under DOMAIN (with a snapshot that
    has it)."""
    settings = GatewaySettings(balancing="round_robin", shared_port=shared_port)
    gateway = Gateway("127.0.0.1", tokens.check, settings)
    yield gateway
    await gateway.close()


def host(name: str, **headers: str) -> dict[str, str]:
    return {"Host": name, **headers}


def under_domain(*deployments: DeploymentRoute, version: int = 0) -> RoutingSnapshot:
    return RoutingSnapshot({d.name: d for d in deployments}, version, DOMAIN)


async def test_the_shared_port_serves_each_deployment_by_its_host_name(
    hosted: Gateway,
    client: httpx.AsyncClient,
    replicas: Callable[[str], Awaitable[Replica]],
    shared_port: int,
) -> None:
    shop_api, cart_api, model = await replicas("shop"), await replicas("cart"), await replicas("model")
    shop = deployment("shop", {"Api": [shop_api], "Model": [model]}, entry="Api")
    cart = deployment("cart", {"Api": [cart_api]})
    await hosted.apply(under_domain(shop, cart))

    to_shop = await client.post(
        url(shared_port, "/predict?x=1"), json={}, headers=host("shop.apps.example.test")
    )
    to_cart = await client.get(url(shared_port), headers=host(f"Cart.Apps.Example.Test:{shared_port}"))
    again = await client.get(url(shared_port), headers=host("shop.apps.example.test."))

    assert shared_port in hosted.ports
    assert [r.json()["replica"] for r in (to_shop, to_cart, again)] == ["shop", "cart", "shop"]
    seen = shop_api.seen[0]
    assert (seen.path, seen.query) == ("/predict", "x=1")
    assert seen.headers["host"] == "shop.apps.example.test"
    assert seen.headers["x-forwarded-host"] == "shop.apps.example.test"
    assert model.seen == []


async def test_the_ports_keep_serving_as_before_when_a_domain_is_set(
    hosted: Gateway, client: httpx.AsyncClient, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    api, model = await replicas("api"), await replicas("model")
    shop = deployment("shop", {"Api": [api], "Model": [model]}, entry="Api")
    await hosted.apply(under_domain(shop))

    public = await client.get(url(shop.port), headers=host("cart.apps.example.test"))  # Host ignored here
    internal = await client.post(url(shop.services["Model"].internal_port, "/embed"), json={})

    assert public.json()["replica"] == "api"
    assert internal.json()["replica"] == "model"


async def test_an_unknown_host_gets_a_404_saying_what_was_asked_and_how_names_look(
    hosted: Gateway,
    client: httpx.AsyncClient,
    replicas: Callable[[str], Awaitable[Replica]],
    shared_port: int,
) -> None:
    api = await replicas("api")
    await hosted.apply(under_domain(deployment("shop", {"Api": [api]})))

    cases = ["nope.apps.example.test", "www.shop.apps.example.test", "apps.example.test", "127.0.0.1"]
    answers = [await client.get(url(shared_port), headers=host(name)) for name in cases]

    for name, answer in zip(cases, answers, strict=True):
        assert answer.status_code == 404
        assert answer.json()["message"] == (
            f'No deployment is served at host "{name}": deployment URLs here have the host name'
            " <deployment name>.apps.example.test."
        )
    assert api.seen == []
    assert (await client.get(url(shared_port), headers=host("shop.apps.example.test"))).status_code == 200


async def test_a_request_without_a_host_gets_a_404_on_the_shared_port(
    hosted: Gateway, shared_port: int
) -> None:
    await hosted.apply(under_domain(deployment("shop", {"Api": [refused_url()]})))
    reader, writer = await asyncio.open_connection("127.0.0.1", shared_port)

    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ")
    assert json.loads(body)["message"] == (
        "The request has no Host header: send the deployment's host name,"
        " <deployment name>.apps.example.test."
    )


async def test_one_connection_to_the_shared_port_may_ask_for_several_deployments(
    hosted: Gateway, replicas: Callable[[str], Awaitable[Replica]], shared_port: int
) -> None:
    shop_api, cart_api = await replicas("shop"), await replicas("cart")
    await hosted.apply(
        under_domain(deployment("shop", {"Api": [shop_api]}), deployment("cart", {"Api": [cart_api]}))
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", shared_port)

    served = []
    for name in ("shop", "cart", "nope", "shop"):
        writer.write(f"GET / HTTP/1.1\r\nHost: {name}.apps.example.test\r\n\r\n".encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode().lower()
        length = int(head.partition("content-length:")[2].split("\r\n", 1)[0])
        body = json.loads(await reader.readexactly(length))
        served.append(body.get("replica", head.split(" ")[1]))  # the status when the gateway answered
    writer.close()

    assert served == ["shop", "cart", "404", "shop"]


async def test_a_request_waiting_on_the_shared_port_is_served_when_a_replica_appears(
    hosted: Gateway,
    client: httpx.AsyncClient,
    replicas: Callable[[str], Awaitable[Replica]],
    shared_port: int,
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": []}, status="scaled-to-zero", hold_s=5)
    await hosted.apply(under_domain(shop, version=1))
    body = os.urandom(1000)

    pending = asyncio.create_task(
        client.post(url(shared_port, "/predict"), content=body, headers=host("shop.apps.example.test"))
    )
    await eventually(lambda: hosted.waiting == 1)
    assert not pending.done()
    await hosted.apply(under_domain(with_ready(shop, {"Api": [api]}), version=2))
    response = await asyncio.wait_for(pending, 10)

    assert response.status_code == 200 and response.json()["replica"] == "api"
    assert api.seen[0].body == body and api.seen[0].headers["host"] == "shop.apps.example.test"
    assert hosted.waiting == 0


async def test_the_shared_port_listens_only_while_the_snapshot_has_a_domain(
    hosted: Gateway,
    client: httpx.AsyncClient,
    replicas: Callable[[str], Awaitable[Replica]],
    shared_port: int,
) -> None:
    api = await replicas("api")
    shop = deployment("shop", {"Api": [api]})
    await hosted.apply(RoutingSnapshot({"shop": shop}, 1))

    assert shared_port not in hosted.ports
    with pytest.raises(httpx.ConnectError):
        await client.get(url(shared_port), headers=host("shop.apps.example.test"))
    await hosted.apply(under_domain(shop, version=2))
    assert (await client.get(url(shared_port), headers=host("shop.apps.example.test"))).status_code == 200
    assert (await client.get(url(shop.port))).status_code == 200
    await hosted.apply(RoutingSnapshot({"shop": shop}, 3))
    assert shared_port not in hosted.ports


async def test_a_protected_deployment_by_host_name_wants_a_token_too(
    hosted: Gateway,
    client: httpx.AsyncClient,
    replicas: Callable[[str], Awaitable[Replica]],
    shared_port: int,
) -> None:
    api = await replicas("api")
    await hosted.apply(under_domain(deployment("shop", {"Api": [api]}, protected=True)))

    missing = await client.get(url(shared_port), headers=host("shop.apps.example.test"))
    scoped = await client.get(
        url(shared_port), headers=host("shop.apps.example.test", Authorization="Bearer mine")
    )

    assert (missing.status_code, scoped.status_code) == (401, 200)


async def test_forwarding_headers_from_a_proxy_in_front_are_passed_on_never_routed_by(
    hosted: Gateway,
    client: httpx.AsyncClient,
    replicas: Callable[[str], Awaitable[Replica]],
    shared_port: int,
) -> None:
    shop_api, cart_api = await replicas("shop"), await replicas("cart")
    await hosted.apply(
        under_domain(deployment("shop", {"Api": [shop_api]}), deployment("cart", {"Api": [cart_api]}))
    )
    headers = host(
        "shop.apps.example.test",
        **{
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "cart.apps.example.test",
            "X-Forwarded-For": "203.0.113.9",
        },
    )

    response = await client.get(url(shared_port), headers=headers)

    assert response.json()["replica"] == "shop", "routed by Host alone"
    seen = shop_api.seen[0].headers
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == "cart.apps.example.test"
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert cart_api.seen == []
