"""Write ``docs/interop.rst`` from interop and NAT lab results.

The tests of ``tests/interop/`` and ``tests/netlab/`` append one JSON object
per line to ``$SYNCICE_INTEROP_RESULTS`` (fields: ``suite``, ``scenario``,
``peer``, ``ours``, ``role``, ``turn_transport``, ``impairment``, ``run``,
``outcome``, ``seconds``, ``selected``, ``datagrams``). This script reads one
or more such files and writes reStructuredText: the interop matrix (per peer,
role, scenario and TURN transport: pass, syncice's and aioice's connect time
in the same cell, their ratio) and the NAT lab table (per scenario, peer and
impairment: runs, pass rate, median and maximum connect or failure time,
selected candidate types), and, with records of suite ``browser``
(``tests/interop/test_chromium.py``), the Chromium and aiortc tables::

    SYNCICE_INTEROP_RESULTS=/tmp/results.jsonl .venv/bin/python -m pytest tests/interop
    .venv/bin/python docs/gen_interop.py /tmp/results.jsonl -o docs/interop.rst
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

Record = dict[str, Any]

PEER_ORDER = ("aioice", "libnice-regular", "libnice-aggressive", "werift", "syncice")
ROLE_ORDER = ("controlling", "controlled", "lite-vs-controlling", "lite-vs-controlled")
SCENARIO_ORDER = (
    "host",
    "srflx",
    "relay-ours",
    "relay-peer",
    "relay-both",
    "ice-tcp",
    "restart-by-syncice",
    "restart-by-libnice",
)
TRANSPORT_ORDER = (None, "udp", "tcp", "tls")

SCENARIO_NOTES = {
    "host": "host candidates only",
    "srflx": "both sides with coturn's STUN (on loopback srflx equals host)",
    "relay-ours": "our side relay-only (TURN), the peer with STUN",
    "relay-peer": "the peer relay-only (TURN), our side with STUN",
    "relay-both": "both sides relay-only (TURN)",
    "ice-tcp": "ICE-TCP (RFC 6544): host TCP candidates only on both sides "
    "(aioice has no ICE-TCP: its baseline cannot connect)",
    "restart-by-syncice": "an ICE restart started by syncice, 80 datagrams "
    "echoed across it (time: new descriptions to the new pair)",
    "restart-by-libnice": "the same, started by libnice (nice_agent_restart)",
}


def load(paths: Iterable[Path]) -> list[Record]:
    """Every record of every file; blank lines are skipped."""
    records = []
    for path in paths:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise SystemExit(f"{path}:{number}: {exc}") from None
                if not isinstance(record, dict) or "suite" not in record:
                    raise SystemExit(f"{path}:{number}: not a results record")
                records.append(record)
    return records


def _rank(value: object, order: Sequence[object]) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), str(value))


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def list_table(headers: list[str], rows: list[list[str]], widths: str) -> list[str]:
    """An RST ``list-table`` (or a line saying there is nothing)."""
    if not rows:
        return ["*No results.*", ""]
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        f"   :widths: {widths}",
        "",
    ]
    for row in [headers, *rows]:
        lines.append(f"   * - {row[0] or ' '}")
        lines.extend(f"     - {cell or ' '}" for cell in row[1:])
    lines.append("")
    return lines


def _pass(runs: list[Record]) -> str:
    ok = sum(r["outcome"] == "connected" for r in runs)
    return ("pass" if ok == len(runs) else "FAIL") + (
        f" ({ok}/{len(runs)})" if len(runs) > 1 else ""
    )


def _connect_times(runs: list[Record]) -> list[float]:
    return [r["seconds"] for r in runs if r["outcome"] == "connected"]


def _connect_median(runs: list[Record]) -> float | None:
    return _median(_connect_times(runs))


#: A connect under FAST took no retransmission; one of SLOW or more waited
#: for at least one (the first RTO is 0.5 s for both implementations).
FAST, SLOW = 0.25, 0.45


def _fast_share(runs: list[Record]) -> tuple[int, int]:
    """How many connected runs took no retransmission, of how many."""
    times = _connect_times(runs)
    return sum(t < FAST for t in times), len(times)


def _split(runs: list[Record]) -> bool:
    """Some connected runs were fast and others waited for a retransmission."""
    times = _connect_times(runs)
    return any(t < FAST for t in times) and any(t >= SLOW for t in times)


def matrix_section(records: list[Record]) -> list[str]:
    cells: dict[tuple[Any, ...], dict[str, list[Record]]] = {}
    for r in records:
        key = (r["peer"], r["role"], r["scenario"], r.get("turn_transport"))
        cells.setdefault(key, {}).setdefault(r["ours"], []).append(r)
    keys = sorted(
        cells,
        key=lambda k: (
            _rank(k[0], PEER_ORDER),
            _rank(k[1], ROLE_ORDER),
            _rank(k[2], SCENARIO_ORDER),
            _rank(k[3], TRANSPORT_ORDER),
        ),
    )
    rows = []
    slower = []
    ratios = []
    races = []
    for key in keys:
        ours = cells[key].get("syncice", [])
        base = cells[key].get("aioice", [])
        if _split(ours) or _split(base):
            races.append((key, _fast_share(ours), _fast_share(base)))
        s, a = _connect_median(ours), _connect_median(base)
        ratio = None if s is None or a is None or a <= 0 else s / a
        if ratio is not None:
            ratios.append(ratio)
            if s is not None and a is not None and s > a + 0.05:
                slower.append(key)
        selected = sorted({r["selected"] for r in ours if r.get("selected")})
        rows.append(
            [
                key[0],
                key[1],
                key[2],
                key[3] or "",
                _pass(ours) if ours else "—",
                _seconds(s),
                _seconds(a),
                "—" if ratio is None else f"{ratio:.2f}",
                ", ".join(selected),
            ]
        )
    passed = sum(row[4].startswith("pass") for row in rows)
    lines = [
        "Interop matrix",
        "--------------",
        "",
        "syncice on one side, the peer on the other, gathering on 127.0.0.1 with",
        "coturn as STUN and TURN server (``tests/interop/``). Each cell connects,",
        "sends 100 binary datagrams that the peer echoes (each checked intact)",
        "and closes; then the same cell runs with aioice 0.13 in syncice's",
        "place, one cell at a time. *Role* is syncice's; connect times",
        "(seconds, median over runs) start when the harness hands our side",
        "the peer's description and end when ``connect()`` returns where its",
        "caller goes on (syncice: the calling thread; aioice: its event loop,",
        "so the hop into the loop counts and the hop back does not); *ratio*",
        "is syncice's time over aioice's (below 1: syncice is faster);",
        "*selected* is the pair syncice selected, as local/remote candidate",
        "types.",
        "",
    ]
    lines += [f"- ``{name}``: {note}" for name, note in SCENARIO_NOTES.items()]
    lines += [""]
    lines += [
        "In the roles ``lite-vs-controlling`` and ``lite-vs-controlled``",
        "syncice is an ICE-lite agent (``ice_lite=True``: host candidates",
        "only, always controlled, it sends no check) and the peer a full",
        "agent created controlling or controlled; a controlled peer meets",
        "syncice's 487 (Role Conflict) and takes control (:rfc:`8445`",
        "§7.2.5.1). aioice has no lite mode: these cells have no baseline.",
        "",
    ]
    lines += [
        "What decides the times on loopback:",
        "",
        "- A relayed side's TURN server drops a check that arrives before that",
        "  side has permitted its sender, so a first check to a relayed",
        "  candidate is often lost. When the peer's own check then arrives,",
        "  syncice checks again at once (:rfc:`8445` §7.3.1.4); aioice waits for",
        "  its retransmission, 0.5 s later.",
        "- When our side is the relayed one, it is the peer's first check that",
        "  may be lost, if it reaches our TURN server before our permission:",
        "  a race the harness leaves open, as offer/answer signalling does (the",
        "  peer gets our candidates and starts checking before we have its",
        "  candidates), lost by either implementation now and then; a peer",
        "  that does not check again at once (aioice) then retransmits after",
        "  0.5 s. syncice asks for the permission as soon as it learns a",
        "  remote candidate, so it loses the race less often (the counts",
        "  below the summary line).",
        "- libnice with regular nomination, as controlling agent, nominates",
        "  about 60 ms after its checks start, whoever the controlled agent is",
        "  (about 20 ms with aggressive nomination). In these cells both",
        "  implementations wait for libnice, and syncice's ``connect()``",
        "  returns a fraction of a millisecond after aioice's: the time",
        "  syncice spends on the nominating check (0.15 to 0.5 ms of CPU on",
        "  that one cold pass through the code, measured; aioice answers it",
        "  in about 0.12 ms) and on waking the caller's thread (0.08 ms",
        "  median), against aioice's completion inside its loop.",
        "- aioice's ``connect()`` starts one check per 20 ms tick and looks at",
        "  the outcome only after its last tick: a 20 ms floor. syncice sends",
        "  triggered checks and nominations at once.",
        "- srflx candidates equal to their base are not signalled (:rfc:`8445`",
        "  §5.1.3; aioice's are filtered out by the harness): libnice 0.1.21",
        "  aborts on them when it is controlling and relay-only.",
        "",
    ]
    if rows:
        lines += [
            f"{passed} of {len(rows)} cells pass. syncice is more than 50 ms "
            f"slower than aioice in {len(slower)} cell(s)"
            + (
                ": " + "; ".join(" ".join(str(p) for p in k if p) for k in slower)
                if slower
                else ""
            )
            + (
                f"; the median ratio is {statistics.median(ratios):.2f}."
                if ratios
                else "."
            ),
            "",
        ]
    if races:
        lines += [
            f"In {len(races)} cell(s) some runs connected at once and others "
            f"waited for a retransmission (under {FAST} s, or {SLOW} s and "
            "more), for either implementation: the median of such a cell "
            "depends on the draw. Runs without a retransmission, syncice "
            "against aioice:",
            "",
        ]
        lines += [
            f"- {' '.join(str(p) for p in key if p)}: "
            f"{ours[0]}/{ours[1]} against {base[0]}/{base[1]}"
            for key, ours, base in races
        ]
        lines += [""]
    lines += list_table(
        [
            "Peer",
            "Role",
            "Scenario",
            "TURN",
            "Result",
            "syncice (s)",
            "aioice (s)",
            "Ratio",
            "Selected",
        ],
        rows,
        "16 11 11 6 8 9 9 7 12",
    )
    return lines


def lab_section(records: list[Record]) -> list[str]:
    groups: dict[tuple[Any, ...], list[Record]] = {}
    for r in records:
        key = (
            r["scenario"],
            r["peer"],
            r.get("impairment"),
            r["ours"],
            r["role"],
            r.get("turn_transport"),
        )
        groups.setdefault(key, []).append(r)
    rows = []
    for key in sorted(groups, key=lambda k: tuple(str(p) for p in k)):
        runs = groups[key]
        ok = _connect_times(runs)
        failed = [r["seconds"] for r in runs if r["outcome"] != "connected"]
        selected = sorted({r["selected"] for r in runs if r.get("selected")})
        rows.append(
            [
                key[0],
                key[1],
                key[2] or "none",
                key[3],
                key[4],
                key[5] or "",
                str(len(runs)),
                f"{100 * len(ok) / len(runs):.0f} %",
                _seconds(_median(ok)),
                _seconds(max(ok) if ok else None),
                _seconds(max(failed) if failed else None),
                ", ".join(selected),
            ]
        )
    lines = [
        "NAT lab",
        "-------",
        "",
        "Peers in network namespaces behind NATs, with coturn on a public",
        "segment and impaired links (``tests/netlab/``). Times in seconds:",
        "median and maximum connect time over the connected runs, and the",
        "longest time to failure.",
        "",
    ]
    lines += list_table(
        [
            "Scenario",
            "Peer",
            "Impairment",
            "Ours",
            "Role",
            "TURN",
            "Runs",
            "Pass",
            "Median (s)",
            "Max (s)",
            "Failed after (s)",
            "Selected",
        ],
        rows,
        "12 12 12 7 10 5 5 6 7 7 7 10",
    )
    return lines


def browser_section(records: list[Record]) -> list[str]:
    """Chromium as an ICE peer, and aiortc to Chromium over a data channel
    (suite ``browser``, from ``tests/interop/test_chromium.py``)."""
    ice = [r for r in records if r["peer"] == "chromium"]
    aiortc = [r for r in records if r["peer"] == "aiortc"]
    groups: dict[tuple[Any, ...], list[Record]] = {}
    for r in ice:
        key = (r["role"], r["scenario"], r.get("order"))
        groups.setdefault(key, []).append(r)
    rows = []
    for key in sorted(
        groups, key=lambda k: (_rank(k[0], ROLE_ORDER), str(k[1]), str(k[2]))
    ):
        runs = groups[key]
        peer = [r["peer_seconds"] for r in runs if r.get("peer_seconds") is not None]
        noticed = sorted({str(r["noticed"]) for r in runs if r.get("noticed")})
        after = [r["noticed_after"] for r in runs if r.get("noticed_after")]
        rows.append(
            [
                key[0],
                key[1],
                key[2] or "",
                _pass(runs),
                _seconds(_connect_median(runs)),
                _seconds(_median(peer)),
                ", ".join(sorted({r["selected"] for r in runs if r.get("selected")})),
                ", ".join(noticed)
                + (f" ({_seconds(_median(after))})" if after else ""),
            ]
        )
    stacks: dict[str, list[Record]] = {}
    for r in aiortc:
        stacks.setdefault(r["ours"], []).append(r)
    stack_rows = [
        [
            name,
            _pass(runs),
            _seconds(_connect_median(runs)),
            str(min(r.get("messages", 0) for r in runs)),
        ]
        for name, runs in sorted(stacks.items())
    ]
    lines = [
        "Chromium and aiortc",
        "-------------------",
        "",
        "Debian's Chromium, headless (driven by playwright over a pipe), in a",
        "network namespace of the test's own with a veth pair inside it",
        "(``tests/interop/test_chromium.py``): a page makes an",
        "``RTCPeerConnection`` with a data channel, the test moves the SDP",
        "between it and syncice (with a syntactically valid DTLS fingerprint",
        "on our side: ICE only), and waits for Chromium's ``iceConnectionState``",
        "``connected`` and syncice's ``connect()``. *Role* is syncice's (Chromium",
        "offers when syncice is controlled). *Candidates*: ``none``, no media",
        "permission, and Chromium signals no candidate at all: it is",
        "reached through the peer-reflexive candidate of its first check",
        "(without a permission Chromium signals only its default local",
        "address, behind an mDNS name, and finds that address by routing a",
        "UDP socket to 8.8.8.8, sending nothing: the namespace has no",
        "default route, so Chromium has no address to name); ``host``, a",
        "fake microphone granted, and it signals its host candidates;",
        "``mdns``, no permission, Chromium in a namespace of its own whose",
        "default route leads over a veth to syncice's (nothing is routed",
        "beyond): it signals one host candidate, ``<uuid>.local``, which",
        "syncice resolves by mDNS over the veth before Chromium may check it",
        "(Chromium answers the query after up to a second: it sends a record",
        "at most once a second, and has just announced it), so the pair is",
        "Chromium's host candidate. *Order*: whether syncice's ``connect()``",
        "ran before Chromium's first check arrived or after. Times in seconds",
        "from the exchange of descriptions (in the ``mdns`` rows, the wait for",
        "the name included); *noticed* is how the other side saw one",
        "side close (Chromium: its state, after our close; syncice: its",
        "consent expiring, configured to 3 s, after Chromium's ``close()``).",
        "",
        "Chromium's checks carry USERNAME, PRIORITY, ICE-CONTROLLING or",
        "ICE-CONTROLLED, GOOG-NETWORK-INFO (0xC057), MESSAGE-INTEGRITY and",
        "FINGERPRINT; the controlling Chromium sets USE-CANDIDATE on its checks",
        "(consent checks included) and sends no NOMINATION attribute, even when",
        "our answer offers ``a=ice-options:renomination``; syncice answers every",
        "check. Over the 60 s consent run, Chromium's consent checks (every",
        "2.5 s or so) keep the pair up: Chromium never reports",
        "``disconnected``, syncice's consent never expires.",
        "",
    ]
    lines += list_table(
        [
            "Role",
            "Candidates",
            "Order",
            "Result",
            "syncice (s)",
            "Chromium (s)",
            "Selected",
            "Noticed (s)",
        ],
        rows,
        "11 10 13 8 9 9 11 20",
    )
    lines += [
        "aiortc 1.16.0 to the same page: a data channel, 1,000 binary messages",
        "echoed by the page and checked byte for byte, with aiortc on",
        '``syncice.asyncio`` (``sys.modules["aioice"] = syncice.asyncio`` before',
        "aiortc is imported) and on aioice 0.13 as the baseline. Time in",
        "seconds from ``setRemoteDescription(answer)`` to the channel's",
        "``open`` (ICE, DTLS and SCTP).",
        "",
    ]
    lines += list_table(
        ["aiortc on", "Result", "Connect to open (s)", "Messages echoed"],
        stack_rows,
        "20 10 15 15",
    )
    return lines


def render(records: list[Record], sources: list[str], where: str) -> str:
    """The whole page."""
    now = datetime.datetime.now(datetime.timezone.utc)
    interop = [r for r in records if r["suite"] == "interop"]
    lab = [r for r in records if r["suite"] == "netlab"]
    browser = [r for r in records if r["suite"] == "browser"]
    lines = [
        ".. Generated by docs/gen_interop.py: do not edit by hand.",
        "",
        "Interoperability",
        "================",
        "",
        f"Generated on {now:%Y-%m-%d %H:%M} UTC by ``docs/gen_interop.py`` from "
        f"{len(records)} records ({', '.join(sources)}), on {where}.",
        "",
    ]
    lines += matrix_section(interop)
    if browser:
        lines += browser_section(browser)
    lines += lab_section(lab)
    return "\n".join(lines).rstrip() + "\n"


def failure_lines(records: list[Record]) -> list[str]:
    """One line per run that did not connect: which, and why (the error,
    candidates and pairs the tests record for such runs), at most 600
    characters each. Some fail by design (host-only behind NATs)."""
    lines = []
    for r in records:
        if r["outcome"] == "connected":
            continue
        key = " ".join(
            str(r.get(k)) for k in ("suite", "scenario", "peer", "ours", "role")
        )
        why = {
            k: r[k] for k in ("error", "candidates", "pairs") if r.get(k) is not None
        }
        text = f"failed: {key} run {r.get('run')} after {r.get('seconds')} s: " + (
            json.dumps(why) if why else "(no detail recorded)"
        )
        lines.append(text if len(text) <= 600 else text[:597] + "...")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="JSONL results files")
    parser.add_argument(
        "-o", "--output", type=Path, help="write here (default: standard output)"
    )
    parser.add_argument(
        "--where",
        default=f"{platform.node() or 'an unnamed host'} "
        f"({platform.system()} {platform.release()}, "
        f"Python {platform.python_version()})",
        help="the machine the results come from",
    )
    parser.add_argument(
        "--show-failures",
        action="store_true",
        help="also print one line per run that did not connect (to stderr)",
    )
    args = parser.parse_args(argv)
    records = load(args.results)
    if args.show_failures:
        for line in failure_lines(records):
            sys.stderr.write(line + "\n")
    text = render(records, [p.name for p in args.results], args.where)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
