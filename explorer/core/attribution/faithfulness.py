"""Faithfulness: does removing the tokens a method ranks highest change the response the most?

Methods disagree, and a chart cannot say which one explains the model. The deletion and
insertion curves can (Samek et al. 2017; Petsiuk et al. 2018), and ERASER's comprehensiveness
and sufficiency (DeYoung et al. 2020) are their averages: rank the words of the user's prompt
by the method's scores for the whole response, then
- delete the top k (replace them, as occlusion does) and measure the response's summed target
  score (its log-prob, for the default target): `comprehensiveness` is the mean drop over k;
- keep only the top k (replace the others): `sufficiency` is the mean drop, small when the top
  words alone carry the response;
- `faithfulness` = (comprehensiveness − sufficiency) / scale: the area between the insertion
  and deletion curves, in units of the largest change the prompt's words make on their own —
  the `drop` when every word is removed, or the change when one word is removed alone (which
  can be larger: "the capital of <pad> is" misleads where a prompt of padding does not). The
  scale is the same for every method, so their numbers compare. Near 1: the top words carry the
  change at every k; about 0: no better than a random order; negative: the ranking points the
  wrong way.

Only the words the user wrote are ranked and removed: chat-template and special tokens (the
attention sink at the first position among them) are the model's scaffolding, and removing
them measures a broken input, not the text. Every level of k, for deletion and insertion, goes
into one batched forward-only pass per model (with its shared prefix cached), so a served model
can be checked as well, and the check costs about an occlusion's pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from explorer.core.alignment import token_units
from explorer.core.attribution.occlusion import replacement_id
from explorer.core.attribution.problem import Problem, build_problem
from explorer.core.attribution.targets import get_target
from explorer.core.member import model_input
from explorer.core.params import CancelToken, ProgressFn, check_cancel

LEVELS = 10  # at most this many values of k between none and all of the prompt's words
MIN_DROP = 0.1  # nats: a smaller change from removing the whole prompt leaves nothing to explain
COLUMNS = ["model", "method", "faithfulness", "comprehensiveness", "sufficiency", "drop", "scale", "words"]


@dataclass
class Faithfulness:
    """`df`: one row per (model, method); `curves`: the deletion and insertion curves, one row
    per (model, method, k) with the summed target score after deleting (`deletion`) or keeping
    only (`insertion`) the top k words."""

    df: pd.DataFrame
    curves: pd.DataFrame


def levels(n: int) -> list[int]:
    """The values of k strictly between 0 and n (every one up to LEVELS words, else LEVELS
    evenly spread); the ends, nothing and everything removed, are the same for all methods."""
    if n <= LEVELS:
        return list(range(1, n))
    return sorted({round(n * j / LEVELS) for j in range(1, LEVELS)} & set(range(1, n)))


def prompt_features(problem: Problem, text: tuple[str, str, str], by_word: bool) -> dict[int, list[int]]:
    """The ranked features of the user's prompt, in the text's order: {key: positions}, where a
    key is the attribution's `source_pos` of the feature: a word's unit (`by_word`) or a token's
    position. Words are found through the tokenizer's character offsets; without offsets, each
    prompt token that is not a special token is a feature."""
    member, (prompt, response, chat) = problem.member, text
    try:
        units = token_units(member.tokenizer, model_input(member, prompt, chat), prompt, response, problem.start)
    except ValueError:
        special = set(member.tokenizer.all_special_ids)
        return {p: [p] for p in range(problem.start) if int(problem.ids[p]) not in special}
    found = units[: problem.start]  # 0: template and special tokens
    if not by_word:
        return {p: [p] for p in np.flatnonzero(found > 0).tolist()}
    return {u: np.flatnonzero(found == u).tolist() for u in sorted(set(found.tolist()) - {0})}


def ranked(keys: list[int], scores: dict[int, float]) -> list[int]:
    """Indices into `keys` from the highest score to the lowest; ties keep the text's order."""
    return sorted(range(len(keys)), key=lambda i: -scores.get(keys[i], 0.0))


def variant_rows(problem: Problem, words: list[list[int]], order: list[int], ks: list[int], fill: int) -> torch.Tensor:
    """(2 + 2·len(ks) + len(words), len) ids: the text, every word removed, then per k the top
    k removed and only the top k kept, then each word removed alone (the scale, the same for
    every method)."""
    last = int(problem.positions.max())
    ids = problem.ids[: last + 1]
    every = [p for w in words for p in w]

    def without(positions: list[int]) -> torch.Tensor:
        row = ids.clone()
        row[positions] = fill
        return row

    rows = [ids, without(every)]
    for k in ks:
        top = [p for i in order[:k] for p in words[i]]
        rows += [without(top), without(sorted(set(every) - set(top)))]
    rows += [without(w) for w in words]
    return torch.stack(rows)


