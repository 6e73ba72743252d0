"""Amplified sampling throughput: `fx.amplify` at one λ (both models in lock-step, two forward
passes a step) against the same work done by two bare `model.generate` runs, the descendant's
and the base's, with the same settings and input. For a LoRA the base's logits come from the
adapter's own weights with the adapter switched off; its bare run is the base member's.

Throughput is answers' tokens per second: for the bare pair, the mean of the two runs' tokens
over the sum of their times (one amplified token needs a step of each model). Rows are medians
of alternating runs; the ratio is of the medians in the same run. Prints a Markdown table.

    python benchmarks/bench_amplify.py [--n 16] [--tokens 24] [--repeats 5] [--skip-real]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sampling import bare  # noqa: E402

import explorer as fx  # noqa: E402
from explorer.core.member import encode_prompt, model_input  # noqa: E402
from explorer.core.store import ModelStore  # noqa: E402

LAMBDA = 2.0


def ours(family, descendant: str, prompt: str, n: int, max_new: int) -> int:
    s = fx.amplify(family, prompt, descendant, lambdas=(LAMBDA,), n=n, max_new_tokens=max_new,
                   seed=time.perf_counter_ns() % 10**6)  # fmt: skip
    return int(s.df["n_tokens"].sum() + (s.df["finish_reason"] == "eos").sum())


def bench(family, descendant: str, prompt: str, n: int, max_new: int, repeats: int) -> dict:
    base, desc = family.load(family.base.label), family.load(descendant)
    base_ids, desc_ids = (encode_prompt(m, model_input(m, prompt, "auto"), max_new).to(m.device) for m in (base, desc))
    ours_rates, pair_rates = [], []
    ours(family, descendant, prompt, n, max_new)  # warm-up
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = ours(family, descendant, prompt, n, max_new)
        ours_rates.append(tokens / (time.perf_counter() - start))
        start = time.perf_counter()
        tokens = bare(desc, desc_ids, n, max_new) + bare(base, base_ids, n, max_new)
        pair_rates.append(tokens / 2 / (time.perf_counter() - start))
    return {"model": f"{family.base.label} → {descendant}", "ours": statistics.median(ours_rates),
            "pair": statistics.median(pair_rates)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    fable = fx.load_family("fable", descendants=["fable-rare", "fable-pirate"], store=ModelStore())
    rows = [bench(fable, d, "the weather today is", args.n, args.tokens, args.repeats) for d in ("fable-rare", "fable-pirate")]
    if not args.skip_real:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from real_family import ADAPTER, family_dir

        real = fx.load_family(family_dir(), store=ModelStore())
        rows.append(bench(real, ADAPTER, "Tell me about the moon.", args.n, args.tokens, args.repeats))
    print(f"\nAmplified sampling (λ = {LAMBDA:g}) against two bare generate runs, n={args.n}, "
          f"max_new_tokens={args.tokens}, medians of {args.repeats} alternating runs\n")  # fmt: skip
    print("| path | fx.amplify tok/s | two bare generate tok/s | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['ours']:.0f} | {r['pair']:.0f} | {r['ours'] / r['pair']:.2f}× |")


if __name__ == "__main__":
    main()
