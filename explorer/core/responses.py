"""Rows of a SampleSet, built the same way for every kind of member.

`tokens` holds the text each token adds to the response (see `explorer.core.tokens`), never
the tokenizer's internal pieces; `token_ids` keeps the exact ids.
"""

from __future__ import annotations

from typing import Any

import torch

from explorer.core.member import Member
from explorer.core.params import SamplingParams
from explorer.core.tokens import token_texts, token_texts_many

FIRST_TOKEN_COLUMNS = ["model", "rank", "token_id", "token", "prob"]
SAMPLE_COLUMNS = [
    "model", "sample", "seed", "model_seed", "prompt", "model_input", "text", "tokens",
    "token_ids", "logprobs", "model_logprobs", "entropies", "n_tokens", "finish_reason",
]  # fmt: skip


def response_row(
    member: Member,
    context: tuple[str, str, SamplingParams, int],
    sample: int,
    ids: list[int],
    text: str,
    finished: bool,
    tokens: list[str] | None = None,
    **per_token: list[float],
) -> dict[str, Any]:
    """One row of `SampleSet.df`. `context` is (prompt, model input, params, model seed);
    `tokens` the ids' texts (found here when not given); `per_token` holds `logprobs`,
    `model_logprobs` and `entropies`, one value per id."""
    prompt, model_text, params, seed = context
    return {
        "model": member.ref.label, "sample": sample, "seed": params.seed, "model_seed": seed,
        "prompt": prompt, "model_input": model_text, "text": text,
        "tokens": token_texts(member.tokenizer, ids) if tokens is None else tokens, "token_ids": ids,
        **per_token, "n_tokens": len(ids), "finish_reason": "eos" if finished else "length",
    }  # fmt: skip


def response_rows(
    member: Member,
    context: tuple[str, str, SamplingParams, int],
    start: int,
    gen: torch.Tensor,
    ends: list[int],
    columns: dict[str, torch.Tensor],
) -> list[dict[str, Any]]:
    """Rows for a batch of generated ids `gen` (n, steps), each cut at its end of sequence;
    `columns` are per-position values (n, steps)."""
    tok = member.tokenizer
    responses = [gen[i, :end].tolist() for i, end in enumerate(ends)]
    texts = tok.batch_decode(responses, skip_special_tokens=True)
    pieces = token_texts_many(tok, responses)
    rows = []
    for i, end in enumerate(ends):
        values = {name: col[i, :end].tolist() for name, col in columns.items()}
        rows.append(response_row(member, context, start + i, responses[i], texts[i], end < gen.shape[1],
                                 pieces[i], **values))  # fmt: skip
    return rows


def first_token_rows(member: Member, probs: torch.Tensor, ids: torch.Tensor) -> list[dict]:
    """The exact distribution of the first generated token: its top-k, highest first."""
    texts = [t[0] for t in token_texts_many(member.tokenizer, [[i] for i in ids.tolist()])]
    return [
        {"model": member.ref.label, "rank": rank + 1, "token_id": int(i), "token": text, "prob": float(p)}
        for rank, (p, i, text) in enumerate(zip(probs.tolist(), ids.tolist(), texts, strict=True))
    ]
