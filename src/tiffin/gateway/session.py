"""One client connection, request after request: parse, answer locally or forward, repeat.

The route is looked up per request in the table current at that moment, so `apply()` takes effect on
kept-alive connections too. Only a token the cache has no answer for makes a request wait for a
coroutine; everything else is decided in the callback that delivered the head. A request for a Service
with no ready replica may be held (see `holds`) and decided again at each `apply()`; meanwhile the
connection is read no further than for any request in flight. Protocol errors get a JSON 4xx; a bug
closes the connection after being logged, never a traceback page.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from tiffin.gateway.auth import CHECK_FAILED, Lookup, Scopes, TokenToCheck, Unknown
from tiffin.gateway.conn import Side
from tiffin.gateway.context import GatewayContext
from tiffin.gateway.exchange import Exchange
from tiffin.gateway.framing import Framer, Length, request_framer
from tiffin.gateway.gate import Admit, admit, has_room, local_reply, no_longer_served, waited_too_long
from tiffin.gateway.headers import wants_close
from tiffin.gateway.http1 import HttpError, RequestHead, parse_request
from tiffin.gateway.replies import CONTINUE, Reply, message, render
from tiffin.gateway.table import Route, ServiceTarget

log = logging.getLogger(__name__)


class Listening(Protocol):
    """What a session needs from the listener that accepted it."""

    @property
    def port(self) -> int: ...

    @property
    def closing(self) -> bool: ...

    def forget(self, session: "ClientSession") -> None: ...


@dataclass(slots=True)
class Held:
    """A request waiting for a ready replica of its route's Service, until `deadline` (loop clock)."""

    request: RequestHead
    framer: Framer
    route: Route
    deadline: float


