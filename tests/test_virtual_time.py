"""Whole connections in virtual time (issue 14, point 5).

Layer 2 with the clock of layer 1: real :class:`syncice.Connection`\\ s (and
:class:`syncice.asyncio.Connection`\\ s, through ``tests/shim_adapter.py``) on
loopback sockets, on the worker that :func:`syncice.testing.virtual_time`
lends them, whose :class:`~syncice._clock.FakeClock` jumps from deadline to
deadline whenever the worker is idle. The default timings are used: consent
lost 30 s after the last answer, the controlled side giving up 10 s after
``connect()`` without a check from its peer, a TURN allocation of 600 s
refreshed 60 s before it ends.

Every assertion is on virtual time, read on the worker thread at the moment
something happened: the log lines of syncice, stamped by :class:`Timeline`,
and the requests seen by :class:`RelayServer`, which the worker serves. No
test measures wall time; the ``timeout=`` of blocking calls (real seconds)
is a hang guard only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import socket
import threading
from collections.abc import Iterator

import pytest

from syncice import (
    Connection,
    ConnectionClosedError,
    IceTimeoutError,
    NegotiationFailedError,
    TransportPolicy,
)
from syncice.events import ConnectionClosed
from syncice.stun import Class, Message, Method, parse_message
from syncice.testing import VirtualTime, virtual_time
from tests.conftest import ConnectionPairs, exchange_candidates
from tests.turn_server import FakeTurnServer

#: Real seconds before a blocking call counts as a hang. Never a timing.
GUARD = 10.0
#: The defaults under test (IceConfig, TurnConfig, FakeTurnServer).
CONSENT_TIMEOUT = 30.0
#: The longest gap between two consent checks: 5 s with up to 20 % jitter.
CONSENT_GAP = 1.2 * 5.0
NOMINATION_TIMEOUT = 10.0
#: When a check that gets no valid answer fails (18 sends, 2 s cap).
CHECK_TIMEOUT = 39.5
LIFETIME = 600
REFRESH_MARGIN = 60.0
WRONG = "w" * 22
#: Rounding of sums of virtual times (30.000000000000004 - 0 is 30 s).
EPSILON = 1e-9

Address = tuple[str, int]

KINDS = ["blocking", "asyncio"]


# --- helpers --------------------------------------------------------------------


class Timeline(logging.Handler):
    """The log lines of syncice emitted on the virtual worker, each with the
    virtual time at which it was emitted (the handler runs on the worker,
    in the middle of what it logs)."""

    def __init__(self, vt: VirtualTime) -> None:
        super().__init__(logging.DEBUG)
        self.vt = vt
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.vt.worker.in_worker_thread():
            self.lines.append((self.vt.now(), record.getMessage()))

    def times(self, conn: Connection, text: str) -> list[float]:
        """When ``conn`` logged a line containing ``text``."""
        prefix = name_of(conn) + " "
        return [
            t
            for t, line in list(self.lines)
            if line.startswith(prefix) and text in line
        ]

    def only(self, conn: Connection, text: str) -> float:
        """When ``conn`` logged the one line containing ``text``."""
        (at,) = self.times(conn, text)
        return at


@contextlib.contextmanager
def timeline(vt: VirtualTime) -> Iterator[Timeline]:
    """Stamp the INFO lines of the ``syncice`` loggers while the block runs."""
    logger = logging.getLogger("syncice")
    handler = Timeline(vt)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def name_of(conn: Connection) -> str:
    """The name a connection's log lines start with: ``Connection(N)``."""
    found = re.search(r"Connection\(\d+\)", repr(conn))
    assert found is not None, repr(conn)
    return found.group()


def start_connect(conn: Connection) -> None:
    """Start the checks without waiting (a ``connect()`` poll).

    Both sides of a pair start this way, with the clock paused: connecting
    one and then the other from the test thread lets virtual time run
    between the two calls for as long as the thread takes, and a controlled
    side that connects over 500 virtual seconds after its peer completed
    never learns of the nomination (its 100 early checks are the peer's
    consent checks by then: a finding for the core).
    """
    with contextlib.suppress(IceTimeoutError):
        conn.connect(timeout=0)


