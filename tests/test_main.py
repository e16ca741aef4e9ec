"""``python -m syncice demo``: two peers connect on loopback and exchange data."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from syncice import __main__ as cli

ROOT = Path(__file__).resolve().parent.parent


def check_output(text: str, count: int, size: int) -> None:
    candidates = re.findall(
        r"^peer ([ab]) candidate  \S+ 1 udp \d+ (127\.0\.0\.1) (\d+) typ host$",
        text,
        re.MULTILINE,
    )
    assert [c[0] for c in candidates] == ["a", "b"], text
    ports = {name: port for name, _, port in candidates}
    pair = re.search(
        r"^selected pair     host 127\.0\.0\.1:(\d+) -> host 127\.0\.0\.1:(\d+)$",
        text,
        re.MULTILINE,
    )
    assert pair is not None, text
    assert pair.groups() == (ports["a"], ports["b"])
    assert re.search(
        r"^connect           [\d.]+ ms \(both peers\)$", text, re.MULTILINE
    )
    assert re.search(r"^ping-pong rtt     \d+ us median$", text, re.MULTILINE)
    assert re.search(
        rf"^throughput        [\d,]+ datagrams/s, [\d.]+ MB/s \({count} x {size} B, "
        r"none lost\)$",
        text,
        re.MULTILINE,
    )
    assert text.rstrip().endswith("closed")


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--count", "500", "--size", "100"]) == 0
    check_output(capsys.readouterr().out, 500, 100)


def test_demo_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "syncice", "demo", "--count", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    check_output(result.stdout, 2000, 1200)


@pytest.mark.parametrize(
    "args", [["demo", "--count", "0"], ["demo", "--size", "3"], []]
)
def test_bad_arguments_exit_2(args: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(args)
    assert info.value.code == 2


def test_failure_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(count: int, size: int) -> None:
        raise OSError("no loopback here")

    monkeypatch.setattr(cli, "demo", broken)
    assert cli.main(["demo"]) == 1
    assert "demo failed: OSError('no loopback here')" in capsys.readouterr().err
