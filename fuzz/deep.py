"""Run the fuzz harnesses of ``fuzz/`` for a set wall time each.

Usage, from the repository root::

    .venv/bin/python fuzz/deep.py --seconds 600            # every harness
    .venv/bin/python fuzz/deep.py --seconds 60 fuzz_parse_mutated fuzz_candidate
    .venv/bin/python fuzz/deep.py --seconds 30 fuzz_stun.fuzz_roundtrip --profile
    .venv/bin/python fuzz/deep.py --list

A harness is a module-level ``fuzz_*`` function decorated with ``@given`` in a
``fuzz/fuzz_*.py`` file. Name harnesses by function (``fuzz_roundtrip``), by
``module.function`` (``fuzz_stun.fuzz_roundtrip``) or by module
(``fuzz_stun``: all of its harnesses); with no names, all of them run.

Each harness runs in batches until ``--seconds`` of wall time have passed
(the last batch may overrun by about ``--batch-seconds``). A batch is one
ordinary Hypothesis run of the harness with ``max_examples`` sized to take
about ``--batch-seconds``, ``deadline=None``, ``database=None``, every health
check off, and a fresh random ``@seed``; the harness's own settings are
otherwise kept, and its ``@example``\\ s run in every batch. Examples are
counted by wrapping ``harness.hypothesis.inner_test`` (which Hypothesis lets
callers replace), so the count is the number of times the harness body ran,
explicit examples and shrinking included.

Output: one line per harness with its name, examples run, seconds,
examples per second and the result: ``ok``, or ``FAILED`` with the exception,
where it was raised, and how to replay the failing batch
(``--seed N --batch M`` with that harness's name; or ``@seed(N)`` and
``@settings(max_examples=M)`` on the harness under pytest). Hypothesis
prints the falsifying example, and the traceback goes to stderr, before the
summary. The exit status is 0 when every
harness passed, 1 when one failed (or its module did not import), 2 for bad
arguments and 130 on Ctrl-C. Warnings are errors, as under pytest.

``--profile`` runs each harness under :mod:`cProfile` and prints its 15
costliest functions by own time, to see where examples go.
"""

