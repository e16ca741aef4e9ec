"""A TCP or TLS connection to a TURN server, driven by the worker's selector.

Rules of this module:

- Everything runs on the worker thread and never blocks: the connect, the TLS
  handshake, reads and writes are non-blocking, resumed when the selector says
  the socket is ready. Bytes written before the connection is up wait in a
  buffer and go out as soon as it is.
- The stream carries whatever the TURN client framed; this module knows
  nothing of STUN. Received bytes go to ``on_data`` as they come.
- Any failure (connect refused, certificate rejected, reset, the server
  closing) ends the stream once: ``on_lost(reason)`` is called, the socket is
  closed, and later writes are dropped.
- The write buffer is bounded (:data:`MAX_BUFFER`): a server that stops
  reading cannot make us hold memory without end; what does not fit is
  dropped and counted in :attr:`StreamTransport.dropped`.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections.abc import Callable

from ._worker import Worker

__all__ = ["MAX_BUFFER", "StreamTransport"]

logger = logging.getLogger(__name__)

#: The most bytes a stream holds for writing before it drops what comes.
MAX_BUFFER = 1 << 20

_CONNECTING = "connecting"
_HANDSHAKE = "handshake"
_OPEN = "open"
_CLOSED = "closed"


class StreamTransport:
    """One TCP connection, optionally with TLS on top.

    :param worker: the worker whose selector drives it.
    :param sock: a non-blocking, unconnected TCP socket; the transport owns it.
    :param server: where to connect.
    :param context: a client :class:`ssl.SSLContext` for TLS, or ``None``.
    :param server_hostname: the name the certificate must match (TLS).
    :param on_data: called with each chunk of bytes received.
    :param on_lost: called once with a reason when the stream ends for any
        cause but :meth:`close`.
    """

    def __init__(
        self,
        worker: Worker,
        sock: socket.socket,
        server: tuple[str, int],
        *,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._worker = worker
        self._sock: socket.socket = sock
        self._server = server
        self._context = context
        self._server_hostname = server_hostname
        self._on_data = on_data
        self._on_lost = on_lost
        self._out = bytearray()
        self._state = _CONNECTING
        self._want_write = True
        #: Bytes dropped because the write buffer was full.
        self.dropped = 0

    @property
    def is_open(self) -> bool:
        """Whether the connection (and its TLS handshake) is up."""
        return self._state == _OPEN

    def start(self) -> None:
        """Begin the non-blocking connect."""
        # Small messages (checks, TURN requests) go out at once: with Nagle's
        # algorithm a second one waits for the ACK of the first, which the
        # server may delay by 40 ms (asyncio sets TCP_NODELAY too).
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            code = self._sock.connect_ex(self._server)
        except OSError as exc:  # an address the socket cannot take
            code = exc.errno or errno.EINVAL
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            where = f"{self._server[0]}:{self._server[1]}"
            self._lose(f"connect to {where}: {errno.errorcode.get(code, code)}")
            return
        self._worker.add_reader(self._sock, self._on_ready, writable=True)

    def write(self, data: bytes) -> None:
        """Send ``data`` when the stream can take it (never blocks)."""
        if self._state == _CLOSED:
            self.dropped += len(data)
            return
        if len(self._out) + len(data) > MAX_BUFFER:
            self.dropped += len(data)
            return
        self._out += data
        if self._state == _OPEN:
            self._flush()
            self._watch()

    def forget_after_fork(self) -> None:
        """In a child after ``fork()``: close the child's descriptor of the
        socket, leaving the parent's connection as it is."""
        self._state = _CLOSED
        self._out.clear()
        self._sock.close()

    def close(self) -> None:
        """Close the socket without calling ``on_lost`` (idempotent)."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._out.clear()
        self._worker.remove_reader(self._sock)
        self._sock.close()

    # --- worker callbacks -------------------------------------------------------

    def _on_ready(self) -> None:
        try:
            if self._state == _CONNECTING:
                self._finish_connect()
            if self._state == _HANDSHAKE:
                self._handshake()
            if self._state == _OPEN:
                self._read()
            if self._state == _OPEN:
                self._flush()
        except ssl.SSLError as exc:
            self._lose(f"TLS: {exc.reason or exc}")
        except OSError as exc:
            self._lose(exc.strerror or str(exc))
        if self._state != _CLOSED:
            self._watch()

    def _finish_connect(self) -> None:
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == errno.EINPROGRESS:  # pragma: no cover - spurious wakeup
            return
        if code:
            raise OSError(code, f"connect: {errno.errorcode.get(code, code)}")
        if self._context is None:
            self._state = _OPEN
            self._want_write = bool(self._out)
            return
        # The wrapped socket takes over the descriptor.
        self._worker.remove_reader(self._sock)
        self._sock = self._context.wrap_socket(
            self._sock,
            do_handshake_on_connect=False,
            server_hostname=self._server_hostname,
        )
        self._state = _HANDSHAKE

    def _handshake(self) -> None:
        assert isinstance(self._sock, ssl.SSLSocket)
        try:
            self._sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want_write = False
            return
        except ssl.SSLWantWriteError:
            self._want_write = True
            return
        self._state = _OPEN

    def _read(self) -> None:
        sock = self._sock
        while self._state == _OPEN:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:  # pragma: no cover - renegotiation
                self._want_write = True
                return
            if not data:
                self._lose("closed by the server")
                return
            self._on_data(data)

    def _flush(self) -> None:
        out = self._out
        while out:
            try:
                sent = self._sock.send(out)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                break
            except ssl.SSLWantReadError:  # pragma: no cover - renegotiation
                break
            del out[:sent]
        self._want_write = bool(out)

    def _watch(self) -> None:
        self._worker.add_reader(self._sock, self._on_ready, writable=self._want_write)

    def _lose(self, reason: str) -> None:
        if self._state == _CLOSED:
            return
        self.close()
        logger.debug("stream to %s:%d lost: %s", *self._server, reason)
        self._on_lost(reason)
