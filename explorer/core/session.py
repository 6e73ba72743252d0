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
    amplified: SampleSet | None = None  # samples along a base → descendant path (fx.amplify)

    def save(self, path) -> None:
        tables: dict[str, pd.DataFrame] = {}
        meta: dict[str, Any] = {
            "family": self.family,
            "behaviours": self.behaviours,
            "selected": list(self.selected) if self.selected else None,
            "versions": library_versions(),
        }
        for name, samples in (("samples", self.samples), ("amplified", self.amplified)):
            if samples is not None:
                put_samples(tables, meta, name, samples)
        if self.attribution is not None:
            tables["attribution"] = self.attribution.df
            meta["attribution"] = self.attribution.meta
        ResultFile(KIND).save(path, tables=tables, meta=meta)

    @classmethod
    def load(cls, path) -> Session:
        tables, meta = ResultFile(KIND).load(path)
        attribution = (
            Attribution(tables["attribution"], meta["attribution"])
            if "attribution" in meta
            else None
        )
        selected = tuple(meta["selected"]) if meta.get("selected") else None
        return cls(meta["family"], get_samples(tables, meta, "samples"), dict(meta.get("behaviours") or {}),
                   attribution, selected, get_samples(tables, meta, "amplified"))  # fmt: skip


def put_samples(tables: dict[str, pd.DataFrame], meta: dict[str, Any], name: str, samples: SampleSet) -> None:
    """A SampleSet into a session file's tables and meta under `name` (the first SampleSet's
    tables keep their old names, "samples" and "first_token", so older files still read)."""
    tables[name] = samples.df
    tables["first_token" if name == "samples" else f"{name}_first_token"] = samples.first_token
    meta[name] = {"params": samples.params.to_dict(), "prompt": samples.prompt, "family": samples.family,
                  "meta": samples.meta}  # fmt: skip


def get_samples(tables: dict[str, pd.DataFrame], meta: dict[str, Any], name: str) -> SampleSet | None:
    if name not in meta:
        return None
    s = meta[name]
    parts = {"df": tables[name], "first_token": tables["first_token" if name == "samples" else f"{name}_first_token"]}
    return SampleSet.from_parts(parts, {**s["meta"], **{k: s[k] for k in ("params", "prompt", "family")}})
