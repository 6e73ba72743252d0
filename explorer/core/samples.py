"""`SampleSet`: every model's samples for one prompt, with what produced them; saved losslessly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from explorer.core.params import SamplingParams
from explorer.core.responses import FIRST_TOKEN_COLUMNS
from explorer.core.results import ResultFile


@dataclass
class SampleSet:
    """Samples of every model for one prompt: `.df` (one row per model × sample), the exact
    first-token distributions, the parameters and everything needed to say what produced them."""

    df: pd.DataFrame
    params: SamplingParams
    prompt: str
    family: dict[str, Any]
    first_token: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FIRST_TOKEN_COLUMNS))
    meta: dict[str, Any] = field(default_factory=dict)

    KIND = "SampleSet"

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.df["model"]))

    @property
    def base(self) -> str:
        """The family's base label (the first member), or the first model sampled."""
        members = self.family.get("members") or [{}]
        return members[0].get("label") or self.models[0]

    def texts(self, model: str) -> list[str]:
        return self.df.loc[self.df["model"] == model, "text"].tolist()

    def row(self, model: str, sample: int) -> pd.Series | None:
        """One response's row of `df` (text, tokens, log-probs…), or None when there is none."""
        rows = self.df[(self.df["model"] == model) & (self.df["sample"] == sample)]
        return None if rows.empty else rows.iloc[0]

    def save(self, path) -> None:
        """Lossless: JSON (default) or Parquet (by the `.parquet` suffix)."""
        ResultFile(self.KIND).save(path, tables=self.tables(), meta=self.describe())

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"df": self.df, "first_token": self.first_token}

    def describe(self) -> dict[str, Any]:
        return {"params": self.params.to_dict(), "prompt": self.prompt, "family": self.family, **self.meta}

    @classmethod
    def from_parts(cls, tables: dict[str, pd.DataFrame], meta: dict[str, Any]) -> SampleSet:
        """The inverse of `tables()` and `describe()`."""
        meta = dict(meta)
        return cls(df=tables["df"], params=SamplingParams(**meta.pop("params")),
                   prompt=meta.pop("prompt"), family=meta.pop("family"),
                   first_token=tables["first_token"], meta=meta)  # fmt: skip

    @classmethod
    def load(cls, path) -> SampleSet:
        return cls.from_parts(*ResultFile(cls.KIND).load(path))


def combine(parts: list[SampleSet]) -> SampleSet:
    """One SampleSet from per-model runs of the same prompt and parameters (in order)."""
    if not parts:
        raise ValueError("parts: nothing to combine")
    first = parts[0]
    meta: dict[str, Any] = {"model_inputs": {}, "seconds": {}, "versions": first.meta.get("versions", {})}
    for part in parts:
        if part.prompt != first.prompt or part.params != first.params:
            raise ValueError(
                "parts: sample sets of different prompts or parameters cannot be combined"
            )
        meta["model_inputs"].update(part.meta.get("model_inputs", {}))
        meta["seconds"].update(part.meta.get("seconds", {}))
        meta.setdefault("threads", {}).update(part.meta.get("threads", {}))
        if "engine" in part.meta:  # served models: keep what produced them
            merge_engine(meta, part.meta["engine"])
    return SampleSet(
        df=pd.concat([p.df for p in parts], ignore_index=True),
        params=first.params,
        prompt=first.prompt,
        family=first.family,
        first_token=pd.concat([p.first_token for p in parts], ignore_index=True),
        meta=meta,
    )


def merge_engine(meta: dict[str, Any], engine: dict[str, Any]) -> None:
    """Add one member's engine description to `meta["engine"]` (its `models` accumulate)."""
    merged = meta.setdefault("engine", {**engine, "models": {}})
    merged["models"].update(engine["models"])
