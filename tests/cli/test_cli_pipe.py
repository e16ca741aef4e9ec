"""``syncice pipe``: the reliable framing in virtual time, and 10 MB between
two processes on loopback, clean and with 5 % loss in a network namespace."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from syncice.cli.common import CommandError
from syncice.cli.pipe import decode_line
from syncice.cli.reliable import Endpoint
from tests.cli.servers import cli, report
from tests.conftest import missing_service
from tests.netns import own_namespace

ROOT = Path(__file__).resolve().parent.parent.parent

# --- the framing, in virtual time ---------------------------------------------------


def simulate(
    data_a: bytes, data_b: bytes, *, loss: float, seed: int, reorder: float = 0.0
) -> tuple[bytes, bytes, float, Endpoint, Endpoint]:
    """Two endpoints over a lossy, delaying link (5 ms each way, seeded)."""
    rng = random.Random(seed)
    ends = (Endpoint(), Endpoint())
    sources = [bytearray(data_a), bytearray(data_b)]
    received = [bytearray(), bytearray()]
    finished = [False, False]
    wire: list[tuple[float, int, int, bytes]] = []  # (arrival, order, to, packet)
    order = 0
    now = 0.0

    def put(to: int, packets: list[bytes]) -> None:
        nonlocal order
        for packet in packets:
            if rng.random() < loss:
                continue
            delay = 0.005 + (rng.random() * 0.01 if rng.random() < reorder else 0)
            order += 1
            wire.append((now + delay, order, to, packet))

    while not all(e.sent_done and e.received_done for e in ends):
        assert now < 600, "no progress in 600 virtual seconds"
        for side, end in enumerate(ends):
            while end.can_write() and not finished[side]:
                if sources[side]:
                    chunk = bytes(sources[side][: end.mss])
                    del sources[side][: end.mss]
                    put(1 - side, end.write(chunk, now))
                else:
                    finished[side] = True
                    put(1 - side, end.finish(now))
            put(1 - side, end.poll(now))
        times = [t for t, *_ in wire]
        times += [d for d in (e.next_deadline() for e in ends) if d is not None]
        now = max(now, min(times))
        wire.sort()
        while wire and wire[0][0] <= now:
            _, _, to, packet = wire.pop(0)
            delivered, replies = ends[to].receive(packet, now)
            for chunk in delivered:
                received[to] += chunk
            put(1 - to, replies)
    return bytes(received[1]), bytes(received[0]), now, ends[0], ends[1]


@pytest.mark.parametrize(
    ("loss", "reorder", "seed"),
    [(0.0, 0.0, 1), (0.05, 0.0, 2), (0.05, 0.3, 3), (0.3, 0.5, 4)],
)
def test_stream_arrives_whole_and_in_order(
    loss: float, reorder: float, seed: int
) -> None:
    rng = random.Random(seed)
    a = rng.randbytes(400_000)
    b = rng.randbytes(50_000)
    at_b, at_a, elapsed, end_a, _ = simulate(
        a, b, loss=loss, seed=seed, reorder=reorder
    )
    assert at_b == a
    assert at_a == b
    if loss:
        assert end_a.stats.retransmissions > 0
    report(
        f"virtual: loss {loss:.0%} reorder {reorder:.0%}: {elapsed:.2f} s, "
        f"{end_a.stats.retransmissions} retransmissions"
    )


def test_empty_streams() -> None:
    at_b, at_a, _, _, _ = simulate(b"", b"", loss=0.1, seed=5)
    assert (at_b, at_a) == (b"", b"")


def test_window_bounds_what_is_held() -> None:
    end = Endpoint(window=64)
    # Out-of-order data beyond the window is dropped, not held.
    for seq in range(1, 1000):
        end.receive(b"D" + seq.to_bytes(8, "big") + b"x", 0.0)
    delivered, _ = end.receive(b"D" + (0).to_bytes(8, "big") + b"y", 0.0)
    assert delivered == [b"y"] + [b"x"] * 63
    assert end.stats.bytes_received == 64


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"D",
        b"Dshort",
        b"F" + bytes(9),
        b"A" + bytes(8),
        b"Z" * 20,
        b"D" + bytes(8) + bytes(2000),
    ],
)
def test_malformed_packets_are_counted_and_ignored(packet: bytes) -> None:
    end = Endpoint()
    assert end.receive(packet, 0.0) == ([], [])
    assert end.stats.malformed == 1


def test_an_ack_beyond_what_was_sent_is_ignored() -> None:
    end = Endpoint(window=8)
    end.write(b"x", 0.0)
    ack = b"A" + (5).to_bytes(8, "big") + b"\x00"
    assert end.receive(ack, 0.01) == ([], [])
    assert end.poll(1.0) != []  # still in flight, sent again


def test_lines_that_are_not_offers() -> None:
    for line in ("hello", "syncice-pipe1:!!!", "syncice-pipe1:e30="):
        with pytest.raises(CommandError) as info:
            decode_line(line)
        assert info.value.code == 2


# --- two processes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("pipe") / "10MB"
    data = random.Random(18).randbytes(10_000_000)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def run_pair(
    tmp: Path,
    payload: Path,
    prefix: Sequence[str] = (),
    timeout: float = 300,
    *,
    answer_prefix: Sequence[str] | None = None,
    offer_extra: Sequence[str] = ("--local", "127.0.0.1"),
    answer_extra: Sequence[str] = ("--local", "127.0.0.1"),
) -> tuple[str, dict[str, object], dict[str, object]]:
    """Offerer sends ``payload``; the answerer writes what it gets to a file."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    program = [sys.executable, "-m", "syncice", "pipe"]
    base = [*prefix, *program]
    answer_base = [*(prefix if answer_prefix is None else answer_prefix), *program]
    common = ["--json", "--timeout", "30"]
    offer_file, answer_file, received = tmp / "offer", tmp / "answer", tmp / "out"
    offer_args = ["--offer-file", str(offer_file), "--answer-from", str(answer_file)]
    answer_tail = [*answer_extra, "--answer-file", str(answer_file)]
    with payload.open("rb") as stdin, (tmp / "a.err").open("wb") as err:
        offerer = subprocess.Popen(
            [*base, "offer", *common, *offer_extra, *offer_args],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=ROOT,
        )
    try:
        with (
            received.open("wb") as stdout,
            (tmp / "b.err").open("wb") as err,
        ):
            answerer = subprocess.run(
                [*answer_base, "answer", f"@{offer_file}", *common, *answer_tail],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=err,
                env=env,
                cwd=ROOT,
                timeout=timeout,
                check=False,
            )
        assert offerer.wait(timeout=timeout) == 0, (tmp / "a.err").read_text()
    finally:
        if offerer.poll() is None:
            offerer.kill()
            offerer.wait()
    assert answerer.returncode == 0, (tmp / "b.err").read_text()
    results = [
        json.loads((tmp / name).read_text().splitlines()[-1])
        for name in ("a.err", "b.err")
    ]
    return hashlib.sha256(received.read_bytes()).hexdigest(), results[0], results[1]


