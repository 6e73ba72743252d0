"""Sampling throughput: `fx.sample` against a naive one-sample-at-a-time loop and a bare
`model.generate(num_return_sequences=n)`, on the fable family and on a randomly initialised
GPT-2-small-shaped model. Prints a Markdown table (tokens/second and ratios).

    python benchmarks/bench_sampling.py [--n 16] [--tokens 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic import gpt2_small_folder, words  # noqa: E402

import explorer as fx
from explorer.core.store import ModelStore


def generated_tokens(sequences: torch.Tensor, prompt_len: int, eos: int, pad: int) -> int:
    gen = sequences[:, prompt_len:]
    return int(((gen != pad) & (gen != eos)).sum())


def naive(model, tok, prompt: str, n: int, max_new: int) -> int:
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    total = 0
    for _ in range(n):
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                             max_new_tokens=max_new, pad_token_id=tok.pad_token_id)  # fmt: skip
        total += generated_tokens(out, ids.shape[1], tok.eos_token_id, tok.pad_token_id)
    return total


def bare(model, tok, prompt: str, n: int, max_new: int) -> int:
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                         max_new_tokens=max_new, num_return_sequences=n, pad_token_id=tok.pad_token_id)  # fmt: skip
    return generated_tokens(out, ids.shape[1], tok.eos_token_id, tok.pad_token_id)


def ours(family, label: str, prompt: str, n: int, max_new: int) -> int:
    s = fx.sample(
        family, prompt, n=n, max_new_tokens=max_new, models=[label], seed=int(time.time())
    )
    return int(s.df["n_tokens"].sum())


def rate(fn, repeats: int) -> float:
    fn()  # warm-up
    tokens, seconds = 0, 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens += fn()
        seconds += time.perf_counter() - start
    return tokens / seconds


def bench(family, label: str, prompt: str, n: int, max_new: int, repeats: int) -> dict:
    loaded = family.load(label)
    model, tok = loaded.model, loaded.tokenizer
    with torch.no_grad():
        r_ours = rate(lambda: ours(family, label, prompt, n, max_new), repeats)
        r_bare = rate(lambda: bare(model, tok, prompt, n, max_new), repeats)
        r_naive = rate(lambda: naive(model, tok, prompt, n, max_new), max(1, repeats // 2))
    return {"model": label, "ours": r_ours, "bare": r_bare, "naive": r_naive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    fable = fx.load_family("fable", store=ModelStore())
    rows.append(bench(fable, "fable-base", "once upon a time", args.n, args.tokens, args.repeats))
    gpt2 = fx.load_family(gpt2_small_folder(), store=ModelStore())
    rows.append(bench(gpt2, gpt2.base.label, words(8), args.n, args.tokens, args.repeats))
    print(
        f"\nSampling throughput, n={args.n}, max_new_tokens={args.tokens}, torch threads={torch.get_num_threads()}\n"
    )
    print(
        "| model | fx.sample tok/s | bare generate tok/s | naive loop tok/s | vs naive | vs bare |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['ours']:.0f} | {r['bare']:.0f} | {r['naive']:.0f} | "
              f"{r['ours'] / r['naive']:.1f}× | {r['ours'] / r['bare']:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
