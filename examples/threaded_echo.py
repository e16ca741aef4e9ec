"""An echo server and several clients with the blocking API, one thread each.

The server listens on a TCP socket on 127.0.0.1 for signalling. Each client
connects to it and sends its offer, SDP attribute lines (RFC 8839) ending
with ``a=end-of-candidates``; the server answers in kind::

    a=ice-ufrag:<local_username>
    a=ice-pwd:<local_password>
    a=candidate:<Candidate.to_sdp()>      (one line per candidate)
    a=end-of-candidates

Then the client (controlling) and the server's session (controlled) connect
with ICE, the client sends datagrams and checks each echo, and says ``bye``
on the TCP socket. The server's session thread then closes its connection,
which wakes its echo thread, blocked in ``recvfrom()``, with
:class:`~syncice.ConnectionClosedError`. Everything gathers on 127.0.0.1, so
no traffic leaves the machine. Exits 0 when every client got every echo.

Run: ``python examples/threaded_echo.py --clients 3 --messages 10``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from typing import TextIO

from syncice import Candidate, Connection, ConnectionClosedError

LOOPBACK = ["127.0.0.1"]


def send_description(stream: TextIO, conn: Connection) -> None:
    """Signal our credentials and candidates, then end-of-candidates."""
    lines = [f"a=ice-ufrag:{conn.local_username}", f"a=ice-pwd:{conn.local_password}"]
    lines += [f"a=candidate:{c.to_sdp()}" for c in conn.local_candidates]
    stream.write("\n".join([*lines, "a=end-of-candidates"]) + "\n")
    stream.flush()


def apply_description(stream: TextIO, conn: Connection) -> None:
    """Read the peer's lines up to end-of-candidates and give them to ``conn``."""
    for line in stream:
        line = line.rstrip("\n")
        if line.startswith("a=ice-ufrag:"):
            conn.remote_username = line.removeprefix("a=ice-ufrag:")
        elif line.startswith("a=ice-pwd:"):
            conn.remote_password = line.removeprefix("a=ice-pwd:")
        elif line.startswith("a=candidate:"):
            conn.add_remote_candidate(Candidate.from_sdp(line))
        elif line == "a=end-of-candidates":
            conn.add_remote_candidate(None)
            return
    raise ConnectionError("signalling ended before end-of-candidates")


def echo(conn: Connection, echoed: list[int], timeout: float) -> None:
    """Send every datagram back on its component until ``conn`` is closed."""
    try:
        while True:
            data, component = conn.recvfrom(timeout=timeout)
            conn.sendto(data, component)
            echoed.append(len(data))
    except ConnectionClosedError:
        pass  # close() from the session thread: the normal way out


def serve_session(sock: socket.socket, echoed: list[int], timeout: float) -> None:
    """The server's side of one client: answer, connect, echo until ``bye``."""
    conn = Connection(ice_controlling=False, local_addresses=LOOPBACK)
    sock.settimeout(timeout)  # every read of the signalling socket is bounded
    with sock, sock.makefile("rw", encoding="ascii", newline="\n") as stream:
        try:
            conn.gather_candidates(timeout=timeout)
            apply_description(stream, conn)
            send_description(stream, conn)
            conn.connect(timeout=timeout)
            echoer = threading.Thread(target=echo, args=(conn, echoed, timeout))
            echoer.start()
            stream.readline()  # "bye", or "" if the client went away
            conn.close()  # wakes the echo thread, blocked in recvfrom()
            echoer.join(timeout)
            if echoer.is_alive():
                raise RuntimeError("close() did not wake recvfrom()")
        finally:
            conn.close()  # idempotent; here for the way out of an error


def serve(
    listener: socket.socket, stop: threading.Event, echoed: list[int], timeout: float
) -> None:
    """Accept clients until ``stop`` is set; one session thread per client."""
    listener.settimeout(0.1)  # how often to look at ``stop``
    sessions: list[threading.Thread] = []
    while not stop.is_set():
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            continue
        session = threading.Thread(target=serve_session, args=(sock, echoed, timeout))
        session.start()
        sessions.append(session)
    for session in sessions:
        session.join(timeout)


def client(port: int, messages: int, timeout: float) -> str:
    """One client: offer, connect, send ``messages`` datagrams, check each echo."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = Connection(ice_controlling=True, local_addresses=LOOPBACK)
    with sock, sock.makefile("rw", encoding="ascii", newline="\n") as stream:
        try:
            conn.gather_candidates(timeout=timeout)
            send_description(stream, conn)
            apply_description(stream, conn)
            conn.connect(timeout=timeout)
            ok = 0
            for i in range(messages):
                payload = f"message {i}".encode()
                conn.send(payload)
                if conn.recv(timeout=timeout) == payload:
                    ok += 1
            stream.write("bye\n")
            stream.flush()
        finally:
            conn.close()
    return f"{ok} of {messages} echoes ok"


def main() -> int:
    parser = argparse.ArgumentParser(description="ICE echo server and clients.")
    parser.add_argument("--clients", type=int, default=3, help="default 3")
    parser.add_argument(
        "--messages", type=int, default=10, help="datagrams per client (default 10)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per call (default 10)"
    )
    args = parser.parse_args()

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    echoed: list[int] = []  # list.append is atomic: the echo threads share it
    server = threading.Thread(target=serve, args=(listener, stop, echoed, args.timeout))
    server.start()

    port = listener.getsockname()[1]
    results: list[str] = [""] * args.clients

    def run_client(index: int) -> None:
        try:
            results[index] = client(port, args.messages, args.timeout)
        except Exception as exc:
            results[index] = f"failed: {type(exc).__name__}: {exc}"

    clients = [
        threading.Thread(target=run_client, args=(i,)) for i in range(args.clients)
    ]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    stop.set()
    server.join()
    listener.close()

    expected = f"{args.messages} of {args.messages} echoes ok"
    for index, result in enumerate(results, 1):
        print(f"client {index}: {result}")  # noqa: T201
    passed = sum(result == expected for result in results)
    print(f"server echoed {len(echoed)} datagrams")  # noqa: T201
    print(f"{passed} of {args.clients} clients ok")  # noqa: T201
    return 0 if passed == args.clients else 1


if __name__ == "__main__":
    sys.exit(main())