@pytest.mark.interop
def test_ten_megabytes_on_loopback(tmp_path: Path, payload: tuple[Path, str]) -> None:
    path, digest = payload
    got, sender, receiver = run_pair(tmp_path, path)
    assert got == digest
    assert sender["bytes_sent"] == receiver["bytes_received"] == 10_000_000
    report(
        f"pipe 10 MB on loopback: {sender['seconds']} s, "
        f"{sender['retransmissions']} retransmissions"
    )


#: 5 % of UDP packets dropped at random on the way in.
LOSS_RULES = (
    "add table inet si_loss; "
    "add chain inet si_loss in { type filter hook input priority 0; }; "
    "add rule inet si_loss in meta l4proto udp "
    "numgen random mod 100 < 5 counter drop"
)


@pytest.fixture
def lossy_netns() -> Iterator[str]:
    """A namespace whose loopback drops 5 % of UDP packets (nft, at random)."""
    with own_namespace(f"si-clidocs-loss-{os.getpid()}", LOSS_RULES) as name:
        yield name


@pytest.mark.interop
def test_ten_megabytes_with_five_percent_loss(
    tmp_path: Path, payload: tuple[Path, str], lossy_netns: str
) -> None:
    path, digest = payload
    prefix = ["ip", "netns", "exec", lossy_netns]
    got, sender, receiver = run_pair(tmp_path, path, prefix)
    assert got == digest
    assert receiver["bytes_received"] == 10_000_000
    counters = subprocess.run(
        [*prefix, "nft", "list", "ruleset"], capture_output=True, text=True, check=True
    ).stdout
    dropped = int(counters.split("counter packets ")[1].split()[0])
    assert dropped > 0  # the loss was real
    assert isinstance(sender["retransmissions"], int)
    assert sender["retransmissions"] > 0
    report(
        f"pipe 10 MB with 5 % loss: {sender['seconds']} s, {dropped} packets "
        f"dropped, {sender['retransmissions']} retransmissions"
    )


def test_help_and_bad_arguments() -> None:
    help_text = cli(["pipe", "--help"]).stdout
    assert "syncice pipe answer @o.txt --answer-file a.txt > out" in help_text
    assert cli(["pipe", "answer"]).returncode == 2
    assert cli(["pipe", "offer", "extra"]).returncode == 2
    assert cli(["pipe", "answer", "not-a-line"]).returncode == 2


@pytest.mark.interop
def test_through_the_nat_lab_with_turn(
    tmp_path: Path, payload: tuple[Path, str]
) -> None:
    """Host a (cone NAT) to host c (symmetric NAT): a relay is needed."""
    from tests.netlab.lab import Lab, missing_components

    missing = missing_components()
    if missing:
        missing_service("NAT lab needs " + ", ".join(missing))
    lab = Lab.up(f"si-clidocs-pipe-{os.getpid()}")
    try:
        env = lab.env
        stun = ["--stun", lab.stun]
        turn = [
            "--turn",
            lab.stun,
            "--turn-user",
            env["NETLAB_TURN_USER"],
            "--turn-password",
            env["NETLAB_TURN_PASSWORD"],
        ]
        small = tmp_path / "1MB"
        small.write_bytes(payload[0].read_bytes()[:1_000_000])
        got, sender, _ = run_pair(
            tmp_path,
            small,
            lab.exec_args("a"),
            answer_prefix=lab.exec_args("c"),
            offer_extra=stun,
            answer_extra=[*stun, *turn],
        )
    finally:
        lab.down()
    assert got == hashlib.sha256(small.read_bytes()).hexdigest()
    assert "relay" in str(sender["selected_pair"])
    report(
        f"pipe 1 MB through the lab (cone to symmetric, TURN): {sender['seconds']} s,"
        f" {sender['selected_pair']}"
    )


def test_congestion_window_halves_on_loss_but_keeps_its_floor() -> None:
    end = Endpoint(window=512, min_cwnd=8)
    sent = 0
    while end.can_write():
        end.write(b"x", 0.0)
        sent += 1
    assert sent == 16  # the initial window: twice the floor
    assert end.poll(10.0) != []  # all time out: a loss episode
    assert end.cwnd == 8
    assert end.poll(20.0) != []  # another timeout, but not under the floor
    assert end.cwnd == 8