# ruff: noqa: T201  (a command-line tool: it reports by printing)
from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import io
import pstats
import secrets
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, seed, settings

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
# The harness modules import syncice (from the checkout) and their strategy
# modules (from fuzz/), as they do under pytest.
for _path in (str(FUZZ_DIR), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

__all__ = ["Harness", "Result", "discover", "main", "run_harness"]


@dataclass(frozen=True)
class Harness:
    """A ``@given`` fuzz function and where it lives."""

    module: str
    name: str
    function: Callable[..., None]

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(frozen=True)
class Result:
    """How one harness's run went."""

    name: str
    examples: int
    seconds: float
    batches: int
    failure: str | None = None

    @property
    def line(self) -> str:
        rate = self.examples / self.seconds if self.seconds > 0 else 0.0
        outcome = "ok" if self.failure is None else f"FAILED: {self.failure}"
        return (
            f"{self.name:<48} {self.examples:>10} examples {self.seconds:8.1f} s "
            f"{rate:9.0f}/s  {outcome}"
        )


def _import(stem: str) -> ModuleType:
    if (FUZZ_DIR / "__init__.py").exists():
        return importlib.import_module(f"{FUZZ_DIR.name}.{stem}")
    return importlib.import_module(stem)


def discover() -> tuple[list[Harness], list[Result]]:
    """Import every ``fuzz/fuzz_*.py`` and collect its harnesses.

    :returns: the harnesses, and a failed :class:`Result` per module that
        did not import.
    """
    harnesses: list[Harness] = []
    broken: list[Result] = []
    for path in sorted(FUZZ_DIR.glob("fuzz_*.py")):
        try:
            module = _import(path.stem)
        except Exception as exc:
            traceback.print_exc()
            broken.append(Result(path.stem, 0, 0.0, 0, f"import failed: {exc!r}"))
            continue
        for name, value in sorted(vars(module).items()):
            if (
                name.startswith("fuzz_")
                and callable(value)
                and getattr(value, "is_hypothesis_test", False)
                and getattr(value, "__module__", None) == module.__name__
            ):
                harnesses.append(Harness(path.stem, name, value))
    return harnesses, broken


def select(harnesses: Sequence[Harness], names: Sequence[str]) -> list[Harness]:
    """The harnesses that ``names`` designate, each once.

    :raises ValueError: a name designates nothing.
    """
    if not names:
        return list(harnesses)
    chosen: list[Harness] = []
    for name in names:
        matches = [
            h
            for h in harnesses
            if name in (h.name, h.qualname, h.module) and h not in chosen
        ]
        if not matches and not any(
            name in (h.name, h.qualname, h.module) for h in chosen
        ):
            known = ", ".join(h.qualname for h in harnesses)
            raise ValueError(f"no harness named {name!r}; known: {known}")
        chosen += matches
    return chosen


def _describe(exc: BaseException) -> str:
    """``Type: first line of the message at file:line`` (where it was raised)."""
    text = str(exc).strip().splitlines()
    where = traceback.extract_tb(exc.__traceback__)[-1:]
    return (
        type(exc).__name__
        + (f": {text[0]}" if text else "")
        + (f" at {Path(where[0].filename).name}:{where[0].lineno}" if where else "")
    )


def _run_batch(
    harness: Harness, max_examples: int, batch_seed: int, counter: list[int]
) -> None:
    """One Hypothesis run of ``harness`` with the batch settings.

    :raises RuntimeError: the installed Hypothesis did not run the counting
        wrapper, or not with the batch settings.
    """
    function: Any = harness.function
    handle = function.hypothesis
    inner = handle.inner_test
    saved_settings = function._hypothesis_internal_use_settings
    saved_seed = function._hypothesis_internal_use_seed
    seen: list[settings | None] = []

    @functools.wraps(inner)
    def counted(*args: Any, **kwargs: Any) -> Any:
        if not seen:
            seen.append(settings.default)  # the running test's settings
        counter[0] += 1
        return inner(*args, **kwargs)

    # What @settings(...) does to a @given function; the public decorator
    # refuses a second application, and a harness runs batch after batch.
    function._hypothesis_internal_use_settings = settings(
        saved_settings,
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    seed(batch_seed)(function)
    handle.inner_test = counted
    try:
        function()
    finally:
        handle.inner_test = inner
        function._hypothesis_internal_use_settings = saved_settings
        function._hypothesis_internal_use_seed = saved_seed
    if not seen:
        raise RuntimeError(
            f"{harness.qualname}: the counting wrapper never ran; this Hypothesis "
            "no longer honours a replaced hypothesis.inner_test"
        )
    used = seen[0]
    if used is None or used.max_examples != max_examples or used.database is not None:
        raise RuntimeError(
            f"{harness.qualname}: ran with {used!r}, not the batch settings"
        )


def run_harness(
    harness: Harness,
    seconds: float,
    *,
    batch_seconds: float = 2.0,
    first_seed: int | None = None,
    batch_size: int | None = None,
) -> Result:
    """Run ``harness`` in batches for ``seconds`` of wall time.

    :param batch_seconds: the time a batch should take; its size follows the
        harness's speed unless ``batch_size`` fixes it.
    :param first_seed: the seed of the first batch (later ones are random).
    """
    counter = [0]
    batches = 0
    max_examples = batch_size or 20
    start = time.perf_counter()
    while True:
        if batches == 0 and first_seed is not None:
            batch_seed = first_seed
        else:
            batch_seed = secrets.randbits(64)
        before = counter[0]
        batch_start = time.perf_counter()
        try:
            _run_batch(harness, max_examples, batch_seed, counter)
        except Exception as exc:
            traceback.print_exc()
            return Result(
                harness.qualname,
                counter[0],
                time.perf_counter() - start,
                batches + 1,
                f"{_describe(exc)} (rerun: --seed {batch_seed} --batch {max_examples})",
            )
        batches += 1
        ran = counter[0] - before
        now = time.perf_counter()
        left = seconds - (now - start)
        if left <= 0:
            return Result(harness.qualname, counter[0], now - start, batches)
        if batch_size is None:
            rate = ran / max(now - batch_start, 1e-3)
            max_examples = int(rate * min(batch_seconds, left))
            max_examples = max(10, min(max_examples, 100_000))


def _profiled(run: Callable[[], Result], top: int = 15) -> tuple[Result, str]:
    profiler = cProfile.Profile()
    result = profiler.runcall(run)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return result, out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run fuzz harnesses for a set wall time each.",
        epilog="See the module docstring of fuzz/deep.py for details.",
    )
    parser.add_argument(
        "harnesses",
        nargs="*",
        help="function, module.function or module names (default: all)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=600.0,
        help="wall time per harness (default 600)",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=2.0,
        help="target duration of one Hypothesis run (default 2)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of each harness's first batch"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        metavar="N",
        help="examples per batch (default: sized by --batch-seconds)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile each harness, print its top 15 functions",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the harnesses and exit"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.batch_seconds <= 0:
        parser.error("--seconds and --batch-seconds must be positive")
    if args.batch is not None and args.batch < 1:
        parser.error("--batch must be at least 1")

    warnings.simplefilter("error")  # as pytest.ini_options.filterwarnings does
    harnesses, results = discover()
    if args.list:
        for harness in harnesses:
            doc = " ".join((harness.function.__doc__ or "").split())
            print(f"{harness.qualname}: {doc}")
        return 1 if results else 0
    try:
        chosen = select(harnesses, args.harnesses)
    except ValueError as exc:
        print(f"deep.py: {exc}", file=sys.stderr)
        return 2

    interrupted = False
    for harness in chosen:

        def run(harness: Harness = harness) -> Result:
            return run_harness(
                harness,
                args.seconds,
                batch_seconds=args.batch_seconds,
                first_seed=args.seed,
                batch_size=args.batch,
            )

        try:
            if args.profile:
                result, report = _profiled(run)
                print(f"--- {harness.qualname}\n{report}")
            else:
                result = run()
        except KeyboardInterrupt:
            results.append(Result(harness.qualname, 0, 0.0, 0, "interrupted"))
            interrupted = True
            break
        results.append(result)
        print(result.line, file=sys.stderr, flush=True)  # progress

    print()
    for result in results:
        print(result.line)
    if interrupted:
        return 130
    return 0 if all(result.failure is None for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
