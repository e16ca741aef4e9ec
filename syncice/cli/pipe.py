"""``syncice pipe``: netcat over ICE.

One side (``offer``) gathers and prints a one-line offer, the other
(``answer OFFER``) prints a one-line answer; then each side's stdin goes to
the other side's stdout over the ICE connection, whole and in order
(:mod:`syncice.cli.reliable`). A line is ``syncice-pipe1:`` and a base64
JSON object: ``ufrag``, ``pwd``, ``candidates`` (SDP attribute values).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import queue
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from ..candidate import Candidate
from ..connection import Connection, TransportPolicy
from ..exceptions import ConnectionClosedError, IceTimeoutError
from .common import (
    EXIT_CODES_HELP,
    EXIT_OK,
    CommandError,
    Output,
    add_common_arguments,
    parse_host_port,
    resolve,
)
from .reliable import Endpoint

__all__ = ["add_parser", "decode_line", "encode_line", "run"]

PREFIX = "syncice-pipe1:"

EPILOG = (
    """\
examples:
  on one host:     syncice pipe offer < file.tar        (prints "offer: LINE")
  on the other:    syncice pipe answer LINE > file.tar  (prints "answer: LINE")
  back on the first, paste the answer line; the file goes across.

  scripted, through files:
    syncice pipe offer --offer-file o.txt --answer-from a.txt < in
    syncice pipe answer @o.txt --answer-file a.txt > out
  with servers:
    syncice pipe offer --stun stun.example.org \\
        --turn turn.example.org:3478 --turn-user u --turn-password p

The offer and answer lines, progress and the final report are on stderr
(--json: the report as one JSON line there); stdout is the data.

