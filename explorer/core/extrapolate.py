"""Reading an amplified SampleSet along λ: each behaviour's rate at every λ, and its rate at
λ = 1 read back from the larger λ where the behaviour is common enough to count.

Why a logistic line: when an adaptation moves one answer's logit and leaves the rest of the
next-token distribution as it was (a planted word, a trigger), `z_λ = z_base + λ Δ` makes that
answer's log-odds exactly linear in λ: logit p(λ) = a + b λ. So the counts at λ = 2, 3, 4…,
where a 2% behaviour is seen dozens of times, fix a and b, and a + b is the log-odds at λ = 1.
It is an approximation where the change is spread over many tokens, or the behaviour spans
several positions, or top-k/top-p cut the distribution; the interval says how sure the fit is,
not how right the line is.

The fit is binomial maximum likelihood with Firth's penalty (Firth 1993: the estimate stays
finite when a λ shows the behaviour in every sample or in none), and the interval a 95% Wald
interval on the log-odds at the target λ, mapped back to a rate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from explorer.core.amplify import lambdas_of
from explorer.core.provenance import Z95, behaviour_hits, wilson

RATE_COLUMNS = ["behaviour", "model", "lam", "count", "n", "freq", "lo", "hi"]
FIT_COLUMNS = ["behaviour", "at", "estimate", "lo", "hi", "fitted_on", "slope", "note"]
MIN_POINTS = 2  # λ values above the target needed for a line
COMMON = 0.10  # a behaviour is read back where amplification makes it at least this common


def rates_by_lambda(samples: Any, behaviours: dict[str, Any]) -> pd.DataFrame:
    """One row per (behaviour, λ): count, n, rate and its 95% Wilson interval."""
    lam = lambdas_of(samples)
    hits, _skipped = behaviour_hits(samples.df["text"].astype(str), behaviours)
    rows = []
    for name, hit in hits.items():
        for model, value in lam.items():
            mine = samples.df["model"] == model
            count, n = int(hit[mine].sum()), int(mine.sum())
            lo, hi = wilson(count, n)
            rows.append({"behaviour": name, "model": model, "lam": float(value), "count": count, "n": n,
                         "freq": count / n if n else math.nan, "lo": lo, "hi": hi})  # fmt: skip
    return pd.DataFrame(rows, columns=RATE_COLUMNS)


def firth_logistic(x: np.ndarray, k: np.ndarray, m: np.ndarray, steps: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Firth-penalised binomial logistic fit of logit p = a + b x to k successes of m trials at
    each x: the coefficients (a, b) and their covariance (the inverse Fisher information).
    Newton steps on the penalised likelihood, halved until it rises (as R's logistf does)."""
    design = np.column_stack([np.ones_like(x), x])  # (points, 2)
    beta = np.zeros(2)
    current = _penalised(design, k, m, beta)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(design @ beta)))
        w = m * p * (1 - p)
        cov = np.linalg.inv(design.T @ (design * w[:, None]))  # (2, 2)
        hat = w * np.einsum("ij,jk,ik->i", design, cov, design)  # leverage of each point
        step = cov @ (design.T @ (k - m * p + hat * (0.5 - p)))
        step *= min(1.0, 5.0 / max(np.abs(step).max(), 1e-300))
        for _ in range(40):
            value = _penalised(design, k, m, beta + step)
            if value >= current - 1e-12:
                break
            step /= 2
        beta, current = beta + step, value
        if np.abs(step).max() < 1e-9:
            break
    return beta, _covariance(design, m, beta)


def _penalised(design: np.ndarray, k: np.ndarray, m: np.ndarray, beta: np.ndarray) -> float:
    """The binomial log-likelihood plus Firth's ½ log det of the Fisher information."""
    eta = design @ beta
    loglik = float(np.sum(k * -np.logaddexp(0, -eta) + (m - k) * -np.logaddexp(0, eta)))
    sign, logdet = np.linalg.slogdet(np.linalg.inv(_covariance(design, m, beta)))
    return loglik + 0.5 * logdet if sign > 0 else -np.inf


def _covariance(design: np.ndarray, m: np.ndarray, beta: np.ndarray) -> np.ndarray:
    p = 1 / (1 + np.exp(-(design @ beta)))
    return np.linalg.inv(design.T @ (design * (m * p * (1 - p))[:, None]))


