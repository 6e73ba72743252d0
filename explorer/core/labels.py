"""Provenance labels that hold together: a family-wise error rate over one run's labels.

A run compares every behaviour in every descendant with the base: `m` labels, and the chance of
a false one somewhere grows with `m` when each is decided on its own (measured on the zoo's
weather prompt with 12 labels a run: 5 runs in 100 carried a false label at n=32). Here every
claim a label makes rests on intervals that hold *simultaneously* with probability ≥ 1 − ALPHA
(Bonferroni over all the intervals of the run):

- the difference of the two rates, p_desc − p_base: Newcombe's hybrid score interval
  (statsmodels `confint_proportions_2indep`, method "newcomb"), two-sided;
- each rate's one-sided Wilson upper bound, for claims that a rate is small.

| label | claim (true with family-wise probability ≥ 95%) | evidence |
|---|---|---|
| `introduced` | p_desc > p_base and p_base < SMALL | difference interval above 0, base's upper bound under SMALL |
| `amplified` | p_desc > p_base | difference interval above 0 |
| `suppressed` | p_desc < p_base | difference interval below 0 |
| `inherited` | both show it and |p_desc − p_base| ≤ MARGIN | both counted it, difference interval inside ±MARGIN |
| `absent` | p_desc < SMALL and p_base < SMALL | both upper bounds under SMALL |
| `inconclusive` | nothing | anything else; `n_needed` says about how many samples per model would decide it |
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # family-wise error rate of one run's labels
MARGIN = 0.25  # "inherited": the rates differ by at most this much
SMALL = 0.10  # "absent"/"introduced": a rate under this counts as not shown
MAX_NEEDED = 1_000_000
TIE = 0.005  # exact rates closer than this (half a percentage point) count as equal


def intervals_per_run(n_behaviours: int, n_models: int) -> int:
    """How many intervals one run's labels rest on: a difference per (behaviour, descendant)
    and an upper bound per (behaviour, model)."""
    return n_behaviours * (n_models - 1) + n_behaviours * n_models


def each_alpha(intervals: int) -> float:
    """The error rate of each interval (Bonferroni) so that all hold together at ALPHA."""
    return ALPHA / max(1, intervals)


@functools.lru_cache(maxsize=65536)
def difference_interval(base: tuple[int, int], desc: tuple[int, int], alpha: float) -> tuple[float, float]:
    """Two-sided (1 − alpha) Newcombe interval for p_desc − p_base (cached: the provenance
    table asks for it beside the label that was decided from it)."""
    from statsmodels.stats.proportion import confint_proportions_2indep  # 0.7 s: on first use only

    (cb, nb), (cd, nd) = base, desc
    lo, hi = confint_proportions_2indep(cd, nd, cb, nb, method="newcomb", compare="diff", alpha=alpha)
    return float(lo), float(hi)


@functools.lru_cache(maxsize=65536)
def upper_bound(count: int, n: int, alpha: float) -> float:
    """One-sided (1 − alpha) Wilson upper bound of a rate."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return 1.0
    return float(proportion_confint(count, n, alpha=2 * alpha, method="wilson")[1])


@functools.lru_cache(maxsize=65536)
def label(base: tuple[int, int], desc: tuple[int, int], intervals: int = 1) -> str:
    """The label of a descendant's (count, n) against the base's, in a run whose labels rest
    on `intervals` intervals in all (see the module docstring)."""
    alpha = each_alpha(intervals)
    lo, hi = difference_interval(base, desc, alpha)
    return rule(lo, hi, upper_bound(*base, alpha), lambda: upper_bound(*desc, alpha), base[0] > 0 and desc[0] > 0)


