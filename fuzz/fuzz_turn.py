"""Fuzz harnesses for the TURN client's input, :meth:`TurnAllocation.receive`.

Invariant of every harness: whatever bytes the server (or anyone spoofing it)
sends, as datagrams or as a stream in any chunks, in whatever state the
allocation is in, ``receive`` does not raise and returns ``(peer, data)``
pairs only from peers we hold a permission or a channel for. The state
changes only when the bytes carry a pending transaction's ID, or, on a
stream, when the stream falls out of step (the allocation then fails with
"stream out of step"). ``handle_timer`` then runs without raising either.

For coverage-guided fuzzing, hand atheris ``fuzz_one_input_datagram``, or
:func:`check_datagram`, which takes the raw bytes.
"""

from __future__ import annotations

import random

from harness_tools import atheris_target, examples
from hypothesis import given
from hypothesis import strategies as st
from stun_strategies import channel_data_like, first_byte_biased, mutated_messages

from syncice.stun import Class, Message, Method
from syncice.turn import TurnAllocation, TurnState
from tests.turn_server import SERVER, FakeTurnServer

PEER = ("192.0.2.10", 7000)
PENDING_PEER = ("192.0.2.20", 8000)  # its CreatePermission is never answered
STRANGER = ("192.0.2.99", 9000)
STATES = ("new", "allocating", "allocated", "closing", "closed", "failed")
TRANSPORTS = ("udp", "tcp")


def _deliver(allocation: TurnAllocation, server: FakeTurnServer) -> None:
    while out := allocation.datagrams_to_send():
        for data in out:
            for answer in server.handle(data):
                allocation.receive(answer, 0.0)


def make_allocation(
    state: str, transport: str = "udp"
) -> tuple[TurnAllocation, FakeTurnServer, set[bytes]]:
    """An allocation in ``state``; with ``allocated``, a channel bound to PEER,
    a CreatePermission pending for PENDING_PEER and a Refresh pending.

    :returns: the allocation, its server and the IDs of its pending requests.
    """
    server = FakeTurnServer(padded=transport != "udp")
    allocation = TurnAllocation(
        server=SERVER,
        username=server.username,
        password=server.password,
        transport=transport,
        rng=random.Random(7),
    )
    pending: set[bytes] = set()
    if state == "new":
        return allocation, server, pending
    allocation.start(0.0)
    if state == "allocating":
        (request,) = allocation.datagrams_to_send()
        pending = {request[8:20]}
        return allocation, server, pending
    _deliver(allocation, server)
    allocation.send(PEER, b"x", 0.0)
    _deliver(allocation, server)
    allocation.send(PENDING_PEER, b"y", 0.0)
    allocation.handle_timer(540.0)
    pending = {d[8:20] for d in allocation.datagrams_to_send() if d[0] < 4}
    if state == "closing":
        allocation.close(540.0)
        pending = {d[8:20] for d in allocation.datagrams_to_send()}
    elif state == "closed":
        allocation.close(540.0)
        _deliver(allocation, server)
        pending = set()
    elif state == "failed":
        allocation.abandon("fuzz")
        pending = set()
    while allocation.next_event() is not None:
        pass
    return allocation, server, pending


def _check(
    allocation: TurnAllocation, pending: set[bytes], chunks: list[bytes]
) -> None:
    before = allocation.state
    channels = dict(allocation.channels)
    for chunk in chunks:
        for peer, data in allocation.receive(chunk, 1.0):
            assert isinstance(data, bytes)
            assert peer[0] == PEER[0] or peer in channels
    if allocation.state != before:
        carried = b"".join(chunks)
        # A stream out of step fails the allocation (or ends the closing).
        lost = allocation.transport != "udp" and (
            allocation.reason == "stream out of step"
            or (before, allocation.state) == (TurnState.CLOSING, TurnState.CLOSED)
        )
        assert lost or any(tid in carried for tid in pending), (
            before,
            allocation.state,
            allocation.reason,
        )
    assert channels.items() <= allocation.channels.items()
    allocation.handle_timer(1.0)
    while allocation.next_event() is not None:
        pass
    assert allocation.state in (
        TurnState.NEW,
        TurnState.ALLOCATING,
        TurnState.ALLOCATED,
        TurnState.CLOSING,
        TurnState.CLOSED,
        TurnState.FAILED,
    )


def check_datagram(
    data: bytes, state: str = "allocated", transport: str = "udp"
) -> None:
    """The invariant for one datagram (or stream chunk) from the server's address."""
    allocation, _, pending = make_allocation(state, transport)
    _check(allocation, pending, [data])


def _seeds() -> tuple[bytes, ...]:
    server = FakeTurnServer()
    indication = server.data_indication(PEER, b"data")
    return (
        b"",
        indication,
        server.data_indication(STRANGER, b"data"),
        server.channel_data(0x4000, b"data"),
        server.channel_data(0x4001, b"data"),
        Message(Method.REFRESH, Class.SUCCESS, bytes(12), {"LIFETIME": 0}).encode(
            key=server.key(), fingerprint=True
        ),
        Message(
            Method.ALLOCATE,
            Class.ERROR,
            bytes(12),
            {"ERROR-CODE": (401, "x"), "REALM": "r", "NONCE": b"n"},
        ).encode(fingerprint=True),
    )


SEEDS = _seeds()
_GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(SEEDS),
    mutated_messages(SEEDS),
    first_byte_biased(),
    channel_data_like(),
)


@examples(*SEEDS)
@given(st.binary(max_size=600))
def fuzz_datagram(data: bytes) -> None:
    """Any datagram to an allocated allocation: no raise, no state change."""
    check_datagram(data)


@given(
    st.sampled_from(SEEDS),
    st.data(),
    st.sampled_from(STATES),
    st.sampled_from(TRANSPORTS),
)
def fuzz_mutated_datagram(
    seed: bytes, draw: st.DataObject, state: str, transport: str
) -> None:
    """Near-valid indications, ChannelData and responses, in every state."""
    data = bytearray(seed)
    for _ in range(draw.draw(st.integers(0, 8))):
        if not data:
            break
        i = draw.draw(st.integers(0, len(data) - 1))
        data[i] = draw.draw(st.integers(0, 255))
    check_datagram(bytes(data), state, transport)


@given(
    st.lists(_GARBAGE, max_size=8),
    st.sampled_from(STATES),
    st.sampled_from(TRANSPORTS),
)
def fuzz_datagram_sequence(datagrams: list[bytes], state: str, transport: str) -> None:
    """Many datagrams (or chunks) in a row: the same, over all of them."""
    allocation, _, pending = make_allocation(state, transport)
    _check(allocation, pending, datagrams)


@given(st.lists(_GARBAGE, max_size=4), st.data())
def fuzz_stream_chunking(frames: list[bytes], draw: st.DataObject) -> None:
    """A stream cut anywhere gives what it gives whole: the same data, the same
    final state."""
    stream = b"".join(frames)
    whole, _, _ = make_allocation("allocated", "tcp")
    expected = whole.receive(stream, 1.0)
    cut, _, _ = make_allocation("allocated", "tcp")
    got = []
    pos = 0
    while pos < len(stream):
        size = draw.draw(st.integers(1, max(1, len(stream) - pos)))
        got += cut.receive(stream[pos : pos + size], 1.0)
        pos += size
    if whole.state == TurnState.ALLOCATED:
        assert cut.state == TurnState.ALLOCATED
        assert got == expected
    else:
        # Failed: cut, the data before the failure may have come out first.
        assert cut.state == whole.state
        assert got[: len(expected)] == expected


fuzz_one_input_datagram = atheris_target(fuzz_datagram)
