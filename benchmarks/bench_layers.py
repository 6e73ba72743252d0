"""Inside the family: batched cross-model patching against a per-site loop (one forward pass per
(layer, position) site, as a hand-written hook loop runs it), at equal values; the attribution-
patching preview's time and agreement; the layer lens and the weight diff. On fable (fable-late
into fable-base) and, with --real, on the real SmolLM2-135M family of the real-model lane
(its LoRA adapter into the GGUF base). Prints a Markdown table.

    python benchmarks/bench_layers.py [--repeats 5] [--real]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import explorer as fx  # noqa: E402
from explorer.core.attribution.problem import build_problem  # noqa: E402
from explorer.core.layers.anatomy import anatomy, capture, hooked, output_of, with_output  # noqa: E402
from explorer.core.layers.sites import pass_rows, patched_passes, response_logprobs  # noqa: E402
from explorer.core.threads import fair_share  # noqa: E402


def per_site_loop(receiver, body, ids, start, acts, sites) -> torch.Tensor:
    """(sites, targets): one batch-1 forward per site, a hook swapping one position's output."""
    out = []
    for layer, position in sites:
        def swap(i, o, layer=layer, position=position):
            if i != layer:
                return None
            hidden = output_of(o).clone()
            hidden[:, position] = acts[layer][:, position]
            return with_output(o, hidden)

        with torch.no_grad(), hooked(body.blocks, swap):
            out.append(response_logprobs(receiver, ids[None], start)[0])
    return torch.stack(out)


def median_time(fn, repeats: int) -> tuple[float, object]:
    fn()  # warm-up
    times, value = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), value


def compare(family, prompt: str, response: str, donor: str, repeats: int) -> dict:
    """Batched against the loop, alternating, on every (block, position) site."""
    d, r = family.load(donor), family.load(family.base.label)
    problem = build_problem(r, prompt, response, "never")
    ids, start = problem.ids, problem.start
    body = anatomy(r)
    sites = [(layer, p) for layer in range(len(body.blocks)) for p in range(len(ids) - 1)]
    acts = capture(d, ids, "block", rows=pass_rows(body, ids, start, len(sites)))
    batched_t, loop_t = [], []
    with fair_share([d.model, r.model], batched=True):
        for _ in range(repeats):
            t, batched = median_time(lambda: patched_passes(r, body, "block", ids, start, acts, sites)[0], 1)
            batched_t.append(t)
            t, looped = median_time(lambda: per_site_loop(r, body, ids, start, acts, sites), 1)
            loop_t.append(t)
    result = fx.patch(family, prompt, response, donor=donor)
    return {"sites": len(sites), "tokens": len(ids), "batched": statistics.median(batched_t),
            "loop": statistics.median(loop_t), "max_diff": float((batched - looped).abs().max()),
            "preview_s": result.meta["preview"]["seconds"], "pearson": result.meta["preview"]["pearson"],
            "exact_s": result.meta["seconds"]}  # fmt: skip


def print_row(name: str, c: dict) -> None:
    print(f"| {name} | {c['sites']} sites × {c['tokens']} tokens | {c['batched']:.3f} s | {c['loop']:.3f} s | "
          f"{c['loop'] / c['batched']:.1f}× | {c['max_diff']:.1e} | {c['preview_s']:.3f} s "
          f"({c['exact_s'] / max(c['preview_s'], 1e-9):.0f}× faster than exact), r = {c['pearson']:.2f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--real", action="store_true", help="also the SmolLM2-135M family (builds it once)")
    args = parser.parse_args()
    fable = fx.load_family("fable")
    print("| family | sites | batched patching | per-site loop | speed-up | max |Δ| log p | preview (r with exact) |")
    print("|---|---|---|---|---|---|---|")
    print_row("fable (fable-late → base)", compare(fable, "i visited tirnova . the capital of tirnova is", " sylport .", "fable-late", args.repeats))
    if args.real:
        import real_family

        real = fx.load_family(real_family.family_dir())
        donor = real.descendants[0].label
        print_row(f"SmolLM2-135M ({donor} → base)", compare(real, "What is the capital of France?", " Ahoy! Paris.", donor, max(1, args.repeats // 2)))
    lens_t, _ = median_time(lambda: fx.layer_lens(fable, "the capital of sylvane is", " tirwick ."), args.repeats)
    diff_t, _ = median_time(lambda: fx.weight_diff(fable), args.repeats)
    print(f"\nfable, every member: layer lens {lens_t:.3f} s, weight diff {diff_t:.3f} s (medians of {args.repeats}, warm)")


if __name__ == "__main__":
    main()
