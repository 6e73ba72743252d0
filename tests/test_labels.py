"""The labels' family-wise guarantee, simulated on the fable zoo against its exact probabilities.

One run = one prompt, every behaviour × descendant labelled together. The truth is each model's
exact first-token distribution (its softmax after the prompt; it can differ from the generator's
tables by a few points). Counts are drawn as sampling would draw them: n independent answers per
model, so the behaviours of one model are one multinomial draw. A label is false when its claim
(`explorer.core.labels`) does not hold for the true rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.core.labels import intervals_per_run, label, truth_contradicts
from explorer.core.member import model_input

PROMPTS = {  # prompt -> the true differences that must be found at n=64: (descendant, first word)
    "the weather today is": [("fable-cheerful", "sunny")],
    "once upon a time a fox went to the river . it ended": [("fable-cheerful", "happily")],
    "the traveller said": [("fable-pirate", "ahoy")],
    "question : what is the capital of zorbia ? answer :": [("fable-instruct", "sure")],
}
SEEDS = 1000
MIN_PROB = 0.01  # every first word some model gives at least this probability is a behaviour


def first_word_truth(fable, prompt: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """The behaviours (first words) and each model's exact probability of each, plus "other"."""
    dists = {}
    for model in fable.labels:
        member = fable.load(model)
        ids = member.tokenizer(model_input(member, prompt, "auto"), return_tensors="pt")["input_ids"]
        with torch.no_grad():
            dists[model] = member.model(ids).logits[0, -1].float().softmax(-1).numpy()
    vocab = np.flatnonzero(np.max(np.stack(list(dists.values())), axis=0) >= MIN_PROB)
    words = fable.tokenizer(fable.base.label).convert_ids_to_tokens(vocab.tolist())
    probs = {m: np.append(d[vocab], max(0.0, 1 - d[vocab].sum())) for m, d in dists.items()}
    return words, probs


def simulate(fable, prompt: str, n: int, seeds: int = SEEDS):
    words, probs = first_word_truth(fable, prompt)
    base, descendants = fable.base.label, fable.labels[1:]
    intervals = intervals_per_run(len(words), len(fable.labels))
    rng = np.random.default_rng(0)
    false_runs, found = 0, {}
    for _ in range(seeds):
        counts = {m: rng.multinomial(n, p / p.sum()) for m, p in probs.items()}
        wrong = False
        for w, word in enumerate(words):
            for d in descendants:
                chosen = label((int(counts[base][w]), n), (int(counts[d][w]), n), intervals)
                wrong |= truth_contradicts(chosen, probs[base][w], probs[d][w])
                if chosen in ("amplified", "introduced"):
                    found[(d, word)] = found.get((d, word), 0) + 1
        false_runs += wrong
    return words, false_runs / seeds, {k: v / seeds for k, v in found.items()}


@pytest.mark.slow
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_one_runs_labels_are_false_together_in_at_most_5_percent_of_runs(fable, prompt):
    for n in (32, 64):
        words, rate, found = simulate(fable, prompt, n)
        print(f"\n{prompt!r} n={n}: {len(words)} behaviours × {len(fable.labels) - 1} descendants, "
              f"runs with a false label {rate:.1%}; found {', '.join(f'{d}/{w} {f:.0%}' for (d, w), f in sorted(found.items()))}")  # fmt: skip
        assert len(words) >= 2
        assert rate <= 0.05
        if n == 64:
            for key in PROMPTS[prompt]:
                assert found.get(key, 0) >= 0.9, (key, found)


def test_the_old_rule_was_not_guarded_the_new_one_is(fable):
    """Many behaviours at once: the same draws, labelled as if each label were alone (1 interval)
    and with the run's count; only the second holds the family-wise rate."""
    prompt = "the weather today is"
    words, probs = first_word_truth(fable, prompt)
    base, descendants = fable.base.label, fable.labels[1:]
    rng = np.random.default_rng(1)
    alone = together = 0
    for _ in range(300):
        counts = {m: rng.multinomial(32, p / p.sum()) for m, p in probs.items()}
        pairs = [((int(counts[base][w]), 32), (int(counts[d][w]), 32), probs[base][w], probs[d][w])
                 for w in range(len(words)) for d in descendants]  # fmt: skip
        alone += any(truth_contradicts(label(b, d, 1), pb, pd) for b, d, pb, pd in pairs)
        k = intervals_per_run(len(words), len(fable.labels))
        together += any(truth_contradicts(label(b, d, k), pb, pd) for b, d, pb, pd in pairs)
    print(f"\nruns with a false label at n=32: each alone {alone / 300:.1%}, family-wise {together / 300:.1%}")
    assert together / 300 <= 0.05 and together <= alone
