#!/usr/bin/python3
"""A libnice ICE peer for interop tests, driven by JSON lines on stdin/stdout.

Run it with Debian's interpreter, which has PyGObject (python3-gi); libnice
comes from ``apt-get install -y gir1.2-nice-0.1 libnice10``::

    /usr/bin/python3 tests/interop/nice_peer.py --role controlling|controlled
        [--local-address 127.0.0.1 ...] [--stun HOST:PORT]
        [--turn HOST:PORT --turn-user U --turn-password P
         --turn-transport udp|tcp|tls] [--relay-only] [--transport udp|tcp]
        [--nomination regular|aggressive] [--max-life SECONDS] [--debug]

The agent is ``Nice.Agent.new_full(..., Nice.Compatibility.RFC5245, flags)``:
libnice's standard ICE mode (it has no separate RFC 8445 value), with
regular nomination (``REGULAR_NOMINATION``, the default here) or aggressive
nomination. It gathers UDP candidates on the ``--local-address`` addresses
only (default ``127.0.0.1``), with UPnP and ICE-TCP off, so no traffic leaves
them; ``--transport tcp`` gathers TCP candidates only instead (ICE-TCP,
RFC 6544: ``ice-tcp`` on, ``ice-udp`` off, the agent not reliable, so each
datagram is one RFC 4571 frame). ``--relay-only`` sets ``force-relay``.
The process exits by itself after ``--max-life`` seconds (default 60), on
``{"cmd": "quit"}`` and at EOF on stdin.

Every datagram received on the selected pair is sent back unchanged (any
bytes). Datagrams that arrive before libnice has selected a pair (the other
agent may finish first) are queued (at most 1024) and echoed once it has.

Output, one JSON object per line, flushed:

- ``{"event": "local-description", "ufrag", "pwd", "candidates": [...],
  "compatibility", "controlling", "nomination"}``: once, when gathering is
  done; candidates in SDP attribute form without ``a=``
  (``"candidate:1 1 UDP 2015363327 127.0.0.1 40000 typ host"``).
- ``{"event": "state", "state": "connecting"|"connected"|"ready"|"failed"|...,
  "seconds"}``: component 1's state changes.
- ``{"event": "selected-pair", "local", "remote", "local_type",
  "remote_type", "seconds"}``: libnice selected a pair.
- ``{"event": "stats", "received", "echoed"}``: the answer to ``stats``.
- ``{"event": "sent", "len"}``: the answer to ``send`` (-1: no pair yet).
- ``{"event": "error", "message"}`` and, last, ``{"event": "exit",
  "reason", "received", "echoed"}``.

``seconds`` counts from the moment the remote description was applied.

Input, one JSON object per line:

- ``{"ufrag", "pwd", "candidates": ["candidate:...", ...]}``: the remote
  description (bare ``to_sdp()`` forms without ``candidate:`` are accepted);
- ``{"candidate": "candidate:..."}``: one more remote candidate;
- ``{"cmd": "send", "hex": "..."}``, ``{"cmd": "stats"}``, ``{"cmd": "quit"}``;
- ``{"cmd": "restart"}``: an ICE restart (``nice_agent_restart``: new local
  credentials, the remote candidates forgotten but the selected pair's, which
  carries data until the new checks select one); a new
  ``local-description`` follows (the same candidates, new credentials), and
  the peer's new description comes as the first one did.

The data path uses ctypes on the agent's C pointer: PyGObject cannot bind
``nice_agent_attach_recv`` (its callback is not introspectable) and binds
``nice_agent_send`` with a UTF-8 string argument.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import threading
import time
from typing import Any

import gi  # type: ignore[import-not-found, unused-ignore]

gi.require_version("Nice", "0.1")
from gi.repository import GLib, Nice  # type: ignore[import-not-found, unused-ignore] # noqa: E402

#: Datagrams queued while libnice has no selected pair.
MAX_EARLY = 1024

_out_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    """Print one JSON line; a vanished reader is ignored."""
    line = json.dumps({"event": event, **fields})
    with _out_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


def host_port(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (IPv6 hosts in brackets) as a tuple."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


_RecvFunc = ctypes.CFUNCTYPE(
    None,
    ctypes.c_void_p,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.POINTER(ctypes.c_char),
    ctypes.c_void_p,
)


class NicePeer:
    """One libnice agent with one stream of one component."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        flags = Nice.AgentOption(0)
        if args.nomination == "regular":
            flags |= Nice.AgentOption.REGULAR_NOMINATION
        agent = Nice.Agent.new_full(
            GLib.MainContext.default(), Nice.Compatibility.RFC5245, flags
        )
        self.agent = agent
        agent.props.controlling_mode = args.role == "controlling"
        agent.props.upnp = False  # no SSDP multicast
        # ICE-TCP (RFC 6544) with --transport tcp: TCP candidates only, in
        # libnice's non-reliable mode (RFC 4571 framing, datagram semantics).
        agent.props.ice_tcp = args.transport == "tcp"
        agent.props.ice_udp = args.transport == "udp"
        agent.props.force_relay = bool(args.relay_only)
        if args.stun:
            host, port = host_port(args.stun)
            agent.props.stun_server = host
            agent.props.stun_server_port = port
        for ip in args.local_address:
            addr = Nice.Address.new()
            if not addr.set_from_string(ip):
                raise SystemExit(f"bad --local-address {ip}")
            agent.add_local_address(addr)
        self.stream = agent.add_stream(1)
        if args.turn:
            host, port = host_port(args.turn)
            relay_type = {
                "udp": Nice.RelayType.UDP,
                "tcp": Nice.RelayType.TCP,
                "tls": Nice.RelayType.TLS,
            }[args.turn_transport]
            agent.set_relay_info(
                self.stream,
                1,
                host,
                port,
                args.turn_user,
                args.turn_password,
                relay_type,
            )
        agent.connect("candidate-gathering-done", self.on_gathering_done)
        agent.connect("component-state-changed", self.on_state)
        agent.connect("new-selected-pair-full", self.on_selected_pair)

        self.lib = ctypes.CDLL("libnice.so.10")
        glib = ctypes.CDLL("libglib-2.0.so.0")
        glib.g_main_context_default.restype = ctypes.c_void_p
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype = ctypes.c_void_p
        get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        self.pointer = get_pointer(agent.__gpointer__, None)
        self.lib.nice_agent_send.restype = ctypes.c_int
        self.lib.nice_agent_send.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_char_p,
        ]
        self.lib.nice_agent_attach_recv.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            _RecvFunc,
            ctypes.c_void_p,
        ]
        self._recv_callback = _RecvFunc(self.on_recv)  # kept alive here
        if not self.lib.nice_agent_attach_recv(
            self.pointer,
            self.stream,
            1,
            glib.g_main_context_default(),
            self._recv_callback,
            None,
        ):
            raise SystemExit("nice_agent_attach_recv failed")
        self.received = 0
        self.echoed = 0
        self.early: list[bytes] = []
        self.remote_at: float | None = None
        self.quitting = False

    def seconds(self) -> float | None:
        if self.remote_at is None:
            return None
        return round(time.monotonic() - self.remote_at, 4)

    # --- libnice signals, in the GLib main loop ---------------------------

    def on_gathering_done(self, agent: Any, stream: int) -> None:
        self.describe(agent, stream)

    def describe(self, agent: Any, stream: int) -> None:
        _, ufrag, pwd = agent.get_local_credentials(stream)
        emit(
            "local-description",
            ufrag=ufrag,
            pwd=pwd,
            candidates=[self.sdp(c) for c in agent.get_local_candidates(stream, 1)],
            compatibility=Nice.Compatibility(agent.props.compatibility).value_name,
            controlling=agent.props.controlling_mode,
            nomination=agent.props.nomination_mode.value_name,
        )

    def on_state(self, agent: Any, stream: int, component: int, state: int) -> None:
        name = Nice.component_state_to_string(state).lower()
        emit("state", state=name, seconds=self.seconds())

    def on_selected_pair(
        self, agent: Any, stream: int, component: int, local: Any, remote: Any
    ) -> None:
        emit(
            "selected-pair",
            local=self.sdp(local),
            remote=self.sdp(remote),
            local_type=self.sdp(local).split()[7],
            remote_type=self.sdp(remote).split()[7],
            seconds=self.seconds(),
        )
        early, self.early = self.early, []
        for data in early:
            self.echo(stream, component, data)

    def on_recv(
        self,
        pointer: int,
        stream: int,
        component: int,
        length: int,
        buf: Any,
        user_data: int,
    ) -> None:
        data = ctypes.string_at(buf, length)
        self.received += 1
        if not self.echo(stream, component, data) and len(self.early) < MAX_EARLY:
            self.early.append(data)

    def echo(self, stream: int, component: int, data: bytes) -> bool:
        sent = self.lib.nice_agent_send(
            self.pointer, stream, component, len(data), data
        )
        if sent == len(data):
            self.echoed += 1
        return bool(sent >= 0)

    # --- helpers -------------------------------------------------------------

    def sdp(self, candidate: Any) -> str:
        text: str = self.agent.generate_local_candidate_sdp(candidate)
        return text[2:] if text.startswith("a=") else text

    def parse(self, text: str) -> Any:
        text = text.strip().removeprefix("a=")
        if not text.startswith("candidate:"):
            text = "candidate:" + text
        candidate = self.agent.parse_remote_candidate_sdp(self.stream, "a=" + text)
        if candidate is None:
            emit("error", message=f"cannot parse candidate {text!r}")
        return candidate

    # --- commands from stdin, in the GLib main loop ------------------------

    def handle(self, msg: dict[str, Any]) -> bool:
        if "ufrag" in msg:
            self.agent.set_remote_credentials(self.stream, msg["ufrag"], msg["pwd"])
            parsed = [self.parse(s) for s in msg.get("candidates", [])]
            candidates = [c for c in parsed if c is not None]
            self.remote_at = time.monotonic()
            if candidates:
                added = self.agent.set_remote_candidates(self.stream, 1, candidates)
                if added != len(candidates):
                    emit(
                        "error",
                        message=f"{added} of {len(candidates)} candidates added",
                    )
        elif "candidate" in msg:
            candidate = self.parse(msg["candidate"])
            if candidate is not None:
                self.agent.set_remote_candidates(self.stream, 1, [candidate])
        elif msg.get("cmd") == "send":
            data = bytes.fromhex(msg["hex"])
            sent = self.lib.nice_agent_send(
                self.pointer, self.stream, 1, len(data), data
            )
            emit("sent", len=sent)
        elif msg.get("cmd") == "stats":
            emit("stats", received=self.received, echoed=self.echoed)
        elif msg.get("cmd") == "quit":
            self.quit("quit")
        elif msg.get("cmd") == "restart":
            if not self.agent.restart():
                emit("error", message="nice_agent_restart failed")
            self.describe(self.agent, self.stream)
        else:
            emit("error", message=f"unknown command {msg!r}")
        return False  # one-shot idle callback

    def quit(self, reason: str) -> bool:
        if not self.quitting:
            self.quitting = True
            emit("exit", reason=reason, received=self.received, echoed=self.echoed)
            self.loop.quit()
        return False

    def read_stdin(self) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                emit("error", message=f"bad JSON {line.strip()!r}")
                continue
            if isinstance(msg, dict):
                GLib.idle_add(self.handle, msg)
            else:
                emit("error", message=f"not an object: {line.strip()!r}")
        GLib.idle_add(self.quit, "stdin-eof")

    def run(self) -> None:
        if not self.agent.gather_candidates(self.stream):
            raise SystemExit("gather_candidates failed")
        threading.Thread(target=self.read_stdin, daemon=True).start()
        GLib.timeout_add(int(self.args.max_life * 1000), self.quit, "max-life")
        self.loop.run()
        self.release()

    def release(self) -> None:
        """Give back the TURN allocations before exiting (``close_async``
        sends Refresh with lifetime 0), waiting at most 1 s for the answers.
        Without it each relayed run leaves a UDP allocation on the server
        for its whole lifetime, and a later process that gets the same
        local port from the kernel has its Allocate refused with 437."""
        done = GLib.MainLoop()
        timed_out: list[bool] = []

        def released(*_: object) -> None:
            done.quit()

        def too_slow() -> bool:
            timed_out.append(True)
            done.quit()
            return False  # once

        self.agent.close_async(released, None)
        timer = GLib.timeout_add(1000, too_slow)
        done.run()
        if timed_out:  # after the "exit" event: say so on stderr only
            sys.stderr.write("nice_peer: TURN allocations not released in 1 s\n")
        else:
            GLib.source_remove(timer)
        self.agent.remove_stream(self.stream)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--role", choices=["controlling", "controlled"], required=True)
    parser.add_argument(
        "--local-address",
        action="append",
        help="an address to gather host candidates on (repeatable; default 127.0.0.1)",
    )
    parser.add_argument("--stun", help="HOST:PORT of a STUN server")
    parser.add_argument("--turn", help="HOST:PORT of a TURN server")
    parser.add_argument("--turn-user", default="")
    parser.add_argument("--turn-password", default="")
    parser.add_argument(
        "--turn-transport", choices=["udp", "tcp", "tls"], default="udp"
    )
    parser.add_argument(
        "--relay-only", action="store_true", help="relayed candidates only"
    )
    parser.add_argument(
        "--transport",
        choices=["udp", "tcp"],
        default="udp",
        help="host candidates over UDP, or over TCP only (ICE-TCP, RFC 6544)",
    )
    parser.add_argument(
        "--nomination", choices=["regular", "aggressive"], default="regular"
    )
    parser.add_argument(
        "--max-life", type=float, default=60.0, help="exit after this many seconds"
    )
    parser.add_argument("--debug", action="store_true", help="libnice debug on stderr")
    args = parser.parse_args(argv)
    if args.local_address is None:
        args.local_address = ["127.0.0.1"]
    return args


def main() -> None:
    args = parse_args()
    if args.debug:
        import os

        os.environ.setdefault("G_MESSAGES_DEBUG", "libnice")
        Nice.debug_enable(True)
    NicePeer(args).run()


if __name__ == "__main__":
    main()
