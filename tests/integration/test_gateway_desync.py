"""No desync end to end: smuggling attempts against a real gateway in front of a real bentoml replica.

The replica records every HTTP request it receives (method, path, the `X-Mark` the test gave it, and
the port of the gateway's connection it came on). Each test warms a pooled connection to the replica,
sends one crafted request over a raw socket, then ordinary requests that travel on that same pooled
connection; then the replica's record must be exactly the requests the gateway forwarded, one entry
each, in order, and every client must have received exactly its own responses, nothing more.
"""

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import h11
import httpx
import pytest

from tests.support.bentoml_replica import GatewayThread, Replica, bentoml_replica
from tests.support.server import free_port
from tiffin.routing.snapshot import DeploymentRoute, RoutingSnapshot, ServiceRoute

pytestmark = pytest.mark.integration

SERVICE = """
import bentoml

SEEN = []  # every request this replica received, as "METHOD path mark port"


class Record:
    def __init__(self, app, **options):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in ("/seen", "/readyz"):
            mark = dict(scope["headers"]).get(b"x-mark", b"-").decode("latin-1")
            SEEN.append(f"{scope['method']} {scope['path']} {mark} {scope['client'][1]}")
        await self.app(scope, receive, send)


@bentoml.service(workers=1)
class Recorder:
    @bentoml.api
    async def note(self, text: str) -> dict:
        return {"text": text}

    @bentoml.api
    async def seen(self) -> list:
        return SEEN


Recorder.add_asgi_middleware(Record)
"""


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    """A real bentoml HTTP server, for the whole module."""
    with bentoml_replica(tmp_path_factory.mktemp("recorder"), SERVICE, "Recorder") as running:
        yield running


@pytest.fixture(scope="module")
def deployment_port(replica: Replica) -> Iterator[int]:
    """A gateway routing a fresh port to the replica; its port."""
    gateway = GatewayThread()
    service = ServiceRoute("Recorder", free_port(), (replica.url,))
    route = DeploymentRoute("recorder", free_port(), "Recorder", {"Recorder": service})
    gateway.apply(RoutingSnapshot({"recorder": route}))
    yield route.port
    gateway.close()


# --- talking HTTP over raw sockets ----------------------------------------------------------------------


def note(mark: str, fields: bytes = b"", version: bytes = b"HTTP/1.1", last: bool = False) -> bytes:
    """A request the replica answers with its mark: POST /note {"text": mark}; the `last` of a
    connection asks the gateway to close it after answering."""
    body = json.dumps({"text": mark}).encode()
    fields += b"Connection: close\r\n" if last else b""
    head = b"POST /note " + version + b"\r\nHost: h\r\nX-Mark: " + mark.encode() + b"\r\n"
    head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body) + fields
    return head + b"\r\n" + body


SMUGGLED = note("smuggled")  # what every attack tries to get the replica to read as a request of its own


@dataclass
class Answer:
    status: int
    body: bytes
    interim: list[int] = field(default_factory=list)  # 1xx answers before it

    @property
    def mark(self) -> str | None:
        try:
            return str(json.loads(self.body)["text"])
        except (ValueError, KeyError, TypeError):
            return None


