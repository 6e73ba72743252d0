"""Sampling through vLLM's OpenAI-compatible API against the local transformers backend, on the
same weights (fable-base and its fable-pirate LoRA adapter), in one run on this machine.

The point on a CPU is the plumbing and the concurrency (requests for every model and chunk of
samples in flight at once, batched by the engine), not GPU speed. Starts its own vLLM CPU server
(tests/vllm_server.py; the cached environment is made on first use). Prints a Markdown table.

    python benchmarks/bench_remote.py [--n 64] [--tokens 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import explorer as fx
from explorer.core.store import ModelStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

PROMPTS = ["once upon a time", "the weather today is", "the parrot says"]


def rate(family, n: int, tokens: int, repeats: int, models: list[str]) -> tuple[float, float]:
    """(generated tokens per second, samples per second) over `repeats` rounds of every prompt."""
    fx.sample(family, PROMPTS[0], n=2, max_new_tokens=2, models=models, chat="never")  # warm-up
    generated, samples, seconds = 0, 0, 0.0
    for r in range(repeats):
        for prompt in PROMPTS:
            start = time.perf_counter()
            s = fx.sample(
                family, prompt, n=n, max_new_tokens=tokens, seed=r, models=models, chat="never"
            )
            seconds += time.perf_counter() - start
            generated += int(s.df["n_tokens"].sum())
            samples += len(s.df)
    return generated / seconds, samples / seconds


def main() -> None:
    from vllm_server import fable_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    server = fable_server().start()
    try:
        served = fx.load_family(server.url, base="fable-base")
        local = fx.load_family("fable", store=ModelStore()).subset(["fable-pirate"])
        rows = []
        for models in (["fable-base"], ["fable-base", "fable-pirate"]):
            remote_tok, remote_samples = rate(served, args.n, args.tokens, args.repeats, models)
            local_tok, local_samples = rate(local, args.n, args.tokens, args.repeats, models)
            rows.append((" + ".join(models), remote_tok, local_tok, remote_samples, local_samples))
    finally:
        server.stop()
    print(f"\nSampling, n={args.n} per model, max_new_tokens={args.tokens}, {len(PROMPTS)} prompts × "
          f"{args.repeats}, torch threads={torch.get_num_threads()}, vLLM {served.load('fable-base').backend.version} (CPU)\n")  # fmt: skip
    print("| models | vLLM tok/s | local tok/s | vLLM samples/s | local samples/s | vLLM / local |")
    print("|---|---|---|---|---|---|")
    for name, rt, lt, rs, ls in rows:
        print(f"| {name} | {rt:.0f} | {lt:.0f} | {rs:.1f} | {ls:.1f} | {rt / lt:.2f}× |")


if __name__ == "__main__":
    main()
