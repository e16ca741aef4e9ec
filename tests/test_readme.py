"""README.md stays true to the code: its examples run, CI runs its test command."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Each example padded with blank lines, so tracebacks give README line numbers.
EXAMPLES = [
    pytest.param("\n" * line + match.group(1), id=f"README.md:{line + 1}")
    for match in re.finditer(r"^```python\n(.*?)^```$", README, re.M | re.S)
    for line in [README.count("\n", 0, match.start(1))]
]


class FakeAtheris(types.ModuleType):
    """Stands in for atheris: feeds the harness given to Setup() a few inputs."""

    def __init__(self) -> None:
        super().__init__("atheris")
        self.targets: list[Callable[[bytes], object]] = []

    def Setup(self, argv: Sequence[str], target: Callable[[bytes], object]) -> None:
        self.targets.append(target)

    def Fuzz(self) -> None:
        for target in self.targets:
            for data in (b"", bytes(64), bytes(range(256))):
                target(data)


def test_ci_runs_the_readme_test_command() -> None:
    # The project hook's rule: the last line of .ci/run that is not blank, a
    # comment or a `set` must appear verbatim in the README.
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [x for x in lines if not re.match(r"\s*(#|$|set )", x)]
    assert commands[-1] == "bash tests/run-all.sh"
    assert f"\n{commands[-1]}\n" in README


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("source", EXAMPLES)
def test_readme_example_runs(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    atheris = FakeAtheris()
    monkeypatch.setitem(sys.modules, "atheris", atheris)
    monkeypatch.syspath_prepend(str(ROOT))  # undone with the examples' own changes
    monkeypatch.chdir(ROOT)
    exec(compile(source, "README.md", "exec"), {"__name__": "readme"})
    assert ("import atheris" in source) == bool(atheris.targets)


def test_help_of_connection_names_what_every_program_sets() -> None:
    import pydoc

    import syncice

    text = pydoc.render_doc(syncice.Connection, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    for name in (
        "remote_username",
        "remote_password",
        "remote_is_lite",
        "send_drops",
        "recv_drops",
    ):
        assert name in text.split("|  Methods defined here")[0], name
