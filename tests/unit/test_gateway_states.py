"""The connection's and the exchange's state machines, read as data."""

import pytest

from tiffin.gateway.states import (
    CLIENT_MOVES,
    EXCHANGE_MOVES,
    Client,
    ClientEvent,
    Exchange,
    ExchangeEvent,
    InvalidMove,
    Machine,
)


def test_a_kept_alive_connection_goes_round_request_after_request() -> None:
    machine = Machine(CLIENT_MOVES, Client.IDLE)
    for event in (ClientEvent.CHECK, ClientEvent.HOLD, ClientEvent.FORWARD, ClientEvent.DONE):
        machine.fire(event)
    assert machine.state is Client.IDLE
    machine.fire(ClientEvent.ANSWER)
    assert machine.fire(ClientEvent.DONE) is Client.IDLE


def test_only_a_forwarded_request_can_switch_protocols() -> None:
    assert CLIENT_MOVES[(Client.FORWARDING, ClientEvent.SWITCH)] is Client.TUNNELING
    switches = [state for (state, event) in CLIENT_MOVES if event is ClientEvent.SWITCH]
    assert switches == [Client.FORWARDING]


def test_every_state_can_close_and_closed_is_final() -> None:
    for state in Client:
        assert CLIENT_MOVES[(state, ClientEvent.CLOSE)] is Client.CLOSED
    assert [event for (state, event) in CLIENT_MOVES if state is Client.CLOSED] == [ClientEvent.CLOSE]


def test_a_request_cannot_be_answered_twice_or_done_before_it_was_answered() -> None:
    machine = Machine(CLIENT_MOVES, Client.IDLE)
    machine.fire(ClientEvent.ANSWER)

    with pytest.raises(InvalidMove, match="FORWARD is not allowed while ANSWERING"):
        machine.fire(ClientEvent.FORWARD)
    assert machine.state is Client.ANSWERING
    assert not Machine(CLIENT_MOVES, Client.IDLE).allows(ClientEvent.DONE)


def test_an_exchange_ends_done_or_failed_and_nowhere_else() -> None:
    finals = {Exchange.DONE, Exchange.FAILED}
    assert not [key for key in EXCHANGE_MOVES if key[0] in finals]
    assert {EXCHANGE_MOVES[(s, ExchangeEvent.FAIL)] for s in Exchange if s not in finals} == {Exchange.FAILED}


def test_an_exchange_reconnects_only_before_its_response() -> None:
    reconnecting = {state for (state, event) in EXCHANGE_MOVES if event is ExchangeEvent.RECONNECT}
    assert reconnecting == {Exchange.CONNECTING, Exchange.SENDING}
