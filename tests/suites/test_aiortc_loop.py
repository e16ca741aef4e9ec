"""aiortc on the one-line swap never blocks its event loop for a server's
name: an offer with audio, video and a data channel, a STUN server given
as ``localhost``, run under :mod:`tests.loopguard` (which fails at any
blocking call of the loop thread, a name lookup among them).

In a subprocess: the swap binds ``aioice`` for the whole interpreter, and
this one has the real aioice loaded for the interop tests. Loopback only:
the host candidates are gathered on 127.0.0.1, the STUN server is
``localhost:9`` (nothing listens; the lookup is what is looked at).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.conftest import requires

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import socket, sys, threading
import syncice.asyncio
sys.modules["aioice"] = syncice.asyncio
import syncice._gather
syncice._gather.host_addresses = lambda *, use_ipv4, use_ipv6: ["127.0.0.1"]
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from tests.loopguard import SHIM, guarded_run

lookups = []
real = socket.getaddrinfo

def recording(host, *args, **kwargs):
    if host == "localhost":
        lookups.append(threading.get_ident())
    return real(host, *args, **kwargs)

socket.getaddrinfo = recording

async def main():
    servers = [RTCIceServer("stun:localhost:9")]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
    pc.addTransceiver("audio")
    pc.addTransceiver("video")
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    assert pc.iceGatheringState == "complete", pc.iceGatheringState
    assert "a=candidate:" in pc.localDescription.sdp
    await pc.close()
    return threading.get_ident()

loop_thread = guarded_run(main(), allow=SHIM)
assert lookups, "the STUN server's name was never looked up"
assert loop_thread not in lookups, "a lookup ran on the loop thread"
print(len(lookups), "lookups, none on the loop thread")
"""


@requires(
    importlib.util.find_spec("aiortc") is not None,
    "aiortc is not installed: pip install aiortc==1.16.0",
)
def test_aiortcs_offer_resolves_the_stun_server_off_the_loop() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "none on the loop thread" in done.stdout
