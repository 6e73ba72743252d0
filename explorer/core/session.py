"""A whole exploration session — family, parameters, samples, behaviours, attribution — saved
and loaded as one versioned file, so nothing is lost and a re-run reproduces it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from explorer.core.attribution import Attribution
from explorer.core.results import ResultFile, library_versions
from explorer.core.samples import SampleSet

KIND = "Session"


@dataclass
class Session:
    family: dict[str, Any]
    samples: SampleSet | None = None
    behaviours: dict[str, str] = field(default_factory=dict)
    attribution: Attribution | None = None
    selected: tuple[str, int] | None = None

    def save(self, path) -> None:
        tables: dict[str, pd.DataFrame] = {}
        meta: dict[str, Any] = {
            "family": self.family,
            "behaviours": self.behaviours,
            "selected": list(self.selected) if self.selected else None,
            "versions": library_versions(),
        }
        if self.samples is not None:
            tables["samples"] = self.samples.df
            tables["first_token"] = self.samples.first_token
            meta["samples"] = {
                "params": self.samples.params.to_dict(),
                "prompt": self.samples.prompt,
                "family": self.samples.family,
                "meta": self.samples.meta,
            }
        if self.attribution is not None:
            tables["attribution"] = self.attribution.df
            meta["attribution"] = self.attribution.meta
        ResultFile(KIND).save(path, tables=tables, meta=meta)

    @classmethod
    def load(cls, path) -> Session:
        tables, meta = ResultFile(KIND).load(path)
        samples = None
        if "samples" in meta:
            s = meta["samples"]
            parts = {"df": tables["samples"], "first_token": tables["first_token"]}
            samples = SampleSet.from_parts(parts, {**s["meta"], **{k: s[k] for k in ("params", "prompt", "family")}})
        attribution = (
            Attribution(tables["attribution"], meta["attribution"])
            if "attribution" in meta
            else None
        )
        selected = tuple(meta["selected"]) if meta.get("selected") else None
        return cls(
            meta["family"], samples, dict(meta.get("behaviours") or {}), attribution, selected
        )