def flush(vt: VirtualTime) -> None:
    """Return once the worker has run every command queued before the call."""
    vt.worker.submit(lambda: None).result(GUARD)


def wait_closed(conn: Connection) -> None:
    """Block until ``conn`` reports :class:`ConnectionClosed`."""
    while True:
        event = conn.get_event(timeout=GUARD)
        if event is None or isinstance(event, ConnectionClosed):
            return


def closed_reason(conn: Connection) -> str:
    """Why a closed connection closed."""
    with pytest.raises(ConnectionClosedError) as info:
        conn.recv(timeout=0)
    return info.value.reason


class RelayServer:
    """:class:`tests.turn_server.FakeTurnServer` on loopback UDP, served by
    the virtual worker, and relaying for real.

    The client writes to :attr:`address`; the relayed address is a second
    socket, from which Send indications and ChannelData go out to peers, and
    at which what peers send comes in (if a permission allows it) to go back
    to the client as Data indications or ChannelData. Both sockets are the
    worker's, so the clock never jumps past a datagram to or from the server.

    :ivar answered: every request with its answer, and the virtual time (the
        same for both: loopback and the worker take no virtual time).
    """

    def __init__(self, vt: VirtualTime, fake: FakeTurnServer) -> None:
        self.vt = vt
        self.fake = fake
        self.sock = self._bind()
        self.relay = self._bind()
        self.address: Address = self.sock.getsockname()
        fake.relayed = self.relay.getsockname()
        self.client: Address | None = None
        self.answered: list[tuple[float, Message, Message]] = []
        worker = vt.worker

        def start() -> None:
            worker.add_reader(self.sock, self._from_client)
            worker.add_reader(self.relay, self._from_peer)

        worker.submit(start).result(GUARD)

    @staticmethod
    def _bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        return sock

    def requests(self, method: Method) -> list[tuple[float, Message, Message]]:
        """The requests of ``method`` answered so far."""
        return [entry for entry in list(self.answered) if entry[1].method == method]

    def _from_client(self) -> None:
        fake = self.fake
        while True:
            try:
                data, client = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            self.client = fake.mapped = client
            asked, relayed = len(fake.requests), len(fake.relayed_out)
            answers = fake.handle(data)
            for request, answer in zip(fake.requests[asked:], answers, strict=True):
                self.answered.append((self.vt.now(), request, parse_message(answer)))
            for answer in answers:
                self.sock.sendto(answer, client)
            for peer, payload, _ in fake.relayed_out[relayed:]:
                self.relay.sendto(payload, peer)

    def _from_peer(self) -> None:
        fake = self.fake
        while True:
            try:
                data, peer = self.relay.recvfrom(65536)
            except BlockingIOError:
                return
            if self.client is None or peer[0] not in fake.permissions:
                continue  # RFC 8656 §9: no permission, dropped
            channel = next((c for c, p in fake.channels.items() if p == peer), None)
            if channel is None:
                frame = fake.data_indication(peer, data)
            else:
                frame = fake.channel_data(channel, data)
            self.sock.sendto(frame, self.client)

    def close(self) -> None:
        worker = self.vt.worker

        def stop() -> None:
            worker.remove_reader(self.sock)
            worker.remove_reader(self.relay)

        worker.submit(stop).result(GUARD)
        self.sock.close()
        self.relay.close()


# --- the three scenarios ----------------------------------------------------------
#
# Each scenario is built with the clock paused (gathering on loopback and the
# TURN allocation need no timer), so that all start at one virtual instant:
# ``start()`` posts every connect() there. Then the clock runs: ``connected()``
# waits for the pairs that must connect, ``check()`` for the outcome. The
# combined test runs all three at once on one worker and one clock.


