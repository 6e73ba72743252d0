"""Sample until decided: labels on confidence sequences keep the family-wise guarantee at the
first look where everything is decided, simulated against the zoo's exact probabilities (as
tests/test_labels.py does for fixed n), and the API reaches the weather prompt's truth."""

from __future__ import annotations

import numpy as np
import pytest
from test_labels import first_word_truth

from explorer.core.confseq import ConfidenceSequence, difference_bounds, paired, rate_bounds
from explorer.core.decide import decide, looks
from explorer.core.labels import SMALL, each_alpha, intervals_per_run, rule_many, truth_contradicts
from explorer.core.sequential import judge
from explorer.zoo import load_probes

RUNS = 1000
BUDGET = 4096
CHUNK = 250  # runs simulated at once (memory: runs × cells × round × 9 bets)


def expected_labels(prompt: str, words: list[str], descendants: list[str]) -> dict[tuple[str, str], str]:
    """The truth's labels from the generator's tables: a word a descendant's recipe gives more
    often than the base's is amplified (introduced where the base is under SMALL), less often
    suppressed, as often inherited (absent where both are under SMALL)."""
    probe = next(p for p in load_probes() if p["prompt"] == prompt)
    out = {}
    for word in words:
        for d in descendants:
            base, desc = probe["next_word"][word]["fable-base"], probe["next_word"][word][d]
            if desc != base:
                out[(d, word)] = "suppressed" if desc < base else "introduced" if base < SMALL else "amplified"
            else:
                out[(d, word)] = "absent" if base < SMALL else "inherited"
    return out


def simulate(probs: dict[str, np.ndarray], words: list[str], runs: int, seed: int = 0):
    """Each run draws every model's answers in rounds (`decide.looks`) and stops at the first look
    where every label is decided: (samples per model at the stop or -1, labels at the stop)."""
    models = list(probs)
    stops, labels = [], []
    for first in range(0, runs, CHUNK):
        stop, lab = _simulate_chunk(probs, words, min(CHUNK, runs - first), np.random.default_rng([seed, first]))
        stops.append(stop)
        labels.append(lab)
    return np.concatenate(stops), np.concatenate(labels), models


def _simulate_chunk(probs, words, runs, rng):
    models, n_words = list(probs), len(words)
    alpha = each_alpha(intervals_per_run(n_words, len(models)))
    cumulative = np.cumsum(np.stack([p / p.sum() for p in probs.values()]), axis=1)  # (models, words + 1)
    uppers = ConfidenceSequence((runs, len(models), n_words), alpha, "upper")
    diffs = ConfidenceSequence((runs, len(models) - 1, n_words), alpha, "both")
    counts = np.zeros((runs, len(models), n_words))
    stop, at_stop, done = np.full(runs, -1), np.full((runs, len(models) - 1, n_words), "", dtype=object), 0
    for look in looks(16, BUDGET):
        drawn = (rng.random((runs, len(models), look - done, 1)) > cumulative[None, :, None, :]).sum(-1)
        hits = (drawn[..., None] == np.arange(n_words)).swapaxes(-1, -2).astype(float)  # (runs, models, words, new)
        uppers.update(hits)
        diffs.update(paired(hits[:, :1], hits[:, 1:]))
        counts, done = counts + hits.sum(-1), look
        shown = counts > 0
        lab = rule_many(2 * diffs.lo - 1, 2 * diffs.hi - 1, uppers.hi[:, :1], uppers.hi[:, 1:], shown[:, :1] & shown[:, 1:])
        new = (stop < 0) & (lab != "inconclusive").all(axis=(1, 2))
        stop[new], at_stop[new] = look, lab[new]
        if (stop > 0).all():
            break
    return stop, at_stop


