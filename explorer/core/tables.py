"""Tidy tables derived from a SampleSet, ready for charts (one fact per row)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorer.core.clustering import Clusterer
from explorer.core.metrics import assign_clusters
from explorer.core.samples import SampleSet


def cluster_counts(samples: SampleSet, clusterer: str | Clusterer = "normalised") -> pd.DataFrame:
    """model, cluster, count, share — clusters in order of overall frequency."""
    df = pd.DataFrame(
        {"model": samples.df["model"], "cluster": assign_clusters(samples, clusterer)}
    )
    counts = df.groupby(["model", "cluster"], sort=False).size().rename("count").reset_index()
    counts["share"] = counts["count"] / counts.groupby("model")["count"].transform("sum")
    order = counts.groupby("cluster")["count"].sum().sort_values(ascending=False).index
    counts["cluster_rank"] = counts["cluster"].map({c: i for i, c in enumerate(order)})
    return counts.sort_values(["model", "cluster_rank"], key=_model_order(samples)).reset_index(
        drop=True
    )


def _model_order(samples: SampleSet):
    order = {m: i for i, m in enumerate(samples.models)}
    return lambda col: col.map(order) if col.name == "model" else col


def first_token_comparison(samples: SampleSet, top: int = 10) -> pd.DataFrame:
    """model, token, exact (model probability), sampled (share of samples starting with it)."""
    rows = []
    for model, group in samples.df.groupby("model", sort=False):
        firsts = group["tokens"].map(lambda t: t[0] if len(t) else "<eos>")
        sampled = firsts.value_counts(normalize=True)
        ft = samples.first_token[samples.first_token["model"] == model].head(top)
        tokens = list(dict.fromkeys(list(ft["token"]) + list(sampled.index[:top])))
        exact = dict(zip(ft["token"], ft["prob"], strict=True))
        for tok in tokens:
            rows.append(
                {
                    "model": model,
                    "token": str(tok),
                    "exact": exact.get(tok),
                    "sampled": float(sampled.get(tok, 0.0)),
                }
            )
    return pd.DataFrame(rows, columns=["model", "token", "exact", "sampled"])


def entropy_by_position(samples: SampleSet) -> pd.DataFrame:
    """model, position, mean and sd of the raw next-token entropy over samples still running."""
    long = samples.df[["model", "sample", "entropies"]].explode("entropies").dropna()
    if long.empty:
        return pd.DataFrame(columns=["model", "position", "mean", "sd", "n"])
    long["position"] = long.groupby(["model", "sample"]).cumcount()
    long["entropies"] = long["entropies"].astype(float)
    out = (
        long.groupby(["model", "position"], sort=False)["entropies"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    return out.rename(columns={"std": "sd", "count": "n"}).fillna({"sd": 0.0})


def response_tokens(log_ratio: pd.DataFrame, sample: int) -> pd.DataFrame:
    """The rows of one sample of a `log_ratio` table (its tokens in order), for the token view."""
    return (
        log_ratio[log_ratio["sample"] == sample]
        .sort_values(["model", "position"])
        .reset_index(drop=True)
    )


def token_probabilities(samples: SampleSet, model: str, sample: int) -> pd.DataFrame:
    """One response's tokens with the model's probability of each (for the token view)."""
    row = samples.row(model, sample)
    if row is None:
        raise ValueError(f"sample: no sample {sample} of {model!r}")
    return pd.DataFrame(
        {
            "model": model,
            "position": range(len(row["tokens"])),
            "token": list(row["tokens"]),
            "prob": [float(np.exp(x)) for x in row["model_logprobs"]],
        }
    )
