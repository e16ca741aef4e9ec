"""The tables of docs/performance.rst from a run of ``bench/ice.py --json``.

Usage::

    python bench/perf_table.py run.json > docs/perf_table.inc
"""

from __future__ import annotations

import json
import sys
from typing import Any

LIBRARIES = ("syncice", "aioice", "raw")


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render(document: dict[str, Any]) -> str:
    machine = document["machine"]
    lines = [
        f"Measured {machine['date']} on {machine['cpus']} CPUs ({machine['cpu']}), "
        f"{machine['kernel']}, Python {machine['python']}, aioice "
        f"{machine['aioice']}; {machine['malloc']}.",
        "",
    ]
    sections: dict[str, list[dict[str, Any]]] = {}
    for row in document["rows"]:
        sections.setdefault(row["section"], []).append(row)
    for title, rows in sections.items():
        lines += [
            f"**{title}**",
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - figure",
            *(f"     - {library}" for library in LIBRARIES),
            "     - s/aioice",
            "     - s/raw",
            "     - target",
        ]
        for row in rows:
            ratios = row["ratios"]
            verdict = ""
            if row["target"]:
                verdict = f"{row['target']}: " + (
                    "met"
                    if row["met"]
                    else "not measured"
                    if row["met"] is None
                    else "missed"
                )
            lines += [
                f"   * - {row['row'].strip()}",
                *(f"     - {number(row['values'].get(lib))}" for lib in LIBRARIES),
                *(f"     - {ratio(ratios.get(lib))}" for lib in LIBRARIES[1:]),
                f"     - {verdict}",
            ]
        lines.append("")
    for note in document["errors"]:
        lines.append(f"- error: {note}")
    lines.append(
        "Targets missed: " + ", ".join(document["missed"])
        if document["missed"]
        else "All targets met."
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as run:
        sys.stdout.write(render(json.load(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
