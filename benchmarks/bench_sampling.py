"""Sampling throughput: `fx.sample` against a bare `model.generate(num_return_sequences=n)` with
the same settings and input, and a naive one-sample-at-a-time loop, on fable-base, a randomly
initialised GPT-2-small-shaped model and the real SmolLM2-135M-Instruct (GGUF, with its chat
template). Rows are medians of alternating runs (ours, then bare), as tokens per second; the
ratio is of the medians in the same run. Prints a Markdown table.

    python benchmarks/bench_sampling.py [--n 16] [--tokens 24] [--repeats 7] [--skip-gpt2] [--skip-real]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic import gpt2_small_folder, words  # noqa: E402

import explorer as fx  # noqa: E402
from explorer.core.member import encode_prompt, model_input  # noqa: E402
from explorer.core.store import ModelStore  # noqa: E402


def generated(sequences: torch.Tensor, prompt_len: int, pad: int) -> int:
    """Tokens generated, the end-of-sequence token included (as `fx.sample` counts below)."""
    return int((sequences[:, prompt_len:] != pad).sum())


def settings(tok, n: int, max_new: int) -> dict:
    return dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=max_new,
                num_return_sequences=n, pad_token_id=tok.pad_token_id)  # fmt: skip


def bare(member, ids: torch.Tensor, n: int, max_new: int) -> int:
    with torch.no_grad():
        out = member.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **settings(member.tokenizer, n, max_new))
    return generated(out, ids.shape[1], member.tokenizer.pad_token_id)


def naive(member, ids: torch.Tensor, n: int, max_new: int) -> int:
    return sum(bare(member, ids, 1, max_new) for _ in range(n))


def ours(family, label: str, prompt: str, n: int, max_new: int) -> int:
    s = fx.sample(family, prompt, n=n, max_new_tokens=max_new, models=[label], seed=time.perf_counter_ns() % 10**6)
    return int(s.df["n_tokens"].sum() + (s.df["finish_reason"] == "eos").sum())


def alternate(fns: dict, repeats: int) -> dict[str, float]:
    """Median tokens/second of each function, run in turn `repeats` times after a warm-up."""
    rates = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            tokens = fn()
            rates[name].append(tokens / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in rates.items()}


def bench(family, label: str, prompt: str, n: int, max_new: int, repeats: int) -> dict:
    member = family.load(label)
    ids = encode_prompt(member, model_input(member, prompt, "auto"), max_new).to(member.device)
    rates = alternate({"ours": lambda: ours(family, label, prompt, n, max_new),
                       "bare": lambda: bare(member, ids, n, max_new)}, repeats)  # fmt: skip
    rates["naive"] = alternate({"naive": lambda: naive(member, ids, n, max_new)}, max(1, repeats // 3))["naive"]
    return {"model": label, **rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-gpt2", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [bench(fx.load_family("fable", store=ModelStore()), "fable-base", "once upon a time", args.n, args.tokens, args.repeats)]
    if not args.skip_gpt2:
        gpt2 = fx.load_family(gpt2_small_folder(), store=ModelStore())
        rows.append(bench(gpt2, gpt2.base.label, words(8), args.n, args.tokens, args.repeats))
    if not args.skip_real:
        from real_family import BASE, family_dir

        real = fx.load_family(family_dir(), store=ModelStore())
        rows.append(bench(real, BASE, "Tell me about the moon.", args.n, args.tokens, args.repeats))
    print(f"\nSampling throughput, n={args.n}, max_new_tokens={args.tokens}, torch threads={torch.get_num_threads()}, "
          f"medians of {args.repeats} alternating runs\n")  # fmt: skip
    print("| model | fx.sample tok/s | bare generate tok/s | naive loop tok/s | vs naive | vs bare |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['ours']:.0f} | {r['bare']:.0f} | {r['naive']:.0f} | "
              f"{r['ours'] / r['naive']:.1f}× | {r['ours'] / r['bare']:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
