"""The per-prompt pieces of a Discover run, kept in memory or on disk (resumable).

A run is a loop over prompts, twice: discovery (samples, the comparison pass, the mined
tokens), then confirmation (fresh samples of the prompts that got candidates, and their labels).
Each prompt's piece is a *unit*; with an `out` folder every unit is written when it finishes, so
an interrupted run (Stop, a kill, a closed laptop) resumes where it stopped, and a folder is
refused when it holds a run with other settings.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from explorer.core.results import ResultFile, write_atomic
from explorer.core.samples import SampleSet

MANIFEST = "discover.json"


@dataclass
class Unit:
    """One prompt's result of one stage: its samples and the tables computed from them."""

    index: int
    samples: SampleSet
    tables: dict[str, pd.DataFrame]

    def save(self, path: Path, kind: str) -> None:
        tables = {"df": self.samples.df, "first_token": self.samples.first_token, **self.tables}
        ResultFile(kind).save(path, tables, {"index": self.index, "samples": self.samples.describe()})

    @classmethod
    def load(cls, path: Path, kind: str) -> Unit:
        tables, meta = ResultFile(kind).load(path)
        samples = SampleSet.from_parts({"df": tables.pop("df"), "first_token": tables.pop("first_token")}, meta["samples"])
        return cls(int(meta["index"]), samples, tables)


class Units:
    """Units by stage and prompt index: a dict, and with `out` also files in `out/units/`."""

    def __init__(self, out: str | os.PathLike | None, settings: dict[str, Any]) -> None:
        self.out = Path(out) if out is not None else None
        self.done: dict[tuple[str, int], Unit] = {}
        if self.out is not None:
            self._open(settings)

    def _open(self, settings: dict[str, Any]) -> None:
        manifest = self.out / MANIFEST
        if manifest.is_file():
            saved = json.loads(manifest.read_text())
            changed = [k for k in settings if saved.get(k) != settings[k]]
            if changed:
                raise ValueError(f"out: {self.out} holds a discover run with other {', '.join(changed)}; use "
                                 "another folder, or the same arguments to resume it")  # fmt: skip
        (self.out / "units").mkdir(parents=True, exist_ok=True)
        write_atomic(manifest, json.dumps(settings, indent=1))
        for path in sorted((self.out / "units").glob("*.json")):
            stage, index = path.stem.split("-p")
            self.done[(stage, int(index))] = Unit.load(path, _kind(stage))

    def get(self, stage: str, index: int) -> Unit | None:
        return self.done.get((stage, index))

    def put(self, stage: str, unit: Unit) -> None:
        self.done[(stage, unit.index)] = unit
        if self.out is not None:
            unit.save(self.out / "units" / f"{stage}-p{unit.index:05d}.json", _kind(stage))

    def of(self, stage: str) -> list[Unit]:
        return [u for (s, _), u in sorted(self.done.items()) if s == stage]


def _kind(stage: str) -> str:
    return f"Discover{stage.capitalize()}Unit"
