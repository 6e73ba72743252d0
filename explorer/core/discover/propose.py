"""Mined words become candidate behaviours, for the prompts where they were found.

A candidate is a word regex (`\\bahoy\\b`, case-insensitive) proposed by a descendant whose
adaptation raised or lowered it, attached to the prompts where that descendant's probability of
it moved most (at least `MIN_EXCESS` occurrences per response). The candidates are then judged on
fresh samples (`confirm.py`), never on the samples that proposed them.
"""

from __future__ import annotations

import pandas as pd
import regex

from explorer.core.discover.mining import MIN_EXCESS, per_response

CANDIDATE_COLUMNS = ["model", "direction", "word", "regex", "word_rank", "score", "prompt_index", "prompt_excess"]


def word_regex(word: str) -> str:
    """The behaviour a word stands for: the word on its own, in any case."""
    return rf"(?i)\b{regex.escape(word)}\b"


def rank_words(tokens: pd.DataFrame, by: str = "excess") -> pd.DataFrame:
    """Per descendant and direction, words ranked by their best token (`by`: "excess", the
    default ranking, or "top_k", diffing-toolkit's)."""
    key = "score" if by == "excess" else "top_k_share"
    worded = tokens[tokens["word"].notna()]
    best = worded.sort_values(key, ascending=False).drop_duplicates(["model", "direction", "word"])
    ids = worded.groupby(["model", "direction", "word"])["token_id"].agg(list).rename("token_ids")
    best = best.join(ids, on=["model", "direction", "word"])
    best["word_rank"] = best.groupby(["model", "direction"])[key].rank(ascending=False, method="first").astype(int)
    return best.sort_values(["model", "direction", "word_rank"]).reset_index(drop=True)


def propose(words: pd.DataFrame, prompt_rows: pd.DataFrame, top: int = 5, max_prompts: int = 3) -> pd.DataFrame:
    """The top `top` words per descendant and direction, each on up to `max_prompts` prompts
    where its change was largest (and at least MIN_EXCESS per response)."""
    changes = prompt_rows.assign(net=per_response(prompt_rows))
    out = []
    for word in words[words["word_rank"] <= top].itertuples():
        sign = 1.0 if word.direction == "raised" else -1.0
        mine = changes[(changes["model"] == word.model) & changes["token_id"].isin(word.token_ids)]
        per_prompt = (mine["net"] * sign).groupby(mine["prompt_index"]).max()
        found = per_prompt[per_prompt >= MIN_EXCESS].sort_values(ascending=False).head(max_prompts)
        out += [{"model": word.model, "direction": word.direction, "word": word.word, "regex": word_regex(word.word),
                 "word_rank": word.word_rank, "score": word.score, "prompt_index": int(i),
                 "prompt_excess": float(sign * v)} for i, v in found.items()]  # fmt: skip
    return pd.DataFrame(out, columns=CANDIDATE_COLUMNS)


def behaviours_by_prompt(candidates: pd.DataFrame) -> dict[int, dict[str, str]]:
    """prompt index -> {word: regex}: each prompt's candidates, whoever proposed them."""
    out: dict[int, dict[str, str]] = {}
    for row in candidates.itertuples():
        out.setdefault(int(row.prompt_index), {})[row.word] = row.regex
    return out


def proposers_by_prompt(candidates: pd.DataFrame) -> dict[int, dict[str, list[str]]]:
    """prompt index -> {word: the descendants that proposed it there}: the only descendants a
    candidate is judged in (the claim Discover tests is that *their* adaptation changed it)."""
    out: dict[int, dict[str, list[str]]] = {}
    for row in candidates.itertuples():
        models = out.setdefault(int(row.prompt_index), {}).setdefault(row.word, [])
        if row.model not in models:
            models.append(row.model)
    return out
