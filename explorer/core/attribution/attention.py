"""Attention-based methods: what the model looks at (not additive, not contrastive)."""

from __future__ import annotations

import torch

from explorer.core.attribution.problem import MethodResult, Problem
from explorer.core.member import plain_model


@torch.no_grad()
def attentions(problem: Problem) -> tuple[torch.Tensor, ...]:
    model = problem.member.model
    ids = problem.ids.unsqueeze(0).to(problem.member.device)  # (1, seq)
    try:  # the weights are all it needs: logits at one position, not (seq, vocab)
        out = model(input_ids=ids, output_attentions=True, logits_to_keep=1)
    except TypeError:  # a model class without `logits_to_keep`
        out = model(input_ids=ids, output_attentions=True)
    label = problem.member.ref.label
    if not hasattr(out, "attentions"):  # a state-space model (Mamba): no attention anywhere
        raise ValueError(
            f"method: {label} has no attention weights to show: a {type(plain_model(model)).__name__} "
            "is not built from attention; use a gradient method or occlusion"
        )
    if not out.attentions or out.attentions[0] is None:
        raise ValueError(f"method: {label} returns no attention weights (load it with attn_implementation='eager')")
    return tuple(a[0].float().cpu() for a in out.attentions)  # each (heads, seq, seq)


def attention(problem: Problem) -> MethodResult:
    """Last layer's attention, mean over heads, from the position that predicts each target."""
    last = attentions(problem)[-1].mean(0)  # (seq, seq)
    return MethodResult(last[problem.positions - 1])


def attention_rollout(problem: Problem) -> MethodResult:
    """Abnar & Zuidema (2020): head-mean attention plus identity, renormalised, multiplied
    through the layers."""
    rollout = None
    for layer in attentions(problem):
        a = layer.mean(0)  # (seq, seq)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[0])
        a = a / a.sum(-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return MethodResult(rollout[problem.positions - 1])
