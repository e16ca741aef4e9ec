"""Fuzz harnesses for ICE-TCP's framing and endpoints (:mod:`syncice._ice_tcp`).

Invariants: whatever bytes a TCP connection delivers, in whatever chunks,
:meth:`FrameDecoder.feed` never raises, returns exactly the frames the bytes
hold up to a zero length, which sets its ``error`` (framing them again
gives back the bytes consumed), and keeps at most one unfinished frame; and
whatever frames an unauthenticated peer sends over a connection to a passive
or an active endpoint, the agent does not raise, answers with no more bytes
than it received, and learns no candidate and forms no pair.

For coverage-guided fuzzing, hand atheris ``fuzz_one_input_stream``.
"""

from __future__ import annotations

import random

from harness_tools import atheris_target, examples
from hypothesis import given
from hypothesis import strategies as st

from syncice._ice_tcp import MAX_FRAME, FrameDecoder, frame
from syncice.ice import IceAgent

PASSIVE, ACTIVE = 10, 11
STRANGER = ("192.0.2.9", 40001)


def check_stream(data: bytes, cuts: list[int]) -> None:
    """Feed ``data`` cut at ``cuts``; check the decoder's invariants."""
    decoder = FrameDecoder()
    frames: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        chunk = data[start:cut]
        start = max(start, cut)
        frames += decoder.feed(chunk)
        if decoder.error is not None:
            consumed = b"".join(frame(f) for f in frames)
            # The error is at the zero length right after what was consumed.
            assert data[len(consumed) : len(consumed) + 2] == b"\x00\x00"
            assert decoder.pending == 0
            return
        assert decoder.pending <= MAX_FRAME + 1
    consumed = b"".join(frame(f) for f in frames)
    assert data.startswith(consumed)
    assert decoder.pending == len(data) - len(consumed)


@examples(b"", b"\x00", b"\x00\x00", b"\x00\x03abc\x00\x00", b"\xff\xff" + b"x" * 9)
@given(st.binary(max_size=3000))
def fuzz_stream(data: bytes) -> None:
    """Any bytes, in one chunk: the decoder's invariants."""
    check_stream(data, [])


@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=20))
def fuzz_stream_chunks(data: bytes, cuts: list[int]) -> None:
    """Any bytes, in any chunks: the same."""
    check_stream(data, cuts)


def _agent(seed: int) -> IceAgent:
    agent = IceAgent(
        controlling=bool(seed & 1),
        local_username="abcd",
        local_password="p" * 22,
        rng=random.Random(seed),
    )
    agent.add_tcp_candidates(PASSIVE, ACTIVE, 1, ("10.0.0.1", 5000))
    agent.set_remote_credentials("wxyz", "q" * 22)
    if seed & 2:
        agent.connect(0.0)
    return agent


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=12),
    st.sampled_from([PASSIVE, ACTIVE]),
    st.integers(0, 3),
)
def fuzz_unauthenticated_frames(frames: list[bytes], endpoint: int, seed: int) -> None:
    """Frames from a peer that never authenticates: no state, no
    amplification, no raise."""
    agent = _agent(seed)
    agent.datagrams_to_send()
    for data in frames:
        assert agent.receive_datagram(endpoint, data, STRANGER, 1.0) is None
        sent = agent.datagrams_to_send()
        assert sum(len(t.data) for t in sent) <= len(data)
        assert all(t.addr == STRANGER for t in sent)
    assert agent.remote_candidates == []
    assert agent.pairs == []
    assert not agent.is_authenticated(endpoint, STRANGER)


fuzz_one_input_stream = atheris_target(fuzz_stream)
