"""Resampling: many answers per model, batched, reproducible, with per-token statistics.

Each member samples itself (`Member.sample`): local weights with `generate`, served members
through their server. Members that say they are `concurrent` (a server batches them) are asked
all at once; local ones one after another, each using every core it is given.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from explorer.core.family import Family
from explorer.core.member import Member, ModelSamples
from explorer.core.params import (
    CancelToken,
    ProgressFn,
    SamplingParams,
    check_batch_size,
    check_cancel,
    check_prompt,
)
from explorer.core.responses import FIRST_TOKEN_COLUMNS, SAMPLE_COLUMNS
from explorer.core.results import library_versions
from explorer.core.samples import SampleSet, merge_engine


def sample(
    family: Family,
    prompt: str,
    n: int = 16,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 24,
    seed: int = 0,
    chat: str = "auto",
    models: list[str] | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SampleSet:
    """Sample `n` responses from every chosen member of `family` (all by default).

    The same family, prompt, parameters and seed give the same SampleSet; a new seed resamples.
    """
    params = SamplingParams(n, temperature, top_p, top_k, max_new_tokens, seed, chat)
    check_prompt(prompt)
    check_batch_size(batch_size)
    labels = models or family.labels
    for label in labels:
        family.ref(label)
    members = [family.load(label) for label in labels]
    results = sample_members(members, prompt, params, batch_size, progress, cancel)
    return sample_set(family, prompt, params, members, results)


def sample_members(
    members: list[Member], prompt: str, params: SamplingParams, batch_size: int,
    progress: ProgressFn | None, cancel: CancelToken | None,
) -> list[ModelSamples]:  # fmt: skip
    """Every member's samples, in order: concurrent members all at once, the others in turn."""
    if members and all(m.concurrent for m in members):
        with ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="fx-sample") as pool:
            futures = [pool.submit(m.sample, prompt, params, batch_size, progress, cancel) for m in members]
            return [f.result() for f in futures]
    results = []
    for member in members:
        check_cancel(cancel)
        results.append(member.sample(prompt, params, batch_size, progress, cancel))
    return results


def sample_set(
    family: Family, prompt: str, params: SamplingParams, members: list[Member], results: list[ModelSamples]
) -> SampleSet:
    rows = [row for result in results for row in result.rows]
    first = [row for result in results for row in result.first_token]
    meta = {
        "model_inputs": {m.ref.label: r.model_input for m, r in zip(members, results, strict=True)},
        "seconds": {m.ref.label: round(r.seconds, 4) for m, r in zip(members, results, strict=True)},
        "threads": {m.ref.label: r.threads for m, r in zip(members, results, strict=True) if r.threads},
        "versions": library_versions(),
    }
    for member in members:
        engine = member.engine()
        if engine is not None:
            merge_engine(meta, engine)
    return SampleSet(
        df=pd.DataFrame(rows, columns=SAMPLE_COLUMNS), params=params, prompt=prompt,
        family=family.to_dict(), first_token=pd.DataFrame(first, columns=FIRST_TOKEN_COLUMNS), meta=meta,
    )  # fmt: skip
