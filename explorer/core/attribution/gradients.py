"""Gradients of every target score w.r.t. the input embeddings, in one forward pass.

Peers attribute one target token at a time. Here the sequence goes through the model once,
fed in chunks with a key–value cache, and each group of targets runs its batched
vector–Jacobian products (`is_grads_batched=True`) back through exactly the prefix it can see.
"""

from __future__ import annotations

import inspect

import torch

from explorer.core.attribution.problem import Problem, score_logits
from explorer.core.local import predicting_logits

MAX_ELEMENTS = 50_000_000  # bound on batch × targets × seq × (dim + vocab) held by one backward
TARGET_GROUP = 8  # targets per forward pass at least: later groups need a longer prefix
GROUP_ROWS = 256  # …and up to this many (targets × rows) per group: one row (grad×input) → 32+


def embed(problem: Problem) -> torch.Tensor:
    """Input embeddings (1, seq, dim), detached."""
    model = problem.member.model
    layer = model.get_input_embeddings()
    return layer(problem.ids.unsqueeze(0).to(model.device)).detach().float()


def forward_embeds(problem: Problem, embeds: torch.Tensor, which=None) -> torch.Tensor:
    """Target scores (batch, targets) from input embeddings (batch, seq, dim); `which`
    selects a subset of the targets (only their predicting positions are computed)."""
    model = problem.member.model
    dtype = model.get_input_embeddings().weight.dtype
    which = torch.arange(len(problem.targets)) if which is None else which
    pred = problem.positions[which] - 1  # (targets,)
    logits = predicting_logits(model, pred, inputs_embeds=embeds.to(dtype))
    return score_logits(logits, problem, which)


def target_gradients(problem: Problem, embeds: torch.Tensor) -> torch.Tensor:
    """Gradients of every target score w.r.t. the input embeddings, for every row of `embeds`
    (batch, seq, dim): returns (targets, batch, seq, dim).

    Targets go in groups of consecutive positions, and the sequence goes through the model in
    matching chunks with a key–value cache: each chunk's forward pass covers only its new
    positions, and the group's batched vector–Jacobian products run back through exactly the
    prefix it can see (causality: a target's score depends on nothing after the position that
    predicts it). Backward cost thus follows each target's own prefix, as a per-target loop's
    would, while the forward pass is done once for all targets."""
    model = problem.member.model
    n, (batch, seq, dim) = len(problem.targets), embeds.shape
    out = torch.zeros((n, batch, seq, dim))
    pred = problem.positions - 1  # (targets,)
    keyword = cache_keyword(model)
    groups = position_groups(pred, target_group_size(problem, embeds))
    leaves, cache, start = [], None, 0
    for number, which in enumerate(groups):
        stop = int(pred[which].max()) + 1
        if keyword:  # the next chunk (batch, stop − start, dim), after the cached ones
            leaves.append(embeds[:, start:stop].detach().requires_grad_(True))
            logits, cache = chunk_logits(model, leaves[-1], pred[which] - start, keyword, cache)
            total = score_logits(logits, problem, which).sum(0)  # (group,)
            start = stop
        else:  # a model without a cache: the group's own pass over its prefix
            leaves = [embeds[:, :stop].detach().requires_grad_(True)]
            total = forward_embeds(problem, leaves[0], which).sum(0)  # (group,)
        later = keyword is not None and number < len(groups) - 1  # later groups reuse the graph
        grads = vjp_each(total, leaves, keep_graph=later)
        out[which, :, :stop] = torch.cat(grads, dim=-2)  # (group, batch, stop, dim)
    return out  # (targets, batch, seq, dim)


def target_group_size(problem: Problem, embeds: torch.Tensor) -> int:
    """Predicting positions per group: at least TARGET_GROUP, up to GROUP_ROWS rows in all
    (measured fastest on fable: all 32 for one row, 8 for IG's 32 rows), within memory."""
    batch, seq, dim = embeds.shape
    vocab = problem.member.model.get_output_embeddings().weight.shape[0]
    size = max(TARGET_GROUP, GROUP_ROWS // batch)
    return max(1, min(size, MAX_ELEMENTS // (batch * seq * (dim + vocab))))


def position_groups(pred: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Target indices grouped by `size` consecutive distinct predicting positions, in order of
    position; targets that share a position share a group."""
    positions = sorted(set(pred.tolist()))
    return [
        torch.nonzero(torch.isin(pred, torch.tensor(positions[k : k + size]))).flatten()
        for k in range(0, len(positions), size)
    ]


def cache_keyword(model) -> str | None:
    """The name the model's forward takes its key–value cache by (`cache` from transformers
    5.x, `past_key_values` before), or None when it takes none or cannot keep only some logits."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft
    params = inspect.signature(inner.forward).parameters
    if "logits_to_keep" not in params:
        return None
    return next((k for k in ("cache", "past_key_values") if k in params), None)


def chunk_logits(model, chunk: torch.Tensor, positions: torch.Tensor, keyword: str, cache):
    """Logits (batch, len(positions), vocab) at `positions` of `chunk` (batch, len, dim), the
    continuation of the sequence held in `cache` (None for the first chunk), and the cache
    extended by the chunk."""
    dtype = model.get_input_embeddings().weight.dtype
    out = model(inputs_embeds=chunk.to(dtype), use_cache=True, logits_to_keep=positions,
                **{keyword: cache})  # fmt: skip
    return out.logits, out[keyword]  # the output names the cache as the input does


def vjp_each(
    total: torch.Tensor, leaves: list[torch.Tensor], keep_graph: bool = False
) -> list[torch.Tensor]:
    """Gradient of each entry of `total` (k,) w.r.t. each leaf: (k, *leaf.shape) per leaf.
    Batched VJP with basis vectors; one backward per entry for ops that have no batching rule.
    `keep_graph` keeps the graph for later groups that run back through the same chunks."""
    try:
        grads = torch.autograd.grad(
            total, leaves, torch.eye(len(total)), retain_graph=keep_graph, is_grads_batched=True
        )
    except RuntimeError:
        rows = [torch.autograd.grad(t, leaves, retain_graph=True) for t in total]
        grads = [torch.stack(g) for g in zip(*rows, strict=True)]
    return [g.float() for g in grads]
