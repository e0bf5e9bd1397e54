"""Where a client connection and an exchange with a replica stand, and every move they may make.

As in h11's `_state.py`, everything that changes either state machine lives here: one enum of states
and one of events per side, and a table of the allowed transitions. The connection and exchange code
only `fire()` events; a move the table does not allow is a bug and raises at once instead of leaving a
connection in a state nobody planned for. The tables are data, so tests read them without sockets.
"""

from collections.abc import Mapping
from enum import Enum
from typing import Generic, TypeVar


class _Singletons(Enum):
    """Enum members hashed by identity: Enum's own hash runs Python code on every table lookup."""

    __hash__ = object.__hash__


class Client(_Singletons):
    """A client connection, request by request."""

    IDLE = "idle"  # waiting for the next request head
    DECIDING = "deciding"  # a head arrived; its bearer token is being checked in the store
    WAITING = "waiting"  # admitted to wait for a replica with room (cold start, or the queue)
    FORWARDING = "forwarding"  # an exchange with a replica carries the request and its response
    ANSWERING = "answering"  # answered by the gateway; reading past the rest of the request body
    TUNNELING = "tunneling"  # switched protocols (WebSocket): bytes flow both ways untouched
    CLOSED = "closed"


class ClientEvent(_Singletons):
    CHECK = "check"  # the decision needs the store's word on a token
    HOLD = "hold"  # wait for a replica
    FORWARD = "forward"  # a replica has room: exchange
    ANSWER = "answer"  # the gateway answers itself (refusal, discovery, 4xx/5xx)
    DONE = "done"  # the request and its response are complete; the connection is kept
    SWITCH = "switch"  # the replica agreed to switch protocols
    CLOSE = "close"  # the connection ends (error, client gone, not kept alive)


class Exchange(_Singletons):
    """One request forwarded to a replica."""

    CONNECTING = "connecting"  # waiting for a connection to the chosen replica
    SENDING = "sending"  # the request goes out; its response head has not arrived
    RECEIVING = "receiving"  # the response goes to the client
    TUNNELING = "tunneling"
    DONE = "done"
    FAILED = "failed"  # ended before its response did: 502/504 to the client, or the client cut off


class ExchangeEvent(_Singletons):
    CONNECTED = "connected"
    RECONNECT = "reconnect"  # the connection failed before any answer: try again (another replica)
    RESPONSE = "response"  # the response head arrived
    SWITCHED = "switched"  # the response is 101 Switching Protocols
    COMPLETE = "complete"  # the response's last byte went to the client
    FAIL = "fail"


CLIENT_MOVES: Mapping[tuple[Client, ClientEvent], Client] = {
    (Client.IDLE, ClientEvent.CHECK): Client.DECIDING,
    (Client.IDLE, ClientEvent.HOLD): Client.WAITING,
    (Client.IDLE, ClientEvent.FORWARD): Client.FORWARDING,
    (Client.IDLE, ClientEvent.ANSWER): Client.ANSWERING,
    (Client.DECIDING, ClientEvent.HOLD): Client.WAITING,
    (Client.DECIDING, ClientEvent.FORWARD): Client.FORWARDING,
    (Client.DECIDING, ClientEvent.ANSWER): Client.ANSWERING,
    (Client.WAITING, ClientEvent.FORWARD): Client.FORWARDING,
    (Client.WAITING, ClientEvent.ANSWER): Client.ANSWERING,
    (Client.FORWARDING, ClientEvent.DONE): Client.IDLE,
    (Client.FORWARDING, ClientEvent.SWITCH): Client.TUNNELING,
    (Client.ANSWERING, ClientEvent.DONE): Client.IDLE,
    **{(state, ClientEvent.CLOSE): Client.CLOSED for state in Client},
}

EXCHANGE_MOVES: Mapping[tuple[Exchange, ExchangeEvent], Exchange] = {
    (Exchange.CONNECTING, ExchangeEvent.CONNECTED): Exchange.SENDING,
    (Exchange.CONNECTING, ExchangeEvent.RECONNECT): Exchange.CONNECTING,
    (Exchange.SENDING, ExchangeEvent.RECONNECT): Exchange.CONNECTING,
    (Exchange.SENDING, ExchangeEvent.RESPONSE): Exchange.RECEIVING,
    (Exchange.SENDING, ExchangeEvent.SWITCHED): Exchange.TUNNELING,
    (Exchange.RECEIVING, ExchangeEvent.COMPLETE): Exchange.DONE,
    (Exchange.TUNNELING, ExchangeEvent.COMPLETE): Exchange.DONE,
    **{
        (state, ExchangeEvent.FAIL): Exchange.FAILED
        for state in (Exchange.CONNECTING, Exchange.SENDING, Exchange.RECEIVING, Exchange.TUNNELING)
    },
}

S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


class InvalidMove(Exception):
    """An event its state machine does not allow in the current state: a bug in the gateway."""


class Machine(Generic[S, E]):
    """A state and the table it moves by."""

    __slots__ = ("moves", "state")

    def __init__(self, moves: Mapping[tuple[S, E], S], state: S) -> None:
        self.moves = moves
        self.state = state

    def fire(self, event: E) -> S:
        """Move by `event`; raises InvalidMove (and stays put) when the table has no such move."""
        try:
            self.state = self.moves[(self.state, event)]
        except KeyError:
            raise InvalidMove(f"{event.name} is not allowed while {self.state.name}") from None
        return self.state

    def allows(self, event: E) -> bool:
        return (self.state, event) in self.moves