def summed_scores(problem: Problem, rows: torch.Tensor) -> torch.Tensor:
    """(rows,) the target's score summed over the response's targets, one batched pass."""
    logp = problem.member.choice_logprobs(rows, problem.positions - 1, problem.choices)  # (rows, targets, K)
    return problem.target.fn(logp).sum(-1).double()


def curve_numbers(f: torch.Tensor, ks: list[int], n: int) -> tuple[dict, list[dict]]:
    """From the summed scores of `variant_rows` (rows,) for n words: the method's numbers and
    its curves, from k = 0 (nothing deleted, nothing kept) to k = n."""
    full, empty = float(f[0]), float(f[1])
    curves, singles = f[2 : 2 + 2 * len(ks)], f[2 + 2 * len(ks) :]
    deletion, insertion = curves[0::2].numpy(), curves[1::2].numpy()
    drop = full - empty
    scale = max(abs(drop), float((full - singles).abs().max()) if len(singles) else 0.0)
    comp = float(np.mean(full - deletion)) if ks else float("nan")
    suff = float(np.mean(full - insertion)) if ks else float("nan")
    score = (comp - suff) / scale if ks and scale >= MIN_DROP else float("nan")
    curve = [{"k": 0, "deletion": full, "insertion": empty}]
    curve += [{"k": k, "deletion": float(d), "insertion": float(i)} for k, d, i in zip(ks, deletion, insertion, strict=True)]
    curve.append({"k": n, "deletion": empty, "insertion": full})
    return {"faithfulness": score, "comprehensiveness": comp, "sufficiency": suff, "drop": drop, "scale": scale}, curve


def model_faithfulness(problem: Problem, base: Problem | None, text: tuple[str, str, str], scores: dict[int, float],
                       word_keys: bool, replacement) -> tuple[dict, list[dict]]:  # fmt: skip
    """One model's numbers and curves. `word_keys`: the attribution's sources are word units
    (its source_pos numbers the words from 1) rather than token positions. A relative target
    is measured in the model minus the base (`base`), on the same rows."""
    features = prompt_features(problem, text, word_keys)
    words = list(features.values())
    order, ks = ranked(list(features), scores), levels(len(words))
    rows = variant_rows(problem, words, order, ks, replacement_id(problem, replacement))
    f = summed_scores(problem, rows)
    if base is not None:
        f = f - summed_scores(base, rows)
    numbers, curve = curve_numbers(f, ks, len(words))
    numbers["words"] = len(words)
    return numbers, curve


def faithfulness(
    family, attribution, replacement: str | int | None = None, progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Faithfulness:  # fmt: skip
    """Deletion and insertion curves of `attribution`'s ranking of the prompt's words, in each
    of its models: `Attribution.faithfulness(family)` (the module docstring says what the
    numbers mean). `replacement` stands in for removed tokens, as occlusion's does."""
    meta = attribution.meta
    text = (meta["prompt"], meta["response"], meta.get("chat", "never"))
    goal = get_target(meta.get("target", "logprob"))
    word_keys = meta.get("align") == "words"
    sequence = attribution.sequence()
    rows, curves = [], []
    for i, label in enumerate(attribution.models):
        check_cancel(cancel)
        problem = own_problem(family, label, attribution, goal)
        base = own_problem(family, family.base.label, attribution, goal) if goal.relative else None
        mine = sequence[sequence["model"] == label]
        scores = dict(zip(mine["source_pos"].astype(int), mine["score"].astype(float), strict=True))
        numbers, curve = model_faithfulness(problem, base, text, scores, word_keys, replacement)
        rows.append({"model": label, "method": meta["method"], **numbers})
        curves += [{"model": label, "method": meta["method"], **point} for point in curve]
        if progress:
            progress(label, i + 1, len(attribution.models))
    return Faithfulness(pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(curves))


def own_problem(family, label: str, attribution, goal) -> Problem:
    """The attribution's problem in model `label`: its text, targets and foil."""
    meta = attribution.meta
    targets = None
    if meta.get("align") != "words":
        targets = sorted(set(attribution.df.loc[attribution.df["model"] == attribution.models[0], "target_pos"].astype(int)))
    return build_problem(family.load(label), meta["prompt"], meta["response"], meta.get("chat", "never"), targets,
                         meta.get("foil"), meta.get("sources", "all"), goal)  # fmt: skip
