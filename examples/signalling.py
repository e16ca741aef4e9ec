"""Signalling with descriptions: what each side sends the other, in one
object, as JSON or as SDP lines.

Both peers live in this process on 127.0.0.1; the strings passed between
them are what a real program would send over its signalling channel.
"""

from __future__ import annotations

import re
import threading

import syncice
from syncice.description import IceDescription


def main() -> None:
    a = syncice.Connection(ice_controlling=True, local_addresses=["127.0.0.1"])
    b = syncice.Connection(ice_controlling=False, local_addresses=["127.0.0.1"])
    try:
        a.gather_candidates(timeout=10)
        b.gather_candidates(timeout=10)

        # a sends SDP attribute lines, b sends JSON: either side takes any form.
        offer = a.local_description().to_sdp()
        answer = b.local_description().to_json()
        for line in offer.splitlines():
            # The credentials and ports are random: shown as placeholders.
            line = re.sub(r"(ice-ufrag|ice-pwd):\S+", r"\1:...", line)
            print("offer:", re.sub(r" \d+ typ", " <port> typ", line))  # noqa: T201
        print("answer keys:", sorted(IceDescription.from_json(answer).to_dict()))  # noqa: T201
        b.set_remote_description(offer)
        a.set_remote_description(answer)

        other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
        other.start()
        a.connect(timeout=10)
        other.join()
        a.send(b"hello")
        print("b got:", b.recv(timeout=10).decode())  # noqa: T201

        # A bad line is named, and nothing of that description is applied.
        try:
            IceDescription.from_sdp(offer + "a=candidate:1 1 udp x 1.2.3.4 9 typ host")
        except ValueError as exc:
            print("bad:", str(exc).split(": ")[0])  # noqa: T201
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
