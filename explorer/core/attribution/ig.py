"""Integrated gradients: fixed Gauss–Legendre steps (Captum's rule) or an adaptive mode that
refines each target with nested Clenshaw–Curtis rules until its attributions are complete and
have stopped changing."""

from __future__ import annotations

import torch

from explorer.core.attribution.baselines import baseline_embeds
from explorer.core.attribution.gradients import (
    MAX_ELEMENTS,
    TARGET_GROUP,
    embed,
    forward_embeds,
    target_gradients,
)
from explorer.core.attribution.problem import MethodResult, Problem
from explorer.core.attribution.quadrature import clenshaw_curtis, gauss_legendre
from explorer.core.params import check_cancel

GAP_FLOOR = 0.05  # nats


def path_contributions(
    problem: Problem, x: torch.Tensor, x0: torch.Tensor, alphas: torch.Tensor
) -> torch.Tensor:
    """∇f(path(α)) · (x − x0) for every target, node α and source: (targets, nodes, seq).

    IG with any quadrature rule is the weighted sum of these over the nodes. Nodes go in
    chunks that bound the memory of one backward pass."""
    vocab = problem.member.model.get_output_embeddings().weight.shape[0]
    per_point = x.shape[1] * (x.shape[2] + vocab) * min(TARGET_GROUP, len(problem.targets))
    chunk = max(1, min(64, MAX_ELEMENTS // per_point))  # interpolation points per pass
    parts = []
    for start in range(0, len(alphas), chunk):
        check_cancel(problem.cancel)
        a = alphas[start : start + chunk].view(-1, 1, 1)  # (k, 1, 1)
        grads = target_gradients(problem, x0 + a * (x - x0))  # (targets, k, seq, dim)
        parts.append(torch.einsum("tksd,sd->tks", grads, (x - x0)[0]))
    return torch.cat(parts, dim=1)  # (targets, nodes, seq)


def score_change(problem: Problem, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Δ = f(x) − f(baseline) per target (targets,): what complete attributions sum to."""
    with torch.no_grad():
        ends = forward_embeds(problem, torch.cat([x, x0]))  # (2, targets)
    return ends[0] - ends[1]


def relative_to(scores: torch.Tensor, delta: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """`amount` (targets,) relative to the larger of |Δ| and the attributions' total mass.

    When the baseline happens to give the target almost the same score (Δ ≈ 0), a bare ratio
    to Δ would be meaningless. A floor of GAP_FLOOR nats keeps float32 noise on near-certain
    targets (scores ≈ −1e-5 all along the path) from reading as a large relative amount."""
    return amount / torch.maximum(delta.abs(), scores.abs().sum(-1)).clamp_min(GAP_FLOOR)


def completeness_gap(scores: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """|Σ attributions − Δ|, relative (targets,): IG's own check of its quadrature."""
    return relative_to(scores, delta, (scores.sum(-1) - delta).abs())


def ig_at(
    problem: Problem, x: torch.Tensor, x0: torch.Tensor, n_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG scores (targets, seq) and completeness gaps (targets,) with `n_steps` Gauss–Legendre
    nodes."""
    alphas, weights = gauss_legendre(n_steps)
    scores = torch.einsum("k,tks->ts", weights, path_contributions(problem, x, x0, alphas))
    return scores, completeness_gap(scores, score_change(problem, x, x0))


def integrated_gradients(
    problem: Problem,
    n_steps: int | str = "adaptive",
    baseline: str | int = "eos",
    tolerance: float = 0.01,
    convergence: float = 0.05,
    max_steps: int = 1024,
) -> MethodResult:
    """Integrated gradients along the straight path from a baseline embedding.

    `n_steps` an integer: that many Gauss–Legendre nodes (equal to Captum's `gausslegendre`).
    `n_steps="adaptive"` (the default): nested Clenshaw–Curtis rules of 4, 8, 16… intervals
    (up to `max_steps`), refined per target until both
    - its completeness gap |Σ attributions − Δ| / max(|Δ|, Σ|attributions|), Δ = f(x) −
      f(baseline), is within `tolerance`, and
    - its attributions changed by at most `convergence` (L1, on the same scale) since the
      previous rule — a sum can be complete while single tokens are still far off: on the fable
      benchmark, stopping on the gap alone left a target's row 15% (L1) from its converged
      values; with this check the largest error there is 1.6%.
    Only targets not yet done get new nodes (9 to 1025 on the fable models; `max_steps` caps
    the intervals). The gaps, the changes and the nodes each target used are reported."""
    x, x0 = embed(problem), baseline_embeds(problem, baseline)
    if n_steps == "adaptive":
        for name, value in (("tolerance", tolerance), ("convergence", convergence)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}: a positive number, got {value!r}")
        if not isinstance(max_steps, int) or max_steps < 8:  # two rules: a change to measure
            raise ValueError(f"max_steps: an integer of at least 8, got {max_steps!r}")
        scores, gap, change, used = adaptive_ig(problem, x, x0, tolerance, convergence, max_steps)
        extra = {"rule": "clenshaw-curtis", "change": change.tolist()}
    else:
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps: a positive integer or 'adaptive', got {n_steps!r}")
        scores, gap = ig_at(problem, x, x0, n_steps)
        used, extra = [n_steps] * len(problem.targets), {"rule": "gauss-legendre"}
    extra |= {"completeness_gap": gap.tolist(), "n_steps": max(used), "steps_per_target": used, "baseline": baseline}  # fmt: skip
    return MethodResult(scores, extra)


def adaptive_ig(
    problem: Problem,
    x: torch.Tensor,
    x0: torch.Tensor,
    tolerance: float,
    convergence: float,
    max_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Scores (targets, seq), completeness gaps and changes (targets,), and nodes used per
    target. Each round doubles the intervals of the targets not yet done, evaluating only the
    new (odd) nodes; the contributions of a target's old nodes are kept until it is done."""
    n, seq = len(problem.targets), x.shape[1]
    delta = score_change(problem, x, x0)  # (targets,)
    scores, used = torch.zeros((n, seq)), [0] * n
    gap, change = torch.full((n,), float("inf")), torch.full((n,), float("inf"))
    todo, intervals = list(range(n)), 4
    held = None  # (len(todo), nodes so far, seq) in node order
    while todo:
        sub = problem.subset(todo)
        alphas, weights = clenshaw_curtis(intervals)
        first_round = held is None
        fresh = path_contributions(sub, x, x0, alphas if first_round else alphas[1::2])
        held = fresh if first_round else _interleave(held, fresh)  # (len(todo), intervals + 1, seq)
        new = torch.einsum("k,tks->ts", weights, held)  # (len(todo), seq)
        if intervals > 4:
            change[todo] = relative_to(new, delta[todo], (new - scores[todo]).abs().sum(-1))
        scores[todo], gap[todo] = new, completeness_gap(new, delta[todo])
        for i in todo:
            used[i] = intervals + 1
        keep = [j for j, i in enumerate(todo) if gap[i] > tolerance or change[i] > convergence]
        if 2 * intervals > max_steps:
            break
        todo, held, intervals = [todo[j] for j in keep], held[keep], 2 * intervals
    return scores, gap, change, used


def _interleave(old: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """Nodes of the doubled rule (targets, 2m − 1, seq): the m old ones at even places, the
    m − 1 fresh ones (targets, m − 1, seq) between them."""
    out = torch.empty((old.shape[0], 2 * old.shape[1] - 1, old.shape[2]))
    out[:, ::2], out[:, 1::2] = old, fresh
    return out
