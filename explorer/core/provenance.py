"""Where does a behaviour come from? Frequencies with intervals, and a label per descendant.

The labelling rule (documented in `label` and the README) compares 95% Wilson intervals of the
descendant's and the base's rates, so small samples give `inconclusive`, never a guess.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch

from explorer.core.clustering import Clusterer
from explorer.core.metrics import assign_clusters
from explorer.core.samples import SampleSet

Detector = Callable[[str], bool]
Z95 = 1.959963984540054
Z80 = 0.8416212335729143

# Thresholds of the labelling rule.
MAX_WIDTH = 0.35  # an interval wider than this is too uncertain to call two rates "the same"
MAX_ABSENT = 0.10  # "absent" needs both upper bounds below this


def wilson(count: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at 0 and small n)."""
    if n <= 0:
        return (0.0, 1.0)
    p = count / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def samples_needed(p1: float, p2: float, z_alpha: float = Z95, z_beta: float = Z80) -> float:
    """Samples per model to tell rates p1 and p2 apart (two-sided 5%, power 80%)."""
    if p1 == p2:
        return math.inf
    pbar = (p1 + p2) / 2
    num = z_alpha * math.sqrt(2 * pbar * (1 - pbar)) + z_beta * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    return math.ceil(num * num / (p1 - p2) ** 2)


def label(base: tuple[int, int], desc: tuple[int, int]) -> str:
    """The provenance label of a descendant's (count, n) against the base's (count, n).

    - intervals do not overlap and the descendant is higher: `introduced` if the base never
      showed the behaviour, else `amplified`; lower: `suppressed`;
    - intervals overlap: `inherited` when both show it and both intervals are narrower than
      MAX_WIDTH; `absent` when neither shows it and both upper bounds are under MAX_ABSENT;
      otherwise `inconclusive` (more samples needed).
    """
    (cb, nb), (cd, nd) = base, desc
    lb, hb = wilson(cb, nb)
    ld, hd = wilson(cd, nd)
    if ld > hb:
        return "introduced" if cb == 0 else "amplified"
    if hd < lb:
        return "suppressed"
    if cb == 0 and cd == 0:
        return "absent" if max(hb, hd) < MAX_ABSENT else "inconclusive"
    if cb > 0 and cd > 0 and (hb - lb) <= MAX_WIDTH and (hd - ld) <= MAX_WIDTH:
        return "inherited"
    return "inconclusive"


def as_detector(spec: str | re.Pattern | Detector, name: str) -> Detector:
    if isinstance(spec, str):
        try:
            spec = re.compile(spec)
        except re.error as err:
            raise ValueError(f"behaviours: {name!r} is not a valid regex ({err})") from err
    if isinstance(spec, re.Pattern):
        return lambda text, pattern=spec: pattern.search(text) is not None
    if callable(spec):
        return lambda text: bool(spec(text))
    raise TypeError(
        f"behaviours: {name!r} must be a regex or a callable, got {type(spec).__name__}"
    )


def first_token_probability(samples: SampleSet, model: str, spec: Any) -> float | None:
    """Exact probability mass of first tokens that alone match a regex behaviour (over the
    recorded top-k, so a lower bound; equal to the behaviour's probability when the first word
    decides it, as for `sunny` after `the weather today is`)."""
    if not isinstance(spec, (str, re.Pattern)) or samples.first_token.empty:
        return None
    pattern = re.compile(spec) if isinstance(spec, str) else spec
    ft = samples.first_token[samples.first_token["model"] == model]
    words = ft["token"].astype(str).str.replace("Ġ", " ").str.replace("▁", " ").str.strip()
    return float(ft["prob"][[pattern.search(w) is not None for w in words]].sum())


def provenance(
    samples: SampleSet,
    behaviours: dict[str, str | re.Pattern | Detector] | None = None,
    base: str | None = None,
    clusterer: str | Clusterer = "normalised",
) -> pd.DataFrame:
    """One row per (behaviour, model): count, n, freq, 95% Wilson interval, exact first-token
    probability where computable, samples needed to separate it from the base, and a label.

    Without `behaviours`, each answer cluster is a behaviour.
    """
    models = samples.models
    base = base or (samples.family.get("members") or [{}])[0].get("label") or models[0]
    if base not in models:
        raise ValueError(f"base: {base!r} has no samples in this SampleSet ({', '.join(models)})")
    texts = samples.df["text"].astype(str)
    if behaviours is None:
        clusters = assign_clusters(samples, clusterer)
        hits = {f"≈ {c}": clusters == c for c in dict.fromkeys(clusters)}
        specs: dict[str, Any] = {}
    else:
        if not isinstance(behaviours, dict) or not behaviours:
            raise ValueError("behaviours: give a non-empty dict of name -> regex or callable")
        hits = {name: texts.map(as_detector(spec, name)) for name, spec in behaviours.items()}
        specs = behaviours
    rows = []
    for name, hit in hits.items():
        counts = {
            m: (int(hit[samples.df["model"] == m].sum()), int((samples.df["model"] == m).sum()))
            for m in models
        }
        for m in models:
            rows.append(_row(name, m, counts[m], counts[base], m == base, samples, specs.get(name)))
    return pd.DataFrame(rows)


def _row(name, model, own, base_counts, is_base, samples, spec) -> dict[str, Any]:
    count, n = own
    lo, hi = wilson(count, n)
    freq = count / n if n else float("nan")
    base_freq = base_counts[0] / base_counts[1] if base_counts[1] else float("nan")
    return {
        "behaviour": name,
        "model": model,
        "count": count,
        "n": n,
        "freq": freq,
        "lo": lo,
        "hi": hi,
        "exact_first_token": first_token_probability(samples, model, spec),
        "n_needed": None if is_base else samples_needed(base_freq, freq),
        "label": "base" if is_base else label(base_counts, own),
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
        dists = loaded.continuation_logprobs([prefix] * len(conts), conts, full=True)
        ranks = []
        for ids, dist in zip(conts, dists, strict=True):
            chosen = dist.gather(-1, torch.tensor(ids).unsqueeze(-1))  # (len, 1)
            ranks += ((dist > chosen).sum(-1) + 1).tolist()  # rank 1 = the base's top token
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
