"""One request forwarded to a replica: connecting, the request out, the response back, or a tunnel.

The request head and body are re-framed on the way out (`framing`), and the response is read by a fresh
llhttp reader and re-framed on the way back, so neither side's framing bytes ever reach the other. Bytes
move in the callbacks that deliver them, and whatever one read produced goes out in one write: a
streamed response (SSE, chunked tokens) reaches the client piece by piece as the replica produces it,
and a full receiver pauses reading on the other side (`pause_reading`) instead of letting a body pile
up in memory.

Failures: a replica that refuses the connection costs one retry on another replica; a pooled connection
the replica closed just as it was reused gets the request replayed on a fresh one (small requests only,
which are kept whole); any other failure before the response head is a 502 with a sentence, a missing
head after `traffic.timeout` a 504; a failure after the head cuts the client off, so it sees a truncated
response, never a silently short one. A `101 Switching Protocols` answer turns both connections into a
tunnel (WebSocket) that copies bytes both ways until either side closes.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from tiffin.gateway.activator import LoopClock, Slot, Timer
from tiffin.gateway.framing import (
    LAST_CHUNK,
    chunk,
    chunked_to_client,
    closes_client,
    request_head,
    response_head,
)
from tiffin.gateway.parsing import (
    Body,
    End,
    Framing,
    HttpError,
    RequestHead,
    ResponseEvent,
    ResponseHead,
    ResponseReader,
    Upgraded,
)
from tiffin.gateway.replies import Reply, message
from tiffin.gateway.states import EXCHANGE_MOVES, Exchange, ExchangeEvent, Machine
from tiffin.gateway.upstream import ConnectFailed, Endpoint, Upstream

log = logging.getLogger("tiffin.gateway")

ATTEMPTS = 2  # the first replica, and one other if the first refuses the connection
UPLOAD = "upload"  # the client's reading pauses while the replica's connection is full
DOWNLOAD = "download"  # the replica's reading pauses while the client's connection is full
CONNECTING = "connecting"  # the client's reading pauses until the replica's connection is open


class Client(Protocol):
    """What an exchange needs of the client connection it serves."""

    peer_host: str
    write_paused: bool

    def write(self, data: bytes) -> None: ...

    def pause_reading(self, reason: str) -> None: ...

    def resume_reading(self, reason: str) -> None: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...

    def answered(self, status: int, keep: bool) -> None:
        """The response is complete (`keep`: the connection may carry another request)."""

    def failed(self, reply: Reply) -> None:
        """The exchange failed before any of its response reached the client: answer `reply`."""

    def switched(self, exchange: "Forwarded") -> None:
        """The replica agreed to switch protocols: the connection is now a tunnel through `exchange`."""

    def keeps_alive(self) -> bool:
        """Whether the connection may carry another request after this one (as far as the client goes)."""


@dataclass(frozen=True)
class Limits:
    connect_timeout_s: float
    replay_bytes: int  # requests up to this size are kept whole, so they can be sent again


class Forwarded:
    """One exchange; the client connection feeds it the request body (`send`, `finish_request`)."""

    def __init__(
        self, client: Client, request: RequestHead, slot: Slot, limits: Limits, clock: LoopClock
    ) -> None:
        self.client = client
        self.request = request
        self.slot = slot
        self.limits = limits
        self.machine = Machine(EXCHANGE_MOVES, Exchange.CONNECTING)
        self.reader = ResponseReader(request.method)
        self.status = 0
        self._clock = clock
        self._upstream: Upstream | None = None
        self._reused = False
        self._received = False  # any byte of a response arrived on the current connection
        self._tried: list[Endpoint] = [slot.endpoint]
        self._errors: list[str] = []
        self._out: list[bytes] = [request_head(request, client.peer_host)]  # not yet written upstream
        self._kept: list[bytes] | None = list(self._out)  # the whole request so far, for a replay
        self._kept_size = len(self._out[0])
        self._request_sent = False
        self._chunked_out = False
        self._keep_client = False
        self._timer: Timer | None = None
        self._connecting: asyncio.Task[None] | None = None

    # starting

    def start(self, timeout_s: float, reuse: bool) -> None:
        """Connect (a kept connection when `reuse`); a response head must come within `timeout_s`."""
        if timeout_s > 0:
            self._timer = self._clock.call_at(self._clock.time() + timeout_s, self._timed_out)
        pooled = self.slot.endpoint.take_idle() if reuse else None
        if pooled is not None:
            self._attach(pooled, reused=True)  # the client connection flushes once it handed the body over
        else:
            self._connect()

    def _connect(self) -> None:
        self.client.pause_reading(CONNECTING)
        self._connecting = asyncio.get_running_loop().create_task(self._open(self.slot.endpoint))

    async def _open(self, endpoint: Endpoint) -> None:
        try:
            upstream = await endpoint.connect(self.limits.connect_timeout_s)
        except ConnectFailed as failure:
            self._connecting = None
            self._refused(endpoint, str(failure))
            return
        self._connecting = None
        if self.machine.state is not Exchange.CONNECTING:
            upstream.close()  # ended meanwhile (timeout, client gone)
            return
        try:
            self._attach(upstream, reused=False)
            self.flush()
        except Exception:
            log.exception("gateway: unexpected error while forwarding; closing the connections")
            self._abort()

    def _refused(self, endpoint: Endpoint, why: str) -> None:
        """A replica refused the connection: try another one, once, before answering 502."""
        self._errors.append(why)
        endpoint.count(502)
        if self.machine.state is not Exchange.CONNECTING:
            return
        other = self.slot.elsewhere(self._tried) if len(self._tried) < ATTEMPTS else None
        if other is None:
            detail = "; ".join(self._errors)
            self._bad_gateway(
                f"no replica of Service {self.slot.target.service} accepted a connection ({detail})"
            )
            return
        self.slot = other
        self._tried.append(other.endpoint)
        self.machine.fire(ExchangeEvent.RECONNECT)
        self._connecting = asyncio.get_running_loop().create_task(self._open(other.endpoint))

    def _attach(self, upstream: Upstream, reused: bool) -> None:
        self.machine.fire(ExchangeEvent.CONNECTED)
        self._upstream, self._reused, self._received = upstream, reused, False
        upstream.handler = self
        self.client.resume_reading(CONNECTING)

    # the request, as the client connection hands it over

    def send(self, data: bytes) -> None:
        """A piece of the request body."""
        pieces = chunk(data) if self.request.framing is Framing.CHUNKED else (data,)
        self._out += pieces
        self._keep(pieces)

    def finish_request(self) -> None:
        """The request body is complete."""
        if self.request.framing is Framing.CHUNKED:
            self._out.append(LAST_CHUNK)
            self._keep((LAST_CHUNK,))
        self._request_sent = True

    def flush(self) -> None:
        """Write what the client's last read produced, in one write; pause the client if the replica's
        connection is full."""
        upstream = self._upstream
        if upstream is None or not self._out or self.machine.state is not Exchange.SENDING:
            return
        upstream.write(self._out[0] if len(self._out) == 1 else b"".join(self._out))
        self._out.clear()
        if upstream.write_paused:
            self.client.pause_reading(UPLOAD)

    def _keep(self, pieces: tuple[bytes, ...]) -> None:
        if self._kept is None:
            return
        self._kept_size += sum(len(piece) for piece in pieces)
        if self._kept_size <= self.limits.replay_bytes:
            self._kept += pieces
        else:
            self._kept = None  # too big to keep: this request cannot be replayed

    # the replica's side

    def upstream_data(self, data: bytes) -> None:
        self._received = True
        if self.machine.state is Exchange.TUNNELING:
            self.client.write(data)
            self._throttle_upstream()
            return
        try:
            events = self.reader.feed(data)
        except HttpError as error:
            self._fail(f"sent an invalid response ({error.message.rstrip('.')})")
            return
        self._deliver(events)

    def upstream_eof(self) -> None:
        if self.machine.state in (Exchange.DONE, Exchange.FAILED):
            return
        if self.machine.state is Exchange.TUNNELING:
            self._end_tunnel()
            return
        if self._may_replay():
            self._replay()
            return
        try:
            events = self.reader.eof()
        except HttpError as error:
            self._fail(error.message.removeprefix("The replica ").rstrip("."))
            return
        self._deliver(events)

    def upstream_drained(self) -> None:
        self.client.resume_reading(UPLOAD)

    def upstream_failed(self) -> None:
        self._abort()

    def client_drained(self) -> None:
        if self._upstream is not None:
            self._upstream.resume_reading(DOWNLOAD)

    def _deliver(self, events: list[ResponseEvent]) -> None:
        """Re-frame what the replica sent for the client, and send it in one write."""
        out: list[bytes] = []
        for event in events:
            if isinstance(event, ResponseHead):
                out.append(self._head(event))
            elif isinstance(event, Body):
                if self._chunked_out:
                    out += chunk(event.data)
                else:
                    out.append(event.data)
            elif isinstance(event, Upgraded):
                out.append(event.rest)
            elif isinstance(event, End) and self.machine.state is Exchange.RECEIVING:
                if self._chunked_out:
                    out.append(LAST_CHUNK)
                self._write_client(out)
                out = []
                self._complete()
        self._write_client(out)

    def _write_client(self, out: list[bytes]) -> None:
        if out:
            self.client.write(out[0] if len(out) == 1 else b"".join(out))
            self._throttle_upstream()

    def _throttle_upstream(self) -> None:
        if self.client.write_paused and self._upstream is not None:
            self._upstream.pause_reading(DOWNLOAD)

    def _head(self, response: ResponseHead) -> bytes:
        self._stop_timer()
        self.status = response.status
        self.slot.endpoint.count(response.status)
        if response.status == 101:
            return self._switch(response)
        self.machine.fire(ExchangeEvent.RESPONSE)
        request = self.request
        self._chunked_out = chunked_to_client(response, request)
        self._keep_client = (
            self.client.keeps_alive() and self._request_sent and not closes_client(response, request)
        )
        return response_head(response, request, self._keep_client)

    def _switch(self, response: ResponseHead) -> bytes:
        if self.request.upgrade != b"websocket":
            self._fail("switched protocols without being asked to")
            return b""
        self.machine.fire(ExchangeEvent.SWITCHED)
        self.client.switched(self)
        return response_head(response, self.request, keep_alive=True)

    # a tunnel (after 101)

    def tunnel(self, data: bytes) -> None:
        """Bytes from the client, for the replica."""
        upstream = self._upstream
        if upstream is not None:
            upstream.write(data)
            if upstream.write_paused:
                self.client.pause_reading(UPLOAD)

    def end_tunnel(self) -> None:
        """The client closed its side of the tunnel."""
        self._end_tunnel()

    def _end_tunnel(self) -> None:
        if self.machine.state is Exchange.TUNNELING:
            self.machine.fire(ExchangeEvent.COMPLETE)
            self._detach(pool=False)
            self._finish()
            self.client.close()

    # the end

    def _complete(self) -> None:
        self.machine.fire(ExchangeEvent.COMPLETE)
        response = self.reader.head
        assert response is not None
        reusable = response.keep_alive and response.framing is not Framing.UNTIL_CLOSE and self._request_sent
        self._detach(pool=reusable)
        self._finish()
        self.client.answered(self.status, self._keep_client)

    def _may_replay(self) -> bool:
        return (
            self._reused
            and not self._received
            and self._kept is not None
            and self._request_sent
            and self.machine.state is Exchange.SENDING
        )

    def _replay(self) -> None:
        """The replica closed a kept connection just as it was reused: send the request again on a
        fresh connection to the same replica."""
        assert self._kept is not None
        self._detach(pool=False)
        self._out = list(self._kept)
        self.machine.fire(ExchangeEvent.RECONNECT)
        self._connect()

    def _fail(self, what: str) -> None:
        """The replica failed: 502 if the client has not seen the response head, else cut it off."""
        if self.machine.state in (Exchange.DONE, Exchange.FAILED):
            return
        if self.reader.head is None:
            self.slot.endpoint.count(502)
            self._bad_gateway(f"the replica of Service {self.slot.target.service} {what}")
        else:
            self._abort()

    def _bad_gateway(self, what: str, status: int = 502) -> None:
        self.machine.fire(ExchangeEvent.FAIL)
        self._detach(pool=False)
        self._finish()
        self.status = status
        self.client.failed(message(status, f"Deployment {self.slot.target.deployment}: {what}."))

    def _timed_out(self) -> None:
        """`traffic.timeout` passed without a response head: 504, and the replica connection is reset."""
        self._timer = None
        if self.machine.state not in (Exchange.CONNECTING, Exchange.SENDING):
            return
        self.slot.endpoint.count(504)
        timeout = self.slot.target.admission.timeout_s
        service = self.slot.target.service
        self._bad_gateway(
            f"Service {service} did not answer within its traffic.timeout of {timeout:g} s", status=504
        )

    def cancel(self) -> None:
        """The client is gone: stop everything this exchange started."""
        if self.machine.state not in (Exchange.DONE, Exchange.FAILED):
            self.machine.fire(ExchangeEvent.FAIL)
        self._detach(pool=False)
        self._finish()

    def _abort(self) -> None:
        if self.machine.state not in (Exchange.DONE, Exchange.FAILED):
            self.machine.fire(ExchangeEvent.FAIL)
        self._detach(pool=False)
        self._finish()
        self.client.abort()

    def _detach(self, pool: bool) -> None:
        """Let go of the replica connection: back to the pool, or reset."""
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        upstream, self._upstream = self._upstream, None
        if upstream is None:
            return
        upstream.handler = None
        upstream.resume_reading(DOWNLOAD)
        if pool:
            self.slot.endpoint.release(upstream, self._clock.time())
        else:
            upstream.abort()

    def _finish(self) -> None:
        self._stop_timer()
        self.slot.release()
        self.client.resume_reading(UPLOAD)
        self.client.resume_reading(CONNECTING)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
