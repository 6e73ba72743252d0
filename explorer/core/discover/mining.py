"""Which tokens did an adaptation raise or lower, and which words are they?

Per (prompt, descendant) the comparison pass (`compare.py`) sums, over every sampled position,
each token's probability change. Here those sums become tables:

- `prompt_rows`: a prompt's tokens that changed most (sparse; what the results keep and save);
- `rank_tokens`: per descendant, over the prompt set, the tokens ranked two ways side by side:
  * **excess** (the default): the expected extra occurrences per response, Σ p_desc − p_base over
    a prompt's positions divided by its responses, averaged over prompts — raised tokens by their
    gains, lowered ones by their losses. It weighs what the models actually say: a token both
    models almost never produce moves its log-ratio a lot and its probability not at all.
  * **top_k**: diffing-toolkit's `top_k_occurring` — the share of positions where the token is
    among the K most raised (lowered) by log p_desc − log p_base. It is what raw log-ratio mining
    reports, and it ranks tail tokens first whenever a fine-tune moves its tail;
- `words`: a token as the word it stands in (subword pieces merged where they occur in samples).
"""

from __future__ import annotations

import pandas as pd
import regex

from explorer.core.discover.compare import PairResult

KEEP_BY_EXCESS = 200  # per (prompt, descendant): the tokens kept by |excess| …
KEEP_BY_TOP_K = 50  # … and by top-K counts, raised and lowered
MIN_EXCESS = 0.05  # a prompt counts for a token when it gains/loses this many occurrences per response
TABLE_SIZE = 30  # tokens per descendant and direction in the ranked table
PROMPT_COLUMNS = ["prompt_index", "model", "token_id", "excess", "mass", "weighted", "top_up", "top_down",
                  "rose", "positions", "responses"]  # fmt: skip
_WORD = regex.compile(r"[\p{L}\p{N}][\p{L}\p{N}\p{M}'’_-]*")


def prompt_rows(pair: PairResult, prompt_index: int, model: str, responses: int) -> pd.DataFrame:
    """The tokens of one (prompt, descendant) that changed most, with their sums."""
    s = pair.stats
    picked = set(s.excess.abs().topk(min(KEEP_BY_EXCESS, s.vocab)).indices.tolist())
    for counts in (s.top_up, s.top_down):
        picked |= set(counts.topk(min(KEEP_BY_TOP_K, s.vocab)).indices.tolist())
    ids = sorted(picked)
    return pd.DataFrame({
        "prompt_index": prompt_index, "model": model, "token_id": ids,
        "excess": s.excess[ids].tolist(), "mass": s.mass[ids].tolist(), "weighted": s.weighted[ids].tolist(),
        "top_up": s.top_up[ids].tolist(), "top_down": s.top_down[ids].tolist(), "rose": s.rose[ids].tolist(),
        "positions": s.positions, "responses": responses,
    }, columns=PROMPT_COLUMNS)  # fmt: skip


def per_response(rows: pd.DataFrame) -> pd.Series:
    """A prompt's excess as extra occurrences per response (the unit every ranking uses)."""
    return rows["excess"] / rows["responses"].clip(lower=1)


def rank_tokens(rows: pd.DataFrame, totals: dict[str, tuple[int, int]]) -> pd.DataFrame:
    """Per descendant and direction, the tokens ranked by excess and by top-K share (both
    ranks are columns; `score` is the excess ranking's value). `totals`: per descendant, the
    prompts and positions compared (a token missing from a prompt's kept rows changed little
    there and counts 0; `rose_share` is over the prompts where it was kept)."""
    if rows.empty:
        return pd.DataFrame(columns=TOKEN_COLUMNS)
    rows = rows.assign(gain=per_response(rows).clip(lower=0), loss=(-per_response(rows)).clip(lower=0),
                       net=per_response(rows))  # fmt: skip
    rows = rows.assign(found_up=rows["net"] >= MIN_EXCESS, found_down=rows["net"] <= -MIN_EXCESS)
    sums = rows.groupby(["model", "token_id"]).sum(numeric_only=True).reset_index()
    out = [_direction(sums, model, direction, *totals.get(model, (1, 1))) for model in sums["model"].unique()
           for direction in ("raised", "lowered")]  # fmt: skip
    return pd.concat(out, ignore_index=True)[TOKEN_COLUMNS]


