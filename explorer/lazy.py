"""Modules imported on first use, so that the app's kernel shows its page before paying for what
the page does not draw yet.

altair costs about 1.5 s to import (most of it jsonschema building an IRI grammar at import),
and no chart is drawn before the first resample: the chart builders name it through
`LazyModule("altair")` and the app loads it in the background once its family is in.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module `name` and imports it on the first attribute read. Python's import
    lock makes that safe from any thread; later reads cost a dictionary look-up."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"
