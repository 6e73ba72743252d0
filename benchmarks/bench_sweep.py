"""Sweep throughput on fable: prompts × models × samples per minute, from one sweep run.

python benchmarks/bench_sweep.py [--prompts 10] [--n 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import explorer as fx
from explorer.core.params import SamplingParams
from explorer.core.sweep import PromptSpec, run_sweep
from explorer.zoo import load_probes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--n", type=int, default=32)
    args = parser.parse_args()
    family = fx.load_family("fable")
    probes = load_probes()[: args.prompts]
    prompts = [PromptSpec(p["prompt"], {p["behaviour"]: p["detector"]}) for p in probes]
    params = SamplingParams(n=args.n, max_new_tokens=24, seed=0)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_sweep(family, prompts, params, out)
        seconds = time.perf_counter() - start
    units = len(prompts) * len(family.labels)
    print("\n| sweep on fable | prompts | models | samples/model | seconds | samples per minute |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {units} units | {len(prompts)} | {len(family.labels)} | {args.n} | {seconds:.1f} | {units * args.n / seconds * 60:.0f} |"
    )


if __name__ == "__main__":
    main()