"""
    + EXIT_CODES_HELP
)


def encode_line(conn: Connection) -> str:
    """The one-line description of ``conn``: credentials and candidates."""
    data = {
        "ufrag": conn.local_username,
        "pwd": conn.local_password,
        "candidates": [c.to_sdp() for c in conn.local_candidates],
    }
    raw = json.dumps(data, separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode()


def decode_line(line: str) -> tuple[str, str, list[Candidate]]:
    """``(ufrag, pwd, candidates)`` from a line of :func:`encode_line`.

    :raises CommandError: the line is not one (exit code 2).
    """
    line = line.strip()
    if not line.startswith(PREFIX):
        raise CommandError(f"not a syncice pipe line (no {PREFIX} prefix)", 2)
    try:
        data = json.loads(base64.urlsafe_b64decode(line[len(PREFIX) :]))
        ufrag, pwd = str(data["ufrag"]), str(data["pwd"])
        candidates = [Candidate.from_sdp(str(c)) for c in data["candidates"]]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise CommandError(f"malformed pipe line: {exc}", 2) from None
    return ufrag, pwd, candidates


def _write_line(path: str, line: str) -> None:
    """Whole or not at all: a reader never sees half a line."""
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_text(line + "\n")
    os.replace(tmp, path)


def _read_line(source: str, timeout: float, out: Output) -> str:
    """A line from a file (waiting until it holds one) or from the terminal."""
    if source == "-tty":
        out.progress("paste the answer line and press Enter")
        try:
            with open("/dev/tty") as tty:
                return tty.readline()
        except OSError as exc:
            raise CommandError(f"no terminal to read the answer from: {exc}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = Path(source).read_text()
        except FileNotFoundError:
            text = ""
        if text.endswith("\n"):
            return text
        time.sleep(0.05)  # polling a file the other side writes
    raise CommandError(f"no line in {source} within {timeout:g} s")


def _connection(args: argparse.Namespace, controlling: bool) -> Connection:
    kwargs: dict[str, Any] = {}
    if args.stun:
        host, port = parse_host_port(args.stun, 3478)
        kwargs["stun_server"] = resolve(host, port)
    if args.turn:
        host, port = parse_host_port(args.turn, 3478)
        kwargs["turn_server"] = resolve(host, port)
        kwargs["turn_username"] = args.turn_user
        kwargs["turn_password"] = args.turn_password
        kwargs["turn_transport"] = "udp" if args.turn_transport == "udp" else "tcp"
        if args.turn_transport == "tls":
            kwargs["turn_ssl"] = ssl.create_default_context(cafile=args.turn_ca)
    if args.relay_only:
        kwargs["transport_policy"] = TransportPolicy.RELAY
    return Connection(ice_controlling=controlling, local_addresses=args.local, **kwargs)


def _reader(stream: BinaryIO, chunks: queue.Queue[bytes | None], size: int) -> None:
    """Read stdin into ``chunks`` (bounded: a full queue holds the reader)."""
    try:
        while True:
            data = stream.read1(size) if hasattr(stream, "read1") else stream.read(size)
            if not data:
                break
            chunks.put(data)
    finally:
        chunks.put(None)


def transfer(
    conn: Connection,
    source: BinaryIO,
    sink: BinaryIO,
    out: Output,
    *,
    idle_timeout: float,
    linger: float = 1.0,
) -> dict[str, Any]:
    """Pipe ``source`` to the peer and the peer's stream to ``sink``."""
    endpoint = Endpoint()
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=256)
    reader = threading.Thread(
        target=_reader,
        args=(source, chunks, endpoint.mss),
        name="pipe-stdin",
        daemon=True,
    )
    reader.start()
    start = last_heard = time.monotonic()
    eof = False
    done_at: float | None = None
    pending: bytes | None = None
    while True:
        now = time.monotonic()
        packets: list[bytes] = []
        while not eof and endpoint.can_write():
            if pending is None:
                try:
                    pending = chunks.get_nowait()
                except queue.Empty:
                    break
            if pending is None:
                eof = True
                packets += endpoint.finish(now)
            else:
                packets += endpoint.write(pending, now)
            pending = None
        packets += endpoint.poll(now)
        for packet in packets:
            conn.send(packet)
        if endpoint.sent_done and endpoint.received_done:
            if done_at is None:
                done_at = now
                out.progress("both streams complete")
                sink.flush()
            if now - done_at >= linger:
                break
        elif now - last_heard > idle_timeout:
            raise CommandError(f"nothing from the peer for {idle_timeout:g} s")
        deadline = endpoint.next_deadline()
        wait = 0.05 if deadline is None else max(0.0, deadline - now)
        if not eof and endpoint.can_write():
            wait = min(wait, 0.002)  # stdin may have more
        try:
            packet = conn.recv(timeout=min(wait, 0.05))
        except IceTimeoutError:
            if done_at is None and endpoint.received_done:
                for packet in endpoint.ack_now():
                    conn.send(packet)
            continue
        except ConnectionClosedError:
            if endpoint.sent_done and endpoint.received_done:
                break
            raise
        last_heard = time.monotonic()
        delivered, replies = endpoint.receive(packet, last_heard)
        for data in delivered:
            sink.write(data)
        for reply in replies:
            conn.send(reply)
    sink.flush()
    elapsed = (done_at or time.monotonic()) - start
    stats = endpoint.stats
    return {
        "bytes_sent": stats.bytes_sent,
        "bytes_received": stats.bytes_received,
        "seconds": round(elapsed, 3),
        "segments_sent": stats.segments_sent,
        "retransmissions": stats.retransmissions,
        "duplicates_received": stats.duplicates,
        "srtt_ms": None if stats.srtt is None else round(stats.srtt * 1e3, 3),
    }


