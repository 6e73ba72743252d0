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
    difference_interval,
    each_alpha,
    intervals_per_run,
    label,
    samples_needed,
)
from explorer.core.metrics import assign_clusters
from explorer.core.patterns import BehaviourLeftOut, Matcher, PatternTimeout
from explorer.core.samples import SampleSet

Detector = Callable[[str], bool]
COLUMNS = ["behaviour", "model", "count", "n", "freq", "lo", "hi", "exact_first_token", "exact_note",
           "diff_lo", "diff_hi", "n_needed", "label", "intervals_in_run"]  # fmt: skip
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


def could_begin(pattern: regex.Pattern | Matcher, text: str) -> bool:
    """Whether a match of `pattern` starts inside `text` (or `text` starts one that later text
    could complete): the token "Ah" could begin a match of `^ahoy`."""
    found = pattern.search(text, partial=True)
    return found is not None and found.start() < len(text)


def first_token_probability(samples: SampleSet, model: str, spec: Any) -> tuple[float | None, str]:
    """The exact probability that the first generated token begins a match of a regex
    behaviour, from the recorded first-token distribution, and a note saying what limits it.

    Summed over the top-k first tokens, so a lower bound where they miss some mass (the note
    says how much they hold). For a behaviour decided by its first word (`sunny` after "the
    weather today is") it is the behaviour's probability; on subword tokenizers a word is
    several tokens, and the first token only has to begin it."""
    if not isinstance(spec, (str, re.Pattern, regex.Pattern)):
        return None, "no exact figure for a callable behaviour"
    ft = samples.first_token[samples.first_token["model"] == model]
    if ft.empty:
        return None, "no first-token distribution was recorded"
    matcher = Matcher(spec, "first tokens")
    try:
        hits = [could_begin(matcher, str(text)) for text in ft["token"]]
    except PatternTimeout:
        return None, "no exact figure: the pattern ran out of its matching time"
    covered = float(ft["prob"].sum())
    note = "" if covered >= 0.999 else f"lower bound: the top {len(ft)} first tokens hold {covered:.1%} of the probability"
    return float(ft["prob"][hits].sum()), note


def provenance(
    samples: SampleSet,
    behaviours: dict[str, str | re.Pattern | Detector] | None = None,
    base: str | None = None,
    clusterer: str | Clusterer = "normalised",
    top: int | None = None,
    warn: bool = True,
) -> pd.DataFrame:
    """One row per (behaviour, model): count, n, freq, 95% Wilson interval, exact first-token
    probability where computable, samples needed to separate it from the base, and a label.

    Without `behaviours`, each answer cluster is a behaviour (the `top` most frequent, if
    given). The labels of the whole table hold together (`explorer.core.labels`): the more
    behaviours and models, the wider each interval behind them.

    A regex that runs out of its matching time (`explorer.core.patterns`) is left out:
    `df.attrs["skipped"]` holds a sentence for each, also given as a warning when `warn`.
    """
    models = samples.models
    base = base or (samples.family.get("members") or [{}])[0].get("label") or models[0]
    if base not in models:
        raise ValueError(f"base: {base!r} has no samples in this SampleSet ({', '.join(models)})")
    hits, skipped = _hits(samples, behaviours, clusterer, top)
    specs = behaviours or {}
    intervals = intervals_per_run(len(hits), len(models))
    rows = []
    for name, hit in hits.items():
        counts = {
            m: (int(hit[samples.df["model"] == m].sum()), int((samples.df["model"] == m).sum()))
            for m in models
        }
        for m in models:
            row = _row(name, m, counts[m], samples, specs.get(name))
            rows.append(row | _judged(counts[base], counts[m], m == base, intervals))
    return _with_skipped(pd.DataFrame(rows, columns=COLUMNS if not rows else None), skipped, warn)


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


def _row(name, model, own, samples, spec) -> dict[str, Any]:
    count, n = own
    exact, note = first_token_probability(samples, model, spec)
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
        "exact_first_token": exact,
        "exact_note": note,
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
