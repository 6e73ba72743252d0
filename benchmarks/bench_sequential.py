"""Sample until decided against a fixed n: on the zoo's prompts, 1000 simulated runs against the
exact first-word probabilities (as tests/test_sequential.py draws them), stopping at the first
look where every label is decided; beside it, the smallest fixed n whose labels (the fixed-n
rule, `explorer.core.labels.label`) reach every truth label in as many runs. Prints a table.

    python benchmarks/bench_sequential.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_labels import first_word_truth  # noqa: E402
from test_sequential import expected_labels, simulate  # noqa: E402

import explorer as fx  # noqa: E402
from explorer.core.labels import intervals_per_run, label  # noqa: E402

PROMPTS = ["the weather today is", "the traveller said"]


def fixed_power(probs: dict, words: list[str], truth: dict, n: int, runs: int, rng) -> float:
    """The share of runs in which every fixed-n label at `n` is the truth's."""
    models = list(probs)
    k = intervals_per_run(len(words), len(models))
    hits = 0
    for _ in range(runs):
        counts = {m: rng.multinomial(n, p / p.sum()) for m, p in probs.items()}
        hits += all(label((int(counts[models[0]][w]), n), (int(counts[d][w]), n), k) == truth[(d, word)]
                    for w, word in enumerate(words) for d in models[1:])  # fmt: skip
    return hits / runs


def same_power_n(probs, words, truth, target: float, runs: int) -> int:
    """The smallest n on a 10% grid whose fixed-n labels reach the truth in `target` of runs."""
    rng, n = np.random.default_rng(1), 16
    while fixed_power(probs, words, truth, n, runs, rng) < target:
        n = int(np.ceil(n * 1.1))
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    family = fx.load_family("fable")
    print(f"\nSample until decided vs fixed n, {args.runs} simulated runs per prompt\n")
    print("| prompt | cells | decided (runs) | every truth label reached | samples per model at the stop: median (5–95%) | fixed n, same power |")
    print("|---|---|---|---|---|---|")
    for prompt in PROMPTS:
        words, probs = first_word_truth(family, prompt)
        stops, labels, models = simulate(probs, words, args.runs)
        truth = expected_labels(prompt, words, models[1:])
        reached = np.mean([all(labels[r, d, w] == truth[(models[d + 1], words[w])] for d in range(len(models) - 1)
                               for w in range(len(words))) if stops[r] > 0 else False for r in range(args.runs)])  # fmt: skip
        fixed = same_power_n(probs, words, truth, min(reached, 0.99), max(200, args.runs // 4))
        done = stops[stops > 0]
        print(f"| {prompt} | {len(words) * (len(models) - 1)} | {np.mean(stops > 0):.1%} | {reached:.1%} | "
              f"{np.median(done):.0f} ({np.percentile(done, 5):.0f}–{np.percentile(done, 95):.0f}) | "
              f"{fixed} (at {min(reached, 0.99):.0%}) |")  # fmt: skip


if __name__ == "__main__":
    main()
