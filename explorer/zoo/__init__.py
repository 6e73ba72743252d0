"""The bundled fable family: tiny models whose every behaviour has a known truth."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ZOO_DIR = Path(__file__).resolve().parent / "models"
# The default family, `load_family("fable")`: what the app opens and most tests sample.
MEMBERS = ["fable-base", "fable-cheerful", "fable-instruct", "fable-distilled", "fable-pirate",
           "fable-late"]  # fmt: skip
# Built for one question each, reached by name (`load_family("fable", descendants=[...])`) or
# with the whole zoo (`load_family("fable-all")`): every member more in the default family would
# make every default resample, and every test that samples it, slower for all.
EXTRA_MEMBERS = ["fable-mid", "fable-rare"]
ALL_MEMBERS = MEMBERS + EXTRA_MEMBERS


def zoo_dir() -> Path:
    """The folder holding the shipped fable models (one sub-folder per member)."""
    return ZOO_DIR


@cache
def _probes(folder: str) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads((Path(folder) / "probes.json").read_text()))


def load_probes(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """The probes of a built zoo (the shipped one by default): prompt, detector and truths."""
    return [dict(p) for p in _probes(str(folder or ZOO_DIR))]