TOKEN_COLUMNS = ["model", "direction", "rank", "rank_top_k", "token_id", "score", "excess", "top_k_share",
                 "mean_log_ratio", "rose_share", "p_desc", "p_base", "prompts"]  # fmt: skip


def _direction(sums: pd.DataFrame, model: str, direction: str, n_prompts: int, positions: int) -> pd.DataFrame:
    own = sums[sums["model"] == model]
    up = direction == "raised"
    positions = max(positions, 1)
    table = pd.DataFrame({
        "model": model, "direction": direction, "token_id": own["token_id"],
        "score": (own["gain"] if up else own["loss"]) / max(n_prompts, 1), "excess": own["net"] / max(n_prompts, 1),
        "top_k_share": (own["top_up"] if up else own["top_down"]) / positions,
        "mean_log_ratio": own["weighted"] / own["mass"].where(own["mass"] > 0),
        "rose_share": own["rose"] / own["positions"].clip(lower=1),
        "p_desc": (own["mass"] + own["excess"] / 2) / positions, "p_base": (own["mass"] - own["excess"] / 2) / positions,
        "prompts": own["found_up" if up else "found_down"].astype(int),
    })  # fmt: skip
    table["rank"] = table["score"].rank(ascending=False, method="first").astype(int)
    table["rank_top_k"] = table["top_k_share"].rank(ascending=False, method="first").astype(int)
    kept = table[(table["rank"] <= TABLE_SIZE) | (table["rank_top_k"] <= TABLE_SIZE)]
    return kept.sort_values("rank")


# --- tokens as words ---------------------------------------------------------------------------


def word_at(tokens: list[str], position: int) -> str | None:
    """The word (letters, digits, apostrophes, hyphens) that the token at `position` is part of,
    casefolded; None for a token of punctuation or space alone."""
    start = sum(len(t) for t in tokens[:position])
    end = start + len(tokens[position])
    text = "".join(tokens)
    for found in _WORD.finditer(text):
        if found.start() < end and found.end() > start:
            return found.group().casefold()
    return None


def token_word(text: str) -> str | None:
    """A token's own text as a word, when it has letters or digits."""
    found = _WORD.search(text)
    return found.group().casefold() if found else None


def occurrences(samples_by_prompt: dict[int, pd.DataFrame]) -> dict[int, list[tuple]]:
    """token id -> [(prompt index, model, row label, position)]: where each token was sampled."""
    index: dict[int, list[tuple]] = {}
    for prompt_index, df in samples_by_prompt.items():
        for label, model, ids in zip(df.index, df["model"], df["token_ids"], strict=True):
            for position, token in enumerate(ids):
                index.setdefault(int(token), []).append((prompt_index, model, label, position))
    return index


def words_for(tokens: pd.DataFrame, samples_by_prompt: dict[int, pd.DataFrame], texts: dict[int, str],
              base: str, most: int = 20) -> pd.Series:  # fmt: skip
    """The word each mined token stands in: the commonest word around it where the model that
    shows the change sampled it (the descendant for a raised token, the base for a lowered one),
    else its own text. Aligned with `tokens`' index; None where no word applies."""
    where = occurrences(samples_by_prompt)
    words = []
    for row in tokens.itertuples():
        source = row.model if row.direction == "raised" else base
        found = [o for o in where.get(int(row.token_id), []) if o[1] == source][:most]
        found = found or where.get(int(row.token_id), [])[:most]
        seen = [word_at(list(samples_by_prompt[p].at[label, "tokens"]), pos) for p, _, label, pos in found]
        seen = [w for w in seen if w]
        words.append(max(set(seen), key=seen.count) if seen else token_word(texts[int(row.token_id)]))
    return pd.Series(words, index=tokens.index, dtype=object)