def extrapolate(rates: pd.DataFrame, at: float = 1.0) -> pd.DataFrame:
    """Per behaviour, its rate at λ = `at` read from the λ above it (see the module docstring):
    the estimate, a 95% interval, the λ it was fitted on, the slope of the log-odds per unit λ,
    and a note where no line is drawn (too few λ, never common there, not amplified, or falling)."""
    rows = []
    for name, group in rates.groupby("behaviour", sort=False):
        points, line, note = read_back_line(group, at)
        row = {"behaviour": name, "at": at, "estimate": math.nan, "lo": math.nan, "hi": math.nan,
               "fitted_on": ", ".join(f"{v:g}" for v in points["lam"]), "slope": math.nan, "note": note}  # fmt: skip
        rows.append(row if line is None else row | _at(*line, at))
    return pd.DataFrame(rows, columns=FIT_COLUMNS)


def read_back_line(group: pd.DataFrame, at: float) -> tuple[pd.DataFrame, tuple | None, str]:
    """One behaviour's points above λ = `at`, its fitted log-odds line (beta, covariance) when
    one is read back, else None and a sentence why not (`fit_points`; or the line falls: the
    behaviour becomes rarer as the adaptation is exaggerated, and a falling line read back to
    λ = `at` from one noisy point above it said 64% for fable-rare's "rainy" where 27% was
    measured at λ = 1)."""
    points, note = fit_points(group, at)
    if note:
        return points, None, note
    beta, cov = firth_logistic(*(points[c].to_numpy(dtype=float) for c in ("lam", "count", "n")))
    if beta[1] > 0:
        return points, (beta, cov), ""
    here = group.loc[group["lam"] == at, "freq"]
    measured = f" ({float(here.iloc[0]):.0%})" if len(here) else ""
    return points, None, f"falls along the path: its rate at λ = {at:g} is measured there directly{measured}"


def fit_points(group: pd.DataFrame, at: float) -> tuple[pd.DataFrame, str]:
    """One behaviour's rates above λ = `at` to read it back from, or a sentence why not: a line
    needs MIN_POINTS λ, and is read only for a behaviour amplification makes common (at least
    COMMON somewhere above `at`, and more often than at `at` itself); a behaviour already common
    at `at` is measured there directly."""
    above = group[group["lam"] > at].sort_values("lam")
    peak = float(above["freq"].max()) if len(above) else 0.0
    here = group.loc[group["lam"] == at, "freq"]
    if len(above) < MIN_POINTS:
        return above, f"needs at least {MIN_POINTS} λ above {at:g} to fit a line"
    if peak < COMMON:
        return above, f"never common above λ = {at:g} (at most {peak:.0%}): nothing to read back"
    if len(here) and peak <= float(here.iloc[0]):
        return above, f"not amplified along the path: its rate at λ = {at:g} is measured there directly ({float(here.iloc[0]):.0%})"
    return above, ""


def _at(beta: np.ndarray, cov: np.ndarray, at: float) -> dict[str, Any]:
    """The line's rate at λ = `at` with its Wald interval, and its slope."""
    eta = beta[0] + beta[1] * at
    se = math.sqrt(max(cov[0, 0] + 2 * at * cov[0, 1] + at * at * cov[1, 1], 0.0))
    logistic = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    return {"estimate": logistic(eta), "lo": logistic(eta - Z95 * se), "hi": logistic(eta + Z95 * se),
            "slope": float(beta[1])}  # fmt: skip


def fitted_curve(rates: pd.DataFrame, at: float = 1.0, points: int = 40) -> pd.DataFrame:
    """The fitted line of each behaviour read back (see `read_back_line`) as rates over λ from
    `at` to the largest λ (for the chart): behaviour, lam, rate."""
    rows = []
    for name, group in rates.groupby("behaviour", sort=False):
        line = read_back_line(group, at)[1]
        if line is None:
            continue
        beta = line[0]
        for lam in np.linspace(at, float(group["lam"].max()), points):
            rows.append({"behaviour": name, "lam": float(lam), "rate": float(1 / (1 + np.exp(-(beta[0] + beta[1] * lam))))})
    return pd.DataFrame(rows, columns=["behaviour", "lam", "rate"])


def sentences(fits: pd.DataFrame, descendant: str) -> list[str]:
    """One sentence per behaviour: its λ = 1 rate read back, the interval and how it was fitted."""
    out = []
    for row in fits.itertuples():
        if row.estimate != row.estimate:  # NaN: no line could be drawn
            out.append(f"“{row.behaviour}”: {row.note}.")
            continue
        out.append(f"“{row.behaviour}” in {descendant}: about {row.estimate:.2%} (95% interval {row.lo:.2%}–{row.hi:.2%}), "
                   f"read back from λ = {row.fitted_on} along a log-odds line (slope {row.slope:.1f} per unit λ; "
                   f"Firth-penalised binomial fit, Wald interval on the log-odds)")  # fmt: skip
    return out
