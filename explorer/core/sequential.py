"""Provenance labels that stay right however often one looks: the labels of
`explorer.core.labels` decided on confidence sequences (`explorer.core.confseq`) instead of
fixed-n intervals.

Same claims, same Bonferroni split of α = 5% over the run's intervals (a difference per
(behaviour, descendant), an upper bound per (behaviour, model)); each interval is an
anytime-valid sequence over the samples in the order they were drawn, so the chance that *any*
label is ever wrong — at the first look where all are decided, or at any other look — is at
most 5%. The difference of rates pairs the i-th sample of the descendant with the i-th of the
base (both are sampled in the same rounds). Rates shown beside the labels carry a 95%
sequence of their own (`lo`, `hi`), for the same reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from explorer.core.confseq import difference_bounds, rate_bounds
from explorer.core.labels import ALPHA, Rate, each_alpha, intervals_per_run, rule_many
from explorer.core.provenance import COLUMNS, behaviour_hits, exact_columns
from explorer.core.samples import SampleSet

KIND = "confidence sequences (anytime-valid: any number of looks)"


def hit_streams(samples: SampleSet, behaviours: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray], dict[str, str]]:
    """The behaviours kept, each model's hits (behaviours, n) in sampling order, and the
    sentences of behaviours left out (a pattern that ran out of time)."""
    df = samples.df.sort_values(["model", "sample"], kind="stable")
    hits, skipped = behaviour_hits(df["text"].astype(str), behaviours)
    names = list(hits)
    streams = {}
    for model in samples.models:
        mine = (df["model"] == model).to_numpy()
        streams[model] = np.array([hits[name].to_numpy()[mine] for name in names], dtype=float).reshape(len(names), -1)
    return names, streams, skipped


def sequential_provenance(samples: SampleSet, behaviours: dict[str, Any], base: str | None = None,
                          exact: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """The provenance table (same columns as `fx.provenance`) with labels decided on
    confidence sequences; `exact` (from `explorer.core.exact.exact_table`) replaces a
    sampled rate where it is the narrower interval. `attrs["intervals"]` says which kind."""
    models = samples.models
    base = base or samples.base
    if base not in models:
        raise ValueError(f"base: {base!r} has no samples in this SampleSet ({', '.join(models)})")
    names, streams, skipped = hit_streams(samples, behaviours)
    intervals = intervals_per_run(len(names), len(models))
    alpha = each_alpha(intervals)
    rows = [row for model in models for row in _model_rows(names, streams, model, base, alpha, intervals)]
    rows.sort(key=lambda row: names.index(row["behaviour"]))  # behaviour by behaviour, as fx.provenance
    table = exact_columns(pd.DataFrame(rows, columns=COLUMNS), exact, sampled_rates(names, streams, alpha))
    table.attrs.update(skipped=skipped, intervals=KIND)
    return table


def sampled_rates(names: list[str], streams: dict[str, np.ndarray], alpha: float):
    """row -> the Rate the sequential labels rest on for its (behaviour, model): a two-sided
    sequence and a one-sided upper sequence at `alpha` (asked only where an exact figure is)."""

    def rate(row: dict[str, Any]) -> Rate:
        hits = streams[row["model"]][names.index(row["behaviour"])]  # (n,)
        lo, hi = rate_bounds(hits, alpha, "both")
        _, upper = rate_bounds(hits, alpha, "upper")
        return Rate(float(lo), float(hi), float(upper), bool(hits.sum() > 0))

    return rate


def _model_rows(names, streams, model, base, alpha, intervals) -> list[dict[str, Any]]:
    """One model's rows: counts, a 95% sequence per rate and, against the base, the label."""
    own = streams[model]  # (behaviours, n)
    n = own.shape[1]
    shown_lo, shown_hi = rate_bounds(own, ALPHA, "both")
    if model == base:
        labels, diff_lo, diff_hi = ["base"] * len(names), np.zeros(len(names)), np.zeros(len(names))
    else:
        labels, diff_lo, diff_hi = judge(streams[base], own, alpha)
    return [
        {"behaviour": name, "model": model, "count": int(own[i].sum()), "n": n,
         "freq": own[i].sum() / n if n else np.nan, "lo": float(shown_lo[i]), "hi": float(shown_hi[i]),
         "diff_lo": float(diff_lo[i]), "diff_hi": float(diff_hi[i]), "n_needed": None, "label": str(labels[i]),
         "intervals_in_run": intervals}  # fmt: skip
        for i, name in enumerate(names)
    ]


def judge(base: np.ndarray, desc: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of a descendant's hits against the base's (both (..., behaviours, n), paired by
    position), each interval at `alpha`: labels, and the difference's bounds."""
    lo, hi = difference_bounds(base, desc, alpha)
    _, base_upper = rate_bounds(base, alpha, "upper")
    _, desc_upper = rate_bounds(desc, alpha, "upper")
    both = (base.sum(-1) > 0) & (desc.sum(-1) > 0)
    return rule_many(lo, hi, base_upper, desc_upper, both), lo, hi