class Scenario:
    """Connections built and gathered, candidates exchanged, not connecting."""

    def __init__(self, vt: VirtualTime) -> None:
        self.vt = vt
        self.started = 0.0
        self.conns: list[Connection] = []

    def start(self) -> None:
        """With the clock paused: start the checks of every connection."""
        self.started = self.vt.now()
        for conn in self.conns:
            start_connect(conn)

    def connected(self) -> None:
        """Wait until the checks succeed (when they should)."""

    def check(self, log: Timeline) -> None:
        """Wait for the outcome and check its virtual times."""
        raise NotImplementedError


class ConsentScenario(Scenario):
    """A connected pair; ``b`` closes (a closed agent answers nothing), and
    ``a``'s consent expires 30 s after ``b``'s last answer, which came at most
    one consent interval before ``b`` fell silent."""

    def __init__(self, vt: VirtualTime, pairs: ConnectionPairs) -> None:
        super().__init__(vt)
        self.a, self.b = pairs.pair(connect=False)
        self.conns = [self.a, self.b]
        self.silent_from = 0.0

    def connected(self) -> None:
        self.a.connect(timeout=GUARD)
        self.b.connect(timeout=GUARD)

    def silence(self) -> None:
        """With the clock paused: ``b`` falls silent."""
        self.silent_from = self.vt.now()
        self.b.close()

    def check(self, log: Timeline) -> None:
        a = self.a
        wait_closed(a)
        assert closed_reason(a) == "consent expired"
        expired_at = log.only(a, "closed: consent expired")
        assert log.only(a, "consent expired on component 1") == expired_at
        # The last answer came in [silent_from - CONSENT_GAP, silent_from]
        # (at silent_from itself when a check was due then).
        since = expired_at - self.silent_from
        assert since >= CONSENT_TIMEOUT - CONSENT_GAP - EPSILON
        assert since <= CONSENT_TIMEOUT + EPSILON


class NominationScenario(Scenario):
    """``a`` (controlling) signs its checks with a wrong password: ``b``
    rejects them, its own checks succeed, and it waits in vain for a
    nomination; it fails 10 s after ``connect()``. ``a``, whose checks only
    get unsigned 401s, fails when they time out."""

    def __init__(self, vt: VirtualTime, pairs: ConnectionPairs) -> None:
        super().__init__(vt)
        self.a, self.b = pairs.pair(connect=False)
        self.a.remote_password = WRONG
        self.conns = [self.a, self.b]

    def check(self, log: Timeline) -> None:
        a, b = self.a, self.b
        with pytest.raises(NegotiationFailedError, match="no nomination"):
            b.connect(timeout=GUARD)
        failed_at = log.only(b, "ICE failed: no nomination")
        assert failed_at == self.started + NOMINATION_TIMEOUT
        with pytest.raises(NegotiationFailedError, match="rejected our checks"):
            a.connect(timeout=GUARD)
        failed_at = log.only(a, "ICE failed: the peer rejected our checks")
        assert failed_at == pytest.approx(self.started + CHECK_TIMEOUT, abs=EPSILON)


