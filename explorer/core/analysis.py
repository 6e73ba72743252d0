"""One pipeline from samples to every table the app, sweeps and reports show.

`analyse` is what follows a resample: clusters, variability, provenance, the chart tables
(clusters, first tokens, entropy) and, with the family at hand, cross-scoring and per-token
log-ratios. Sweeps use the same `describe_samples` per prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from explorer.core.errors import Cancelled
from explorer.core.family import Family
from explorer.core.findings import findings
from explorer.core.metrics import assign_clusters, variability
from explorer.core.params import CancelToken, ProgressFn, check_cancel
from explorer.core.provenance import provenance
from explorer.core.samples import SampleSet
from explorer.core.scoring import cross_table, default_scorers, ratio_table, score_samples
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
    findings: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.findings is None:
            self.findings = findings(self.provenance)

    def as_dict(self) -> dict:
        """The fields by name (shallow: the tables themselves, not copies)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def provenance_table(
    samples: SampleSet, behaviours: dict[str, str] | None, top: int | None = TOP_CLUSTERS, warn: bool = True
) -> pd.DataFrame:
    """Provenance of the user's behaviours, or of the `top` most frequent answer clusters;
    `warn=False` leaves the sentences of behaviours left out in `attrs["skipped"]` alone."""
    if behaviours:
        return provenance(samples, behaviours=behaviours, warn=warn)
    return provenance(samples, top=top)  # the labels' guarantee counts only the clusters shown


def describe_samples(
    samples: SampleSet, behaviours: dict[str, str] | None = None, top: int | None = TOP_CLUSTERS,
    warn: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Variability and provenance of one SampleSet (what a sweep keeps per prompt)."""
    return variability(samples), provenance_table(samples, behaviours, top, warn)


def analyse(
    samples: SampleSet,
    behaviours: dict[str, str] | None = None,
    family: Family | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    warn: bool = True,
) -> Analysis:
    """Everything the app shows after a resample. With `family`, also cross-scoring (several
    models) and log-ratios (a shared tokenizer); `cancel` is honoured between the steps and
    between scoring batches, since scoring thousands of samples under every model takes a
    while: Stop raises `Cancelled` whose `partial` is the Analysis so far (the tables of the
    scorers that finished). `progress(scorer, done, total)` follows the scoring."""
    var, prov = describe_samples(samples, behaviours, warn=warn)
    check_cancel(cancel)
    result = Analysis(samples, assign_clusters(samples), var, prov, cluster_counts(samples),
                      first_token_comparison(samples), entropy_by_position(samples))  # fmt: skip
    return result if family is None else add_scores(result, family, cancel, progress)


def add_scores(
    result: Analysis, family: Family, cancel: CancelToken | None = None, progress: ProgressFn | None = None
) -> Analysis:
    """`result` with cross-scoring and log-ratios added: the slow part of an analysis, which
    the app runs after showing the rest. Stop raises `Cancelled` whose `partial` is `result`
    with the cross-scores of the scorers that finished."""
    samples = result.samples
    try:
        scored = score_samples(family, samples, default_scorers(family, samples), cancel, progress)
    except Cancelled as err:  # keep what finished: the cross-scores of the scorers done so far
        result.cross = cross_table(samples, err.partial or {}) if len(samples.models) > 1 else None
        raise Cancelled("cancelled", partial=result) from err
    score_tables(result, family, samples, scored)
    return result


def score_tables(result: Analysis, family: Family, samples: SampleSet, scored: dict) -> None:
    """Cross-scoring (several models) and log-ratios (a shared tokenizer) from the same scores:
    each scorer's teacher-forced pass is done once for both."""
    if len(samples.models) > 1:
        result.cross = cross_table(samples, scored)
    if family.shared_tokenizer and family.base.label in scored:
        result.log_ratio = ratio_table(samples, scored, family.base.label)