def converse(port: int, data: bytes, answers: int, pause_at: int | None = None) -> list[Answer]:
    """Send `data` on a fresh connection (waiting a moment after its first `pause_at` bytes); read
    `answers` responses (fewer if the gateway closes), then make sure nothing else comes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if pause_at is not None:
            sock.sendall(data[:pause_at])
            time.sleep(0.3)
        sock.sendall(data[pause_at:])
        client = h11.Connection(h11.CLIENT)
        got: list[Answer] = []
        while len(got) < answers:
            client.send(h11.Request(method="POST", target="/", headers=[("Host", "h")]))
            client.send(h11.EndOfMessage())
            got.append(_answer(client, sock))
            if h11.MUST_CLOSE in (client.our_state, client.their_state):
                break
            client.start_next_cycle()
        sock.settimeout(0.3)  # a connection kept open: wait a little for anything more
        try:
            extra = client.trailing_data[0] + sock.recv(65536)
        except TimeoutError:
            extra = client.trailing_data[0]
        assert extra == b"", f"bytes beyond the {len(got)} responses: {extra!r}"
        return got


def _answer(client: h11.Connection, sock: socket.socket) -> Answer:
    answer = Answer(0, b"")
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(sock.recv(65536))
        elif isinstance(event, h11.InformationalResponse):
            answer.interim.append(event.status_code)
        elif isinstance(event, h11.Response):
            answer.status = event.status_code
        elif isinstance(event, h11.Data):
            answer.body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return answer
        else:
            raise AssertionError(f"the gateway closed before answering: {event}")


def recorded(replica: Replica) -> list[tuple[str, str, int]]:
    """What the replica received so far: (path, mark, port of the gateway's connection)."""
    entries = httpx.post(f"{replica.url}/seen", json={}, timeout=10).json()
    return [(path, mark, int(port)) for _, path, mark, port in (entry.split(" ") for entry in entries)]


# --- the attacks ----------------------------------------------------------------------------------------


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class Attack:
    name: str
    data: bytes
    statuses: list[int]  # what the client gets, one answer per request the gateway read
    forwarded: list[str]  # the marks the replica must record: the requests the gateway forwarded
    pause_at: int | None = None  # the client waits a moment after sending this many bytes


def _outer(fields: bytes, body: bytes) -> bytes:
    return b"POST /note HTTP/1.1\r\nHost: h\r\nX-Mark: outer\r\n" + fields + b"\r\n" + body


H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"

EXPECTING = note("ten", b"Expect: 100-continue\r\n", version=b"HTTP/1.0")

ATTACKS = [
    Attack(
        "Connection naming Content-Length, the body a second request",
        _outer(b"Connection: content-length\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        [400],
        [],
    ),
    Attack(
        "CL.TE",
        _outer(
            b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % (5 + len(SMUGGLED)),
            b"0\r\n\r\n" + SMUGGLED,
        ),
        [400],
        [],
    ),
    Attack(
        "TE.CL",
        _outer(b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", _chunk(SMUGGLED) + b"0\r\n\r\n"),
        [400],
        [],
    ),
    Attack(
        "two Content-Length fields",
        _outer(b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        [400],
        [],
    ),
    Attack(
        "Content-Length with a sign",
        _outer(b"Content-Length: +%d\r\n" % len(SMUGGLED), SMUGGLED),
        [400],
        [],
    ),
    Attack(
        "Connection naming Transfer-Encoding",
        _outer(
            b"Connection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n",
            _chunk(SMUGGLED) + b"0\r\n\r\n",
        ),
        [400],
        [],
    ),
    Attack(
        "Content-Length in a trailer",
        _outer(
            b"Transfer-Encoding: chunked\r\n", b"0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
        ),
        [400],
        [],
    ),
    Attack(
        "TE.TE: Transfer-Encoding: xchunked",
        _outer(b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n" + SMUGGLED),
        [400],
        [],
    ),
    Attack(
        "Transfer-Encoding folded onto a second line",
        _outer(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n" + SMUGGLED),
        [400],
        [],
    ),
    Attack(
        "a bare LF inside a chunk extension",
        _outer(b"Transfer-Encoding: chunked\r\n", b"2;\nxx\r\n%x\r\n0\r\n\r\n" % len(SMUGGLED) + SMUGGLED),
        [400],
        [],
    ),
    Attack(
        "an h2c upgrade whose Content-Length body is a second request",
        _outer(H2C + b"Content-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        [400],
        [],
    ),
    Attack(
        "a chunked body carrying a second request stays one request",
        _outer(
            b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n", _chunk(SMUGGLED) + b"0\r\n\r\n"
        ),
        [400],  # the replica's answer: the body is no JSON
        ["outer"],
    ),
    Attack(
        "a Content-Length body carrying a second request stays one request",
        _outer(b"Content-Type: text/plain\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
        [400],
        ["outer"],
    ),
    Attack(
        "CL.0: what follows a Content-Length: 0 request is the next request, forwarded as one",
        _outer(b"Content-Length: 0\r\n", b"") + SMUGGLED,
        [400, 200],
        ["outer", "smuggled"],
    ),
    Attack(
        "HTTP/1.0 with Expect: 100-continue gets no interim answer (it would read as the response)",
        EXPECTING,
        [200],
        ["ten"],
        pause_at=EXPECTING.index(b"\r\n\r\n") + 4,  # the head, then the body a moment later
    ),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[attack.name for attack in ATTACKS])
def test_a_smuggling_attempt_never_reaches_the_replica_as_a_request_of_its_own(
    attack: Attack, replica: Replica, deployment_port: int
) -> None:
    before = len(recorded(replica))
    # a request that leaves a pooled connection to the replica behind
    (warm,) = converse(deployment_port, note("warm", last=True), 1)
    assert (warm.status, warm.mark) == (200, "warm")

    answers = converse(deployment_port, attack.data, len(attack.statuses), attack.pause_at)
    after_1 = converse(deployment_port, note("after-1") + note("after-2", last=True), 2)
    after_3 = converse(deployment_port, note("after-3", last=True), 1)

    assert [answer.status for answer in answers] == attack.statuses
    assert all(answer.interim == [] for answer in answers)
    assert [(a.status, a.mark) for a in after_1 + after_3] == [
        (200, "after-1"),
        (200, "after-2"),
        (200, "after-3"),
    ]
    record = recorded(replica)[before:]
    assert [mark for _, mark, _ in record] == ["warm", *attack.forwarded, "after-1", "after-2", "after-3"]
    ports = {port for _, _, port in record}
    assert len(ports) == 1, f"the requests after the attack did not reuse the pooled connection: {record}"
