"""Chromium as an ICE peer: a headless browser, its page, and one run.

Debian's ``chromium``, driven by playwright's Python package over a pipe (no
browser download: ``executable_path`` is the system one), loads
``chromium_page.html`` from ``http://localhost`` (a secure context, so that
getUserMedia works) and makes an ``RTCPeerConnection`` with a data channel.
The SDP goes between the page and syncice: ufrag, pwd, candidates, and on our
side a syntactically valid DTLS fingerprint, enough for ICE. Our
``a=setup:active`` makes Chromium the DTLS server: it waits for a
ClientHello that never comes rather than giving up on one.

A run (:func:`run`) happens inside a network namespace that the test made
(``python -m tests.interop.chromium ...`` under ``ip netns exec``): both
sides, and a capture of the STUN traffic on ``lo`` (what arrives in
Chromium's checks, and syncice's answers). It prints one JSON object, what
the test then checks. Times are measured and printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import select
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import syncice
from syncice.events import ConnectionClosed
from syncice.exceptions import IceTimeoutError
from syncice.ice import IceConfig

#: The system browser, or the one named by ``$SYNCICE_CHROMIUM``.
CHROMIUM = os.environ.get("SYNCICE_CHROMIUM", "/usr/bin/chromium")
#: A quiet, isolated browser: no sandbox (we run as root in a namespace), no
#: GPU, QUIC or background traffic; a fresh profile is added per run.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A media permission, granted to a fake microphone.
FAKE_MEDIA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
PAGE = Path(__file__).with_name("chromium_page.html")
#: A syntactically valid DTLS fingerprint (RFC 8122); no DTLS ever runs.
FINGERPRINT = "sha-256 " + ":".join(["AB"] * 32)
#: Bound of every step (hang guard, not a timing claim).
STEP = 20.0

#: STUN attribute names of what Chromium's checks carry.
ATTRIBUTES = {
    0x0006: "USERNAME",
    0x0008: "MESSAGE-INTEGRITY",
    0x0020: "XOR-MAPPED-ADDRESS",
    0x0024: "PRIORITY",
    0x0025: "USE-CANDIDATE",
    0x8028: "FINGERPRINT",
    0x8029: "ICE-CONTROLLED",
    0x802A: "ICE-CONTROLLING",
    0xC057: "GOOG-NETWORK-INFO",
    0xC058: "GOOG-LAST-ICE-CHECK-RECEIVED",
    0xC059: "GOOG-MISC-INFO",
    0xC05A: "GOOG-OBSOLETE-1",
    0xC05B: "GOOG-CONNECTION-ID",
    0xC05C: "GOOG-DELTA",
    0xC05D: "GOOG-DELTA-ACK",
    0xC060: "GOOG-MESSAGE-INTEGRITY-32",
    0xC001: "NOMINATION",
}


def available() -> tuple[bool, str]:
    """Whether Chromium and playwright are here, and if not, how to get them."""
    if not os.access(CHROMIUM, os.X_OK):
        return False, f"no {CHROMIUM}: apt-get install -y chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False, "no playwright: pip install playwright (no browser download)"
    return True, ""


# --- the page and the browser ------------------------------------------------


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    """Serve the page on 127.0.0.1; its ``http://localhost`` URL."""
    body = PAGE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


#: The page's URL when Chromium runs in a namespace of its own: playwright
#: answers the request itself (no server, and no network, in between).
ROUTED_URL = "http://localhost/"


class Browser:
    """One headless Chromium with the page loaded.

    With ``netns``, Chromium runs in that network namespace rather than ours
    (an ``ip netns exec`` wrapper as its executable; playwright's pipe to it
    is inherited), and the page comes from playwright at :data:`ROUTED_URL`.
    """

    def __init__(self, url: str, *, media: bool, netns: str | None = None) -> None:
        from playwright.sync_api import Route, sync_playwright

        self._profile = tempfile.TemporaryDirectory(prefix="si-browser-profile-")
        executable = CHROMIUM
        if netns is not None:
            wrapper = Path(self._profile.name) / "chromium-in-netns"
            wrapper.write_text(
                f'#!/bin/sh\nexec ip netns exec {netns} {CHROMIUM} "$@"\n'
            )
            wrapper.chmod(0o755)
            executable = str(wrapper)
        self._pw = sync_playwright().start()
        self.context = self._pw.chromium.launch_persistent_context(
            self._profile.name,
            executable_path=executable,
            headless=True,
            args=FLAGS + (FAKE_MEDIA if media else []),
        )
        self.page = self.context.new_page()
        if netns is not None:
            body = PAGE.read_text()

            def fulfil(route: Route) -> None:
                route.fulfill(body=body, content_type="text/html; charset=utf-8")

            self.page.route(ROUTED_URL, fulfil)
            url = ROUTED_URL
        self.page.goto(url)
        self.media = media

    def call(self, expression: str, arg: object = None) -> Any:
        return self.page.evaluate(expression, arg)

    def wait(self, predicate: str, timeout: float = STEP) -> None:
        self.page.wait_for_function(predicate, timeout=timeout * 1000)

    def states(self) -> list[tuple[float, str]]:
        return [(t, s) for t, s in self.call("window.states")]

    def now_ms(self) -> float:
        return float(self.call("performance.now()"))

    def close(self) -> None:
        try:
            self.context.close()
        finally:
            self._pw.stop()
            self._profile.cleanup()


