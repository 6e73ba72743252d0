"""Baselines for integrated gradients: where the straight path in embedding space starts."""

from __future__ import annotations

import torch

from explorer.core.attribution.gradients import embed
from explorer.core.attribution.problem import Problem

BASELINES = ("zero", "pad", "eos", "mean")


def baseline_embeds(problem: Problem, baseline: str | int) -> torch.Tensor:
    """(1, seq, dim) baseline: zeros, or every token replaced by `eos`, by `pad` (eos when the
    tokenizer has no pad token) or by a given token id. With `sources="prompt"` only the prompt
    is replaced: the response keeps its own embeddings (what Captum's LLM API does).

    Note: models with RMSNorm (Llama and most current LMs) are singular at the zero embedding, so
    paths that start at or near zero need many steps; the adaptive mode finds how many."""
    x0 = whole_baseline(problem, baseline)
    if problem.sources == "prompt":
        x0[:, problem.start :] = embed(problem)[:, problem.start :]
    return x0


def whole_baseline(problem: Problem, baseline: str | int) -> torch.Tensor:
    token = baseline_token(problem, baseline)
    if token is not None:
        return token_embeds(problem, token)
    if baseline == "zero":
        return torch.zeros_like(embed(problem))
    return mean_embedding_baseline(problem)


def baseline_token(problem: Problem, baseline: str | int) -> int | None:
    """The token a baseline stands for (eos, pad — eos when the tokenizer has no pad token — or
    a token id), or None for the vector baselines (zero, mean)."""
    if isinstance(baseline, int) and not isinstance(baseline, bool):
        if not 0 <= baseline < problem.member.model.get_input_embeddings().weight.shape[0]:
            raise ValueError(f"baseline: token id {baseline} is outside the vocabulary")
        return baseline
    if baseline in ("pad", "eos"):
        tok = problem.member.tokenizer
        return tok.pad_token_id if baseline == "pad" and tok.pad_token_id is not None else tok.eos_token_id
    if baseline in ("zero", "mean"):
        return None
    raise ValueError(f"baseline: one of zero, pad, eos, mean or a token id; got {baseline!r}")


def token_embeds(problem: Problem, token: int) -> torch.Tensor:
    """(1, seq, dim): every position holding the embedding of `token`."""
    layer = problem.member.model.get_input_embeddings()
    ids = torch.full_like(problem.ids, token)
    return layer(ids.unsqueeze(0).to(problem.member.model.device)).detach().float()


def mean_embedding_baseline(problem: Problem) -> torch.Tensor:
    """(1, seq, dim): the vocabulary's mean embedding, scaled at each position to the norm of
    that position's own embedding. The straight path then keeps a healthy norm, avoiding the
    RMSNorm singularity near zero that makes IG from a zero or pad baseline need hundreds of
    steps."""
    weight = problem.member.model.get_input_embeddings().weight.detach()  # (vocab, dim)
    special = sorted(i for i in set(problem.member.tokenizer.all_special_ids) if 0 <= i < weight.shape[0])
    total = weight.sum(0, dtype=torch.float32) - weight[special].sum(0, dtype=torch.float32)  # (dim,)
    mean = total / (weight.shape[0] - len(special))  # no copy of a 262k-row table
    x = embed(problem)  # (1, seq, dim)
    scale = x.norm(dim=-1, keepdim=True) / mean.norm().clamp_min(1e-12)  # (1, seq, 1)
    return mean.view(1, 1, -1) * scale
