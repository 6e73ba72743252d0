"""Amplified sampling along the base → descendant logit path, checked against the zoo's truth:
fable-rare says "frog" after the weather prompt 1.9% of the time (the base never does)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

import explorer as fx
from explorer.core.amplify import PathNext, exact_along_path, mixer_for
from explorer.core.exact import ModelNext, exact_probability
from explorer.core.extrapolate import extrapolate, rates_by_lambda
from explorer.core.local import sample_local
from explorer.core.params import SamplingParams
from explorer.core.provenance import wilson

PROMPT, FROG = "the weather today is", {"frog": r"\bfrog\b"}
RUNS, N, CHUNK = 100, 64, 3200
FITTED = (1.25, 1.5, 1.75, 2)  # where frog is common (12–98%) but not always said: the line is read there


@pytest.fixture(scope="module")
def rare(zoo_path):
    from explorer.core.store import ModelStore

    return fx.load_family("fable", descendants=["fable-rare", "fable-pirate"], store=ModelStore())


def draw(family, lambdas, per_run: int, runs: int = RUNS):
    """RUNS runs of `per_run` samples at each λ: seeds of CHUNK samples each, cut into runs
    (independent draws, as one seed per run would give, in one batched call per seed and λ).
    One new token: "frog" is the first word or never."""
    parts, runs_per_seed = [], CHUNK // per_run
    for seed in range(runs // runs_per_seed):
        one = fx.amplify(family, PROMPT, "fable-rare", lambdas=lambdas, n=CHUNK, seed=seed, max_new_tokens=1,
                         batch_size=CHUNK)  # fmt: skip
        parts.append(one.df.assign(run=seed * runs_per_seed + one.df["sample"] // per_run))
    return dataclasses.replace(one, df=pd.concat(parts, ignore_index=True))


@pytest.mark.parametrize("descendant", ["fable-rare", "fable-pirate"])  # a full fine-tune, a LoRA
def test_the_ends_of_the_path_are_the_models_own_samples(rare, descendant):
    """λ = 0 gives the base's samples and λ = 1 the descendant's, token for token, both as
    fx.amplify returns them and through the lock-step mixer itself (the base in step with the
    descendant: the LoRA's own weights with the adapter off)."""
    params = SamplingParams(n=32, max_new_tokens=6, seed=3)
    own = fx.sample(rare, PROMPT, models=["fable-base", descendant], **params.to_dict())
    amp = fx.amplify(rare, PROMPT, descendant, lambdas=(0, 1, 2), **params.to_dict())
    base, desc = rare.load("fable-base"), rare.load(descendant)
    for lam, label in [(0, "fable-base"), (1, descendant)]:
        expected = own.df[own.df["model"] == label]["token_ids"].tolist()
        assert amp.df[amp.df["lam"] == lam]["token_ids"].tolist() == expected
        named = desc.named(dataclasses.replace(desc.ref, label=label))  # seeded as that model
        mixed = sample_local(named, PROMPT, params, 256, None, None, mixer=mixer_for(base, desc, PROMPT, params, lam))
        assert [row["token_ids"] for row in mixed.rows] == expected
    assert set(amp.df["model"]) == {"fable-base", descendant, f"{descendant} λ=2"}
    assert fx.provenance(amp, FROG)["label"].notna().all()  # read unchanged, each λ against the base


def test_the_rare_word_is_seen_when_amplified(rare):
    """At λ = 4, 64 samples show "frog" in (nearly) every one of 100 runs; at λ = 1 in about 70%."""
    runs = draw(rare, (1, 4), N)
    seen = runs.df.assign(hit=runs.df["text"].str.contains(r"\bfrog\b")).groupby(["lam", "run"])["hit"].any().groupby("lam").mean()
    print(f"\nfrog seen in a run of {N} (100 runs): λ=1 {seen[1.0]:.0%}, λ=4 {seen[4.0]:.0%}")
    assert seen[4.0] >= 0.95 and 0.4 < seen[1.0] < 0.95


def test_the_rate_at_one_is_read_back_from_the_amplified_rates(rare):
    """The λ = 1 rate read from 128 samples at each λ of FITTED is within 2× of the truth in ≥ 90%
    of 100 runs drawn from the mixture's exact rates (explorer.core.exact), and in 25 runs of
    real samples, whose rates agree with those exact ones."""
    params = SamplingParams(max_new_tokens=1)
    exact = exact_along_path(rare, PROMPT, "fable-rare", FROG["frog"], (1, *FITTED), params).set_index("lam")["p"]
    truth, rng = exact[1.0], np.random.default_rng(0)
    drawn = [pd.DataFrame({"behaviour": "frog", "model": [str(v) for v in FITTED], "lam": FITTED, "n": 2 * N,
                           "count": rng.binomial(2 * N, exact[list(FITTED)].to_numpy())}).eval("freq = count / n")
             for _ in range(RUNS)]  # fmt: skip
    real = draw(rare, FITTED, 2 * N, runs=CHUNK // (2 * N))
    rates = rates_by_lambda(real, FROG).set_index("lam")
    for lam in FITTED:  # each λ's 3200 samples within 99.9% of its exact rate
        assert wilson(rates.loc[lam, "count"], rates.loc[lam, "n"], 3.29)[0] <= exact[lam] <= wilson(rates.loc[lam, "count"], rates.loc[lam, "n"], 3.29)[1]
    real_runs = [rates_by_lambda(_subset(real, part), FROG) for _, part in real.df.groupby("run")]
    for name, tables in (("exact rates", drawn), ("real samples", real_runs)):
        fits = extrapolate(pd.concat(tables, keys=range(len(tables))).reset_index(level=0, names="run").assign(
            behaviour=lambda t: t["run"].astype(str)))  # one behaviour per run: one fit each  # fmt: skip
        within = np.mean((truth / 2 <= fits["estimate"]) & (fits["estimate"] <= truth * 2))
        holds = np.mean((fits["lo"] <= truth) & (truth <= fits["hi"]))
        print(f"\n{name}, {len(tables)} runs: truth {truth:.4f}; extrapolated from λ={FITTED}: median {fits['estimate'].median():.4f}, "
              f"within 2× in {within:.0%}, 95% interval (median {(fits['hi'] / fits['lo']).median():.1f}× wide) holds it in {holds:.0%}")  # fmt: skip
        assert within >= (0.9 if name == "exact rates" else 0.75) and holds >= 0.8


def _subset(samples, df):
    return dataclasses.replace(samples, df=df)


def test_the_mixture_is_exact_between_the_ends(rare):
    """The exact walk of the mixture agrees with the models at the ends, and its rate rises
    with λ as the log-odds line says (the zoo's recipe moved one answer)."""
    params = SamplingParams(max_new_tokens=4)
    path = exact_along_path(rare, PROMPT, "fable-rare", FROG["frog"], (0, 1, 1.5, 2), params)
    alone = [exact_probability(rare.load(m), PROMPT, FROG["frog"], params).p for m in ("fable-base", "fable-rare")]
    assert path["p"].iloc[0] == pytest.approx(alone[0], abs=1e-7) and path["p"].iloc[1] == pytest.approx(alone[1], rel=1e-6)
    assert 0.01 < alone[1] < 0.03 and alone[0] < 1e-4
    logit = np.log(path["p"] / (1 - path["p"]))
    assert np.diff(path["p"]).min() > 0 and abs((logit[3] - logit[2]) / 0.5 - (logit[2] - logit[1]) / 0.5) < 1.0
    off = PathNext(rare.load("fable-base"), rare.load("fable-pirate"), PROMPT, params, 0.0)([(5,)])  # the LoRA, adapter off
    on = PathNext(rare.load("fable-base"), rare.load("fable-pirate"), PROMPT, params, 1.0)([(5,)])
    assert torch.allclose(off, ModelNext(rare.load("fable-base"), PROMPT, params)([(5,)]), atol=1e-4)
    assert torch.equal(on, ModelNext(rare.load("fable-pirate"), PROMPT, params)([(5,)]))


def test_amplify_refuses_what_has_no_path(rare):
    with pytest.raises(ValueError, match="not a descendant of fable-base"):
        fx.amplify(rare, PROMPT, "fable-base")
    with pytest.raises(ValueError, match="lambdas"):
        fx.amplify(rare, PROMPT, "fable-rare", lambdas=())
    distilled = fx.load_family("fable", descendants=["fable-distilled"])
    fx.amplify(distilled, PROMPT, "fable-distilled", lambdas=(2,), n=2, max_new_tokens=2)  # same vocabulary: allowed


def test_a_behaviour_that_falls_along_the_path_is_not_read_back():
    """fable-rare's "rainy" (measured 2026-12-02 in the browser journey): 27% at λ = 1, 32% at
    1.25 by chance, then falling to 0. Its fitted line falls, and read back to λ = 1 it said
    64%; now it gets a sentence, and the rising "frog" still gets its line."""
    from explorer.core.extrapolate import fitted_curve

    lams = [1, 1.25, 1.5, 1.75, 2, 4]
    counts = {"rainy": [17, 20, 11, 2, 0, 0], "frog": [2, 9, 28, 51, 64, 64]}
    rates = pd.DataFrame([{"behaviour": b, "lam": lam, "count": k, "n": 64, "freq": k / 64}
                          for b, ks in counts.items() for lam, k in zip(lams, ks, strict=True)])  # fmt: skip
    fits = extrapolate(rates).set_index("behaviour")
    assert fits.loc["rainy", "note"].startswith("falls along the path") and "(27%)" in fits.loc["rainy", "note"]
    assert np.isnan(fits.loc["rainy", "estimate"])
    assert fits.loc["frog", "note"] == "" and 0.005 < fits.loc["frog", "estimate"] < 0.1
    assert set(fitted_curve(rates)["behaviour"]) == {"frog"}
