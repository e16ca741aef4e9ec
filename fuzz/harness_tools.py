"""Helpers shared by the fuzz harnesses of ``fuzz/fuzz_*.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from hypothesis import example

_F = TypeVar("_F", bound=Callable[..., object])


def examples(*values: object) -> Callable[[_F], _F]:
    """Apply ``@example(value)`` for each value (one-argument harnesses)."""

    def decorate(harness: _F) -> _F:
        for value in values:
            harness = example(value)(harness)
        return harness

    return decorate


def atheris_target(harness: Callable[..., None]) -> Callable[[bytes], bytes | None]:
    """``harness.hypothesis.fuzz_one_input``, hidden from pytest (which would
    collect it as a ``fuzz_*`` function)."""
    target: Callable[[bytes], bytes | None]
    target = cast("Any", harness).hypothesis.fuzz_one_input
    vars(target)["__test__"] = False
    return target
