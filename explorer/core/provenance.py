"""Where does a behaviour come from? Frequencies with intervals, and a label per descendant.

Each model's rate is shown with its 95% Wilson interval; the labels follow the rule of
`explorer.core.labels`, whose intervals hold together over all the labels of the table (a
family-wise error rate of 5%), so small samples give `inconclusive`, never a guess.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd
import regex
import torch

from explorer.core.clustering import Clusterer
from explorer.core.labels import (
    Rate,
    difference_interval,
    each_alpha,
    intervals_per_run,
    label,
    label_rates,
    samples_needed,
)
from explorer.core.metrics import assign_clusters
from explorer.core.patterns import BehaviourLeftOut, Matcher, PatternTimeout
from explorer.core.samples import SampleSet

Detector = Callable[[str], bool]
COLUMNS = ["behaviour", "model", "count", "n", "freq", "lo", "hi", "exact", "exact_lo", "exact_hi", "exact_note",
           "diff_lo", "diff_hi", "n_needed", "label", "intervals_in_run"]  # fmt: skip
EXACT_COLUMNS = ["exact", "exact_lo", "exact_hi", "exact_note"]
NOT_COMPUTED = "not computed: pass exact=fx.exact_table(family, samples, behaviours)"
Z95 = 1.959963984540054

RANK_ELEMENTS = 50_000_000  # floats of base distributions token_shift holds at once


def wilson(count: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at 0 and small n)."""
    if n <= 0:
        return (0.0, 1.0)
    p = count / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def as_detector(spec: str | re.Pattern | Detector, name: str) -> Detector:
    """A behaviour as a function of a response: a regex (matched within a time limit, see
    `explorer.core.patterns`) or the user's own callable."""
    if isinstance(spec, (str, re.Pattern, regex.Pattern)):
        return Matcher(spec, name)
    if callable(spec):
        return lambda text: bool(spec(text))
    raise TypeError(
        f"behaviours: {name!r} must be a regex or a callable, got {type(spec).__name__}"
    )


def behaviour_hits(texts: pd.Series, behaviours: dict[str, Any]) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Each behaviour's hits over `texts`, and a sentence for each behaviour left out because
    its pattern ran out of time (the others still count)."""
    hits, skipped = {}, {}
    for name, spec in behaviours.items():
        detector = as_detector(spec, name)
        try:
            hits[name] = texts.map(detector)
        except PatternTimeout as err:
            skipped[name] = str(err)
    return hits, skipped


def provenance(
    samples: SampleSet,
    behaviours: dict[str, str | re.Pattern | Detector] | None = None,
    base: str | None = None,
    clusterer: str | Clusterer = "normalised",
    top: int | None = None,
    warn: bool = True,
    intervals: int | None = None,
    exact: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (behaviour, model): count, n, freq, 95% Wilson interval, the exact
    probability where given, samples needed to separate it from the base, and a label.

    `exact` (from `fx.exact_table`: the probability each local model gives a behaviour,
    within [exact_lo, exact_hi]) fills the exact columns, and replaces a sampled rate in the
    labels wherever its interval is the narrower one (`explorer.core.labels.label_rates`).

    Without `behaviours`, each answer cluster is a behaviour (the `top` most frequent, if
    given). The labels of the whole table hold together (`explorer.core.labels`): the more
    behaviours and models, the wider each interval behind them.

    A regex that runs out of its matching time (`explorer.core.patterns`) is left out:
    `df.attrs["skipped"]` holds a sentence for each, also given as a warning when `warn`.
    `intervals`: the intervals of a larger page this table belongs to (Discover's confirmed
    findings over many prompts hold together), instead of this table's own count.
    """
    models = samples.models
    base = base or (samples.family.get("members") or [{}])[0].get("label") or models[0]
    if base not in models:
        raise ValueError(f"base: {base!r} has no samples in this SampleSet ({', '.join(models)})")
    hits, skipped = _hits(samples, behaviours, clusterer, top)
    intervals = intervals or intervals_per_run(len(hits), len(models))
    table = with_exact(pd.DataFrame(_rows(samples, hits, base, intervals), columns=COLUMNS), exact)
    table.attrs["patterns"] = patterns({k: v for k, v in (behaviours or {}).items() if k in hits})
    return _with_skipped(table, skipped, warn)


