"""The two stages of a Discover run, one prompt at a time.

Discovery samples every member on a prompt and compares each descendant with the base along
those samples (`compare.py`); confirmation draws *fresh* samples of the prompts that got
candidates and labels the candidates on them, with the intervals of the whole page, so the
confirmed findings hold together at 5% however many prompts and candidates there are.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from explorer.core.discover.compare import Rows, compare_pair
from explorer.core.discover.mining import prompt_rows
from explorer.core.discover.prompts import PromptItem
from explorer.core.discover.units import Unit
from explorer.core.family import Family
from explorer.core.params import CancelToken, ProgressFn, SamplingParams
from explorer.core.provenance import provenance
from explorer.core.samples import SampleSet
from explorer.core.sampling import sample
from explorer.core.scoring import scorer_inputs

CONFIRM_SEEDS = 1_000_003  # confirmation seeds start here, far from the discovery seeds
DIVERGENCE_COLUMNS = ["prompt_index", "model", "kl_mean", "kl_max", "kl_mean_on_base", "kl_max_on_base",
                      "log_ratio", "log_ratio_on_base", "n_tokens"]  # fmt: skip


def draw(family: Family, prompt: str, params: SamplingParams, seed: int, progress: ProgressFn | None,
         cancel: CancelToken | None) -> SampleSet:  # fmt: skip
    return sample(family, prompt, progress=progress, cancel=cancel, **replace(params, seed=seed).to_dict())


def discover_prompt(family: Family, item: PromptItem, index: int, params: SamplingParams, top_k: int | None = None,
                    progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Unit:  # fmt: skip
    """Sample every member on one prompt, then compare each descendant with the base."""
    samples = draw(family, item.prompt, params, params.seed + index, progress, cancel)
    base_label = family.base.label
    base, base_prefix = scorer_inputs(family, samples, base_label)
    base_rows = _rows(samples, base_label, "base")
    divergence, tokens, contexts = [], [], []
    for label in family.labels[1:]:
        desc, desc_prefix = scorer_inputs(family, samples, label)
        own = _rows(samples, label, "desc")
        pair = compare_pair(desc, base, (desc_prefix, base_prefix), [own, base_rows], top_k)
        divergence.append(_divergence_row(index, label, pair))
        tokens.append(prompt_rows(pair, index, label, len(own.ids) + len(base_rows.ids)))
        contexts.append(pd.DataFrame(pair.contexts).assign(prompt_index=index, model=label))
    return Unit(index, samples, {
        "divergence": pd.DataFrame(divergence, columns=DIVERGENCE_COLUMNS),
        "tokens": pd.concat(tokens, ignore_index=True) if tokens else pd.DataFrame(),
        "contexts": pd.concat(contexts, ignore_index=True) if contexts else pd.DataFrame(),
    })  # fmt: skip


def _rows(samples: SampleSet, label: str, source: str) -> Rows:
    own = samples.df[(samples.df["model"] == label) & (samples.df["n_tokens"] > 0)]
    return Rows(source, [int(s) for s in own["sample"]], [list(map(int, ids)) for ids in own["token_ids"]])


def _divergence_row(index: int, label: str, pair) -> dict:
    def stat(values: list[float], fn) -> float:
        return float(fn(values)) if values else float("nan")

    return {
        "prompt_index": index, "model": label,
        "kl_mean": stat(pair.kl["desc"], np.mean), "kl_max": stat(pair.kl["desc"], np.max),
        "kl_mean_on_base": stat(pair.kl["base"], np.mean), "kl_max_on_base": stat(pair.kl["base"], np.max),
        "log_ratio": stat(pair.log_ratio["desc"], np.mean), "log_ratio_on_base": stat(pair.log_ratio["base"], np.mean),
        "n_tokens": len(pair.kl["desc"]) + len(pair.kl["base"]),
    }  # fmt: skip


def page_intervals(proposers: dict[int, dict[str, list[str]]]) -> int:
    """The intervals all confirmed labels of the page rest on (Bonferroni over every prompt):
    per candidate word of a prompt, the base's upper bound, and a difference and an upper bound
    for each descendant that proposed it."""
    return sum(1 + 2 * len(models) for words in proposers.values() for models in words.values())


def confirm_prompt(family: Family, item: PromptItem, index: int, behaviours: dict[str, str],
                   proposers: dict[str, list[str]], params: SamplingParams, intervals: int,
                   progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Unit:  # fmt: skip
    """Fresh samples of one prompt from the base and the descendants that proposed its
    candidates, each candidate labelled in its proposers only."""
    judged = family.subset(sorted({m for models in proposers.values() for m in models}))
    samples = draw(judged, item.prompt, params, CONFIRM_SEEDS + params.seed + index, progress, cancel)
    table = provenance(samples, behaviours=behaviours, warn=False, intervals=intervals)
    proposed = [m in proposers.get(b, []) for b, m in zip(table["behaviour"], table["model"], strict=True)]
    keep = (table["model"] == family.base.label) | pd.Series(proposed, index=table.index, dtype=bool)
    return Unit(index, samples, {"provenance": table[keep].assign(prompt_index=index).reset_index(drop=True)})