class ClientSession(Side):
    def __init__(self, context: GatewayContext, listener: Listening) -> None:
        super().__init__()
        self.busy = False  # a request is being handled (its head has arrived)
        self.idle_since: float | None = None  # since when it waits on the client (next head, or a body)
        self.peer_host = ""
        self._context = context
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        self._exchange: Exchange | None = None
        self._deciding: asyncio.Task[None] | None = None
        self._collecting: tuple[RequestHead, Framer, ServiceTarget] | None = None
        self._discarding: Framer | None = None
        self._held: Held | None = None  # set while the request is in the gateway's holds
        self._serving = False

    # connection events

    def on_made(self) -> None:
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername")
        self.peer_host = str(peer[0]) if peer else ""
        self.idle_since = self._loop.time()

    def on_data(self) -> None:
        if self._exchange is not None:
            self._exchange.on_client_data()
        elif self._collecting is not None:
            self._forward(*self._collecting)
        elif self._discarding is not None:
            self._discard(self._discarding)
        elif not self.busy:
            self._serve()

    def on_eof(self) -> None:
        if self.busy or self.buffer or self.lost:
            self._stop()  # a client that stops sending mid-request has gone away
        else:
            self.close()

    def on_lost(self) -> None:
        self._stop()
        self._listener.forget(self)

    def on_drained(self) -> None:
        if self._exchange is not None:
            self._exchange.on_client_drained()

    def on_error(self) -> None:
        self._stop()

    def _stop(self) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.cancel()
        if self._deciding is not None:
            self._deciding.cancel()
        if self._held is not None:
            self._context.holds.drop(self._held.route.target.key, self)
            self._held = None
        self.abort()

    # requests

    def _serve(self) -> None:
        """Handle every complete request head buffered, until one has to wait."""
        if self._serving:
            return  # an outer call is looping already
        self._serving = True
        try:
            while not self.busy and not self.lost:
                if self._listener.closing:
                    self.close()
                    return
                raw = self.take_head(self._context.settings.max_head_bytes)
                if raw is None:
                    return
                self.busy, self.idle_since = True, None
                self._start(raw)
        except HttpError as error:
            self._refuse(error)
        finally:
            self._serving = False

    def _start(self, raw: bytes | bytearray) -> None:
        try:
            request = parse_request(raw)
            framer = request_framer(request)
        except HttpError as error:
            self._refuse(error)
            return
        route = self._context.table.routes.get(self._listener.port)
        self._decide(request, framer, route, self._context.tokens.lookup)

    def _decide(
        self,
        request: RequestHead,
        framer: Framer,
        route: Route | None,
        lookup: Lookup,
        deadline: float | None = None,
    ) -> None:
        """`deadline`: until when a request held before may still wait for a replica."""
        context = self._context
        reply = local_reply(request, route, self._listener.port, lookup, context.advertised_host)
        if isinstance(reply, TokenToCheck):
            check = self._check(request, framer, route, reply.token, deadline)
            self._deciding = self._loop.create_task(check)
            return
        outcome: Reply | Admit | None = reply
        if outcome is None:
            assert route is not None
            key = route.target.key
            if deadline is None:
                context.arrivals[key] = context.arrivals.get(key, 0) + 1
            outcome = admit(route, context.holds.count(key), resumed=deadline is not None)
        if outcome is Admit.FORWARD:
            assert route is not None
            self._forward(request, framer, route.target)
        elif outcome is Admit.HOLD:
            assert route is not None
            arriving = deadline is None
            if deadline is None:
                deadline = self._loop.time() + route.target.admission.hold_s
            self._hold(Held(request, framer, route, deadline), arriving)
        else:
            self._answer(request, framer, outcome)

    async def _check(
        self, request: RequestHead, framer: Framer, route: Route | None, token: str, deadline: float | None
    ) -> None:
        """Ask the store about a token the cache does not know, then decide as usual."""
        tokens = self._context.tokens
        try:
            scopes = await tokens.fetch(token)
        except Exception:
            log.warning("gateway: the token check failed", exc_info=True)
            self._deciding = None
            self.guard(lambda: self._answer(request, framer, CHECK_FAILED))
            return
        self._deciding = None

        def lookup(other: str) -> Scopes | Unknown:
            return scopes if other == token else tokens.lookup(other)

        if not self.lost:
            self.guard(lambda: self._decide(request, framer, route, lookup, deadline))

    # waiting for a ready replica

    def _hold(self, held: Held, arriving: bool) -> None:
        """Wait for a replica with room; read nothing more from the client meanwhile. A request that
        starts waiting for a Service with no ready replica is announced as demand (once, not again
        each time an `apply()` without a replica makes it wait on)."""
        if self._listener.closing:
            self._answer(held.request, held.framer, no_longer_served(held.route))
            return
        self._held = held
        target = held.route.target
        self._context.holds.add(target.key, self._listener.port, self, held.deadline)
        if arriving and not target.endpoints:
            self._context.on_demand(target.key)

    def on_route(self, route: Route | None) -> None:
        """A new table: decide again with the route the port serves now (see `holds.Waiter`)."""
        held, self._held = self._held, None
        if held is not None:
            self.guard(lambda: self._resume(held, route))

    def _resume(self, held: Held, route: Route | None) -> None:
        if route is None or not _same_service(route, held.route):
            self._answer(held.request, held.framer, no_longer_served(held.route))
        else:
            self._decide(held.request, held.framer, route, self._context.tokens.lookup, held.deadline)

    def on_expired(self) -> None:
        """No replica could take it within the route's bound: 503 with Retry-After."""
        held, self._held = self._held, None
        if held is not None:
            route = self._context.table.routes.get(self._listener.port, held.route)
            self.guard(lambda: self._answer(held.request, held.framer, waited_too_long(route)))

    # forwarding

    def _forward(self, request: RequestHead, framer: Framer, target: ServiceTarget) -> None:
        limit = self._context.settings.buffered_body_bytes
        if isinstance(framer, Length) and not framer.done and framer.remaining <= limit:
            if len(self.buffer) < framer.remaining:
                if self._collecting is None:
                    self._wait_for_body(request)
                self._collecting = (request, framer, target)  # wait for the rest of a small body
                return
            self._collecting, self.idle_since = None, None
            payload: bytes | bytearray | None = self.take(framer.scan(self.buffer))
        elif framer.done:
            payload = b""
        else:
            payload = None  # streamed
            if b"100-continue" in request.fields.tokens(b"expect"):
                self.write(CONTINUE)
        body = (framer, payload)
        settings = self._context.settings

        def done(keep: bool) -> None:
            if target.admission.queue:
                self._context.holds.free(target.key, self._context.table.routes, has_room)
            self._request_done(keep)

        self._exchange = Exchange(self, self.peer_host, request, body, target, settings, done)
        self._exchange.start()

    def _wait_for_body(self, request: RequestHead) -> None:
        self.idle_since = self._loop.time()  # a client that never sends its body is swept as idle
        if b"100-continue" in request.fields.tokens(b"expect"):
            self.write(CONTINUE)

    def _answer(self, request: RequestHead, framer: Framer, reply: Reply) -> None:
        """Send a local reply; keep the connection only when the request body can be read past (and the
        port is not closing)."""
        keep = (
            request.minor == 1
            and not wants_close(request.fields, request.minor)
            and not self._listener.closing
        )
        waits_for_continue = b"100-continue" in request.fields.tokens(b"expect") and not self.buffer
        if not framer.done and waits_for_continue:
            keep = False
        self.write(render(reply, close=not keep, head_only=request.method == b"HEAD"))
        if keep and not framer.done:
            self.idle_since = self._loop.time()
            self._discard(framer)
        else:
            self._request_done(keep)

    def _discard(self, framer: Framer) -> None:
        """Read past the body of a request answered locally (the client sends it anyway)."""
        try:
            self.take(framer.scan(self.buffer))
        except HttpError:
            self.close()
            return
        self._discarding = None if framer.done else framer
        if framer.done:
            self._request_done(True)
        elif self.eof:
            self.close()

    def _refuse(self, error: HttpError) -> None:
        self.write(render(message(error.status, error.message), close=True))
        self.close()
        self.busy = True  # nothing more is read from this connection

    def _request_done(self, keep: bool) -> None:
        self._exchange = None
        if not keep or self.eof or self._listener.closing:
            self.close()
            return
        self.busy, self.idle_since = False, self._loop.time()
        if self.buffer:
            self._serve()


def _same_service(route: Route, old: Route) -> bool:
    """Whether the port still serves the deployment and Service a held request was sent to."""
    return route.deployment.name == old.deployment.name and route.target.service == old.target.service
