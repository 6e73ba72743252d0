"""Confidence sequences: intervals for a mean that hold at every sample size at once.

A fixed-n interval is right 95% of the time *at the n chosen in advance*; looking after every
round and stopping when it looks decided breaks that (with enough looks, almost surely wrong
somewhere). A confidence sequence (Howard, Ramdas, McAuliffe & Sekhon 2021, *Time-uniform,
nonparametric, nonasymptotic confidence sequences*) holds for all n simultaneously with
probability ≥ 1 − α, so the user may look, stop or go on whenever they like.

Here, for observations x_i in [0, 1] with mean m: the empirical-Bernstein capital process of
Waudby-Smith & Ramdas (2023, *Estimating means of bounded random variables by betting*, §3),

    K_t(m) = exp( Σ λ_i (x_i − m) − Σ v_i ψ(λ_i) ),   v_i = 4 (x_i − μ̂_{i−1})²,
    ψ(λ) = (−log(1 − λ) − λ) / 4,   μ̂_i = (1/2 + Σ_{j≤i} x_j) / (i + 1),

is a nonnegative supermartingale with K_0 = 1 whenever each bet λ_i ∈ [0, 1) is fixed before
x_i is seen, so by Ville's inequality it passes 1/α with probability at most α, ever. One bet
size is best near one sample size, so we average J such processes whose bets are tuned to the
sample sizes 16, 64, 256, 1024 and 4096 (λ_{j,i} = √(2 log(J/α) / (σ̂²_{i−1} n_j)), at most 3/4): an
average of supermartingales is one, and it is nearly as tight as the best of them at every n
(the price is log J in the threshold). The sequence is every m whose capital stays under 1/α
(two-sided: each side under 2/α); its running intersection only ever narrows. Everything is a
running sum, so it updates in blocks and vectorises over any number of streams: the label
simulation runs 1000 runs × every cell at once (tests/test_sequential.py).

Measured on the zoo (benchmarks/bench_sequential.py, README): the weather prompt's labels are
all decided at a median of 422 samples per model, where a fixed n with the same power needs
about 300.
"""

from __future__ import annotations

import math

import numpy as np

CAP = 0.75  # the largest bet (Waudby-Smith & Ramdas suggest 1/2 or 3/4)
TARGETS = 4.0 ** np.arange(2, 7)  # the sample sizes the mixed bets are tuned to: 16, 64, 256, 1024, 4096
STEPS = 20  # bisection steps within a bracket about log J / Σλ wide: to 1e-6 of it


