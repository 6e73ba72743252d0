"""Discover's comparison pass against bare forward passes over the same tokens.

For each prompt the discovery samples are drawn once; then, alternating, (a) the comparison
pass (`compare_pair`: both models teacher-forced over the descendant's and the base's samples,
KL, log-ratios and the token sums over the whole vocabulary) and (b) bare forward passes of the
same two models over the same rows (prompt + response, padded, logits and nothing else). The
pass is bound by those forwards: the goal is ≥ 0.8× their throughput. Also the whole of
`fx.discover` (discovery and confirmation) as prompts per minute. On fable, and with --real on
the real SmolLM2-135M pair of the real-model lane (chat template). Prints a Markdown table.

    python benchmarks/bench_discover.py [--repeats 5] [--real] [--prompts 6]
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
from explorer.core.discover.compare import compare_pair  # noqa: E402
from explorer.core.discover.prompts import general_prompts, probe_prompts  # noqa: E402
from explorer.core.discover.stages import _rows  # noqa: E402
from explorer.core.scoring import scorer_inputs  # noqa: E402
from explorer.core.teacher import pad_right  # noqa: E402
from explorer.core.threads import fair_share  # noqa: E402


def work(family, sets) -> tuple[list, list]:
    """(comparison jobs, bare jobs): per prompt and descendant, what each side runs."""
    ours, bare = [], []
    base_label = family.base.label
    for samples in sets:
        base, base_prefix = scorer_inputs(family, samples, base_label)
        for label in family.labels[1:]:
            desc, desc_prefix = scorer_inputs(family, samples, label)
            rows = [_rows(samples, label, "desc"), _rows(samples, base_label, "base")]
            ours.append((desc, base, (desc_prefix, base_prefix), rows))
            conts = [ids for r in rows for ids in r.ids]
            bare.append((desc, desc_prefix, conts))
            bare.append((base, base_prefix, conts))
    return ours, bare


@torch.no_grad()
def run_bare(jobs) -> int:
    tokens = 0
    for member, prefix, conts in jobs:
        ids, mask = pad_right([prefix + c for c in conts], member.tokenizer.pad_token_id or 0)
        with fair_share([member.model]):
            member.model(input_ids=ids, attention_mask=mask)
        tokens += sum(len(c) for c in conts)
    return tokens


def run_ours(jobs) -> int:
    tokens = 0
    for desc, base, prefixes, rows in jobs:
        compare_pair(desc, base, prefixes, rows)
        tokens += 2 * sum(len(ids) for r in rows for ids in r.ids)
    return tokens


def alternate(ours, bare, repeats: int) -> tuple[float, float, int]:
    run_ours(ours), run_bare(bare)  # warm-up
    a, b = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = run_ours(ours)
        a.append(time.perf_counter() - start)
        start = time.perf_counter()
        run_bare(bare)
        b.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b), tokens


def measure(name: str, family, items, repeats: int, n: int = 8) -> None:
    sets = [fx.sample(family, item.prompt, n=n, seed=i) for i, item in enumerate(items)]
    ours, bare = work(family, sets)
    t_ours, t_bare, tokens = alternate(ours, bare, repeats)
    start = time.perf_counter()
    found = fx.discover(family, items, n=n)
    whole = time.perf_counter() - start
    print(f"| {name} | {len(items)} × {len(family.labels)} models × {n} | {tokens / t_ours:,.0f} | {tokens / t_bare:,.0f} | "
          f"{t_bare / t_ours:.2f}× | {60 * len(items) / whole:.1f} ({whole:.0f} s, {found.meta['confirmed_prompts']} prompts confirmed on 128) |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--real", action="store_true")
    parser.add_argument("--prompts", type=int, default=6)
    args = parser.parse_args()
    print("| family | prompts × models × samples | comparison tok/s | bare forwards tok/s | ours / bare | fx.discover prompts per minute |")
    print("|---|---|---|---|---|---|")
    measure("fable (6 models)", fx.load_family("fable"), probe_prompts()[: args.prompts], args.repeats)
    if args.real:
        import real_family

        family = fx.load_family(real_family.family_dir())
        measure("SmolLM2-135M + its LoRA (chat template)", family, general_prompts()[: args.prompts], args.repeats)


if __name__ == "__main__":
    main()
