"""Integrated gradients along sequential paths: one token at a time, so every leg is exact.

On a real language model the straight path from a baseline to the text is rough: every token's
embedding moves at once, through points that are no token, and the target swings by several
nats along the way (on SmolLM2-135M a 24-token response's targets took more than 1000 nodes
each; README, Performance → Attribution). A path that moves one source token at a time, from
its baseline to itself, with the others held still, has a closed form on each leg: summed over
the embedding, the integral of the gradient along a leg is the change of the target across it
(the fundamental theorem of calculus). So the path integral needs no quadrature and has no
error to check.

- Enguehard's sequential IG (2023) gives each token its own path from the text with only that
  token at its baseline: summed over the embedding that is exactly occlusion with the baseline
  token (`occlusion`), and it is not complete (the parts do not add up to the whole change).
- Here the path goes through the tokens in turn — a *staircase* from the baseline to the text,
  each leg revealing one more source token — so the parts add up to f(text) − f(baseline)
  exactly, as on the straight path (Sundararajan et al. 2017 call every such path a path
  method; averaged over all orders it would be the Shapley value). One order favours the tokens
  revealed last, so the path in the text's order and the path in reverse are averaged (the
  antithetic pair of Shapley sampling).

Every leg's end is one row of ids (or of embeddings, for a vector baseline), all rows in
batched forward-only passes that share their common beginnings: about two occlusions' work.
"""

from __future__ import annotations

import torch

from explorer.core.attribution.baselines import baseline_embeds, baseline_token
from explorer.core.attribution.gradients import embed, forward_embeds
from explorer.core.attribution.problem import Problem, causal_mask
from explorer.core.params import check_cancel

EMBED_ROWS = 16  # rows per forward pass when the baseline is a vector (no shared-prefix cache)


def staircase_masks(n: int, reverse: bool) -> torch.Tensor:
    """(n + 1, n) True where a source is real: row j reveals the first j sources (in the text's
    order), or the last j (`reverse`)."""
    j = torch.arange(n + 1).unsqueeze(1)  # (n + 1, 1)
    s = torch.arange(n).unsqueeze(0)  # (1, n)
    return s >= n - j if reverse else s < j


def scores_along(problem: Problem, masks: torch.Tensor, baseline: str | int) -> torch.Tensor:
    """Target scores (rows, targets) of the text with the sources where `masks` (rows, n) is
    False at their baseline."""
    n = masks.shape[1]
    token = baseline_token(problem, baseline)
    if token is not None:  # rows of ids: batched, sharing each row's beginning with the first
        last = int(problem.positions.max())
        rows = problem.ids[: last + 1].repeat(masks.shape[0], 1)  # (rows, last + 1)
        rows[:, :n][~masks] = token
        logp = problem.member.choice_logprobs(rows, problem.positions - 1, problem.choices)
        return problem.target.fn(logp)  # (rows, targets)
    x, x0 = embed(problem), baseline_embeds(problem, baseline)  # (1, seq, dim) each
    out = []
    with torch.no_grad():
        for start in range(0, masks.shape[0], EMBED_ROWS):
            check_cancel(problem.cancel)
            real = masks[start : start + EMBED_ROWS, :, None]  # (b, n, 1)
            rows = x.repeat(real.shape[0], 1, 1)
            rows[:, :n] = torch.where(real, x[:, :n], x0[:, :n])
            out.append(forward_embeds(problem, rows))
    return torch.cat(out)  # (rows, targets)


def sequential_ig(problem: Problem, baseline: str | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (targets, seq) along the staircase paths in both orders, averaged, and Δ =
    f(text) − f(baseline) per target (targets,), which they add up to."""
    seq = problem.ids.shape[0]
    n = min(int(problem.positions.max()), problem.n_sources)  # later sources cannot matter
    scores = torch.zeros((len(problem.targets), seq))
    for reverse in (False, True):
        check_cancel(problem.cancel)
        # rows in the order that lets each share the most with the first: from the text down
        # (the text's order), from the baseline up (reverse)
        masks = staircase_masks(n, reverse)
        f = scores_along(problem, masks if reverse else masks.flip(0), baseline).double()
        f = f if reverse else f.flip(0)  # (n + 1, targets), row j: j sources revealed
        legs = (f[1:] - f[:-1]).T  # (targets, n): leg j reveals one more source
        scores[:, :n] += 0.5 * (legs.flip(-1) if reverse else legs).float()
    delta = (f[-1] - f[0]).float()
    return scores * causal_mask(problem, seq), delta
