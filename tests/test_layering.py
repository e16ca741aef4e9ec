"""The sans-IO core touches no socket, thread or clock (STYLE.md §1, §11).

Each module in :data:`CORE` is read as source, not imported, so an import
hidden in a function body counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "syncice"
#: The sans-IO modules. Add ``ice``, ``turn``, ``mdns`` and ``_transaction``
#: here as they land.
CORE = (
    "stun",
    "_demux",
    "candidate",
    "ice",
    "_checklist",
    "_transaction",
    "events",
    "turn",
    "mdns",
    "testing/__init__",
    "testing/_link",
    "testing/_nat",
    "testing/_net",
    "testing/_peer",
    "testing/_servers",
)
FORBIDDEN = frozenset({"socket", "selectors", "threading", "time", "asyncio"})


def imported_modules(tree: ast.AST) -> set[str]:
    """The top-level names of every absolute module that ``tree`` imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_no_io(module: str) -> None:
    path = PACKAGE / f"{module}.py"
    assert path.is_file(), f"CORE lists {module}, but {path} does not exist"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert imported_modules(tree) & FORBIDDEN == set()


def test_the_check_sees_every_form_of_import() -> None:
    source = """
import os.path, socket as s
from time import monotonic
from threading.local import x
from . import time
from .asyncio import y
def f():
    import selectors
"""
    assert imported_modules(ast.parse(source)) & FORBIDDEN == {
        "socket",
        "time",
        "threading",
        "selectors",
    }