class TurnScenario(Scenario):
    """``a`` gathers only a relay (:class:`RelayServer`, lifetime 600 s);
    ``b`` reaches it through the relay. The allocation is refreshed 540 s
    after each grant, every Refresh succeeds, and after two lifetimes data
    still flows both ways through the relay."""

    def __init__(
        self, vt: VirtualTime, pairs: ConnectionPairs, server: RelayServer
    ) -> None:
        super().__init__(vt)
        self.server = server
        self.a = pairs.connection(
            True,
            turn_server=server.address,
            turn_username="user",
            turn_password="secret",
            transport_policy=TransportPolicy.RELAY,
        )
        self.b = pairs.connection(False)
        exchange_candidates(self.a, self.b)
        self.conns = [self.a, self.b]
        [relay] = self.a.local_candidates
        assert relay.type == "relay"
        assert (relay.host, relay.port) == server.fake.relayed
        [(granted_at, _, answer)] = [
            entry
            for entry in server.requests(Method.ALLOCATE)
            if entry[2].message_class == Class.SUCCESS
        ]
        assert answer.attributes["LIFETIME"] == LIFETIME
        self.granted_at = granted_at

    def connected(self) -> None:
        self.a.connect(timeout=GUARD)
        self.b.connect(timeout=GUARD)

    def check(self, log: Timeline) -> None:
        a, b = self.a, self.b
        until = self.granted_at + 2 * LIFETIME + 1.0
        assert self.vt.wait_until(until, timeout=GUARD) >= until
        refreshes = [
            (t, answer)
            for t, request, answer in self.server.requests(Method.REFRESH)
            if t <= until
        ]
        # Each at lifetime - margin after the previous grant, each granted.
        interval = LIFETIME - REFRESH_MARGIN
        assert [t for t, _ in refreshes] == pytest.approx(
            [self.granted_at + interval, self.granted_at + 2 * interval], abs=EPSILON
        )
        for _, answer in refreshes:
            assert answer.message_class == Class.SUCCESS
            assert answer.attributes["LIFETIME"] == LIFETIME
        # Two lifetimes on, the relay still carries data and consent. With
        # the clock paused: b's recv() reads its socket itself, out of the
        # worker's sight, and an idle worker would jump past the consent
        # checks waiting there (see syncice.testing.virtual_time).
        with self.vt.paused():
            a.send(b"ping")
            assert b.recv(timeout=GUARD) == b"ping"
            b.send(b"pong")
            assert a.recv(timeout=GUARD) == b"pong"
        [relay] = a.local_candidates
        assert relay.type == "relay"
        assert log.times(a, "TURN relay of component") == []
        assert log.times(a, "ended") == []


# --- tests ----------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def pairs(request: pytest.FixtureRequest) -> ConnectionPairs:
    """Connections of one kind; each test closes them (``close_all()``) inside
    its virtual_time() block, which refuses connections left open."""
    return ConnectionPairs(kind=request.param)


def test_consent_expires_30_s_after_the_peer_falls_silent(
    pairs: ConnectionPairs,
) -> None:
    with virtual_time() as vt, timeline(vt) as log:
        try:
            with vt.paused():
                scenario = ConsentScenario(vt, pairs)
                scenario.start()
            scenario.connected()
            with vt.paused():
                scenario.silence()
            scenario.check(log)
        finally:
            pairs.close_all()


def test_nomination_timeout_fails_the_controlled_side_after_10_s(
    pairs: ConnectionPairs,
) -> None:
    with virtual_time() as vt, timeline(vt) as log:
        try:
            with vt.paused():
                scenario = NominationScenario(vt, pairs)
                scenario.start()
                flush(vt)  # both connect() commands ran at scenario.started
            scenario.check(log)
        finally:
            pairs.close_all()


def test_turn_allocation_is_refreshed_and_outlives_two_lifetimes(
    pairs: ConnectionPairs,
) -> None:
    with virtual_time() as vt, timeline(vt) as log:
        server = RelayServer(vt, FakeTurnServer(lifetime=LIFETIME))
        try:
            with vt.paused():
                scenario = TurnScenario(vt, pairs, server)
                scenario.start()
            scenario.connected()
            scenario.check(log)
        finally:
            pairs.close_all()
            server.close()


def test_all_three_in_one_block(pairs: ConnectionPairs) -> None:
    """Consent expiry, nomination timeout and TURN refreshes side by side, on
    one worker and one clock, all started at one instant: each keeps its own
    virtual timings."""
    with virtual_time() as vt, timeline(vt) as log:
        server = RelayServer(vt, FakeTurnServer(lifetime=LIFETIME))
        try:
            with vt.paused() as t0:
                turn = TurnScenario(vt, pairs, server)
                consent = ConsentScenario(vt, pairs)
                nomination = NominationScenario(vt, pairs)
                for scenario in (turn, consent, nomination):
                    scenario.start()
                flush(vt)
            assert turn.granted_at == consent.started == nomination.started == t0
            turn.connected()
            consent.connected()
            with vt.paused():
                consent.silence()
            nomination.check(log)
            consent.check(log)
            turn.check(log)
        finally:
            pairs.close_all()
            server.close()


# --- the virtual_time() block itself ---------------------------------------------


