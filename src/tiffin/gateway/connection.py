"""One client connection, request after request: read, decide, answer locally or forward, repeat.

llhttp turns whatever arrives into events (a head, body pieces, the end); the connection takes them in
order, one request at a time, and keeps those it cannot take yet (the body of a request still waiting
for a replica, a pipelined next request) while reading nothing more. Each head is decided in the
callback that delivered it: a local answer (`gate`), or admission by the activator, which forwards it
now, lets it wait, or refuses it; only a token the cache does not know makes the decision wait for a
coroutine. The route is looked up per request in the table current at that moment (by the port the
connection came to, or on the shared port by the request's `Host`), so `apply()` takes effect on
kept-alive connections too, and one connection to the shared port may ask for several deployments.
Malformed requests get a 4xx with a sentence and the connection is closed; a bug closes the connection
after being logged, never a traceback page.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from tiffin.gateway.activator import Slot
from tiffin.gateway.auth import CHECK_FAILED, Lookup, Scopes, TokenToCheck, Unknown
from tiffin.gateway.context import GatewayContext
from tiffin.gateway.exchange import Forwarded, Limits
from tiffin.gateway.framing import CONTINUE
from tiffin.gateway.gate import local_reply, unrouted
from tiffin.gateway.parsing import (
    Body,
    End,
    Framing,
    HttpError,
    RequestEvent,
    RequestHead,
    RequestReader,
    Upgraded,
)
from tiffin.gateway.peer import Peer
from tiffin.gateway.replies import Reply, message, render
from tiffin.gateway.states import CLIENT_MOVES, Client, ClientEvent, Machine
from tiffin.gateway.table import Route

log = logging.getLogger("tiffin.gateway")
access = logging.getLogger("tiffin.access")

PIPELINE = "pipeline"  # reading pauses while events wait to be taken


class Listening(Protocol):
    """What a connection needs from the listener that accepted it."""

    @property
    def port(self) -> int: ...

    @property
    def closing(self) -> bool: ...

    def forget(self, connection: "ClientConnection") -> None: ...


class ClientConnection(Peer):
    def __init__(self, context: GatewayContext, listener: Listening) -> None:
        super().__init__()
        self.context = context
        self.listener = listener
        self.machine = Machine(CLIENT_MOVES, Client.IDLE)
        self.peer_host = ""
        self.last_read = context.clock.time()  # when a byte last arrived (idle and slow-body deadlines)
        self.head_since: float | None = None  # when the first byte of a head still incomplete arrived
        settings = context.settings
        self._reader = RequestReader(settings.max_head_bytes)
        self._limits = Limits(settings.connect_timeout_s, settings.replay_bytes)
        self._pending: deque[RequestEvent] = deque()
        self._request: RequestHead | None = None
        self._route: Route | None = None
        self._exchange: Forwarded | None = None
        self._deciding: asyncio.Task[None] | None = None
        self._body_done = False
        self._answered = False
        self._keep = False
        self._status = 0
        self._started = 0.0
        self._tunnel_early: list[bytes] | None = None  # bytes after an upgrade request, before the 101
        self._taking = False
        self._eof = False  # the client sends nothing more; the connection ends after the last answer

    @property
    def busy(self) -> bool:
        """A request is being handled."""
        return self.machine.state is not Client.IDLE

    # connection events

    def on_made(self) -> None:
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername")
        self.peer_host = str(peer[0]) if peer else ""

    def on_data(self, data: bytes) -> None:
        self.last_read = self.context.clock.time()
        state = self.machine.state
        if state is Client.TUNNELING:
            assert self._exchange is not None
            self._exchange.tunnel(data)
            return
        if self._tunnel_early is not None:
            self._tunnel_early.append(data)  # the client did not wait for the 101: keep it for the tunnel
            return
        try:
            events = self._reader.feed(data)
        except HttpError as error:
            self._refuse(error)
            return
        if events:
            self._pending.extend(events)
        elif state is Client.IDLE and self.head_since is None:
            self.head_since = self.last_read
        self._take_events()

    def on_eof(self) -> None:
        self._eof = True
        state = self.machine.state
        if state is Client.TUNNELING and self._exchange is not None:
            self._exchange.end_tunnel()
        elif state is Client.IDLE and not self._pending:
            self._end_connection()
        elif state is not Client.IDLE and not self._body_done:
            self._stop()  # gone in the middle of its request

    def on_lost(self) -> None:
        self._stop()
        self.listener.forget(self)

    def on_drained(self) -> None:
        if self._exchange is not None:
            self._exchange.client_drained()

    def on_failure(self) -> None:
        self._stop()

    # taking events in order

    def _take_events(self) -> None:
        """Take the pending events the current state allows, in order (reentrant calls return at once:
        the outer loop goes on)."""
        if self._taking:
            return
        self._taking = True
        pending = self._pending
        try:
            while pending and self._takes(pending[0]):
                self._take(pending.popleft())
        finally:
            self._taking = False
        if self._exchange is not None:
            self._exchange.flush()
        if self._backlog_full():
            self.pause_reading(PIPELINE)
        else:
            self.resume_reading(PIPELINE)
            if self._eof and not pending and self.machine.state is Client.IDLE:
                self._end_connection()

    def _backlog_full(self) -> bool:
        """Whether to stop reading: a next request is already waiting its turn, or enough body waits.
        Below that, reading goes on, so a client that leaves while its request waits is noticed."""
        size = 0
        for event in self._pending:
            if isinstance(event, RequestHead):
                return True
            if isinstance(event, Body):
                size += len(event.data)
        return size > self.context.settings.discard_bytes

    def _takes(self, event: RequestEvent) -> bool:
        state = self.machine.state
        if isinstance(event, RequestHead):
            return state is Client.IDLE
        return state in (Client.FORWARDING, Client.ANSWERING)

    def _take(self, event: RequestEvent) -> None:
        if isinstance(event, RequestHead):
            self._begin(event)
        elif isinstance(event, Body):
            if self._exchange is not None and self.machine.state is Client.FORWARDING:
                self._exchange.send(event.data)
        elif isinstance(event, End):
            self._body_done = True
            if self._exchange is not None and self.machine.state is Client.FORWARDING:
                self._exchange.finish_request()
            self._maybe_done()
        elif isinstance(event, Upgraded):
            self._tunnel_early = [event.rest] if event.rest else []

    # deciding

    def _begin(self, request: RequestHead) -> None:
        clock = self.context.clock
        self.head_since = None
        self._request, self._started = request, clock.time()
        self._body_done = self._answered = False
        table = self.context.table
        route = self._route = table.route(self.listener.port, request.fields.get(b"host"))
        if route is None:
            self._answer(unrouted(request, self.listener.port, table))
        else:
            self._decide(self.context.tokens.lookup)

    def _decide(self, lookup: Lookup) -> None:
        request, route, context = self._request, self._route, self.context
        assert request is not None and route is not None
        reply = local_reply(request, route, lookup, context.advertised_host)
        if isinstance(reply, TokenToCheck):
            self.machine.fire(ClientEvent.CHECK)
            self._deciding = asyncio.get_running_loop().create_task(self._check(reply.token))
        elif reply is not None:
            self._answer(reply)
        else:
            self._admit(route)

    async def _check(self, token: str) -> None:
        """Ask the store about a token the cache does not know, then decide as usual."""
        tokens = self.context.tokens
        try:
            scopes = await tokens.fetch(token)
        except Exception:
            log.warning("gateway: the token check failed", exc_info=True)
            scopes = None
            failed = True
        else:
            failed = False
        self._deciding = None
        if self.lost:
            return

        def lookup(other: str) -> Scopes | Unknown:
            return scopes if other == token else tokens.lookup(other)

        if failed:
            self._guarded(lambda: self._answer(CHECK_FAILED))
        else:
            self._guarded(lambda: self._decide(lookup))

    def _admit(self, route: Route) -> None:
        outcome = self.context.activator.acquire(route, self)
        if isinstance(outcome, Slot):
            self._forward(outcome)
        elif outcome is None:
            self.machine.fire(ClientEvent.HOLD)
        else:
            self._answer(outcome)

    # the activator's answers to a waiting request

    def on_slot(self, slot: Slot) -> None:
        self._guarded(lambda: self._forward(slot))

    def on_refused(self, reply: Reply) -> None:
        self._guarded(lambda: self._answer(reply))

    # forwarding

    def _forward(self, slot: Slot) -> None:
        request = self._request
        assert request is not None
        self.machine.fire(ClientEvent.FORWARD)
        limits = self._limits
        exchange = self._exchange = Forwarded(self, request, slot, limits, self.context.clock)
        whole = self._whole_request_size()
        if request.expects_continue and whole is None:
            self.write(CONTINUE)
        reuse = request.upgrade != b"websocket" and whole is not None and whole <= limits.replay_bytes
        exchange.start(slot.target.admission.timeout_s, reuse)

    def _whole_request_size(self) -> int | None:
        """The body's size when all of it has arrived already (it is among the pending events)."""
        size = 0
        for event in self._pending:
            if isinstance(event, End):
                return size
            if isinstance(event, Body):
                size += len(event.data)
            else:
                break
        return 0 if self._body_done else None

    # the exchange's answers

    def answered(self, status: int, keep: bool) -> None:
        self._status, self._keep, self._answered = status, keep, True
        self._maybe_done()

    def failed(self, reply: Reply) -> None:
        self._exchange = None
        self._reply(reply)

    def switched(self, exchange: Forwarded) -> None:
        self.machine.fire(ClientEvent.SWITCH)
        early, self._tunnel_early = self._tunnel_early or [], None
        for data in early:
            exchange.tunnel(data)

    def keeps_alive(self) -> bool:
        """Whether the connection may carry another request after this one (a WebSocket handshake that
        is not switched ends it: the stream after it is not HTTP)."""
        request = self._request
        return (
            request is not None
            and request.keep_alive
            and request.upgrade != b"websocket"
            and not self.listener.closing
            and not self._eof
        )

    # answering

    def _answer(self, reply: Reply) -> None:
        """The gateway's own answer instead of a replica's."""
        self.machine.fire(ClientEvent.ANSWER)
        self._reply(reply)

    def _reply(self, reply: Reply) -> None:
        request = self._request
        assert request is not None
        keep = self.keeps_alive() and self._can_read_past_body(request)
        self.write(render(reply, close=not keep, head_only=request.method == b"HEAD"))
        self._status, self._keep, self._answered = reply.status, keep, True
        if keep:
            self._maybe_done()
        else:
            self._finish_request()
            self._end_connection()

    def _can_read_past_body(self, request: RequestHead) -> bool:
        """Whether the rest of the request body can be read and dropped, so the connection is kept."""
        if self._body_done or request.framing is Framing.NONE:
            return True
        if request.expects_continue:
            return False  # the client may never send it
        return request.framing is Framing.LENGTH and request.length <= self.context.settings.discard_bytes

    def _refuse(self, error: HttpError) -> None:
        """A malformed request: say what is wrong and close (the stream cannot be trusted further)."""
        self.write(render(message(error.status, error.message), close=True))
        self._cancel_work()
        self.close()

    # the end of a request

    def _maybe_done(self) -> None:
        if not (self._answered and self._body_done):
            return
        keep = self._keep
        self._finish_request()
        if self.machine.state is Client.CLOSED:
            return
        if not keep or self.listener.closing:
            self._end_connection()
            return
        self.machine.fire(ClientEvent.DONE)
        self._take_events()

    def _finish_request(self) -> None:
        if access.isEnabledFor(logging.INFO) and not access.disabled and self._request is not None:
            self._log_access(self._request)
        self._exchange = None
        self._request = None

    def _log_access(self, request: RequestHead) -> None:
        route = self._route
        took_ms = (self.context.clock.time() - self._started) * 1000
        extra = {"deployment": route.deployment.name, "service": route.target.service} if route else {}
        access.info(
            '%s "%s %s HTTP/1.%d" %d %.1fms',
            self.peer_host,
            request.method.decode("latin-1"),
            request.target.decode("latin-1"),
            request.minor,
            self._status,
            took_ms,
            extra=extra,
        )

    def _stop(self) -> None:
        """The client is gone (or must be cut off): stop what its request started, reset the connection."""
        self._cancel_work()
        self.abort()

    def _end_connection(self) -> None:
        """Close after what was written has gone out."""
        self._cancel_work()
        self.close()

    def _cancel_work(self) -> None:
        self._pending.clear()
        if self._exchange is not None:
            self._exchange.cancel()
            self._exchange = None
        if self._deciding is not None:
            self._deciding.cancel()
            self._deciding = None
        if self.machine.state is Client.WAITING and self._route is not None:
            self.context.activator.cancel(self._route.target.key, self)
        if self.machine.state is not Client.CLOSED:
            self.machine.fire(ClientEvent.CLOSE)

    # the gateway's sweep

    def sweep(self, now: float) -> None:
        """Close a connection idle too long, and answer 408 to a head (or body) that trickles in."""
        settings = self.context.settings
        if self.head_since is not None and now - self.head_since > settings.head_timeout_s:
            self.write(render(message(408, "The request head took too long to arrive."), close=True))
            self._end_connection()
        elif now - self.last_read > settings.client_idle_timeout_s and self._idle_or_uploading():
            if self.busy:
                self._stop()
            else:
                self._end_connection()

    def _idle_or_uploading(self) -> bool:
        state = self.machine.state
        return state is Client.IDLE or (
            state in (Client.FORWARDING, Client.ANSWERING) and not self._body_done
        )

    def close_when_idle(self) -> None:
        """The listener is closing: close now if idle, else after the request in progress."""
        if self.machine.state is Client.IDLE and not self._pending:
            self._end_connection()

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run a step that a callback from outside this connection's reads started (the activator, a
        token check), then take the events it unblocked."""
        try:
            step()
        except Exception:
            log.exception("gateway: unexpected error; closing the connection")
            self._stop()
        self._take_events()