class ConfidenceSequence:
    """The running state of the sequence above for an array of independent streams (any
    shape); `update` appends observations along a last axis; `lo` and `hi` are the bounds so
    far (one-sided: `lo` stays 0 for "upper", `hi` stays 1 for "lower")."""

    def __init__(self, shape: tuple[int, ...], alpha: float, sides: str = "both") -> None:
        if sides not in ("both", "upper", "lower"):
            raise ValueError(f"sides: one of both, upper, lower, got {sides!r}")
        self.sides = sides
        self.threshold = math.log((2 if sides == "both" else 1) / alpha)
        self.tuning = 2 * (self.threshold + math.log(len(TARGETS)))
        self.t = 0
        self.total, self.squares = np.zeros(shape), np.zeros(shape)
        grid = (*shape, len(TARGETS))
        self.bets, self.bet_x, self.penalty = np.zeros(grid), np.zeros(grid), np.zeros(grid)
        self.lo, self.hi = np.zeros(shape), np.ones(shape)

    def update(self, x: np.ndarray) -> None:
        """Append observations `x` (*shape, block) in [0, 1], in order along the last axis."""
        x = np.asarray(x, dtype=float)
        block = x.shape[-1]
        if block == 0:
            return
        t = self.t + np.arange(1, block + 1)  # (block,)
        totals = self.total[..., None] + np.cumsum(x, axis=-1)  # (*shape, block)
        means = (0.5 + totals) / (t + 1)  # μ̂_t
        before = np.concatenate([self._mean()[..., None], means[..., :-1]], axis=-1)  # μ̂_{t−1}
        squares = self.squares[..., None] + np.cumsum((x - means) ** 2, axis=-1)
        spread = np.concatenate([self._spread()[..., None], ((0.25 + squares) / (t + 1))[..., :-1]], axis=-1)
        bet = np.minimum(np.sqrt(self.tuning / spread)[..., None] * TARGETS ** -0.5, CAP)  # (*shape, block, J)
        cost = ((x - before) ** 2)[..., None] * (-np.log1p(-bet) - bet)  # v ψ(λ)
        self.bets += bet.sum(axis=-2)
        self.bet_x += (bet * x[..., None]).sum(axis=-2)
        self.penalty += cost.sum(axis=-2)
        self.t += block
        self.total, self.squares = totals[..., -1], squares[..., -1]
        self._narrow()

    def _mean(self) -> np.ndarray:
        return (0.5 + self.total) / (self.t + 1)

    def _spread(self) -> np.ndarray:
        return (0.25 + self.squares) / (self.t + 1)

    def _narrow(self) -> None:
        """Intersect the bounds with the set of m whose mixed capital is under the threshold."""
        if self.sides != "lower":  # capital against m from above: Σλ m − (Σλx + Σvψ)
            self.hi = np.minimum(self.hi, self._root(self.bets, -(self.bet_x + self.penalty), rising=True))
        if self.sides != "upper":  # from below: (Σλx − Σvψ) − Σλ m
            self.lo = np.maximum(self.lo, self._root(-self.bets, self.bet_x - self.penalty, rising=False))

    def _root(self, slope: np.ndarray, offset: np.ndarray, rising: bool) -> np.ndarray:
        """The m in [0, 1] where log mean_j exp(slope_j m + offset_j) meets the threshold (a
        monotone function of m), by bisection within the bracket its lines give: the mean is
        at most the largest of them and at least that less log J; the bound itself when no m
        in [0, 1] is excluded (the returned side is the safe one)."""
        cross = lambda level: (level - offset) / slope  # noqa: E731  where each line reaches a level
        pick = np.min if rising else np.max
        a, b = pick(cross(self.threshold), axis=-1), pick(cross(self.threshold + math.log(slope.shape[-1])), axis=-1)
        lo, hi = np.clip(np.minimum(a, b), 0, 1), np.clip(np.maximum(a, b), 0, 1)
        for _ in range(STEPS):
            m = (lo + hi) / 2
            excluded = log_mean_exp(slope * m[..., None] + offset) > self.threshold
            if rising:  # large m excluded: the bound is below
                hi, lo = np.where(excluded, m, hi), np.where(excluded, lo, m)
            else:
                lo, hi = np.where(excluded, m, lo), np.where(excluded, hi, m)
        return hi if rising else lo


def log_mean_exp(values: np.ndarray) -> np.ndarray:
    """log of the mean of exp(values) over the last axis, without overflow."""
    top = values.max(axis=-1)
    return top + np.log(np.exp(values - top[..., None]).mean(axis=-1))


def rate_bounds(hits: np.ndarray, alpha: float, sides: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """A rate's anytime-valid bounds from its 0/1 hits (*shape, n) in sampling order."""
    seq = ConfidenceSequence(hits.shape[:-1], alpha, sides)
    seq.update(hits)
    return seq.lo, seq.hi


def paired(base: np.ndarray, desc: np.ndarray) -> np.ndarray:
    """(desc − base + 1) / 2 for the pairs both streams have (the i-th sample of each): in
    [0, 1], with mean (p_desc − p_base + 1) / 2."""
    n = min(base.shape[-1], desc.shape[-1])
    return (desc[..., :n].astype(float) - base[..., :n] + 1) / 2


def difference_bounds(base: np.ndarray, desc: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided anytime-valid bounds on p_desc − p_base from paired 0/1 hits (*shape, n)."""
    seq = ConfidenceSequence(base.shape[:-1], alpha, "both")
    seq.update(paired(base, desc))
    return 2 * seq.lo - 1, 2 * seq.hi - 1