# --- SDP -----------------------------------------------------------------------


def parse(sdp: str) -> tuple[str, str, list[str]]:
    """ufrag, pwd and the UDP candidates (``candidate:`` values) of ``sdp``."""
    ufrag = pwd = ""
    candidates = []
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("a=ice-pwd:"):
            pwd = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            candidates.append(line[2:])
    return ufrag, pwd, candidates


def udp_only(candidates: list[str]) -> list[str]:
    return [c for c in candidates if c.split()[2].lower() == "udp"]


def description(
    conn: syncice.Connection, *, candidates: bool, renomination: bool = False
) -> str:
    """Our SDP: a data channel m-line with syncice's credentials and (unless
    told not to) candidates, and end-of-candidates; with ``renomination``,
    ``a=ice-options:renomination``, on which a controlling Chromium puts a
    NOMINATION attribute in its checks."""
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        f"a=ice-ufrag:{conn.local_username}",
        f"a=ice-pwd:{conn.local_password}",
        f"a=fingerprint:{FINGERPRINT}",
        "a=setup:active",
        "a=mid:0",
        "a=sctp-port:5000",
    ]
    if renomination:
        lines.append("a=ice-options:renomination")
    if candidates:
        lines += [f"a=candidate:{c.to_sdp()}" for c in conn.local_candidates]
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


