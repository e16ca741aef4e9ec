"""docs/gen_interop.py turns results records into the tables of docs/interop.rst."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

GENERATOR = Path(__file__).parents[2] / "docs" / "gen_interop.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_interop", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(**fields: object) -> dict[str, object]:
    record: dict[str, object] = {
        "suite": "interop",
        "scenario": "relay-peer",
        "peer": "libnice-regular",
        "ours": "syncice",
        "role": "controlled",
        "turn_transport": "udp",
        "impairment": None,
        "run": 1,
        "outcome": "connected",
        "seconds": 0.02,
        "selected": "host/relay",
        "datagrams": 100,
    }
    record.update(fields)
    return record


def _rows(text: str, title: str) -> list[list[str]]:
    """The rows of the list-table after the section ``title``."""
    section = text.split(f"\n{title}\n", 1)[1]
    rows: list[list[str]] = []
    for line in section.splitlines():
        if line.startswith("   * - "):
            rows.append([line[7:]])
        elif line.startswith("     - ") and rows:
            rows[-1].append(line[7:])
        elif rows and not line.strip() and len(rows) > 1:
            break
    return rows


def test_matrix_and_lab_tables(tmp_path: Path) -> None:
    records = [
        _record(seconds=0.02),
        _record(seconds=0.04, run=2),
        _record(ours="aioice", seconds=0.5),
        _record(ours="aioice", seconds=0.5, run=2),
        _record(
            peer="aioice",
            role="controlling",
            scenario="host",
            turn_transport=None,
            outcome="failed",
            seconds=10.0,
            selected=None,
            datagrams=0,
        ),
        _record(
            peer="aioice",
            role="controlling",
            scenario="host",
            turn_transport=None,
            ours="aioice",
            seconds=0.021,
            selected="host/host",
        ),
        _record(
            suite="netlab",
            scenario="relay-c",
            peer="syncice",
            impairment="loss 20% delay 50ms",
            seconds=1.0,
            selected="host/relay",
        ),
        _record(
            suite="netlab",
            scenario="relay-c",
            peer="syncice",
            impairment="loss 20% delay 50ms",
            seconds=3.0,
            run=2,
            selected="relay/host",
        ),
        _record(
            suite="netlab",
            scenario="relay-c",
            peer="syncice",
            impairment="loss 20% delay 50ms",
            seconds=60.0,
            run=3,
            outcome="failed",
            selected=None,
        ),
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    out = tmp_path / "interop.rst"
    assert _generator().main([str(results), "-o", str(out), "--where", "here"]) == 0
    text = out.read_text()
    assert "from 9 records (results.jsonl), on here." in text
    assert "1 of 2 cells pass" in text
    matrix = _rows(text, "Interop matrix\n--------------")
    assert matrix[1:] == [
        ["aioice", "controlling", "host", " ", "FAIL", "—", "0.021", "—", " "],
        [
            "libnice-regular",
            "controlled",
            "relay-peer",
            "udp",
            "pass (2/2)",
            "0.030",
            "0.500",
            "0.06",
            "host/relay",
        ],
    ]
    lab = _rows(text, "NAT lab\n-------")
    assert lab[1:] == [
        [
            "relay-c",
            "syncice",
            "loss 20% delay 50ms",
            "syncice",
            "controlled",
            "udp",
            "3",
            "67 %",
            "2.000",
            "3.000",
            "60.000",
            "host/relay, relay/host",
        ]
    ]


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    results = tmp_path / "bad.jsonl"
    results.write_text(json.dumps(_record()) + "\n{oops\n")
    with pytest.raises(SystemExit, match=r"bad\.jsonl:2"):
        _generator().main([str(results)])


def test_cells_split_by_a_retransmission_are_listed_with_their_fast_share(
    tmp_path: Path,
) -> None:
    race = {"peer": "aioice", "scenario": "relay-ours", "turn_transport": "tcp"}
    records = [
        # A race cell: both implementations sometimes wait for the 0.5 s RTO.
        *(_record(**race, seconds=t, run=i) for i, t in enumerate([0.01, 0.51, 0.02])),
        *(
            _record(**race, ours="aioice", seconds=t, run=i)
            for i, t in enumerate([0.5, 0.02, 0.52])
        ),
        # Not a race: always slow, or always fast, or in between.
        _record(seconds=0.3),
        _record(seconds=0.02, run=2),
        _record(ours="aioice", seconds=0.5),
        _record(ours="aioice", seconds=0.5, run=2),
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "interop.rst"
    assert _generator().main([str(results), "-o", str(out), "--where", "here"]) == 0
    text = out.read_text()
    assert "In 1 cell(s) some runs connected at once and others waited" in text
    assert "- aioice controlled relay-ours tcp: 2/3 against 1/3\n" in text
    assert "libnice-regular controlled relay-peer udp:" not in text


def test_no_race_line_without_split_cells(tmp_path: Path) -> None:
    records = [_record(seconds=0.02), _record(ours="aioice", seconds=0.5)]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "interop.rst"
    assert _generator().main([str(results), "-o", str(out), "--where", "here"]) == 0
    assert "some runs connected at once" not in out.read_text()


def test_show_failures_prints_each_failed_run_with_its_detail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [
        _record(),
        _record(outcome="failed", seconds=0.003, error="ValueError: bad", run=4),
        _record(
            suite="netlab",
            scenario="lossy-36",
            peer="syncice",
            outcome="failed",
            seconds=30.0,
            error="IceTimeoutError('connect timed out')",
            candidates=["candidate:1 1 udp 1 10.0.2.2 4 typ host"],
            pairs=[{"state": "in-progress"}] * 20,
        ),
        _record(suite="netlab", scenario="host-only", outcome="failed", run=2),
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "interop.rst"
    gen = _generator()
    assert gen.main([str(results), "-o", str(out), "--show-failures"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (
        "failed: interop relay-peer libnice-regular syncice controlled run 4 "
        'after 0.003 s: {"error": "ValueError: bad"}'
    )
    assert lines[1].startswith("failed: netlab lossy-36 syncice syncice controlled")
    assert '"candidates": ["candidate:1 1 udp 1 10.0.2.2 4 typ host"]' in lines[1]
    assert len(lines[1]) == 600
    assert lines[1].endswith("...")
    assert lines[2].endswith("run 2 after 0.02 s: (no detail recorded)")
    assert len(lines) == 3
    # Without the flag, nothing is printed.
    assert gen.main([str(results), "-o", str(out)]) == 0
    assert capsys.readouterr().err == ""


def test_browser_tables(tmp_path: Path) -> None:
    chromium = {
        "suite": "browser",
        "peer": "chromium",
        "ours": "syncice",
        "role": "controlling",
        "scenario": "none",
        "order": "connect-first",
        "run": 1,
        "outcome": "connected",
        "seconds": 0.07,
        "peer_seconds": 0.06,
        "selected": "host/prflx",
        "noticed": "disconnected",
        "noticed_after": 5.0,
    }
    aiortc = {
        "suite": "browser",
        "peer": "aiortc",
        "ours": "syncice.asyncio",
        "role": "controlling",
        "scenario": "host",
        "run": 1,
        "outcome": "connected",
        "seconds": 0.035,
        "messages": 1000,
    }
    records = [
        chromium,
        dict(chromium, run=2, seconds=0.09, peer_seconds=0.08, noticed_after=7.0),
        dict(
            chromium,
            role="controlled",
            outcome="failed",
            seconds=20.0,
            peer_seconds=None,
            selected=None,
            noticed=None,
            noticed_after=None,
        ),
        aiortc,
        dict(aiortc, ours="aioice", seconds=0.04),
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "interop.rst"
    assert _generator().main([str(results), "-o", str(out), "--where", "here"]) == 0
    text = out.read_text()
    tables = text.split("\nChromium and aiortc\n-------------------\n", 1)[1]
    chromium_rows = _rows("\nA\n" + tables, "A")
    assert chromium_rows[1:] == [
        [
            "controlling",
            "none",
            "connect-first",
            "pass (2/2)",
            "0.080",
            "0.070",
            "host/prflx",
            "disconnected (6.000)",
        ],
        ["controlled", "none", "connect-first", "FAIL", "—", "—", " ", " "],
    ]
    aiortc_rows = _rows(
        text, "aiortc 1.16.0 to the same page: a data channel, 1,000 binary messages"
    )
    assert aiortc_rows[1:] == [
        ["aioice", "pass", "0.040", "1000"],
        ["syncice.asyncio", "pass", "0.035", "1000"],
    ]


def test_lite_cells_have_no_baseline_and_sort_after_the_full_roles(
    tmp_path: Path,
) -> None:
    records = [
        _record(role="lite-vs-controlled", scenario="host", turn_transport=None),
        _record(role="lite-vs-controlling", scenario="host", turn_transport=None),
        _record(seconds=0.03),
        _record(ours="aioice", seconds=0.5),
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "interop.rst"
    assert _generator().main([str(results), "-o", str(out), "--where", "here"]) == 0
    text = out.read_text()
    assert "syncice is an ICE-lite agent" in text
    matrix = _rows(text, "Interop matrix\n--------------")
    assert [row[1] for row in matrix[1:]] == [
        "controlled",
        "lite-vs-controlling",
        "lite-vs-controlled",
    ]
    assert matrix[2][4:8] == ["pass", "0.020", "—", "—"]
