"""Sphinx configuration for syncice's documentation.

Built by ``tests/run-all.sh`` with ``sphinx-build -W`` (warnings are errors).
The build uses no network: intersphinx links to the Python documentation only
when SYNCICE_DOCS_INTERSPHINX=1 is set, since fetching its inventory needs the
internet and CI has none to spare.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncice import __version__

project = "syncice"
author = "the syncice authors"
copyright = "the syncice authors"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]

intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
if os.environ.get("SYNCICE_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping["python"] = ("https://docs.python.org/3", None)

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

exclude_patterns = ["_build"]
html_theme = "alabaster"


def _public_bases(
    app: object, name: str, obj: object, options: object, bases: list[type]
) -> None:
    """Leave out the private mixins a public class is assembled from (their
    members are documented on the class itself, ``:inherited-members:``)."""
    bases[:] = [
        b for b in bases if not any(p.startswith("_") for p in b.__module__.split("."))
    ] or [object]


def setup(app: Any) -> None:
    app.connect("autodoc-process-bases", _public_bases)
