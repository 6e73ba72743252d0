"""Gradients of every target score w.r.t. the input embeddings, in one forward pass.

Peers attribute one target token at a time. Here the sequence goes through the model once,
fed in chunks with a key–value cache, and each group of targets runs its batched
vector–Jacobian products (`is_grads_batched=True`) back through exactly the prefix it can see.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from explorer.core.attribution.problem import Problem, score_logits
from explorer.core.teacher import cache_keyword, embeds_input, predicting_logits

MAX_ELEMENTS = 50_000_000  # bound on batch × targets × (seq × dim + vocab) held by one backward
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
    logits = predicting_logits(model, pred, **embeds_input(model, embeds.to(dtype), problem.ids[: embeds.shape[1]]))
    return score_logits(logits, problem, which)


def target_gradients(problem: Problem, embeds: torch.Tensor) -> torch.Tensor:
    """Gradients of every target score w.r.t. the input embeddings, for every row of `embeds`
    (batch, seq, dim): returns (targets, batch, seq, dim).

    Targets go in groups of consecutive positions, and the sequence goes through the model in
    matching chunks with a key–value cache: each chunk's forward pass covers only its new
    positions, and the group's batched vector–Jacobian products run back through exactly the
    prefix it can see (causality: a target's score depends on nothing after the position that
    predicts it). Backward cost thus follows each target's own prefix, as a per-target loop's
    would, while the forward pass is done once for all targets.

    The output head is cut out of the batched backward (`HeadCut`): each target's score depends
    on the final hidden state at its own position only, so one plain backward through the head
    gives every target's gradient there, and only the model's body runs batched."""
    model = problem.member.model
    n, (batch, seq, dim) = len(problem.targets), embeds.shape
    out = torch.zeros((n, batch, seq, dim), device=embeds.device)
    pred = problem.positions - 1  # (targets,)
    keyword = cache_keyword(model)
    groups = position_groups(pred, target_group_size(problem, embeds))
    leaves, cache, start = [], None, 0
    with frozen(model), HeadCut(model) as cut:
        for number, which in enumerate(groups):
            stop = int(pred[which].max()) + 1
            if keyword:  # the next chunk (batch, stop − start, dim), after the cached ones
                leaves.append(embeds[:, start:stop].detach().requires_grad_(True))
                logits, cache = chunk_logits(model, leaves[-1], problem.ids[start:stop], pred[which] - start, keyword, cache)
                scores = score_logits(logits, problem, which)  # (batch, group)
                start = stop
            else:  # a model without a cache: the group's own pass over its prefix
                leaves = [embeds[:, :stop].detach().requires_grad_(True)]
                scores = forward_embeds(problem, leaves[0], which)  # (batch, group)
            later = keyword is not None and number < len(groups) - 1  # later groups reuse the graph
            grads = cut.vjp_each(scores, leaves, keep_graph=later)
            out[which, :, :stop] = torch.cat(grads, dim=-2)  # (group, batch, stop, dim)
    return out  # (targets, batch, seq, dim)


class HeadCut:
    """Splits the backward pass at the output head's input.

    A pre-hook hands the head a detached copy of the final hidden states (batch, group, hidden),
    one row per target. Then ∂score_i/∂h_i for every target comes from one plain backward of the
    summed scores through the head, and the batched VJPs start from there, through the body only:
    with a 49k vocabulary the head's part of a batched backward is (targets × targets × vocab)
    elementwise work, most of it on zeros. Models whose head is not a module called with the
    hidden states fall back to the batched backward through everything."""

    def __init__(self, model) -> None:
        self.head = model.get_output_embeddings()
        self.hidden: torch.Tensor | None = None
        self.leaf: torch.Tensor | None = None

    def __enter__(self) -> HeadCut:
        self.handle = self.head.register_forward_pre_hook(self._cut) if self.head is not None else None
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.handle.remove()

    def _cut(self, module, args):
        self.hidden = args[0]  # (batch, group, hidden), attached to the body's graph
        self.leaf = self.hidden.detach().requires_grad_(True)
        return (self.leaf, *args[1:])

    def vjp_each(self, scores: torch.Tensor, leaves: list[torch.Tensor], keep_graph: bool) -> list[torch.Tensor]:
        """Gradient of each target's score (summed over rows) w.r.t. each leaf: (group, *leaf)."""
        if self.leaf is None or self.leaf.shape[:2] != scores.shape:
            return vjp_each(scores.sum(0), leaves, keep_graph)
        (at_head,) = torch.autograd.grad(scores.sum(), self.leaf)  # (batch, group, hidden)
        k = scores.shape[1]
        basis = at_head.new_zeros((k, *at_head.shape))  # (group, batch, group, hidden)
        basis[torch.arange(k), :, torch.arange(k)] = at_head.transpose(0, 1)
        hidden, self.leaf = self.hidden, None
        grads = torch.autograd.grad(hidden, leaves, basis, retain_graph=keep_graph, is_grads_batched=True)
        return [g.float() for g in grads]


@contextmanager
def frozen(model):
    """Parameters need no gradients while inputs are attributed (7% of the backward on a
    135M-parameter model); their flags are restored afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def target_group_size(problem: Problem, embeds: torch.Tensor) -> int:
    """Predicting positions per group: at least TARGET_GROUP, up to GROUP_ROWS rows in all and
    half the targets (measured fastest: 16 of 32 targets for one row on fable, 12 of 24 on
    SmolLM2-135M; 8 for IG's 32 rows), within memory: a group holds its logits (batch, group,
    vocab) — only at its own positions — and its batched gradients (group, batch, seq, dim)."""
    batch, seq, dim = embeds.shape
    halves = math.ceil(len(problem.targets) / 2)  # two groups beat one: later targets see more
    size = max(TARGET_GROUP, min(GROUP_ROWS // batch, halves))
    return max(1, min(size, MAX_ELEMENTS // (batch * target_width(problem, seq, dim))))


def target_width(problem: Problem, seq: int, dim: int) -> int:
    """Floats one target of one row holds in a backward pass: its gradient over the sequence
    (seq × dim) and its logits (vocab, at the predicting position only)."""
    return seq * dim + problem.member.model.get_output_embeddings().weight.shape[0]


def position_groups(pred: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Target indices grouped by `size` consecutive distinct predicting positions, in order of
    position; targets that share a position share a group."""
    positions = sorted(set(pred.tolist()))
    return [
        torch.nonzero(torch.isin(pred, torch.tensor(positions[k : k + size]))).flatten()
        for k in range(0, len(positions), size)
    ]


def chunk_logits(model, chunk: torch.Tensor, ids: torch.Tensor, positions: torch.Tensor, keyword: str, cache):
    """Logits (batch, len(positions), vocab) at `positions` of `chunk` (batch, len, dim), the
    embeddings of `ids` (len,) continuing the sequence held in `cache` (None for the first
    chunk), and the cache extended by the chunk."""
    dtype = model.get_input_embeddings().weight.dtype
    out = model(**embeds_input(model, chunk.to(dtype), ids), use_cache=True, logits_to_keep=positions,
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
            total, leaves, torch.eye(len(total), dtype=total.dtype, device=total.device), retain_graph=keep_graph,
            is_grads_batched=True,
        )
    except RuntimeError:
        rows = [torch.autograd.grad(t, leaves, retain_graph=True) for t in total]
        grads = [torch.stack(g) for g in zip(*rows, strict=True)]
    return [g.float() for g in grads]