@pytest.mark.parametrize("prompt, runs", [("the weather today is", RUNS), ("the traveller said", 300)])
def test_stopping_when_all_are_decided_keeps_the_family_wise_rate(fable, prompt, runs):
    words, probs = first_word_truth(fable, prompt)
    stops, labels, models = simulate(probs, words, runs)
    false = [any(truth_contradicts(labels[r, d, w], probs[models[0]][w], probs[models[d + 1]][w])
                 for d in range(len(models) - 1) for w in range(len(words))) for r in np.flatnonzero(stops > 0)]  # fmt: skip
    rate = sum(false) / runs
    print(f"\n{prompt!r}: {len(words)} behaviours × {len(models) - 1} descendants; decided in {np.mean(stops > 0):.1%} "
          f"of runs within {BUDGET}; samples per model at the stop: median {np.median(stops[stops > 0]):.0f} "
          f"(5–95%: {np.percentile(stops[stops > 0], 5):.0f}–{np.percentile(stops[stops > 0], 95):.0f}); "
          f"runs with a false label {rate:.1%} of {runs}")  # fmt: skip
    assert rate <= 0.05
    assert np.mean(stops > 0) >= 0.99
    if prompt == "the weather today is":  # every label the truth gives is what the run ends with
        truth = expected_labels(prompt, words, models[1:])
        reached = [all(labels[r, d, w] == truth[(models[d + 1], words[w])]
                       for d in range(len(models) - 1) for w in range(len(words))) for r in np.flatnonzero(stops > 0)]  # fmt: skip
        print(f"runs ending with every truth label: {np.mean(reached):.1%}")
        assert np.mean(reached) >= 0.99 and {"inherited", "amplified", "suppressed"} <= set(truth.values())


def test_the_incremental_sequence_is_the_one_the_api_computes():
    """Rounds of any size give the bounds of one pass over all the samples, and the API's
    labels are the simulation's rule on them."""
    rng = np.random.default_rng(5)
    base = (rng.random((3, 300)) < [[0.5], [0.0], [0.3]]).astype(float)  # (behaviours, samples)
    desc = (rng.random((3, 300)) < [[0.9], [0.0], [0.3]]).astype(float)
    alpha = 0.05 / 9
    seq = ConfidenceSequence((3,), alpha, "both")
    for a, b in [(0, 7), (7, 100), (100, 300)]:
        seq.update(paired(base[:, a:b], desc[:, a:b]))
    lo, hi = difference_bounds(base, desc, alpha)
    assert np.allclose(2 * seq.lo - 1, lo) and np.allclose(2 * seq.hi - 1, hi)
    labels, _, _ = judge(base, desc, alpha)
    assert list(labels) == ["amplified", "absent", "inherited"]
    assert 0.01 < rate_bounds(base[1], alpha, "upper")[1] < 0.05  # never seen in 300: bounded near 0


def test_a_sequence_holds_at_every_look_where_fixed_intervals_do_not():
    """2000 streams of a fair coin looked at after every sample up to 1000: the 95% sequence
    excludes 0.5 at some look in at most 5% of them; Wilson's fixed-n interval, looked at as
    often, does far more often (the reason for sequences)."""
    from explorer.core.provenance import wilson

    rng = np.random.default_rng(7)
    x = (rng.random((2000, 1000)) < 0.5).astype(float)
    seq = ConfidenceSequence((2000,), 0.05, "both")
    ever_out = np.zeros(2000, bool)
    for t in range(0, 1000, 10):
        seq.update(x[:, t : t + 10])
        ever_out |= (seq.lo > 0.5) | (seq.hi < 0.5)
    counts = np.cumsum(x, axis=1)
    fixed_out = np.zeros(2000, bool)
    for t in range(9, 1000, 10):
        bounds = np.array([wilson(int(c), t + 1) for c in counts[:, t]])
        fixed_out |= (bounds[:, 0] > 0.5) | (bounds[:, 1] < 0.5)
    print(f"\nstreams ever excluding the truth: sequence {ever_out.mean():.1%}, fixed-n Wilson looked at 100 times {fixed_out.mean():.1%}")
    assert ever_out.mean() <= 0.05 and fixed_out.mean() >= 0.2


def test_deciding_on_the_zoo_reaches_the_weather_truth(fable):
    behaviours = {w: rf"\b{w}\b" for w in ("sunny", "rainy", "cloudy")}
    looked = []
    models = ["fable-base", "fable-cheerful", "fable-distilled"]  # amplified, suppressed and inherited
    found = decide(fable, "the weather today is", behaviours, n=16, seed=0, max_new_tokens=4, models=models,
                   on_look=lambda d: looked.append(d.undecided))  # fmt: skip
    assert found.reason == "decided" and found.undecided == 0 and looked[0] == 6
    assert found.sentence().startswith("6 of 6 labels decided after")
    table = found.provenance.set_index(["behaviour", "model"])
    truth = expected_labels("the weather today is", list(behaviours), models[1:])
    assert all(table.loc[(w, d), "label"] == label for (d, w), label in truth.items())
    assert found.samples.params.n == found.per_model == len(found.samples.df) // len(models)
    assert found.samples.meta["rounds"][1]["seed"] == 1 and found.history[-1] == (found.per_model, 0)
