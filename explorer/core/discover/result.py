"""`Discovery`: what a Discover run found — ranked prompts, mined tokens and words, candidate
behaviours, and the findings that fresh samples confirmed — saved and loaded losslessly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from explorer.core.discover.mining import rank_tokens, words_for
from explorer.core.discover.propose import propose, rank_words
from explorer.core.discover.units import Unit
from explorer.core.findings import findings
from explorer.core.results import ResultFile
from explorer.core.samples import SampleSet
from explorer.core.tokens import token_texts_many

STAY_KL = 0.05  # nats per token: under this along both models' samples, the descendant stays the base
KIND = "Discovery"
TABLES = ("df", "tokens", "words", "candidates", "findings", "provenance", "prompt_tokens", "contexts", "prompts")


@dataclass
class Discovery:
    """`df`: divergence per (prompt, descendant), ranked; `tokens`/`words`: what each
    adaptation raised and lowered; `candidates`: the words proposed as behaviours and where;
    `findings`: their labels on fresh samples (`discovered` findings, one per prompt, behaviour
    and descendant). `samples`/`confirmations`: the SampleSets behind them, by prompt index."""

    df: pd.DataFrame
    tokens: pd.DataFrame
    words: pd.DataFrame
    candidates: pd.DataFrame
    findings: pd.DataFrame
    provenance: pd.DataFrame
    prompt_tokens: pd.DataFrame
    contexts: pd.DataFrame
    prompts: pd.DataFrame  # prompt_index, prompt, category
    samples: dict[int, SampleSet] = field(default_factory=dict)
    confirmations: dict[int, SampleSet] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.df["model"]))

    def decided(self) -> pd.DataFrame:
        """The confirmed findings that changed something (introduced, amplified, suppressed)."""
        return self.findings[self.findings["label"].isin(("introduced", "amplified", "suppressed"))]

    def summary(self) -> str:
        done, planned = len(self.prompts), self.meta.get("planned", len(self.prompts))
        found = len(self.decided())
        return (f"{done} of {planned} prompts compared; {len(self.candidates.drop_duplicates(['model', 'word']))} "
                f"candidate behaviours; {found} confirmed changes on fresh samples")  # fmt: skip

    def save(self, path) -> None:
        tables = {name: getattr(self, name) for name in TABLES}
        for stage, sets in (("samples", self.samples), ("confirmations", self.confirmations)):
            for i, s in sets.items():
                tables[f"{stage}-{i}-df"], tables[f"{stage}-{i}-first_token"] = s.df, s.first_token
        meta = {**self.meta, "sets": {stage: {str(i): s.describe() for i, s in sets.items()}
                                      for stage, sets in (("samples", self.samples), ("confirmations", self.confirmations))}}  # fmt: skip
        ResultFile(KIND).save(path, tables, meta)

    @classmethod
    def load(cls, path) -> Discovery:
        tables, meta = ResultFile(KIND).load(path)
        sets = meta.pop("sets", {})
        rebuilt = {stage: {int(i): SampleSet.from_parts({"df": tables[f"{stage}-{i}-df"],
                                                          "first_token": tables[f"{stage}-{i}-first_token"]}, m)
                           for i, m in sets.get(stage, {}).items()} for stage in ("samples", "confirmations")}  # fmt: skip
        return cls(**{name: _nones(tables[name]) for name in TABLES}, samples=rebuilt["samples"],
                   confirmations=rebuilt["confirmations"], meta=meta)  # fmt: skip


def _nones(df: pd.DataFrame) -> pd.DataFrame:
    """Missing values of text columns as None, as they were before saving (JSON keeps no
    difference between None and NaN)."""
    text = df.select_dtypes(include=["object", "string"]).columns
    return df.astype({c: object for c in text}).where(df.notna(), None) if len(text) else df


def prompts_table(items, units: list[Unit]) -> pd.DataFrame:
    rows = [{"prompt_index": u.index, "prompt": items[u.index].prompt, "category": items[u.index].category} for u in units]
    return pd.DataFrame(rows, columns=["prompt_index", "prompt", "category"])


def divergence_table(units: list[Unit], prompts: pd.DataFrame) -> pd.DataFrame:
    """Per (prompt, descendant): KL and log-ratios, ranked within each descendant (rank 1 =
    departs most) and flagged where the descendant stays the base."""
    df = pd.concat([u.tables["divergence"] for u in units], ignore_index=True)
    df = df.merge(prompts, on="prompt_index", how="left")
    df["rank"] = df.groupby("model")["kl_mean"].rank(ascending=False, method="first").astype("Int64")
    df["stays"] = (df["kl_mean"] < STAY_KL) & (df["kl_mean_on_base"] < STAY_KL)
    first = ["prompt_index", "prompt", "category", "model", "rank"]
    return df[first + [c for c in df.columns if c not in first]].sort_values(["model", "rank"]).reset_index(drop=True)


def mined_tables(units: list[Unit], tokenizer: Any, base: str, rank_by: str, top: int, max_prompts: int):
    """(prompt_tokens, tokens, words, candidates) from the discovery units."""
    prompt_tokens = pd.concat([u.tables["tokens"] for u in units], ignore_index=True)
    per = prompt_tokens.drop_duplicates(["prompt_index", "model"]).groupby("model")
    totals = {m: (len(g), int(g["positions"].sum())) for m, g in per}
    tokens = rank_tokens(prompt_tokens, totals)
    texts = dict(zip(tokens["token_id"], (t[0] for t in token_texts_many(tokenizer, [[i] for i in tokens["token_id"]])), strict=True))
    tokens["token"] = tokens["token_id"].map(texts)
    samples = {u.index: u.samples.df for u in units}
    tokens["word"] = words_for(tokens, samples, texts, base) if len(tokens) else pd.Series(dtype=object)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    tokens.loc[tokens["token_id"].isin(special), "word"] = None
    words = rank_words(tokens, rank_by)
    return prompt_tokens, tokens, words, propose(words, prompt_tokens, top, max_prompts)


def confirmed_tables(units: list[Unit], prompts: pd.DataFrame, candidates: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(provenance, findings) of the confirmation units, with the prompt and who proposed each."""
    if not units:
        empty = findings(None)
        return pd.DataFrame(), empty.assign(prompt_index=pd.Series(dtype=int), prompt=pd.Series(dtype=str))
    prov = pd.concat([u.tables["provenance"] for u in units], ignore_index=True).merge(prompts, on="prompt_index")
    proposed = candidates.groupby(["prompt_index", "word"])["model"].agg(", ".join).rename("proposed_by")
    found = [findings(g.drop(columns=["prompt_index", "prompt", "category"])).assign(prompt_index=i)
             for i, g in prov.groupby("prompt_index")]  # fmt: skip
    table = pd.concat(found, ignore_index=True).merge(prompts, on="prompt_index", how="left")
    table = table.join(proposed, on=["prompt_index", "behaviour"])
    table["n_needed"] = pd.to_numeric(table["n_needed"], errors="coerce")  # None (decided) as NaN, one dtype
    return prov, table.assign(discovered=True)
