"""Scenario 6 by hand: syncice and aioice under ~36 % loss each way.

Runs ``--runs`` pairs at once (a <-> b through the cone NATs, STUN on both
sides) in a fresh lab, for each implementation, ``--batches`` times, and
prints every run and a summary per implementation: how many connected
within the bound (both sides), and the median and maximum connect time of the
controlling side. Appends the runs to ``$SYNCICE_INTEROP_RESULTS`` when set
(suite ``netlab``, scenario ``lossy-36``; ``ours`` is the implementation of
both sides). Needs root::

    sudo .venv/bin/python -m tests.netlab.compare --impl syncice aioice

aioice's reference figure is 19 of 20 within 60 s; the CI test asks syncice
for 19 of 20 within 30 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from tests.netlab.lab import (
    LOSSY_IMPAIRMENT,
    Lab,
    PairResult,
    lossy_runs,
    missing_components,
    record,
)


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def batch(
    impl: str, args: argparse.Namespace, index: int, logdir: Path
) -> list[PairResult]:
    lab = Lab.up(f"nlcmp{os.getpid()}-{impl[:3]}{index}")
    try:
        within = args.within if args.within else (30.0 if impl == "syncice" else 60.0)
        return lossy_runs(
            lab,
            impl,
            args.runs,
            within,
            logdir,
            gather_timeout=args.gather_timeout if impl == "syncice" else None,
        )
    finally:
        lab.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", nargs="+", default=["syncice", "aioice"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument(
        "--within", type=float, default=None, help="default: syncice 30 s, aioice 60 s"
    )
    parser.add_argument(
        "--gather-timeout",
        type=float,
        default=None,
        help="syncice's IceConfig.gather_timeout (default: IceConfig's, 5 s)",
    )
    args = parser.parse_args()
    missing = missing_components()
    if missing:
        out("cannot run: needs " + ", ".join(missing))
        return 2
    logdir = Path(tempfile.mkdtemp(prefix="netlab-compare-"))
    out(f"peer logs in {logdir}")
    for impl in args.impl:
        results: list[PairResult] = []
        for index in range(args.batches):
            for run, result in enumerate(batch(impl, args, index, logdir)):
                number = index * args.runs + run
                results.append(result)
                for side in (result.controlling, result.controlled):
                    record(
                        scenario="lossy-36",
                        peer=impl,
                        ours=side,
                        turn_transport=None,
                        impairment=LOSSY_IMPAIRMENT,
                        run=number,
                        datagrams=side.echoed,
                    )
                ctrl, ctld = result.controlling, result.controlled
                line = (
                    f"{impl} run {number:3d}: {ctrl.outcome:9s} {ctrl.seconds}s /"
                    f" {ctld.outcome:9s} {ctld.seconds}s selected {ctrl.selected}"
                    f" echoed {ctrl.echoed}/{ctld.echoed}"
                )
                for side in (ctrl, ctld):
                    if side.outcome != "connected":
                        line += f"\n    {side.role}: {side.error}; pairs {side.pairs}"
                out(line)
        good = [r for r in results if r.connected]
        times = sorted(
            max(r.controlling.seconds or 0.0, r.controlled.seconds or 0.0) for r in good
        )
        summary = f"{impl}: {len(good)}/{len(results)} connected"
        if times:
            summary += (
                f", connect time (slower side) median {statistics.median(times):.2f} s,"
                f" max {times[-1]:.2f} s"
            )
        out(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
