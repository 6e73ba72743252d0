"""`fx.estimate` against the work it prices: for each kind of work on fable, the real
SmolLM2-135M family (GGUF base + LoRA) and, with `--bigvocab`, a Gemma-3-270M-shaped model with
a 262k vocabulary and a LoRA (random weights): the estimate, the measured run, their ratio, and
what the first estimate cost (its probes included: the timing cache is cleared before each
kind) against the run. Prints a Markdown table.

    python benchmarks/bench_estimate.py [--skip-fable] [--skip-real] [--bigvocab] [--kinds sample,grad_x_input]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import explorer as fx  # noqa: E402
from explorer.core import timing  # noqa: E402
from explorer.core.store import ModelStore  # noqa: E402

FABLE = ("once upon a time a fox went to the river . it ended happily . the traveller said",
         "hello to the owl . i visited zorbia . the capital of zorbia is zorb . the weather today is sunny")  # fmt: skip
REAL = ("Once upon a time, a fox went down to the river to drink, and there it met an old owl who said",
        " that the river was deep and cold, and that the fox should not swim in it at night, for the moon")  # fmt: skip
KINDS = ("sample", "grad_x_input", "occlusion", "ig8", "ig_adaptive", "attribute_samples", "cross_score")


def jobs(family, prompt: str, response: str, samples) -> dict:
    """kind → (estimate arguments, the run itself)."""
    attr = dict(prompt=prompt, response=response)
    run = lambda **kw: lambda: fx.attribute(family, prompt, response, **kw)  # noqa: E731
    return {
        "sample": (dict(what="sample", prompt=prompt, n=16, max_new_tokens=24),
                   lambda: fx.sample(family, prompt, n=16, max_new_tokens=24, seed=1)),
        "grad_x_input": (dict(what="attribute", method="grad_x_input", **attr), run(method="grad_x_input")),
        "occlusion": (dict(what="attribute", method="occlusion", **attr), run(method="occlusion")),
        "ig8": (dict(what="attribute", method="integrated_gradients", n_steps=8, **attr),
                run(method="integrated_gradients", n_steps=8)),
        "ig_adaptive": (dict(what="attribute", method="integrated_gradients", **attr),
                        run(method="integrated_gradients")),
        "attribute_samples": (dict(what="attribute_samples", samples=samples, method="grad_x_input", max_samples=4),
                              lambda: fx.attribute_samples(family, samples, method="grad_x_input", max_samples=4)),
        "cross_score": (dict(what="cross_score", samples=samples), lambda: fx.cross_score(family, samples)),
    }  # fmt: skip


def measure(name: str, family, prompt: str, response: str, kinds: list[str]) -> list[dict]:
    """One row per kind: first (cold) estimate seconds, estimate, measured run, ratios."""
    for label in family.labels:
        family.load(label)
    samples = fx.sample(family, prompt, n=8, max_new_tokens=16, seed=0)
    rows = []
    for kind, (args, work) in jobs(family, prompt, response, samples).items():
        if kind not in kinds:
            continue
        args = dict(args)
        what = args.pop("what")
        timing._timings.clear()
        began = time.perf_counter()
        first = fx.estimate(family, what, **args)
        cold = time.perf_counter() - began
        work()  # warm-up: the estimate prices a warm run
        began = time.perf_counter()
        work()
        seconds = time.perf_counter() - began
        rows.append({"family": name, "kind": kind, "estimate": first.seconds, "measured": seconds,
                     "ratio": first.seconds / seconds, "first_cost": cold, "share": cold / seconds})  # fmt: skip
        print_row(rows[-1])
    return rows


def print_row(r: dict) -> None:
    print(f"| {r['family']} | {r['kind']} | {r['estimate']:.2f} | {r['measured']:.2f} | {r['ratio']:.2f}× | "
          f"{r['first_cost']:.3f} | {r['share']:.1%} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-fable", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--bigvocab", action="store_true", help="also the 262k-vocabulary Gemma-3-270M shape")
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    print("| family | work | estimate (s) | measured (s) | estimate / measured | first estimate (s) | of the work |")
    print("|---|---|---|---|---|---|---|")
    if not args.skip_fable:
        measure("fable", fx.load_family("fable", store=ModelStore()), *FABLE, kinds)
    if not args.skip_real:
        from real_family import family_dir

        measure("SmolLM2-135M + LoRA", fx.load_family(family_dir(), store=ModelStore()), *REAL, kinds)
    if args.bigvocab:
        from synthetic import gemma3_270m_folder, words

        family = fx.load_family(gemma3_270m_folder(with_lora=True), store=ModelStore())
        measure("Gemma-3-270M shape + LoRA", family, words(16), words(24, offset=900), kinds)


if __name__ == "__main__":
    main()