def _rows(samples: SampleSet, hits: dict[str, pd.Series], base: str, intervals: int) -> list[dict]:
    """One row per (behaviour, model), each labelled against the base."""
    rows, models = [], samples.models
    for name, hit in hits.items():
        counts = {
            m: (int(hit[samples.df["model"] == m].sum()), int((samples.df["model"] == m).sum()))
            for m in models
        }
        for m in models:
            rows.append(_row(name, m, counts[m]) | _judged(counts[base], counts[m], m == base, intervals))
    return rows


def patterns(behaviours: dict[str, Any]) -> dict[str, str]:
    """The regex behaviours by name, as text (what an exact figure can be computed for)."""
    return {k: v if isinstance(v, str) else v.pattern for k, v in behaviours.items()
            if isinstance(v, (str, re.Pattern, regex.Pattern))}  # fmt: skip


def with_exact(table: pd.DataFrame, exact: pd.DataFrame | None) -> pd.DataFrame:
    """A fixed-n provenance table with the exact columns filled and its labels decided again
    where an exact figure is narrower (see `exact_columns`)."""
    alpha = each_alpha(int(table["intervals_in_run"].iloc[0])) if len(table) else 1.0
    kept = dict(table.attrs)
    table = exact_columns(table, exact, lambda r: Rate.counted(r["count"], r["n"], alpha))
    table.attrs.update(kept)
    return table


def exact_columns(table: pd.DataFrame, exact: pd.DataFrame | None, sampled: Callable[[Any], Rate]) -> pd.DataFrame:
    """`table` with the exact columns filled from `exact`, and each label decided again where
    a model's exact interval is narrower than its sampled one (`sampled(row)`: the Rate the
    label rule was given)."""
    if exact is None or table.empty:
        return table.assign(exact=math.nan, exact_lo=math.nan, exact_hi=math.nan, exact_note=NOT_COMPUTED)
    keyed = exact.set_index(["behaviour", "model"])[EXACT_COLUMNS]
    found = keyed.reindex(pd.MultiIndex.from_frame(table[["behaviour", "model"]]))
    table = table.assign(**{c: found[c].to_numpy() for c in EXACT_COLUMNS})
    table["exact_note"] = table["exact_note"].fillna("no exact figure for this behaviour and model")
    rate = {(r.behaviour, r.model): _narrower(r, sampled) for r in table.itertuples()}
    base_of = table[table["label"] == "base"].set_index("behaviour")["model"]
    for i, r in table[table["label"] != "base"].iterrows():
        base, own = rate[(r["behaviour"], base_of[r["behaviour"]])], rate[(r["behaviour"], r["model"])]
        if base[1] or own[1]:
            chosen, lo, hi = label_rates(base[0], own[0])
            table.loc[i, ["label", "diff_lo", "diff_hi", "n_needed"]] = [chosen, lo, hi, None]
    return table


def _narrower(row: Any, sampled: Callable[[Any], Rate]) -> tuple[Rate, bool]:
    """A model's rate for the labels: exact when its interval is the narrower, else sampled."""
    own = sampled(row._asdict())
    lo, hi = row.exact_lo, row.exact_hi
    if lo == lo and hi == hi and hi - lo <= own.hi - own.lo:
        return Rate.exact(float(lo), float(hi)), True
    return own, False


def _with_skipped(table: pd.DataFrame, skipped: dict[str, str], warn: bool) -> pd.DataFrame:
    """The table, with the sentences of the behaviours left out in `attrs["skipped"]` (and a
    warning, so a script sees them too; the app shows them in its banner instead)."""
    table.attrs["skipped"] = skipped
    for sentence in skipped.values() if warn else ():
        warnings.warn(sentence, BehaviourLeftOut, stacklevel=3)
    return table