def test_connections_started_in_the_block_run_on_its_clock() -> None:
    outside = Connection(True, local_addresses=["127.0.0.1"])
    outside.gather_candidates(timeout=GUARD)  # on the shared worker
    try:
        with virtual_time() as vt, timeline(vt) as log:
            pairs = ConnectionPairs()
            try:
                a, b = pairs.pair(connect=False)
                with vt.paused():  # both start at one instant (see start_connect)
                    start_connect(a)
                    start_connect(b)
                a.connect(timeout=GUARD)
                b.connect(timeout=GUARD)
                # Their agents ran on the virtual worker (the only thread
                # whose lines the timeline keeps)...
                assert len(log.times(a, "ICE completed")) == 1
                assert len(log.times(b, "ICE completed")) == 1
                # ... and keep consent for a virtual hour, checks every 5 s.
                vt.wait(3600.0, timeout=GUARD)
                with vt.paused():  # b's recv() reads its socket itself
                    a.send(b"still here")
                    assert b.recv(timeout=GUARD) == b"still here"
            finally:
                pairs.close_all()
    finally:
        outside.close()
    assert "syncice-virtual-worker" not in {t.name for t in threading.enumerate()}


def test_virtual_time_blocks_do_not_nest() -> None:
    with virtual_time() as vt:
        with pytest.raises(RuntimeError, match="do not nest"):
            enter_virtual_time()
        assert vt.wait(1.0, timeout=GUARD) == 1.0  # the outer block goes on


def enter_virtual_time() -> None:
    with virtual_time():
        pass  # pragma: no cover


def test_the_worker_is_stopped_and_joined_at_the_end() -> None:
    with pytest.raises(KeyError), virtual_time() as vt:
        raise KeyError("inside")
    assert "syncice-virtual-worker" not in {t.name for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="stopped"):
        vt.at(1.0)


def test_waits_in_virtual_time() -> None:
    with virtual_time(start=100.0) as vt:
        assert vt.now() == 100.0
        # No other timer: the clock goes exactly where each wait asks.
        assert vt.wait_until(110.0, timeout=GUARD) == 110.0
        assert vt.wait(5.0, timeout=GUARD) == 115.0
        with vt.paused():  # or the clock may reach 130 before at(120) is set
            first, second = vt.at(130.0), vt.at(120.0)
        assert second.result(GUARD) == 120.0
        assert first.result(GUARD) == 130.0
        assert vt.wait_until(50.0, timeout=GUARD) == 130.0  # in the past: at once


def test_a_paused_clock_waits_for_the_threshold_to_come_back() -> None:
    with virtual_time() as vt:
        with vt.paused() as paused_at:
            fut = vt.at(paused_at + 10.0)
            flush(vt)
            flush(vt)  # two whole turns: no jump while paused
            assert vt.now() == paused_at
            assert not fut.done()
            with pytest.raises(TimeoutError, match="not reached"):
                vt.wait_until(paused_at + 5.0, timeout=0)
            paused_threshold = vt.clock.autojump_threshold
        assert paused_threshold is None
        assert vt.clock.autojump_threshold == 0.0
        assert fut.result(GUARD) == paused_at + 10.0


def test_a_cancelled_wait_leaves_no_deadline_to_jump_to() -> None:
    with virtual_time(autojump_threshold=None) as vt:
        moves: list[float] = []
        vt.clock._add_listener(lambda: moves.append(vt.clock.now()))
        fut = vt.at(50.0)
        flush(vt)  # the timer is set
        assert fut.cancel()
        flush(vt)
        flush(vt)  # and cancelled on a later turn
        vt.clock.autojump_threshold = 0.0
        assert vt.wait_until(80.0, timeout=GUARD) == 80.0
        assert moves == [0.0, 80.0]  # the threshold's change, then one jump


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_waits_refuse_times_that_are_not_finite(bad: float) -> None:
    with virtual_time() as vt:
        with pytest.raises(ValueError, match="finite"):
            vt.at(bad)
        with pytest.raises(ValueError, match="cannot wait"):
            vt.wait(bad)
        with pytest.raises(ValueError, match="cannot wait"):
            vt.wait(-1.0)
