"""aioice's and aiortc's own test suites on syncice.asyncio, against the
classified list and the counts of ``docs/migrating.rst``.

A test of aioice's suite that fails must be in the list; one in the list
must fail (but those left to chance); the pass counts are the guide's.
aiortc's two ICE test files must pass whole. The sdists come from
``SYNCICE_SUITES_DIR`` (:mod:`tests.suites.runner`): without them, or
without a network namespace, the tests skip (fail under CI).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

from tests.conftest import missing_service
from tests.suites.runner import (
    SUITES,
    Outcome,
    netns_available,
    run_suite,
    sdist,
    suites_dir,
)

pytestmark = pytest.mark.interop

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating.rst"
CATEGORIES = ("internals", "deliberate", "chance")
ENTRY = re.compile(r"^- ``(tests/[^`]+)``: (\w+), (.+)$")
COUNTS = re.compile(
    r"^- \w+ [\d.]+ \(``(\w+)`` suite\): (\d+) tests, (\d+) left to chance,"
    r" (\d+) pass, (\d+) fail\.$"
)


def classified() -> dict[str, tuple[str, str]]:
    """The guide's list of aioice's failing tests: id -> (category, why)."""
    entries: dict[str, tuple[str, str]] = {}
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        match = ENTRY.match(line)
        if match:
            test, category, why = match.groups()
            assert test not in entries, f"{test} is listed twice"
            entries[test] = (category, why)
    return entries


def counts() -> dict[str, tuple[int, int, int, int]]:
    """The guide's counts: suite -> (tests, left to chance, pass, fail)."""
    found: dict[str, tuple[int, int, int, int]] = {}
    for line in GUIDE.read_text(encoding="utf-8").splitlines():
        match = COUNTS.match(line)
        if match:
            key, *numbers = match.groups()
            total, chance, passed, failed = map(int, numbers)
            found[key] = (total, chance, passed, failed)
    return found


def test_the_guide_is_consistent() -> None:
    entries = classified()
    assert entries, "docs/migrating.rst lists no test"
    for test, (category, why) in entries.items():
        assert category in CATEGORIES, f"{test}: {category!r}"
        assert why.strip(), test
    assert set(counts()) == set(SUITES)
    total, chance, passed, failed = counts()["aioice"]
    assert total == chance + passed + failed
    assert chance == sum(1 for c, _ in entries.values() if c == "chance")
    assert failed == sum(1 for c, _ in entries.values() if c != "chance")
    summary = re.search(
        r"\((\d+) read or patch\s+aioice's internals, (\d+) meet a difference"
        r"\s+listed above, (\d+)\s+depend on",
        GUIDE.read_text(encoding="utf-8"),
    )
    assert summary is not None, "the guide's summary of the list"
    assert tuple(map(int, summary.groups())) == tuple(
        sum(1 for c, _ in entries.values() if c == category) for category in CATEGORIES
    )
    total, chance, passed, failed = counts()["aiortc"]
    assert (chance, failed) == (0, 0)
    assert passed == total


def run_or_skip(key: str, tmp_path: Path) -> dict[str, Outcome]:
    suite = SUITES[key]
    if sdist(suite) is None:
        missing_service(
            f"no {suite.archive} in {suites_dir()}: pip download "
            f"{suite.project}=={suite.version} --no-binary :all: --no-deps "
            f'-d "$SYNCICE_SUITES_DIR"'
        )
    for project, version in (("aioice", "0.13.0"), ("aiortc", "1.16.0")):
        if key == "aioice" and project == "aiortc":
            continue
        try:
            installed = importlib.metadata.version(project)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            missing_service(
                f"{project} {version} is not installed ({installed}): "
                f"pip install {project}=={version}"
            )
    ok, why = netns_available()
    if not ok:
        missing_service(f"no network namespace for the suites: {why}")
    return run_suite(suite, tmp_path)


def log_tail(work: Path, key: str, lines: int = 40) -> str:
    """The end of what the suite's run printed (see runner.run_suite)."""
    log = work / f"{key}.log"
    if not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- the run's last lines:\n" + "\n".join(text)


def test_aioices_suite_fails_only_as_classified(tmp_path: Path) -> None:
    results = run_or_skip("aioice", tmp_path)
    entries = classified()
    chance = {t for t, (c, _) in entries.items() if c == "chance"}
    failed = {t: o for t, o in results.items() if o.status != "passed"}
    unexplained = {t: o.message for t, o in failed.items() if t not in entries}
    assert unexplained == {}, "failures not in docs/migrating.rst" + log_tail(
        tmp_path, "aioice"
    )
    stale = sorted(
        t
        for t, (c, _) in entries.items()
        if c != "chance" and results.get(t, Outcome("absent", "")).status != "failed"
    )
    assert stale == [], "listed in docs/migrating.rst, but they do not fail"
    total, n_chance, passed, _ = counts()["aioice"]
    assert len(results) == total
    assert chance <= results.keys()
    assert len(chance) == n_chance
    deterministic = [o for t, o in results.items() if t not in chance]
    assert sum(o.status == "passed" for o in deterministic) == passed


def test_aiortcs_ice_tests_pass_on_the_swap(tmp_path: Path) -> None:
    results = run_or_skip("aiortc", tmp_path)
    failed = {t: o.message for t, o in results.items() if o.status != "passed"}
    assert failed == {}, log_tail(tmp_path, "aiortc")
    assert len(results) == counts()["aiortc"][0]
