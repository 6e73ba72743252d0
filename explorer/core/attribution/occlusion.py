"""Occlusion: replace one source token at a time and measure the change of each target score,
every occluded sequence in one batched forward-only pass (so served members can do it too)."""

from __future__ import annotations

import torch

from explorer.core.attribution.problem import MethodResult, Problem, causal_mask


def replacement_id(problem: Problem, replacement: str | int | None) -> int:
    """The token that stands in for an occluded one: a token id, a special token by name, or
    (None) the first of pad, unk, eos, bos that the tokenizer has."""
    tok = problem.member.tokenizer
    if isinstance(replacement, int):
        return replacement
    ids = {name: getattr(tok, f"{name}_token_id", None) for name in ("pad", "unk", "eos", "bos")}
    if replacement is None:
        replacement = next((name for name, token in ids.items() if token is not None), None)
        if replacement is None:
            raise ValueError("replacement: the tokenizer has no special tokens; give a token id")
    if replacement not in ids or ids[replacement] is None:
        raise ValueError(
            f"replacement: one of pad, unk, eos, bos (that the tokenizer has) or a token id, got {replacement!r}"
        )
    return int(ids[replacement])


def occlusion_deltas(problem: Problem, replacement: str | int | None = None) -> torch.Tensor:
    """(targets, seq): score(original) − score(source replaced), all occlusions batched."""
    seq = problem.ids.shape[0]
    last = int(problem.positions.max())  # only sources before the last target can matter
    n = min(last, problem.n_sources)  # sources to occlude
    ids = problem.ids[: last + 1]  # (last + 1,)
    variants = ids.repeat(n, 1)  # (sources, last + 1): row s has source s replaced
    variants[torch.arange(n), torch.arange(n)] = replacement_id(problem, replacement)
    rows = torch.cat([ids.unsqueeze(0), variants])  # row 0 is the original
    logp = problem.member.choice_logprobs(rows, problem.positions - 1, problem.choices)  # (rows, targets, K)
    scores = problem.target.fn(logp)  # (1 + sources, targets)
    deltas = torch.zeros((len(problem.targets), seq))
    deltas[:, :n] = (scores[:1] - scores[1:]).T
    return deltas * causal_mask(problem, seq)  # exact zeros for sources after each target


def occlusion(problem: Problem, replacement: str | int | None = None) -> MethodResult:
    """Leave-one-token-out: change in the target's score when a source token is replaced."""
    return MethodResult(occlusion_deltas(problem, replacement), {"replacement": replacement})
