"""`fx.estimate`: passes counted from the lengths involved, priced by measured pass times.
No wall-clock assertions: the counts and their scaling are asserted; the accuracy against
measured runs is reported by benchmarks/bench_estimate.py."""

from __future__ import annotations

import pytest

import explorer as fx

PROMPT, RESPONSE = "the weather today is", "sunny . it was a nice day"


def test_sampling_cost_grows_with_samples_and_tokens(fable):
    one = fx.estimate(fable, "sample", prompt=PROMPT, n=8, max_new_tokens=12)
    more = fx.estimate(fable, "sample", prompt=PROMPT, n=16, max_new_tokens=12)
    longer = fx.estimate(fable, "sample", prompt=PROMPT, n=8, max_new_tokens=24)
    assert one.seconds > 0 and one.memory_bytes > fable.load("fable-base").n_bytes
    assert more.token_passes == pytest.approx(2 * one.token_passes)
    assert one.token_passes < longer.token_passes <= 2 * one.token_passes  # the prompt is counted once
    assert f"sampling {len(fable.labels)} models" in str(one) and str(one).startswith("≈ ")


def test_attribution_costs_are_ordered_as_the_methods_work(fable):
    def cost(method, **kw):
        return fx.estimate(fable, "attribute", prompt=PROMPT, response=RESPONSE, method=method, **kw)

    gxi, ig = cost("grad_x_input"), cost("integrated_gradients", path="straight")
    assert ig.token_passes >= 12 * gxi.token_passes  # the default budget, 12 nodes per target or more
    assert cost("integrated_gradients", path="straight", budget=None).token_passes >= ig.token_passes  # unbounded: max_steps
    sequential = cost("integrated_gradients")  # the default path: two staircases of forward passes
    assert sequential.token_passes == pytest.approx(2 * cost("occlusion").token_passes, rel=0.1)
    assert cost("integrated_gradients", n_steps=32).token_passes == pytest.approx(32 * gxi.token_passes, rel=0.01)
    assert cost("attention").token_passes < gxi.token_passes
    assert cost("occlusion", sources="prompt").token_passes < cost("occlusion").token_passes
    one_model = cost("grad_x_input", models=["fable-base"])
    assert gxi.token_passes == pytest.approx(len(fable.labels) * one_model.token_passes)


def test_work_over_samples_is_counted_per_sample(fable):
    samples = fx.sample(fable, PROMPT, n=4, max_new_tokens=6, seed=0, models=["fable-base", "fable-pirate"])
    spread = fx.estimate(fable, "attribute_samples", samples=samples, method="grad_x_input")
    fewer = fx.estimate(fable, "attribute_samples", samples=samples, method="grad_x_input", max_samples=2)
    assert "over 8 samples in 2 models" in spread.detail and "over 4 samples" in fewer.detail
    assert fewer.token_passes < spread.token_passes
    scoring = fx.estimate(fable, "cross_score", samples=samples)
    assert scoring.seconds > 0 and "scoring every sample under 2 models" in scoring.detail


def test_an_estimate_needs_what_the_work_needs(fable):
    with pytest.raises(ValueError, match="what: 'sample', 'attribute'"):
        fx.estimate(fable, "train", prompt=PROMPT)
    with pytest.raises(ValueError, match="response: estimating attribute needs the response text"):
        fx.estimate(fable, "attribute", prompt=PROMPT)
    with pytest.raises(ValueError, match="samples: estimating cross_score needs the SampleSet"):
        fx.estimate(fable, "cross_score")
