"""Activation differences and steering against plain sampling of the same work.

Steering samples the base twice (unsteered and steered, `n` each); its peer is `fx.sample` of the
base twice with the same settings — the same tokens, without the hook. Reading the differences
(`fx.activation_diff`, one batched pass per model over the bundled neutral texts) is timed too,
and the whole (differences + steering) against the same peer. Runs alternate and the table
shows medians. On fable (fable-pirate) and, with --real, on the real SmolLM2-135M pair of the
real-model lane (its LoRA's difference at block 20). Prints a Markdown table.

    python benchmarks/bench_steering.py [--repeats 3] [--n 64] [--real]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import explorer as fx  # noqa: E402


def timed(fn) -> tuple[float, object]:
    began = time.perf_counter()
    value = fn()
    return time.perf_counter() - began, value


def compare(family, prompt: str, descendant: str, layer: int | None, n: int, tokens: int, repeats: int) -> dict:
    """Medians of alternating runs: the differences, steering, and two plain samplings of the base."""
    base = family.base.label
    diff = fx.activation_diff(family, models=[descendant])  # warm-up: loads, pass timings
    settings = {"n": n, "max_new_tokens": tokens, "seed": 0, "chat": "auto"}
    fx.steer(family, prompt, diff, layer=layer, **{**settings, "n": 2})
    times: dict[str, list[float]] = {"diff": [], "steer": [], "plain": []}
    for seed in range(repeats):
        t, diff = timed(lambda: fx.activation_diff(family, models=[descendant]))
        times["diff"].append(t)
        t, _ = timed(lambda s=seed, d=diff: fx.steer(family, prompt, d, layer=layer, **{**settings, "seed": s}))
        times["steer"].append(t)
        t, _ = timed(lambda s=seed: [fx.sample(family, prompt, models=[base], **{**settings, "seed": s}) for _ in range(2)])
        times["plain"].append(t)
    return {k: statistics.median(v) for k, v in times.items()} | {"texts": len(diff.texts)}


def print_row(name: str, c: dict, n: int) -> None:
    print(f"| {name} | {c['texts']} texts | {c['diff']:.2f} s | {c['steer']:.2f} s | {c['plain']:.2f} s "
          f"(2 × {n}) | {c['steer'] / c['plain']:.2f}× | {(c['diff'] + c['steer']) / c['plain']:.2f}× |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--real", action="store_true", help="also the real SmolLM2-135M pair")
    args = parser.parse_args()
    print("| family | neutral text | activation_diff | steer (base + steered) | plain sampling | steer / plain | diff + steer / plain |")
    print("|---|---|---|---|---|---|---|")
    fable = fx.load_family("fable", descendants=["fable-pirate"])
    print_row("fable (fable-pirate)", compare(fable, "the traveller said", "fable-pirate", None, args.n, 24, args.repeats), args.n)
    if args.real:
        import real_family

        real = fx.load_family(real_family.family_dir())
        row = compare(real, real_family.HELD_OUT, real_family.ADAPTER, 20, args.n, 24, args.repeats)
        print_row("SmolLM2-135M (LoRA, block 20)", row, args.n)


if __name__ == "__main__":
    main()
