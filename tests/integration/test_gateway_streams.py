"""The gateway's long-lived and hostile streams over real sockets: WebSocket tunnels, uploads the replica
reads slowly, heads that trickle in, and rotation over replicas across routing snapshots.

A small ASGI app (run by uvicorn with wsproto) stands in for a replica; a minimal wsproto client speaks
WebSocket. Waits are bounded by deadlines; nothing sleeps until something probably happened.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
import wsproto
import wsproto.events as ws

from tests.support.server import free_port
from tiffin.gateway import Gateway, GatewaySettings
from tiffin.routing.snapshot import DeploymentRoute, RoutingSnapshot, ServiceRoute

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
MiB = 1024 * 1024
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Replica:
    """Echoes WebSocket messages; `/upload` reads its body only once `gate` is set."""

    name: str
    port: int = field(default_factory=free_port)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    received: int = 0
    server: uvicorn.Server | None = None
    task: "asyncio.Task[None] | None" = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "Replica":
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            ws="wsproto",
            interface="asgi3",
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.005)
        return self

    async def stop(self) -> None:
        self.gate.set()
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._echo(scope, receive, send)
        elif scope["path"] == "/upload":
            await self.gate.wait()
            while (event := await receive()).get("more_body", False) or event.get("body"):
                self.received += len(event.get("body", b""))
                if not event.get("more_body"):
                    break
            await _respond(send, str(self.received).encode())
        else:
            await _respond(send, self.name.encode())

    async def _echo(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (event := await receive())["type"] == "websocket.receive":
            text = event.get("text") or ""
            await send({"type": "websocket.send", "text": f"{self.name}: {text} ({scope['path']})"})


async def _respond(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def replicas() -> AsyncIterator[Callable[[str], Awaitable[Replica]]]:
    started: list[Replica] = []

    async def start(name: str) -> Replica:
        replica = await Replica(name).start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        await replica.stop()


async def no_token(token: str) -> frozenset[str] | None:
    return frozenset({"protected_endpoint"}) if token == "good" else None


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    settings = GatewaySettings(head_timeout_s=0.5, sweep_interval_s=0.05)
    gateway = Gateway("127.0.0.1", no_token, settings)
    yield gateway
    await gateway.close()


def snapshot(port: int, urls: tuple[str, ...], version: int = 0, protected: bool = False) -> RoutingSnapshot:
    service = ServiceRoute("Api", free_port(), urls)
    route = DeploymentRoute("chat", port, "Api", {"Api": service}, protected=protected)
    return RoutingSnapshot({"chat": route}, version)


class WebSocket:
    """A minimal WebSocket client on wsproto over an asyncio connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.events: list[ws.Event] = []

    @staticmethod
    async def open(port: int, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> "WebSocket":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        socket = WebSocket(reader, writer)
        request = ws.Request(host=f"127.0.0.1:{port}", target=path, extra_headers=headers or [])
        socket.writer.write(socket.protocol.send(request))
        return socket

    async def next_event(self) -> ws.Event:
        while not self.events:
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            self.protocol.receive_data(data or None)
            self.events += list(self.protocol.events())
        return self.events.pop(0)

    def send(self, text: str) -> None:
        self.writer.write(self.protocol.send(ws.TextMessage(data=text)))

    async def close(self) -> None:
        self.writer.write(self.protocol.send(ws.CloseConnection(code=1000)))
        self.writer.close()


async def test_a_websocket_is_tunneled_both_ways(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    replica = await replicas("echo")
    port = free_port()
    await gateway.apply(snapshot(port, (replica.url,)))

    socket = await WebSocket.open(port, "/chat?room=1")
    assert isinstance(await socket.next_event(), ws.AcceptConnection)
    for text in ("hello", "again"):
        socket.send(text)
        message = await socket.next_event()
        assert isinstance(message, ws.TextMessage) and message.data == f"echo: {text} (/chat)"
    await socket.close()


async def test_a_websocket_to_a_protected_deployment_needs_a_token_first(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    replica = await replicas("echo")
    port = free_port()
    await gateway.apply(snapshot(port, (replica.url,), protected=True))

    refused = await WebSocket.open(port, "/chat")
    rejection = await refused.next_event()
    assert isinstance(rejection, ws.RejectConnection) and rejection.status_code == 401
    refused.writer.close()

    allowed = await WebSocket.open(port, "/chat", [(b"authorization", b"Bearer good")])
    assert isinstance(await allowed.next_event(), ws.AcceptConnection)
    allowed.send("hi")
    assert isinstance(await allowed.next_event(), ws.TextMessage)
    await allowed.close()


async def test_an_upload_the_replica_does_not_read_holds_the_client_back(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    """The gateway never reads far ahead of the replica: the client's writes stall until the replica
    reads, then every byte arrives."""
    replica = await replicas("sink")
    port = free_port()
    await gateway.apply(snapshot(port, (replica.url,)))
    size = 128 * MiB
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
    block = b"x" * MiB
    sent = 0
    stalled = False
    while sent < size and not stalled:
        writer.write(block)
        sent += len(block)
        try:
            await asyncio.wait_for(writer.drain(), 1.0)
        except TimeoutError:
            stalled = True

    assert stalled and sent < size, "nothing stopped the client: the gateway read the body ahead"
    replica.gate.set()
    while sent < size:
        writer.write(block)
        sent += len(block)
        await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    body = await asyncio.wait_for(reader.read(100), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200") and body == str(size).encode()


async def test_a_head_that_trickles_in_gets_408_and_a_closed_connection(gateway: Gateway) -> None:
    port = free_port()
    await gateway.apply(snapshot(port, ()))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")

    answer = await asyncio.wait_for(reader.read(), 10)  # until the gateway closes
    writer.close()

    assert answer.startswith(b"HTTP/1.1 408 ") and b"took too long" in answer


async def test_sequential_requests_reach_every_replica_across_new_snapshots(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    three = [await replicas(name) for name in ("a", "b", "c")]
    port = free_port()
    urls = tuple(r.url for r in three)
    reached = []
    async with httpx.AsyncClient(timeout=10) as client:
        for version in range(1, 31):
            await gateway.apply(snapshot(port, urls, version))
            reached.append((await client.get(f"http://127.0.0.1:{port}/")).text)

    assert sorted(set(reached)) == ["a", "b", "c"]


async def test_a_snapshot_that_is_not_newer_is_ignored(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]]
) -> None:
    replica = await replicas("a")
    port, other = free_port(), free_port()
    await gateway.apply(snapshot(port, (replica.url,), version=5))

    await gateway.apply(snapshot(other, (replica.url,), version=4))

    assert gateway.version == 5 and port in gateway.ports and other not in gateway.ports


async def test_access_lines_are_logged_only_when_turned_on(
    gateway: Gateway, replicas: Callable[[str], Awaitable[Replica]], caplog: pytest.LogCaptureFixture
) -> None:
    replica = await replicas("a")
    port = free_port()
    await gateway.apply(snapshot(port, (replica.url,)))
    access = logging.getLogger("tiffin.access")
    async with httpx.AsyncClient(timeout=10) as client:
        access.disabled = True
        await client.get(f"http://127.0.0.1:{port}/quiet")
        access.disabled = False
        with caplog.at_level(logging.INFO, logger="tiffin.access"):
            await client.get(f"http://127.0.0.1:{port}/loud?x=1")

    lines = [r for r in caplog.records if r.name == "tiffin.access"]
    assert [r.getMessage().split('"')[1] for r in lines] == ["GET /loud?x=1 HTTP/1.1"]
    assert " 200 " in lines[0].getMessage() and lines[0].deployment == "chat"  # type: ignore[attr-defined]