# --- what goes over the wire ----------------------------------------------------


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class StunWatch:
    """A capture of the STUN messages to and from our UDP ports on ``device``.

    Records the attributes of each binding request that arrives there and
    counts the success responses sent from there (an AF_PACKET socket: root,
    inside the test's namespace).
    """

    def __init__(self, device: str = "lo") -> None:
        #: Our ports: one per local address (a check may come to any).
        self.ports: frozenset[int] = frozenset()
        self.requests: list[tuple[float, list[str]]] = []
        self.responses = 0
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
        # Every frame on lo comes here, the page's HTTP too (up to 64 KiB
        # each): a buffer that holds seconds of them, so that a thread slow
        # to read on a loaded machine drops no STUN message.
        self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        self._sock.bind((device, 0))
        # On lo each packet is seen twice, outgoing and incoming; elsewhere
        # our answers are seen only going out.
        self._loopback = device == "lo"
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        # caught_up(): asked, and answered once the socket was seen empty.
        self._asked = threading.Event()
        self._caught = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, info = self._sock.recvfrom(65535)
            except OSError:  # timed out: nothing was waiting
                self._drained()
                continue
            if not (self._loopback and info[2] == socket.PACKET_OUTGOING):
                self._packet(frame[14:])  # (on lo each packet is seen twice)
            if self._asked.is_set() and not select.select([self._sock], [], [], 0)[0]:
                self._drained()

    def _drained(self) -> None:
        if self._asked.is_set():
            self._caught.set()

    def caught_up(self, timeout: float) -> bool:
        """Wait until every frame that passed before this call is counted
        (the capture thread has found its socket empty since); whether it
        was, within ``timeout`` seconds. A message syncice handled has
        passed the device already, so the summary after this has it."""
        self._caught.clear()
        self._asked.set()
        try:
            return self._caught.wait(timeout)
        finally:
            self._asked.clear()

    def _packet(self, ip: bytes) -> None:
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            return
        udp = ip[(ip[0] & 0xF) * 4 :]
        if len(udp) < 28:
            return
        src, dst = struct.unpack("!HH", udp[:4])
        stun = udp[8:]
        kind, length, cookie = struct.unpack("!HHI", stun[:8])
        if cookie != 0x2112A442 or not self.ports:
            return
        if kind == 0x0001 and dst in self.ports:
            names = []
            at = 20
            while at + 4 <= min(len(stun), 20 + length):
                atype, alen = struct.unpack("!HH", stun[at : at + 4])
                names.append(ATTRIBUTES.get(atype, f"0x{atype:04X}"))
                at += 4 + (alen + 3) // 4 * 4
            self.requests.append((time.monotonic(), names))
        elif kind == 0x0101 and src in self.ports:
            self.responses += 1

    def summary(self) -> dict[str, Any]:
        """How many checks carried each attribute, and the answers."""
        counts: dict[str, int] = {}
        for _, names in self.requests:
            for name in set(names):
                counts[name] = counts.get(name, 0) + 1
        gaps = [
            b[0] - a[0] for a, b in zip(self.requests, self.requests[1:], strict=False)
        ]
        return {
            "checks": len(self.requests),
            "answered": self.responses,
            "attributes": dict(sorted(counts.items())),
            "longest_gap_s": round(max(gaps), 3) if gaps else None,
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


# --- one run ---------------------------------------------------------------------


def _started(conn: syncice.Connection) -> None:
    """Start connect() and make sure the worker has seen it (a round trip):
    a check arriving from now on finds the checks running."""
    with contextlib.suppress(IceTimeoutError):
        conn.connect(timeout=0)
    conn.get_stats()


def _await_resolved(conn: syncice.Connection) -> list[str]:
    """Wait (at most a step) until a remote host candidate is paired: a
    ``.local`` name resolved; the addresses of the remote host candidates."""
    deadline = time.monotonic() + STEP
    while True:
        hosts = sorted(
            {s.remote.host for s in conn.get_stats() if s.remote.type == "host"}
        )
        if hosts or time.monotonic() > deadline:
            return hosts
        time.sleep(0.01)


def run(
    role: str,
    regime: str,
    order: str,
    hold: float,
    close: str,
    consent_timeout: float | None,
    renomination: bool = False,
) -> dict[str, Any]:
    """One run: Chromium ``role`` ("offerer", controlling, or "answerer"),
    its candidates ``regime`` ("none", "host" with a media permission, or
    "mdns": none, with Chromium in a namespace of its own, ``$SI_CHROMIUM_NETNS``,
    whose default route makes it name its address),
    ``order`` of our connect() and Chromium's first check ("connect-first"
    or "check-first"), the pair kept ``hold`` seconds, then ``close`` one
    side ("syncice" or "chromium") and watch the other notice."""
    out: dict[str, Any] = {"role": role, "regime": regime, "order": order}
    config = None
    if consent_timeout is not None:
        config = IceConfig(consent_interval=1.0, consent_timeout=consent_timeout)
    addresses = sorted(
        {a for a in os.environ.get("SI_ADDRESSES", "127.0.0.1").split(",") if a}
    )
    conn = syncice.Connection(
        role == "answerer", local_addresses=addresses, config=config
    )
    watch = StunWatch(os.environ.get("SI_CAPTURE_DEV", "lo"))
    with page_server() as url:
        browser = Browser(
            url, media=regime == "host", netns=os.environ.get("SI_CHROMIUM_NETNS")
        )
        try:
            conn.gather_candidates(timeout=STEP)
            watch.ports = frozenset(c.port for c in conn.local_candidates)
            media = regime == "host"
            if role == "offerer":
                offer = browser.call("m => makeOffer(m)", media)
                browser.wait("window.gathered")  # all it signals, or nothing
                ufrag, pwd, lines = parse(offer)
                lines = udp_only(lines + browser.call("window.candidates"))
                conn.remote_username, conn.remote_password = ufrag, pwd
                out["chromium_candidates"] = lines
                for line in lines:
                    conn.add_remote_candidate(
                        syncice.Candidate.from_sdp(line.removeprefix("candidate:"))
                    )
                conn.add_remote_candidate(None)
                begin = time.monotonic()
                begin_ms = browser.now_ms()
                if order == "connect-first":
                    _started(conn)
                    if regime == "mdns":
                        # Chromium's name resolved before it has what it
                        # needs to check us: the pair checked is its host
                        # candidate, not the peer-reflexive one of a check.
                        out["resolved"] = _await_resolved(conn)
                        out["resolved_s"] = round(time.monotonic() - begin, 4)
                browser.call(
                    "a => acceptAnswer(a)",
                    description(conn, candidates=True, renomination=renomination),
                )
                if order == "check-first":
                    browser.wait("states.some(s => s[1] === 'connected')")
            else:
                # Our offer without candidates: Chromium cannot check before
                # they come (trickled), so the order is ours to choose.
                answer = browser.call(
                    "([o, m]) => makeAnswer(o, m)",
                    [description(conn, candidates=False), media],
                )
                browser.wait("window.gathered")
                ufrag, pwd, lines = parse(answer)
                lines = udp_only(lines + browser.call("window.candidates"))
                out["chromium_candidates"] = lines
                conn.remote_username, conn.remote_password = ufrag, pwd
                for line in lines:
                    conn.add_remote_candidate(
                        syncice.Candidate.from_sdp(line.removeprefix("candidate:"))
                    )
                conn.add_remote_candidate(None)
                begin = time.monotonic()
                begin_ms = browser.now_ms()
                if order == "connect-first":
                    _started(conn)
                    if regime == "mdns":
                        # Chromium's name resolved before it has what it
                        # needs to check us: the pair checked is its host
                        # candidate, not the peer-reflexive one of a check.
                        out["resolved"] = _await_resolved(conn)
                        out["resolved_s"] = round(time.monotonic() - begin, 4)
                for c in conn.local_candidates:
                    browser.call("l => addCandidate(l)", f"candidate:{c.to_sdp()}")
                if order == "check-first":
                    browser.wait("states.some(s => s[1] === 'connected')")
            conn.connect(timeout=STEP)
            out["syncice_connect_s"] = round(time.monotonic() - begin, 4)
            browser.wait("states.some(s => s[1] === 'connected')")
            connected = next(t for t, s in browser.states() if s == "connected")
            out["chromium_connected_s"] = round((connected - begin_ms) / 1000, 4)
            [pair] = [s for s in conn.get_stats() if s.selected]
            out["selected"] = f"{pair.local.type}/{pair.remote.type}"
            # The remote candidates of our pairs, a resolved .local name's
            # among them (by its address).
            out["remote_candidates"] = sorted(
                {f"{s.remote.type} {s.remote.host}" for s in conn.get_stats()}
            )
            if not watch.caught_up(STEP):
                raise RuntimeError("the capture of STUN messages is behind")
            out["checks_at_connect"] = watch.summary()
            if hold:
                held = time.monotonic()
                events = []
                while (left := hold - (time.monotonic() - held)) > 0:
                    try:
                        event = conn.get_event(timeout=left)
                    except IceTimeoutError:
                        break
                    events.append(repr(event))
                    if event is None:
                        break
                out["events_while_held"] = events
            out["chromium_states"] = [s for _, s in browser.states()]
            if not watch.caught_up(STEP):
                raise RuntimeError("the capture of STUN messages is behind")
            out["checks"] = watch.summary()
            # Close one side; the other must notice.
            closed = time.monotonic()
            closed_ms = browser.now_ms()
            if close == "syncice":
                conn.close()
                browser.wait(
                    "states.some(s => s[1] === 'disconnected' || s[1] === 'failed')",
                    timeout=60.0,
                )
                late = [
                    (t, s)
                    for t, s in browser.states()
                    if s in ("disconnected", "failed")
                ]
                out["noticed"] = late[0][1]
                out["noticed_after_s"] = round((late[0][0] - closed_ms) / 1000, 3)
            else:
                browser.call("pc.close()")
                event = conn.get_event(timeout=60.0)
                while event is not None and not isinstance(event, ConnectionClosed):
                    event = conn.get_event(timeout=60.0)
                out["noticed"] = repr(event)
                out["noticed_after_s"] = round(time.monotonic() - closed, 3)
            out["ok"] = True
        finally:
            conn.close()
            watch.close()
            browser.close()
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["offerer", "answerer"])
    parser.add_argument("regime", choices=["none", "host", "mdns"])
    parser.add_argument("order", choices=["connect-first", "check-first"])
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--close", choices=["syncice", "chromium"], default="syncice")
    parser.add_argument("--consent-timeout", type=float, default=None)
    parser.add_argument("--renomination", action="store_true")
    args = parser.parse_args(argv)
    result = run(
        args.role,
        args.regime,
        args.order,
        args.hold,
        args.close,
        args.consent_timeout,
        args.renomination,
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
