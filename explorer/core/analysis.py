"""One pipeline from samples to every table the app, sweeps and reports show.

`analyse` is what follows a resample: clusters, variability, provenance, the chart tables
(clusters, first tokens, entropy) and, with the family at hand, cross-scoring and per-token
log-ratios. Sweeps use the same `describe_samples` per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from explorer.core.family import Family
from explorer.core.metrics import assign_clusters, variability
from explorer.core.params import CancelToken, check_cancel
from explorer.core.provenance import provenance
from explorer.core.samples import SampleSet
from explorer.core.scoring import cross_score, log_ratio
from explorer.core.tables import cluster_counts, entropy_by_position, first_token_comparison

TOP_CLUSTERS = 6  # answer clusters judged as behaviours when the user named none


@dataclass
class Analysis:
    """Everything derived from one SampleSet (None where it does not apply)."""

    samples: SampleSet
    clusters: pd.Series
    variability: pd.DataFrame
    provenance: pd.DataFrame
    cluster_counts: pd.DataFrame
    first_tokens: pd.DataFrame
    entropy: pd.DataFrame
    cross: pd.DataFrame | None = None
    log_ratio: pd.DataFrame | None = None

    def as_dict(self) -> dict:
        """The fields by name (shallow: the tables themselves, not copies)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def provenance_table(
    samples: SampleSet, behaviours: dict[str, str] | None, top: int | None = TOP_CLUSTERS
) -> pd.DataFrame:
    """Provenance of the user's behaviours, or of the `top` most frequent answer clusters."""
    if behaviours:
        return provenance(samples, behaviours=behaviours)
    table = provenance(samples)
    if top is None:
        return table
    kept = table.groupby("behaviour", sort=False)["count"].sum().nlargest(top).index
    return table[table["behaviour"].isin(kept)].reset_index(drop=True)


def describe_samples(
    samples: SampleSet, behaviours: dict[str, str] | None = None, top: int | None = TOP_CLUSTERS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Variability and provenance of one SampleSet (what a sweep keeps per prompt)."""
    return variability(samples), provenance_table(samples, behaviours, top)


def analyse(
    samples: SampleSet,
    behaviours: dict[str, str] | None = None,
    family: Family | None = None,
    cancel: CancelToken | None = None,
) -> Analysis:
    """Everything the app shows after a resample. With `family`, also cross-scoring (several
    models) and log-ratios (a shared tokenizer); `cancel` is honoured between the steps, since
    scoring thousands of samples under every model takes a while."""
    var, prov = describe_samples(samples, behaviours)
    check_cancel(cancel)
    result = Analysis(samples, assign_clusters(samples), var, prov, cluster_counts(samples),
                      first_token_comparison(samples), entropy_by_position(samples))  # fmt: skip
    if family is None:
        return result
    check_cancel(cancel)
    if len(samples.models) > 1:
        result.cross = cross_score(family, samples, cancel=cancel)
    check_cancel(cancel)
    if family.shared_tokenizer:
        result.log_ratio = log_ratio(family, samples, cancel=cancel)
    return result
