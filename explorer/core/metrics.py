"""Variability within each model: how much do its answers to one prompt spread?

Metrics live in a registry keyed by name, so users can add their own with `register_metric`.
Each metric sees one model's samples (a `ModelView`) and returns a number.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from explorer.core.clustering import Clusterer, get_clusterer
from explorer.core.samples import SampleSet


@dataclass(frozen=True)
class ModelView:
    """One model's samples, its first-token distribution and its answer clusters."""

    model: str
    df: pd.DataFrame
    first_token: pd.DataFrame
    clusters: list[str]
    max_new_tokens: int


MetricFn = Callable[[ModelView], float]
_METRICS: dict[str, tuple[MetricFn, str]] = {}


def register_metric(name: str, fn: MetricFn, description: str = "") -> None:
    """Add (or replace) a metric; `variability` reports it as a column named `name`."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: a metric name must be an identifier, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn: expected a callable taking a ModelView, got {type(fn).__name__}")
    _METRICS[name] = (fn, description or (fn.__doc__ or "").strip().split("\n")[0])


def list_metrics() -> pd.DataFrame:
    """The registered metrics with one-line descriptions."""
    return pd.DataFrame([{"metric": k, "description": d} for k, (_, d) in _METRICS.items()])


def entropy(counts: Counter | list[float]) -> float:
    """Shannon entropy in nats of counts or probabilities."""
    values = list(counts.values()) if isinstance(counts, Counter) else list(counts)
    total = sum(values)
    if not total:
        return float("nan")
    return max(0.0, -sum(v / total * math.log(v / total) for v in values if v > 0))


def distinct_n(token_lists: list[list[str]], n: int) -> float:
    """Unique n-grams over all n-grams, pooled over responses (Li et al. 2016)."""
    grams = [tuple(t[i : i + n]) for t in token_lists for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def _lengths(v: ModelView) -> pd.Series:
    return v.df["n_tokens"].astype(float)


def _builtin() -> None:
    tokens = lambda v: list(v.df["tokens"])  # noqa: E731
    register_metric("n", lambda v: float(len(v.df)), "number of samples")
    register_metric("distinct_1", lambda v: distinct_n(tokens(v), 1), "unique tokens / tokens")
    register_metric("distinct_2", lambda v: distinct_n(tokens(v), 2), "unique bigrams / bigrams")
    register_metric(
        "unique_share", lambda v: v.df["text"].nunique() / len(v.df), "distinct responses / samples"
    )
    register_metric("length_mean", lambda v: _lengths(v).mean(), "mean response length (tokens)")
    register_metric("length_sd", lambda v: _lengths(v).std(ddof=1) if len(v.df) > 1 else 0.0,
                    "standard deviation of response length")  # fmt: skip
    register_metric(
        "length_capped_share",
        lambda v: float((v.df["finish_reason"] == "length").mean()),
        "share of responses cut at max_new_tokens",
    )
    register_metric(
        "mean_token_entropy",
        lambda v: _mean([e for es in v.df["entropies"] for e in es]),
        "mean entropy (nats) of the raw next-token distribution along the responses",
    )
    register_metric(
        "first_token_entropy",
        lambda v: entropy(list(v.first_token["prob"])) if len(v.first_token) else float("nan"),
        "entropy (nats) of the exact first-token distribution (its top-k)",
    )
    register_metric(
        "n_clusters", lambda v: float(len(set(v.clusters))), "number of answer clusters"
    )
    register_metric(
        "modal_cluster_share",
        lambda v: Counter(v.clusters).most_common(1)[0][1] / len(v.clusters),
        "share of the most common answer cluster (self-consistency)",
    )
    register_metric("cluster_entropy", lambda v: entropy(Counter(v.clusters)),
                    "entropy (nats) of the answer-cluster distribution")  # fmt: skip


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


_builtin()


def assign_clusters(samples: SampleSet, clusterer: str | Clusterer = "normalised") -> pd.Series:
    """A cluster label for every row of `samples.df` (clustered per model, labels comparable
    across models for the text-based clusterers)."""
    fn = get_clusterer(clusterer)
    labels = pd.Series(index=samples.df.index, dtype=object)
    for _, group in samples.df.groupby("model", sort=False):
        labels.loc[group.index] = fn(list(group["text"]))
    return labels


def model_views(samples: SampleSet, clusterer: str | Clusterer = "normalised") -> list[ModelView]:
    clusters = assign_clusters(samples, clusterer)
    ft = samples.first_token
    return [
        ModelView(
            model=model,
            df=group,
            first_token=ft[ft["model"] == model] if len(ft) else ft,
            clusters=list(clusters.loc[group.index]),
            max_new_tokens=samples.params.max_new_tokens,
        )
        for model, group in samples.df.groupby("model", sort=False)
    ]


def variability(
    samples: SampleSet, clusterer: str | Clusterer = "normalised", metrics: list[str] | None = None
) -> pd.DataFrame:
    """One row per model, one column per metric (all registered metrics by default)."""
    names = metrics or list(_METRICS)
    unknown = [m for m in names if m not in _METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; registered: {', '.join(_METRICS)}")
    rows = []
    for view in model_views(samples, clusterer):
        rows.append({"model": view.model, **{m: float(_METRICS[m][0](view)) for m in names}})
    return pd.DataFrame(rows)