def _hits(samples: SampleSet, behaviours, clusterer, top) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Each behaviour's hits over the samples (answer clusters when `behaviours` is None) and
    the sentences of those left out."""
    if behaviours is None:
        clusters = assign_clusters(samples, clusterer)
        kept = set(clusters.value_counts(sort=True).index[:top] if top else clusters)
        return {f"≈ {c}": clusters == c for c in dict.fromkeys(clusters) if c in kept}, {}
    if not isinstance(behaviours, dict) or not behaviours:
        raise ValueError("behaviours: give a non-empty dict of name -> regex or callable")
    return behaviour_hits(samples.df["text"].astype(str), behaviours)


def _judged(base_counts, own, is_base: bool, intervals: int) -> dict[str, Any]:
    """The label against the base, its difference interval and (inconclusive only) n_needed."""
    if is_base:
        return {"diff_lo": 0.0, "diff_hi": 0.0, "n_needed": None, "label": "base", "intervals_in_run": intervals}
    lo, hi = difference_interval(base_counts, own, each_alpha(intervals))
    chosen = label(base_counts, own, intervals)
    needed = samples_needed(base_counts, own, intervals) if chosen == "inconclusive" else None
    return {"diff_lo": lo, "diff_hi": hi, "n_needed": needed, "label": chosen, "intervals_in_run": intervals}


def _row(name, model, own) -> dict[str, Any]:
    count, n = own
    lo, hi = wilson(count, n)
    freq = count / n if n else float("nan")
    return {
        "behaviour": name,
        "model": model,
        "count": count,
        "n": n,
        "freq": freq,
        "lo": lo,
        "hi": hi,
    }


def token_shift(family, samples: SampleSet, base: str | None = None) -> pd.DataFrame:
    """Lin et al. (2023): for each descendant's response tokens, the share the base ranks 1
    (`unshifted`), 2–3 (`marginal`) or lower (`shifted`). Pass a greedy SampleSet (`top_k=1`)
    for their setting. Needs a shared tokenizer."""
    from explorer.core.scoring import require_shared, scorer_inputs

    require_shared(family, "token_shift")
    base = base or family.base.label
    loaded, prefix = scorer_inputs(family, samples, base)
    rows = []
    for model, group in samples.df.groupby("model", sort=False):
        if model == base:
            continue
        conts = [list(ids) for ids in group["token_ids"] if len(ids)]
        ranks = [r for batch in bounded_batches(conts, len(loaded.tokenizer)) for r in base_ranks(loaded, prefix, batch)]
        total = len(ranks) or 1
        rows.append(
            {
                "model": model,
                "unshifted": sum(r == 1 for r in ranks) / total,
                "marginal": sum(r in (2, 3) for r in ranks) / total,
                "shifted": sum(r > 3 for r in ranks) / total,
                "n_tokens": len(ranks),
            }
        )
    return pd.DataFrame(rows)


def bounded_batches(conts: list[list[int]], vocab: int) -> list[list[list[int]]]:
    """Consecutive groups of continuations whose whole next-token distributions (tokens × vocab
    floats) stay within RANK_ELEMENTS: a model's samples at a 262k vocabulary are gigabytes."""
    elements = RANK_ELEMENTS
    batches: list[list[list[int]]] = [[]]
    used = 0
    for ids in conts:
        if batches[-1] and used + len(ids) * vocab > elements:
            batches.append([])
            used = 0
        batches[-1].append(ids)
        used += len(ids) * vocab
    return [b for b in batches if b]


def base_ranks(loaded, prefix: list[int], conts: list[list[int]]) -> list[int]:
    """The base's rank of each continuation token (1 = its top token), one batch at a time."""
    ranks = []
    for ids, dist in zip(conts, loaded.continuation_logprobs([prefix] * len(conts), conts, full=True), strict=True):
        chosen = dist.gather(-1, torch.tensor(ids).unsqueeze(-1))  # (len, 1)
        ranks += ((dist > chosen).sum(-1) + 1).tolist()
    return ranks
