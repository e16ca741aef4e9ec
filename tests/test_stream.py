"""The TCP/TLS stream to a TURN server (:mod:`syncice._stream`), on loopback
with a real worker and small servers made here.

Every wait is on a future, with :data:`HANG` seconds as a hang guard only.
"""

from __future__ import annotations

import concurrent.futures
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncice import _stream
from syncice._stream import StreamTransport
from syncice._worker import Worker

HANG = 10.0


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.stop()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


class Sink:
    """What a transport reports: bytes received and the reason it was lost."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.lost: concurrent.futures.Future[str] = concurrent.futures.Future()
        self.got: dict[int, concurrent.futures.Future[bytes]] = {}
        self.lock = threading.Lock()

    def on_data(self, data: bytes) -> None:
        with self.lock:
            self.data += data
            for size, fut in list(self.got.items()):
                if len(self.data) >= size and not fut.done():
                    fut.set_result(bytes(self.data[:size]))

    def wait_for(self, size: int) -> bytes:
        with self.lock:
            fut = self.got.setdefault(size, concurrent.futures.Future())
            if len(self.data) >= size and not fut.done():
                fut.set_result(bytes(self.data[:size]))
        return fut.result(HANG)

    def on_lost(self, reason: str) -> None:
        self.lost.set_result(reason)


def open_stream(
    worker: Worker,
    server: tuple[str, int],
    sink: Sink,
    *,
    context: ssl.SSLContext | None = None,
    hostname: str | None = None,
) -> StreamTransport:
    sock = socket.socket()
    sock.setblocking(False)
    stream = StreamTransport(
        worker,
        sock,
        server,
        context=context,
        server_hostname=hostname,
        on_data=sink.on_data,
        on_lost=sink.on_lost,
    )
    worker.submit(stream.start).result(HANG)
    return stream


def test_bytes_written_before_the_connect_go_out_then_echo_back(
    worker: Worker, listener: socket.socket
) -> None:
    sink = Sink()
    stream = open_stream(worker, listener.getsockname(), sink)
    worker.submit(lambda: stream.write(b"hello ")).result(HANG)
    peer, _ = listener.accept()
    with peer:
        peer.settimeout(HANG)
        worker.submit(lambda: stream.write(b"world")).result(HANG)
        received = b""
        while len(received) < 11:
            received += peer.recv(100)
        assert received == b"hello world"
        peer.sendall(b"echo")
        assert sink.wait_for(4) == b"echo"
        assert worker.submit(lambda: stream.is_open).result(HANG)
        peer.close()
        assert sink.lost.result(HANG) == "closed by the server"
    # Lost: writes are dropped and counted, close() is harmless.
    worker.submit(lambda: stream.write(b"late")).result(HANG)
    assert stream.dropped == 4
    worker.submit(stream.close).result(HANG)


def test_connection_refused_is_reported(worker: Worker) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = Sink()
    open_stream(worker, ("127.0.0.1", port), sink)
    assert "refused" in sink.lost.result(HANG).lower()


def test_an_unroutable_address_fails_at_once(worker: Worker) -> None:
    sink = Sink()
    # An IPv4 socket cannot even try an IPv6 address: nothing is sent.
    open_stream(worker, ("::1", 9), sink)
    assert sink.lost.result(HANG).startswith("connect to ::1:9: ")


def test_close_does_not_report_a_loss(worker: Worker, listener: socket.socket) -> None:
    sink = Sink()
    stream = open_stream(worker, listener.getsockname(), sink)
    worker.submit(stream.close).result(HANG)
    worker.submit(stream.close).result(HANG)
    assert not sink.lost.done()


def test_the_write_buffer_is_bounded(
    worker: Worker, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_stream, "MAX_BUFFER", 1000)
    sink = Sink()
    sock = socket.socket()
    sock.setblocking(False)
    stream = StreamTransport(
        worker,
        sock,
        listener.getsockname(),
        context=None,
        server_hostname=None,
        on_data=sink.on_data,
        on_lost=sink.on_lost,
    )

    def fill() -> None:
        # In the same worker turn as the connect: nothing can go out yet.
        stream.start()
        stream.write(b"x" * 600)
        stream.write(b"y" * 600)  # does not fit: dropped

    worker.submit(fill).result(HANG)
    assert stream.dropped == 600
    worker.submit(stream.close).result(HANG)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def tls_server(
    listener: socket.socket, certificate: tuple[Path, Path]
) -> concurrent.futures.Future[bytes]:
    """Accept one TLS client, read 5 bytes, answer them reversed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    fut: concurrent.futures.Future[bytes] = concurrent.futures.Future()

    def serve() -> None:
        try:
            peer, _ = listener.accept()
            peer.settimeout(HANG)
            with context.wrap_socket(peer, server_side=True) as tls:
                data = b""
                while len(data) < 5:
                    data += tls.recv(5 - len(data))
                tls.sendall(data[::-1])
                fut.set_result(data)
                tls.recv(1)  # until the client closes
        except (OSError, ssl.SSLError) as exc:
            fut.set_exception(exc)

    threading.Thread(target=serve, daemon=True).start()
    return fut


def test_tls_handshake_then_data(
    worker: Worker, listener: socket.socket, certificate: tuple[Path, Path]
) -> None:
    served = tls_server(listener, certificate)
    sink = Sink()
    context = ssl.create_default_context(cafile=str(certificate[0]))
    stream = open_stream(
        worker, listener.getsockname(), sink, context=context, hostname="127.0.0.1"
    )
    worker.submit(lambda: stream.write(b"hello")).result(HANG)
    assert served.result(HANG) == b"hello"
    assert sink.wait_for(5) == b"olleh"
    worker.submit(stream.close).result(HANG)


def test_tls_with_an_untrusted_certificate_is_lost(
    worker: Worker, listener: socket.socket, certificate: tuple[Path, Path]
) -> None:
    served = tls_server(listener, certificate)
    sink = Sink()
    open_stream(
        worker,
        listener.getsockname(),
        sink,
        context=ssl.create_default_context(),
        hostname="127.0.0.1",
    )
    assert "CERTIFICATE_VERIFY_FAILED" in sink.lost.result(HANG)
    with pytest.raises((OSError, ssl.SSLError)):
        served.result(HANG)


def test_tls_with_the_wrong_name_is_lost(
    worker: Worker, listener: socket.socket, certificate: tuple[Path, Path]
) -> None:
    tls_server(listener, certificate)
    sink = Sink()
    context = ssl.create_default_context(cafile=str(certificate[0]))
    open_stream(
        worker, listener.getsockname(), sink, context=context, hostname="example.org"
    )
    assert "CERTIFICATE_VERIFY_FAILED" in sink.lost.result(HANG)


def test_small_writes_are_not_delayed_by_nagle(
    worker: Worker, listener: socket.socket
) -> None:
    # A check right after a TURN request must not wait for the server's
    # (delayed) ACK of the first: TCP_NODELAY, as asyncio sets it.
    sink = Sink()
    stream = open_stream(worker, listener.getsockname(), sink)
    peer, _ = listener.accept()
    with peer:
        assert stream._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    worker.submit(stream.close).result(HANG)
