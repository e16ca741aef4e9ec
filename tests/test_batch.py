"""syncice._batch: GSO sends, GRO receives and their fallback, on loopback
sockets, and the grouping and splitting rules, property-tested."""

from __future__ import annotations

import errno
import itertools
import select
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncice import (
    ComponentError,
    Connection,
    ConnectionClosedError,
    IceConfig,
    IceTimeoutError,
    NotConnectedError,
)
from syncice._batch import (
    MAX_BYTES,
    MAX_SEGMENTS,
    BatchSender,
    enable_gro,
    plan,
    receive,
    split,
)

from .conftest import ConnectionPairs, exchange_candidates

GUARD = 10.0  # a bound on waits that only a broken build reaches

Address = tuple[str, int]

sizes = st.lists(
    st.one_of(st.sampled_from([0, 1, 20, 100, 1200]), st.integers(0, 3000)),
    max_size=200,
)


@given(sizes, st.integers(1, 70), st.integers(1, 70_000))
def test_runs_cover_the_batch_in_order_within_the_bounds(
    lengths: list[int], max_segments: int, max_bytes: int
) -> None:
    datagrams = [bytes(n) for n in lengths]
    runs = plan(datagrams, max_segments=max_segments, max_bytes=max_bytes)
    assert [i for start, end, _ in runs for i in range(start, end)] == list(
        range(len(datagrams))
    )
    for start, end, size in runs:
        run = datagrams[start:end]
        assert len(run[0]) == size
        if len(run) > 1:
            assert len(run) <= max_segments
            assert sum(map(len, run)) <= max_bytes
            assert all(len(d) == size for d in run[:-1])
            assert 0 < len(run[-1]) <= size