def run(args: argparse.Namespace, out: Output) -> int:
    """``syncice pipe``."""
    if args.role == "answer" and not args.line:
        raise CommandError("answer needs the offer line (or @FILE)", 2)
    if args.role == "offer" and args.line:
        raise CommandError("offer takes no line; the answer comes after", 2)
    if args.turn and not (args.turn_user and args.turn_password):
        raise CommandError("--turn needs --turn-user and --turn-password", 2)
    offer = None
    if args.role == "answer":
        text = args.line
        if text.startswith("@"):
            text = _read_line(text[1:], args.timeout, out)
        offer = decode_line(text)
    conn = _connection(args, controlling=args.role == "offer")
    try:
        out.progress("gathering candidates")
        conn.gather_candidates(timeout=args.timeout)
        for candidate in conn.local_candidates:
            out.progress(f"local candidate {candidate.to_sdp()}")
        line = encode_line(conn)
        kind = "offer" if offer is None else "answer"
        out.err.write(f"{kind}: {line}\n")
        out.err.flush()
        path = args.offer_file if offer is None else args.answer_file
        if path:
            _write_line(path, line)
        if offer is None:
            offer = decode_line(_read_line(args.answer_from, args.timeout, out))
        ufrag, pwd, candidates = offer
        conn.remote_username, conn.remote_password = ufrag, pwd
        for candidate in candidates:
            conn.add_remote_candidate(candidate)
        conn.add_remote_candidate(None)
        out.progress(f"checking {len(candidates)} remote candidates")
        started = time.monotonic()
        conn.connect(timeout=args.timeout)
        connect_s = time.monotonic() - started
        [pair] = [s for s in conn.get_stats() if s.selected]
        selected = (
            f"{pair.local.type} {pair.local.host}:{pair.local.port} -> "
            f"{pair.remote.type} {pair.remote.host}:{pair.remote.port}"
        )
        out.progress(f"connected in {connect_s * 1e3:.1f} ms: {selected}")
        result = transfer(
            conn,
            sys.stdin.buffer,
            sys.stdout.buffer,
            out,
            idle_timeout=args.idle_timeout,
        )
    finally:
        conn.close()
    result.update(selected_pair=selected, connect_ms=round(connect_s * 1e3, 3))
    rate = result["bytes_sent"] / result["seconds"] / 1e6 if result["seconds"] else 0
    summary = (
        f"sent {result['bytes_sent']} B, received {result['bytes_received']} B "
        f"in {result['seconds']:.3f} s ({rate:.2f} MB/s out), "
        f"{result['retransmissions']} retransmissions"
    )
    if args.json:
        out.err.write(json.dumps(result, sort_keys=True) + "\n")
    else:
        out.progress(summary)
    out.err.flush()
    return EXIT_OK


def add_parser(commands: Any) -> None:
    """Register ``pipe`` on the ``syncice`` parser's subcommands."""
    parser = commands.add_parser(
        "pipe",
        help="netcat over ICE, with a one-line offer and answer",
        description="Connect two hosts over ICE and pipe stdin and stdout "
        "across, reliably (sequence numbers, acknowledgements, retransmission, "
        "a window).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("role", choices=("offer", "answer"))
    parser.add_argument(
        "line", nargs="?", metavar="OFFER", help="answer: the offer line, or @FILE"
    )
    parser.add_argument(
        "--offer-file", metavar="PATH", help="offer: also write it here"
    )
    parser.add_argument(
        "--answer-from",
        metavar="PATH",
        default="-tty",
        help="offer: wait for the answer line in this file (default: the terminal)",
    )
    parser.add_argument(
        "--answer-file", metavar="PATH", help="answer: also write it here"
    )
    parser.add_argument("--local", action="append", metavar="ADDRESS")
    parser.add_argument("--stun", metavar="HOST[:PORT]")
    parser.add_argument("--turn", metavar="HOST[:PORT]")
    parser.add_argument("--turn-user")
    parser.add_argument("--turn-password")
    parser.add_argument(
        "--turn-transport", choices=("udp", "tcp", "tls"), default="udp"
    )
    parser.add_argument("--turn-ca", metavar="FILE", help="CA certificates for TLS")
    parser.add_argument(
        "--relay-only", action="store_true", help="relay candidates only"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds for gathering, the answer and connecting (default 60)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        help="give up after this long without a packet (default 30)",
    )
    add_common_arguments(parser)
    parser.set_defaults(handler=run)
