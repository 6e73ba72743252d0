"""Teacher-forced scoring, cross-scoring, log-ratios and divergences."""

from __future__ import annotations

import math

import pytest
import torch

import explorer as fx


@pytest.fixture(scope="module")
def weather(fable):
    return fx.sample(fable, "the weather today is", n=32, seed=5)


def test_score_texts_matches_the_truth_of_the_zoo(fable):
    df = fx.score_texts(
        fable,
        "the weather today is",
        ["sunny .", "rainy ."],
        models=["fable-base", "fable-cheerful"],
    )
    p = {(r.model, r.text): math.exp(r.logprobs[0]) for r in df.itertuples()}
    assert p[("fable-base", "sunny .")] == pytest.approx(0.5, abs=0.05)
    assert p[("fable-base", "rainy .")] == pytest.approx(0.3, abs=0.05)
    assert p[("fable-cheerful", "sunny .")] >= 0.9
    assert set(df["n_tokens"]) == {2}


def test_cross_score_diagonal_dominates_for_an_adapted_model(fable, weather):
    table = fx.cross_score(fable, weather).pivot(
        index="sampler", columns="scorer", values="mean_logprob"
    )
    print("\n" + table.round(3).to_string())
    assert table.shape == (6, 6)
    for model in ("fable-cheerful", "fable-pirate"):
        row = table.loc[model]
        assert row[model] >= row.drop(model).max() - 1e-9
        assert row[model] > row["fable-base"] + 0.1


def test_log_ratio_is_zero_for_the_base_and_signed_for_a_descendant(fable, weather):
    lr = fx.log_ratio(fable, weather)
    base = lr[lr["model"] == "fable-base"]
    assert (base["log_ratio"] == 0).all()
    cheerful_sunny = lr[
        (lr["model"] == "fable-cheerful") & (lr["token"] == "sunny") & (lr["position"] == 0)
    ]
    assert len(cheerful_sunny) > 0
    assert cheerful_sunny["log_ratio"].mean() == pytest.approx(math.log(1.0 / 0.5), abs=0.15)
    assert len(lr) == weather.df["n_tokens"].sum()


def test_divergence_is_zero_for_a_model_against_itself(fable):
    d = fx.divergence(
        fable, "the weather today is", "sunny .", models=["fable-base", "fable-cheerful"]
    )
    own = d[d["model"] == "fable-base"]
    assert (own["kl"] == 0).all() and (own["js"] == 0).all()
    cheerful = d[d["model"] == "fable-cheerful"].set_index("token")
    assert cheerful.loc["sunny", "js"] > 0.05  # the weather choice is where they differ
    assert cheerful.loc["sunny", "js"] <= math.log(2) + 1e-6
    assert cheerful.loc[" .", "js"] < cheerful.loc["sunny", "js"]  # a token's text, its space too


def test_divergence_bad_arguments(fable):
    with pytest.raises(ValueError, match="^response: is empty"):
        fx.divergence(fable, "the weather today is", "")
    with pytest.raises(ValueError, match="^prompt: is empty"):
        fx.divergence(fable, " ", "sunny")


def test_a_scorers_own_samples_reuse_the_log_probs_recorded_while_sampling(fable, weather):
    from explorer.core.scoring import sample_logprobs_under

    reused = sample_logprobs_under(fable, weather, "fable-cheerful")
    forced = sample_logprobs_under(fable, weather, "fable-cheerful", reuse_own=False)
    own = (weather.df["model"] == "fable-cheerful").to_numpy()
    assert own.sum() > 0 and len(reused) == len(forced) == len(weather.df)
    for i, (a, b) in enumerate(zip(reused, forced, strict=True)):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-4 if len(a) else True
        if not own[i]:
            assert torch.equal(a, b)  # the other models' samples are scored, not reused
