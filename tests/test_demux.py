"""The RFC 7983 demultiplexing and ChannelData framing rules, written once in
syncice/_demux.py, against messages the codec makes."""

from __future__ import annotations

import struct

import pytest

from syncice._demux import (
    STUN_COOKIE,
    frame_channel_data,
    is_channel_data,
    is_stun,
)
from syncice.stun import COOKIE, ChannelData, Class, Message, Method


def test_the_cookie_is_the_codecs() -> None:
    assert COOKIE.to_bytes(4, "big") == STUN_COOKIE


def test_stun_messages_are_stun() -> None:
    request = Message(Method.BINDING, Class.REQUEST, b"t" * 12, {})
    assert is_stun(request.encode())
    assert is_stun(request.encode(key=b"k", fingerprint=True))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 19,  # shorter than a header
        b"\x04" + b"\x00" * 3 + STUN_COOKIE + b"\x00" * 12,  # first byte 4
        b"\x00" * 4 + b"\x21\x12\xa4\x43" + b"\x00" * 12,  # no cookie
        b"\x80" * 100,  # RTP/DTLS-like data
        frame_channel_data(0x4000, b"x" * 30),
    ],
)
def test_other_datagrams_are_not_stun(data: bytes) -> None:
    assert not is_stun(data)


def test_channel_data_by_its_first_byte() -> None:
    assert is_channel_data(frame_channel_data(0x4000, b""))
    assert is_channel_data(frame_channel_data(0x4FFF, b"data"))
    assert not is_channel_data(b"\x40\x00\x00")  # no whole header
    assert not is_channel_data(b"\x3f\xff\x00\x00")
    assert not is_channel_data(b"\x50\x00\x00\x00")


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 1199])
@pytest.mark.parametrize("padded", [False, True])
def test_framing_is_the_codecs(size: int, padded: bool) -> None:
    data = bytes(range(256)) * 5
    data = data[:size]
    frame = frame_channel_data(0x4001, data, padded=padded)
    assert frame == ChannelData(0x4001, data).encode(padded=padded)
    assert frame[:4] == struct.pack("!HH", 0x4001, size)
    assert frame[4 : 4 + size] == data
    assert len(frame) == (4 + (size + 3) // 4 * 4 if padded else 4 + size)


def test_too_long_a_datagram_cannot_be_framed() -> None:
    with pytest.raises(struct.error):
        frame_channel_data(0x4000, b"x" * 0x10000)
