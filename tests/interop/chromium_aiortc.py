"""aiortc to Chromium over a data channel, on syncice.asyncio or on aioice.

``python -m tests.interop.chromium_aiortc swap`` puts syncice's asyncio shim
where aiortc imports aioice from (the documented one-line switch)::

    sys.modules["aioice"] = syncice.asyncio

before aiortc is imported; ``aioice`` leaves aiortc on the real aioice (the
baseline). aiortc offers a data channel; the page of ``chromium.py``
answers with a fake microphone granted (so that it signals its host
candidates), and echoes every message. We send :data:`MESSAGES` binary
messages one after the other and check each comes back byte for byte.

Run inside the test's network namespace (``tests/interop/test_chromium.py``
starts it with ``ip netns exec``); prints one JSON object: the connect-to-open
time (``setRemoteDescription(answer)`` to the channel's ``open``), measured,
never asserted, and how many messages came back intact.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
from typing import Any

import syncice.asyncio
from tests.interop.chromium import CHROMIUM, FAKE_MEDIA, FLAGS, STEP, page_server

#: Messages echoed in a run.
MESSAGES = 1000


def message(i: int) -> bytes:
    """Message ``i``: 1 to 1200 random bytes, zeros included."""
    rng = random.Random(i)
    return rng.randbytes(rng.randrange(1, 1201))


async def run(use_syncice: bool) -> dict[str, Any]:
    if use_syncice:
        sys.modules["aioice"] = syncice.asyncio
    import aioice
    from aiortc import RTCPeerConnection, RTCSessionDescription
    from playwright.async_api import async_playwright

    out: dict[str, Any] = {"aioice": aioice.__name__, "messages": 0}
    with (
        page_server() as url,
        tempfile.TemporaryDirectory(prefix="si-browser-profile-") as profile,
    ):
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS + FAKE_MEDIA,
            )
            pc = RTCPeerConnection()
            try:
                page = await context.new_page()
                await page.goto(url)
                channel = pc.createDataChannel("echo")
                opened = asyncio.Event()
                echoes: asyncio.Queue[bytes | str] = asyncio.Queue()
                channel.on("open", opened.set)
                channel.on("message", echoes.put_nowait)
                await pc.setLocalDescription(await pc.createOffer())
                await page.evaluate(
                    "([o, m]) => makeAnswer(o, m)", [pc.localDescription.sdp, True]
                )
                await page.wait_for_function("window.gathered", timeout=STEP * 1000)
                answer = await page.evaluate("pc.localDescription.sdp")
                start = time.monotonic()
                await pc.setRemoteDescription(
                    RTCSessionDescription(sdp=answer, type="answer")
                )
                await asyncio.wait_for(opened.wait(), STEP)
                out["connect_to_open_s"] = round(time.monotonic() - start, 4)
                began = time.monotonic()
                for i in range(MESSAGES):
                    data = message(i)
                    channel.send(data)
                    echoed = await asyncio.wait_for(echoes.get(), STEP)
                    if echoed != data:
                        raise AssertionError(
                            f"message {i} came back altered: {echoed!r:.60} for "
                            f"{len(data)} bytes"
                        )
                    out["messages"] += 1
                out["echo_s"] = round(time.monotonic() - began, 3)
                out["ok"] = True
            finally:
                await pc.close()
                await context.close()
    return out


def main(argv: list[str]) -> None:
    if argv not in (["swap"], ["aioice"]):
        raise SystemExit("usage: python -m tests.interop.chromium_aiortc swap|aioice")
    sys.stdout.write(json.dumps(asyncio.run(run(argv[0] == "swap"))) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
