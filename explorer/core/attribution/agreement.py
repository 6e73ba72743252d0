"""Agreement across the family: do a descendant's attributions differ from the base's by more
than the method's own noise?

`attribute_samples` attributes each model's own answers and keeps every answer's sequence-level
score per prompt token (the `scores` column). Two models' mean scores always differ
somewhat, because each mean is over a handful of sampled answers; so the difference is judged
against the base's disagreement with itself:

- `spearman`: the rank correlation of a descendant's mean scores with the base's, each mean over
  a random half of the model's samples, repeated over `splits` random halves (the value is the
  median, `lo`–`hi` the central 95%);
- `self`: the same for two disjoint halves of the base's own samples — what the method's noise
  alone gives at that number of samples (`self_lo`–`self_hi`);
- `beyond_noise`: the base agrees with itself more than with the descendant in at least 95% of
  the paired splits (one-sided), so "the LoRA ranks the greeting differently" is a finding.

Relative methods (the `adaptation` method: log p_model − log p_base) are exactly 0 in the base,
so a correlation with it means nothing; for them `changes` says, per descendant and prompt
token, whether the mean change over the descendant's answers has a 95% interval (bootstrap over
its samples) that excludes 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = 400
MIN_SAMPLES = 3  # answers of a model below which no change is called beyond noise
TINY = 1e-6  # a change whose interval stays this close to 0 is float noise, not a change
COLUMNS = ["model", "spearman", "lo", "hi", "self", "self_lo", "self_hi", "beyond_noise", "n"]


def sample_matrix(spread: pd.DataFrame, model: str) -> tuple[np.ndarray, pd.Series]:
    """(samples, sources) scores of one model, sources in prompt order, and their tokens
    (indexed by source_pos)."""
    rows = spread[spread["model"] == model]
    scores = np.array(rows["scores"].tolist(), dtype=float).reshape(len(rows), -1)  # (sources, samples)
    return scores.T, rows.set_index("source_pos")["source_token"]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties share their mean rank); NaN when either side is constant."""
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def halves(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random subsets of range(n) of `size` each (size ≤ n // 2)."""
    order = rng.permutation(n)
    return order[:size], order[size : 2 * size]


def split_agreement(own: np.ndarray, base: np.ndarray, splits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per split: ρ(half of `own`, half A of the base) and ρ(half A, half B of the base), every
    half of the same size (the smaller model's half), so both see the same noise."""
    rng = np.random.default_rng(seed)
    size = min(len(own), len(base) // 2)
    cross, self_ = np.empty(splits), np.empty(splits)
    for i in range(splits):
        a, b = halves(len(base), size, rng)
        c = rng.permutation(len(own))[:size]
        cross[i] = spearman(own[c].mean(0), base[a].mean(0))
        self_[i] = spearman(base[b].mean(0), base[a].mean(0))
    return cross, self_


def agreement(spread: pd.DataFrame, base: str | None = None, splits: int = SPLITS, seed: int = 0) -> pd.DataFrame:
    """One row per descendant: its rank correlation with the base beyond the method's noise (the
    module docstring); `spread` is `attribute_samples`' result. Needs at least 2 samples of the
    descendant and 4 of the base (two halves of 2); fewer give NaN with beyond_noise False."""
    if spread is None or spread.empty or "scores" not in spread:
        return pd.DataFrame(columns=COLUMNS)
    models = list(dict.fromkeys(spread["model"]))
    base = base or models[0]
    ref, _ = sample_matrix(spread, base)
    rows = []
    for model in models:
        if model == base:
            continue
        own, _ = sample_matrix(spread, model)
        if len(own) < 2 or len(ref) < 4 or own.shape[1] != ref.shape[1]:
            rows.append({"model": model, "beyond_noise": False, "n": len(own)})
            continue
        cross, self_ = split_agreement(own, ref, splits, seed)
        ok = ~(np.isnan(cross) | np.isnan(self_))
        if not ok.any():
            rows.append({"model": model, "beyond_noise": False, "n": len(own)})
            continue
        cross, self_ = cross[ok], self_[ok]
        lo, hi = np.percentile(cross, [2.5, 97.5])
        slo, shi = np.percentile(self_, [2.5, 97.5])
        rows.append({"model": model, "spearman": float(np.median(cross)), "lo": lo, "hi": hi,
                     "self": float(np.median(self_)), "self_lo": slo, "self_hi": shi,
                     "beyond_noise": bool(np.mean(self_ > cross) >= 0.95), "n": len(own)})  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def changes(spread: pd.DataFrame, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (model, prompt token): the mean score over the model's answers, its 95% bootstrap
    interval, and whether it excludes 0 — for relative methods, whose scores are the change an
    adaptation made (exactly 0 in the base, which is left out)."""
    out = []
    if spread is None or spread.empty or "scores" not in spread:
        return pd.DataFrame(columns=["model", "source_pos", "source_token", "mean", "lo", "hi", "beyond_noise"])
    rng = np.random.default_rng(seed)
    for model in list(dict.fromkeys(spread["model"]))[1:]:
        m, tokens = sample_matrix(spread, model)
        boot = m[rng.integers(0, len(m), (reps, len(m)))].mean(1)  # (reps, sources)
        lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
        decided = len(m) >= MIN_SAMPLES  # fewer answers give an interval that means nothing
        for j, (pos, token) in enumerate(tokens.items()):
            out.append({"model": model, "source_pos": int(pos), "source_token": token, "mean": float(m[:, j].mean()),
                        "lo": float(lo[j]), "hi": float(hi[j]), "beyond_noise": decided and bool(lo[j] > TINY or hi[j] < -TINY)})  # fmt: skip
    return pd.DataFrame(out)