def rule(lo: float, hi: float, base_upper: float, desc_upper, both_shown: bool) -> str:
    """The table of the module docstring, from the intervals of one (behaviour, descendant):
    the difference interval [lo, hi], the two rates' upper bounds (the descendant's may be a
    callable, asked only when needed), and whether both models were seen doing it."""
    small_base = base_upper < SMALL
    if lo > 0:
        return "introduced" if small_base else "amplified"
    if hi < 0:
        return "suppressed"
    if both_shown and lo >= -MARGIN and hi <= MARGIN:
        return "inherited"
    if small_base and (desc_upper() if callable(desc_upper) else desc_upper) < SMALL:
        return "absent"
    return "inconclusive"


def rule_many(lo: np.ndarray, hi: np.ndarray, base_upper: np.ndarray, desc_upper: np.ndarray,
              both_shown: np.ndarray) -> np.ndarray:  # fmt: skip
    """`rule` over arrays of cells at once (the sequential labels and their simulation)."""
    small_base = base_upper < SMALL
    return np.select(
        [lo > 0, hi < 0, both_shown & (lo >= -MARGIN) & (hi <= MARGIN), small_base & (desc_upper < SMALL)],
        [np.where(small_base, "introduced", "amplified"), "suppressed", "inherited", "absent"],
        "inconclusive",
    )


@dataclass(frozen=True)
class Rate:
    """One model's rate as a label needs it: a two-sided interval [lo, hi] and a one-sided
    upper bound, each at the run's per-interval error rate, and whether it was seen at all."""

    lo: float
    hi: float
    upper: float
    shown: bool

    @classmethod
    def counted(cls, count: int, n: int, alpha: float) -> Rate:
        """From a fixed-n count: Wilson intervals."""
        from statsmodels.stats.proportion import proportion_confint

        lo, hi = proportion_confint(count, n, alpha=alpha, method="wilson") if n else (0.0, 1.0)
        return cls(float(lo), float(hi), upper_bound(count, n, alpha), count > 0)

    @classmethod
    def exact(cls, lo: float, hi: float) -> Rate:
        """From an exact probability's bounds (explorer.core.exact): certain, so at any alpha.
        "Shown" means more than TIE: a model that says it once in a million is not doing it."""
        return cls(lo, hi, hi, lo > TIE)


def label_rates(base: Rate, desc: Rate) -> tuple[str, float, float]:
    """The label from two rates, one of them exact at least: the difference interval is the box
    [desc.lo − base.hi, desc.hi − base.lo], right whenever both rates' intervals are (an exact
    one always is), so the run's Bonferroni count stands; widened by TIE on each side, so that
    two exact rates 0.3 points apart read as inherited, not as a change no sample would show.
    Returns the label and that interval."""
    lo, hi = max(-1.0, desc.lo - base.hi - TIE), min(1.0, desc.hi - base.lo + TIE)
    return rule(lo, hi, base.upper, desc.upper, base.shown and desc.shown), lo, hi


def samples_needed(base: tuple[int, int], desc: tuple[int, int], intervals: int = 1) -> int | None:
    """About how many samples per model would decide an inconclusive label if the rates stayed
    as seen: the smallest n on a 10%-step grid at which the same rule gives a label (None past
    MAX_NEEDED, e.g. rates that differ by a hair)."""
    p_b, p_d = base[0] / max(base[1], 1), desc[0] / max(desc[1], 1)
    n = max(base[1], desc[1], 1)
    while n <= MAX_NEEDED:
        n = math.ceil(n * 1.1)
        seen = (round(p_b * n), n), (round(p_d * n), n)
        if label(*seen, intervals) != "inconclusive":
            return n
    return None


def truth_contradicts(chosen: str, p_base: float, p_desc: float) -> bool:
    """Whether a label's claim is false for the true rates (for simulations against the zoo)."""
    if chosen == "introduced":
        return not (p_desc > p_base and p_base < SMALL)
    if chosen == "amplified":
        return not p_desc > p_base
    if chosen == "suppressed":
        return not p_desc < p_base
    if chosen == "inherited":
        return not (p_base > 0 and p_desc > 0 and abs(p_desc - p_base) <= MARGIN)
    if chosen == "absent":
        return not (p_base < SMALL and p_desc < SMALL)
    return False
