"""What a datagram on an ICE socket is, and how relayed data is framed: each
rule written once, for every layer.

- :func:`is_stun`: RFC 7983 §7's demultiplexing by the first byte (0-3 is
  STUN), narrowed by the magic cookie (RFC 8489 §6), so that application data
  that happens to start with a small byte is not taken for STUN.
- :func:`is_channel_data`: RFC 8656 §12: a first byte of 64-79 is a
  ChannelData message (a channel number 0x4000-0x4FFF).
- :func:`frame_channel_data`: the ChannelData framing (RFC 8656 §12.4,
  padded to four bytes over streams, §12.5).

Sans-IO and allocation-free beyond the frame itself: the worker calls
:func:`is_stun` on every datagram it reads.
"""

from __future__ import annotations

import struct

__all__ = ["STUN_COOKIE", "frame_channel_data", "is_channel_data", "is_stun"]

#: The magic cookie at bytes 4-7 of every STUN message (RFC 8489 §6).
STUN_COOKIE = b"\x21\x12\xa4\x42"

_HH = struct.Struct("!HH")


def is_stun(data: bytes) -> bool:
    """Whether ``data`` is to be read as STUN: at least a header's 20 bytes,
    a first byte of 0-3 (RFC 7983 §7) and the magic cookie."""
    return len(data) >= 20 and data[0] < 4 and data[4:8] == STUN_COOKIE


def is_channel_data(data: bytes) -> bool:
    """Whether ``data`` starts like a ChannelData message: a first byte of
    64-79 (RFC 8656 §12) and room for its 4-byte header."""
    return len(data) >= 4 and 64 <= data[0] <= 79


def frame_channel_data(channel: int, data: bytes, *, padded: bool = False) -> bytes:
    """Frame ``data`` for ``channel`` (RFC 8656 §12.4).

    :param padded: pad to a multiple of four bytes, as TCP and TLS transports
        require (RFC 8656 §12.5); over UDP padding is optional and not done.
    :raises struct.error: if ``data`` is longer than 65,535 bytes.
    """
    header = _HH.pack(channel, len(data))
    if padded and len(data) & 3:
        return header + data + b"\x00" * (-len(data) & 3)
    return header + data