@given(sizes)
def test_runs_are_as_long_as_the_rule_allows(lengths: list[int]) -> None:
    datagrams = [bytes(n) for n in lengths]
    runs = plan(datagrams)
    for (start, end, size), (following, _, _) in itertools.pairwise(runs):
        assert following == end
        nxt = len(datagrams[end])
        full = end - start >= min(MAX_SEGMENTS, MAX_BYTES // size) if size else True
        closed = len(datagrams[end - 1]) < size
        # A run ends at its bound, after a shorter datagram, or where the
        # next one could not join it.
        assert full or closed or not 0 < nxt <= size


@given(st.binary(max_size=5000), st.integers(1, 1500))
def test_split_gives_back_what_was_glued(data: bytes, size: int) -> None:
    parts = split(data, size)
    assert b"".join(parts) == data
    assert all(len(p) == size for p in parts[:-1])
    assert 0 < len(parts[-1]) <= size or data == b""


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sock in (tx, rx):
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    yield tx, rx
    tx.close()
    rx.close()


def numbered(count: int, size: int) -> list[bytes]:
    return [i.to_bytes(4, "big") + bytes([i % 251]) * (size - 4) for i in range(count)]


def readable(rx: socket.socket) -> None:
    """Wait until ``rx`` has something to read (the test fails if nothing
    comes in a long while)."""
    ready, _, _ = select.select([rx], [], [], 10.0)
    assert ready, "nothing arrived"


def read_all(rx: socket.socket, count: int) -> list[tuple[bytes, Address]]:
    got: list[tuple[bytes, Address]] = []
    while len(got) < count:
        readable(rx)
        data, addr = rx.recvfrom(65536)
        got.append((data, addr))
    return got


def mixed() -> list[bytes]:
    # Runs of equal sizes, a shorter one closing a run, an empty datagram,
    # single ones.
    return [
        *numbered(100, 1200),
        b"\x80" * 700,
        *numbered(3, 100),
        b"",
        b"\x00\x01" + bytes(18),  # STUN-sized: the batch never looks inside
        *numbered(70, 1200),
    ]


@pytest.mark.parametrize("gso", [None, False], ids=["gso", "fallback"])
def test_a_batch_arrives_whole_and_in_order(
    pair: tuple[socket.socket, socket.socket], gso: bool | None
) -> None:
    tx, rx = pair
    sender = BatchSender(gso=gso)
    batch = mixed()
    assert sender.send(tx, batch, rx.getsockname()) == (len(batch), None)
    got = read_all(rx, len(batch))
    assert [data for data, _ in got] == batch
    assert {addr for _, addr in got} == {tx.getsockname()}
    if gso is None:
        assert sender.gso is True
        # At most 54 of 1200 B in 65,507 bytes: 54, then 46 closed by the
        # 700; the 3 of 100; the empty one; the STUN-sized one; 54 + 16.
        assert sender.syscalls == 7
    else:
        assert sender.gso is False
        assert sender.syscalls == len(batch)


def test_gro_reads_come_apart_into_the_datagrams_sent(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    tx, rx = pair
    assert enable_gro(rx)
    batch = mixed()
    assert BatchSender().send(tx, batch, rx.getsockname()) == (len(batch), None)
    got: list[tuple[bytes, Address]] = []
    reads = 0
    while len(got) < len(batch):
        readable(rx)
        reads += receive(rx, got, 64)
    assert [data for data, _ in got] == batch
    assert {addr for _, addr in got} == {tx.getsockname()}
    assert reads < len(batch)  # coalesced: fewer reads than datagrams


class BrokenGso:
    """A socket whose ``sendmsg`` fails as a device without checksum
    offload does (EIO), and which records its ``sendto`` calls."""

    def __init__(self, error: int) -> None:
        self.error = error
        self.sendmsg_calls = 0
        self.sent: list[bytes] = []

    def sendmsg(self, *args: object) -> int:
        self.sendmsg_calls += 1
        raise OSError(self.error, "no GSO here")

    def sendto(self, data: bytes, addr: Address) -> int:
        self.sent.append(data)
        return len(data)


@pytest.mark.parametrize(
    "error", [errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP]
)
def test_the_fallback_is_found_once_and_remembered(error: int) -> None:
    sock = BrokenGso(error)
    sender = BatchSender()
    batch = numbered(10, 1200)
    for _ in range(3):
        sent = sender.send(sock, batch, ("127.0.0.1", 9))  # type: ignore[arg-type]
        assert sent == (10, None)
    assert sender.gso is False
    assert sock.sendmsg_calls == 1
    assert sock.sent == batch * 3


def test_other_errors_stop_the_batch_and_are_returned() -> None:
    sock = BrokenGso(errno.EMSGSIZE)
    sent, error = BatchSender().send(sock, numbered(2, 100), ("127.0.0.1", 9))  # type: ignore[arg-type]
    assert sent == 0
    assert isinstance(error, OSError)
    assert error.errno == errno.EMSGSIZE


class FillsUp:
    """A socket whose buffer takes ``room`` calls, then is full."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.calls = 0

    def _call(self) -> int:
        if self.calls == self.room:
            raise BlockingIOError(errno.EAGAIN, "full")
        self.calls += 1
        return 0

    def sendmsg(self, *args: object) -> int:
        return self._call()

    def sendto(self, data: bytes, addr: Address) -> int:
        return self._call()


@pytest.mark.parametrize("gso", [None, False], ids=["gso", "fallback"])
def test_a_full_buffer_stops_the_batch_and_says_how_far(gso: bool | None) -> None:
    # Three calls: with GSO, runs of 64, 64, and the last 2 with the shorter
    # b"x" closing the run; then b"y" finds the buffer full.
    batch = [*numbered(130, 100), b"x", b"y"]
    sent, error = BatchSender(gso=gso).send(FillsUp(3), batch, ("127.0.0.1", 9))  # type: ignore[arg-type]
    assert sent == (131 if gso is None else 3)
    assert isinstance(error, BlockingIOError)


#: Both facades: the blocking one, and the shim through tests.shim_adapter.
KINDS = ["blocking", "asyncio"]


# --- Connection.send_many ----------------------------------------------------


def session_batch(conn: Connection) -> BatchSender:
    session = conn._core.session
    assert session is not None
    return session.batch


def selected_sent(conn: Connection) -> tuple[int, int]:
    [stats] = [s for s in conn.get_stats() if s.selected]
    return stats.datagrams_sent, stats.bytes_sent


@pytest.mark.parametrize("connection_pairs", KINDS, indirect=True)
@pytest.mark.parametrize("batch_io", [True, False], ids=["gso", "fallback"])
def test_send_many_delivers_in_order_and_counts(
    connection_pairs: ConnectionPairs, batch_io: bool
) -> None:
    a, b = connection_pairs.pair(config=IceConfig(batch_io=batch_io))
    sent_before = selected_sent(a)
    window = 40  # well within a default receive buffer
    total = 0
    for round_ in range(10):
        batch = [
            (round_ * window + i).to_bytes(4, "big") + bytes(1196)
            for i in range(window)
        ]
        a.send_many(iter(batch))  # any iterable
        got = [b.recv(timeout=GUARD) for _ in batch]
        assert got == batch
        total += len(batch)
    batch_sender = session_batch(a)
    if batch_io:
        assert batch_sender.gso is True
        assert batch_sender.syscalls == 10  # one sendmsg per window of 40
    else:
        assert batch_sender.gso is False
        assert batch_sender.syscalls == total
    datagrams, size = selected_sent(a)
    assert (datagrams - sent_before[0], size - sent_before[1]) == (total, total * 1200)
    assert a.send_drops == 0


@pytest.mark.parametrize("connection_pairs", KINDS, indirect=True)
def test_send_many_on_a_second_component_and_mixed_sizes(
    connection_pairs: ConnectionPairs,
) -> None:
    a, b = connection_pairs.pair(components=2)
    batch = [b"\x80" * n for n in (1200, 1200, 1200, 10, 0, 300, 300, 120)]
    a.send_many(batch, component=2)
    got = [b.recvfrom(timeout=GUARD) for _ in batch]
    assert got == [(data, 2) for data in batch]


@pytest.mark.parametrize("connection_pairs", KINDS, indirect=True)
def test_send_many_raises_as_sendto_does(connection_pairs: ConnectionPairs) -> None:
    a, b = connection_pairs.pair(connect=False)
    with pytest.raises(NotConnectedError):
        a.send_many([b"too early"])
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)
    with pytest.raises(ComponentError):
        a.send_many([b"no such component"], component=2)
    # Too large: those before it go, none after it.
    with pytest.raises(ValueError, match="70000 bytes is too large"):
        a.send_many([b"\x80one", b"\x80two", bytes(70_000), b"\x80never"])
    a.send(b"\x80after")
    assert [b.recv(timeout=GUARD) for _ in range(3)] == [
        b"\x80one",
        b"\x80two",
        b"\x80after",
    ]
    a.send_many([])  # nothing to do
    a.close()
    with pytest.raises(ConnectionClosedError):
        a.send_many([b"closed"])


# --- Connection.recv_many ----------------------------------------------------


def gro_sockets(conn: Connection) -> dict[int, bool]:
    session = conn._core.session
    assert session is not None
    return dict(session.gro.sockets)


@pytest.mark.parametrize(
    ("connection_pairs", "direct_reads"),
    [("blocking", True), ("blocking", False), ("asyncio", False)],
    ids=["direct", "worker", "asyncio"],
    indirect=["connection_pairs"],
)
@pytest.mark.parametrize("batch_io", [True, False], ids=["gro", "fallback"])
def test_recv_many_takes_bursts_whole_and_in_order(
    connection_pairs: ConnectionPairs, batch_io: bool, direct_reads: bool
) -> None:
    config = IceConfig(batch_io=batch_io)
    a = connection_pairs.connection(True, config=config)
    b = connection_pairs.connection(False, config=config)
    b._core.direct_reads = direct_reads  # read before gathering starts
    exchange_candidates(a, b)
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)
    window = 40
    got: list[bytes] = []
    sent: list[bytes] = []
    for round_ in range(6):
        batch = [
            (round_ * window + i).to_bytes(4, "big") + bytes([round_]) * 1196
            for i in range(window)
        ]
        sent += batch
        a.send_many(batch)
        while len(got) < len(sent):
            burst = b.recv_many(window, timeout=GUARD)
            assert 1 <= len(burst) <= window
            got += burst
    assert got == sent
    if batch_io:
        # Turned on by the reader of the one socket, before a read.
        assert list(gro_sockets(b).values()) == [True]
    else:
        assert gro_sockets(b) == {}
    # Single datagrams and STUN (consent) still go their ways.
    a.send(b"\x80one")
    assert b.recvfrom_many(8, timeout=GUARD) == [(b"\x80one", 1)]
    a.send(b"\x80two")
    assert b.recv(timeout=GUARD) == b"\x80two"


@pytest.mark.parametrize("connection_pairs", KINDS, indirect=True)
def test_recv_many_raises_as_recv_does(connection_pairs: ConnectionPairs) -> None:
    a, b = connection_pairs.pair(connect=False)
    with pytest.raises(NotConnectedError):
        b.recv_many(4)
    a.connect(timeout=GUARD)
    b.connect(timeout=GUARD)
    for bad, error in (
        (0, ValueError),
        (-1, ValueError),
        (1.5, TypeError),
        (True, TypeError),
    ):
        with pytest.raises(error, match="max_count"):
            b.recv_many(bad)  # type: ignore[arg-type]
    with pytest.raises(IceTimeoutError):
        b.recv_many(4, timeout=0)
    a.send_many([b"\x80last", b"\x80words"])
    a.close()
    b.close()
    with pytest.raises(ConnectionClosedError):
        b.recv_many(4, timeout=GUARD)
