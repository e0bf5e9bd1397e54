"""One request forwarded to a replica of a Service, from choosing the replica to the response's last byte.

Small request bodies arrive whole before the exchange starts: head and body then go out in one write,
and the request can be replayed on a fresh connection when a pooled one turns out to have been closed
by the replica. Larger bodies stream on a fresh connection while the response is awaited, so a replica
that answers early (413) is heard. A replica that refuses the connection costs one retry on another
replica; any other failure before the response head is a 502 with a sentence; a failure after it
aborts the client connection, so the client sees a truncated response, never a silently short one.

Bytes move in the callbacks that deliver them: whatever has arrived is forwarded in one write, so a
streamed response (SSE, chunked) reaches the client chunk by chunk as the replica produces it, and a
full receiver pauses reading on the other side instead of letting a body pile up in memory.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Literal

from tiffin.gateway.conn import Side
from tiffin.gateway.framing import Framer, Length, response_framer
from tiffin.gateway.headers import request_head, response_head, wants_close
from tiffin.gateway.http1 import HttpError, RequestHead, ResponseHead, parse_response
from tiffin.gateway.replies import message, render
from tiffin.gateway.settings import GatewaySettings
from tiffin.gateway.table import ServiceTarget
from tiffin.gateway.upstream import ConnectFailed, Endpoint, Upstream

log = logging.getLogger(__name__)

ATTEMPTS = 2  # the first replica, and one other if the first refuses the connection
UPLOAD = "upload"  # the client is held while the replica's connection is full
DOWNLOAD = "download"  # the replica is held while the client's connection is full


class Exchange:
    def __init__(
        self,
        client: Side,
        client_host: str,
        request: RequestHead,
        body: tuple[Framer, bytes | bytearray | None],
        target: ServiceTarget,
        settings: GatewaySettings,
        done: Callable[[bool], None],
    ) -> None:
        """`body`: the request's framer and, when small, the whole body (else None: it streams)."""
        self.client = client
        self.client_host = client_host
        self.request = request
        self.framer, self.payload = body
        self.target = target
        self.settings = settings
        self.keep_alive = request.minor == 1 and not wants_close(request.fields, request.minor)
        self._done = done
        self._tried: list[Endpoint] = []
        self._errors: list[str] = []
        self._endpoint: Endpoint | None = None
        self._upstream: Upstream | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reused = self._uploading = self._received = self._head_sent = self._finished = False
        self._response: ResponseHead | None = None
        self._response_framer: Framer | None = None
        self._keep_client = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        timeout = self.target.admission.timeout_s
        if timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)
        self._next_endpoint()

    # choosing and connecting

    def _next_endpoint(self) -> None:
        endpoint = self.target.balancer.pick(self._tried) if len(self._tried) < ATTEMPTS else None
        if endpoint is None:
            detail = "; ".join(self._errors) or "none is ready"
            self._bad_gateway(f"no replica of Service {self.target.service} accepted a connection ({detail})")
            return
        self._tried.append(endpoint)
        self._endpoint = endpoint
        endpoint.in_flight += 1
        pooled = endpoint.take_idle() if self.payload is not None else None
        if pooled is not None:
            self._attach(pooled, reused=True)
        else:
            self._connecting = asyncio.get_running_loop().create_task(self._connect(endpoint))

    async def _connect(self, endpoint: Endpoint) -> None:
        try:
            upstream = await endpoint.connect(self.settings.connect_timeout_s)
        except ConnectFailed as failure:
            self._connecting = None
            self._errors.append(str(failure))
            endpoint.count(502)
            self._leave_endpoint()
            if not self._finished:
                self._next_endpoint()
            return
        self._connecting = None
        if self._finished:
            upstream.close()
            return
        try:
            self._attach(upstream, reused=False)
        except Exception:
            log.exception("gateway: unexpected error while forwarding; closing the connections")
            self._abort()

    def _leave_endpoint(self) -> None:
        if self._endpoint is not None:
            self._endpoint.in_flight -= 1
            self._endpoint = None

    def _attach(self, upstream: Upstream, reused: bool) -> None:
        self._upstream = upstream
        self._reused = reused
        upstream.exchange = self
        head = request_head(self.request, self.client_host)
        if self.payload is not None:
            upstream.write(head + self.payload if self.payload else head)
            return
        upstream.write(head)
        self._uploading = True
        self._pump_upload()

    # the request body, streamed

    def on_client_data(self) -> None:
        if self._uploading and self._upstream is not None:
            self._pump_upload()

    def on_upstream_drained(self) -> None:
        self.client.release(UPLOAD)
        self.on_client_data()

    def _pump_upload(self) -> None:
        client, upstream = self.client, self._upstream
        assert upstream is not None
        try:
            size = self.framer.scan(client.buffer)
        except HttpError:
            self._abort()  # a malformed chunked body: the replica must not take it as complete
            return
        if size:
            upstream.write(client.take(size))
        if self.framer.done:
            self._uploading = False
        elif client.eof:
            self._abort()  # the client stopped in the middle of its body
        elif upstream.write_paused:
            client.hold(UPLOAD)

    # the response

    def on_upstream_data(self) -> None:
        self._received = True
        try:
            if self._response_framer is None and not self._read_head():
                return
            self._pump_download()
        except HttpError as error:
            self._fail(f"sent an invalid response ({error.message.rstrip('.')})")

    def on_client_drained(self) -> None:
        if self._upstream is not None:
            self._upstream.release(DOWNLOAD)

    def _read_head(self) -> bool:
        upstream = self._upstream
        assert upstream is not None
        while (raw := upstream.take_head(self.settings.max_head_bytes)) is not None:
            response = parse_response(raw)
            if response.status >= 200:
                self._stop_timer()
                if self._endpoint is not None:
                    self._endpoint.count(response.status)
                self._response = response
                self._response_framer = framer = response_framer(response, self.request.method)
                self._keep_client = self.keep_alive and not self._uploading and not framer.ends_at_eof
                return True
            if response.status == 101:
                raise HttpError(502, "switched protocols")
            if self.request.minor:
                self.client.write(response_head(response, close=False))  # 1xx: pass it on
        return False

    def _pump_download(self) -> None:
        upstream, framer = self._upstream, self._response_framer
        assert upstream is not None and framer is not None
        if not self._head_sent:
            if self._small_body_on_its_way(upstream, framer):
                return  # head and body then reach the client in one write
            assert self._response is not None
            head = response_head(self._response, close=not self._keep_client)
            size = framer.scan(upstream.buffer)
            self.client.write(head + upstream.take(size) if size else head)
            self._head_sent = True
        elif size := framer.scan(upstream.buffer):
            self.client.write(upstream.take(size))
        if framer.done:
            self._complete()
        elif self.client.write_paused:
            upstream.hold(DOWNLOAD)

    def _small_body_on_its_way(self, upstream: Upstream, framer: Framer) -> bool:
        if not isinstance(framer, Length) or framer.remaining > self.settings.buffered_body_bytes:
            return False
        return len(upstream.buffer) < framer.remaining and not upstream.eof

    def on_upstream_eof(self) -> None:
        if self._finished:
            return
        framer = self._response_framer
        if framer is None:
            if self._reused and not self._received and not self.client.eof:
                self._reconnect()  # the replica closed a pooled connection just as it was reused
            else:
                self._fail("closed the connection before answering")
        elif framer.ends_at_eof:
            if not self._head_sent:
                self._pump_download()
            self._complete()
        elif not framer.done:
            self._fail("closed the connection in the middle of its response")

    def on_upstream_error(self) -> None:
        self._abort()

    def _reconnect(self) -> None:
        """Replay the (small, buffered) request on a fresh connection to the same replica."""
        self._detach("abort")
        self._reused = self._received = False
        assert self._endpoint is not None
        self._connecting = asyncio.get_running_loop().create_task(self._connect(self._endpoint))

    # the end

    def _complete(self) -> None:
        framer, response = self._response_framer, self._response
        assert framer is not None and response is not None
        if self._uploading:
            self._detach("abort")  # an early answer: the rest of the body will never be sent
        elif framer.ends_at_eof or wants_close(response.fields, response.minor):
            self._detach("close")
        else:
            self._detach("pool")
        self._finish(self._keep_client and not self._uploading)

    def _detach(self, how: Literal["pool", "close", "abort"]) -> None:
        """Let go of the replica connection: back to the pool, closed, or reset (after a failure)."""
        upstream, self._upstream = self._upstream, None
        if upstream is None:
            return
        upstream.exchange = None
        upstream.release(DOWNLOAD)
        if how == "pool" and self._endpoint is not None:
            self._endpoint.release(upstream)
        elif how == "abort":
            upstream.abort()
        else:
            upstream.close()

    def _fail(self, what: str) -> None:
        """The replica failed: a 502 if the client has not seen the response head yet, else cut it off."""
        if self._endpoint is not None and self._response is None:
            self._endpoint.count(502)
        if self._head_sent:
            self._abort()
        else:
            self._detach("abort")
            self._bad_gateway(f"the replica of Service {self.target.service} {what}")

    def _bad_gateway(self, what: str, status: int = 502) -> None:
        keep = self.keep_alive and not self._uploading and self.framer.done
        text = f"Deployment {self.target.deployment}: {what}."
        head_only = self.request.method == b"HEAD"
        self.client.write(render(message(status, text), close=not keep, head_only=head_only))
        self._finish(keep)

    def _timed_out(self) -> None:
        """`traffic.timeout` passed without a response head: 504, and the replica connection is reset."""
        self._timer = None
        if self._finished or self._response is not None:
            return
        if self._endpoint is not None:
            self._endpoint.count(504)
        self._detach("abort")
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        timeout = self.target.admission.timeout_s
        what = f"Service {self.target.service} did not answer within its traffic.timeout of {timeout:g} s"
        self._bad_gateway(what, 504)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def cancel(self) -> None:
        """The client is gone: stop everything this exchange started."""
        self._abort()

    def _abort(self) -> None:
        self._detach("abort")
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        self.client.abort()
        self._finish(False)

    def _finish(self, keep: bool) -> None:
        if self._finished:
            return
        self._finished = True
        self._stop_timer()
        self._leave_endpoint()
        self.client.release(UPLOAD)
        self._done(keep)
