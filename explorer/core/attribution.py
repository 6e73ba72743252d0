"""Attribution across the family: which source tokens drive each response token, per model.

The same (prompt, response) text is teacher-forced through every chosen model so the matrices line
up. Targets are the response tokens; sources are every earlier token (prompt and response).

Speed is the point where peers are slow: they attribute one target token at a time. Here
- gradient methods take one forward pass and a batched vector–Jacobian product over all targets
  (`torch.autograd.grad(..., is_grads_batched=True)`);
- integrated gradients evaluate all interpolation points in one batch (Gauss–Legendre nodes for
  a fixed step count), and an adaptive mode refines each target with nested Clenshaw–Curtis
  rules until its attributions are complete and have stopped changing;
- occlusion (and `adaptation`) run every occluded sequence in one batched teacher-forced pass.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from explorer.core.family import Family
from explorer.core.results import ResultFile, library_versions
from explorer.core.sampling import SampleSet, check_prompt, model_input
from explorer.core.store import LoadedModel


@dataclass
class Problem:
    """One model's view of the text: ids (seq,), where the response starts, targets, foils."""

    loaded: LoadedModel
    ids: torch.Tensor  # (seq,)
    start: int  # index of the first response token in `ids`
    targets: list[int]  # response indices (0-based) to explain
    foils: list[int] | None = None  # contrastive foil token id per target
    sources: str = "all"  # "all": every earlier token; "prompt": prompt tokens only (as peers do)

    @property
    def n_sources(self) -> int:
        """Source positions reported: the prompt's, or the whole sequence's."""
        return self.start if self.sources == "prompt" else int(self.ids.shape[0])

    @property
    def positions(self) -> torch.Tensor:
        """Positions in `ids` of the target tokens (seq index)."""
        return torch.tensor([self.start + t for t in self.targets])

    @property
    def target_ids(self) -> torch.Tensor:
        return self.ids[self.positions]


@dataclass
class MethodResult:
    scores: torch.Tensor  # (targets, seq): attribution of each target to each source position
    extra: dict[str, Any] = field(default_factory=dict)


MethodFn = Callable[..., MethodResult]
_METHODS: dict[str, tuple[MethodFn, dict[str, Any]]] = {}


def register_method(name: str, fn: MethodFn, *, additive: bool, needs: str = "gradients") -> None:
    """Add an attribution method: `fn(problem, **kwargs) -> MethodResult`.

    `additive` scores sum over sources (summed when aggregating words); others are maxed.
    `needs` says what the method needs from a model: `gradients`, `attentions` or `forward`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: a method needs a name, got {name!r}")
    _METHODS[name] = (fn, {"additive": additive, "needs": needs})


def list_methods() -> pd.DataFrame:
    return pd.DataFrame([{"method": k, **info} for k, (_, info) in _METHODS.items()])


# --- target functions ---------------------------------------------------------------------------


def target_scores(logits: torch.Tensor, problem: Problem) -> torch.Tensor:
    """log p(target) — or log p(target) − log p(foil) — for every target, from full logits
    (batch, seq, vocab). Returns (batch, targets)."""
    return scores_at_targets(logits[:, problem.positions - 1], problem)


def scores_at_targets(logits: torch.Tensor, problem: Problem, which=None) -> torch.Tensor:
    """Target scores (batch, targets) from logits already taken at the positions that predict
    the targets (batch, targets, vocab); `which` selects a subset of the targets."""
    which = torch.arange(len(problem.targets)) if which is None else which
    idx = torch.arange(len(which))
    logp = torch.log_softmax(logits.float(), dim=-1)  # (batch, targets, vocab)
    out = logp[:, idx, problem.target_ids[which]]
    if problem.foils is None:
        return out
    return out - logp[:, idx, torch.tensor(problem.foils)[which]]


def predicting_logits(model, positions: torch.Tensor, **inputs) -> torch.Tensor:
    """Logits (batch, len(positions), vocab) at the given positions only.

    The sequence is cut after the last position (later tokens cannot matter to a causal model)
    and the output head runs only where asked (`logits_to_keep`), so a 50k vocabulary costs
    per target, not per sequence position."""
    end = int(positions.max()) + 1
    inputs = {k: v[:, :end] for k, v in inputs.items()}
    try:
        return model(**inputs, logits_to_keep=positions).logits
    except TypeError:  # a model class without `logits_to_keep`
        return model(**inputs).logits[:, positions]


def embed(problem: Problem) -> torch.Tensor:
    """Input embeddings (1, seq, dim), detached."""
    layer = problem.loaded.model.get_input_embeddings()
    return layer(problem.ids.unsqueeze(0).to(problem.loaded.device)).detach().float()


def forward_embeds(problem: Problem, embeds: torch.Tensor, which=None) -> torch.Tensor:
    """Target scores (batch, targets) from input embeddings (batch, seq, dim); `which`
    selects a subset of the targets (only their predicting positions are computed)."""
    model = problem.loaded.model
    dtype = model.get_input_embeddings().weight.dtype
    which = torch.arange(len(problem.targets)) if which is None else which
    pred = problem.positions[which] - 1  # (targets,)
    logits = predicting_logits(model, pred, inputs_embeds=embeds.to(dtype))
    return scores_at_targets(logits, problem, which)


def causal_mask(problem: Problem, seq: int) -> torch.Tensor:
    """(targets, seq) True where a source can influence a target (it comes before it)."""
    return torch.arange(seq).unsqueeze(0) < problem.positions.unsqueeze(1)


# --- gradient methods ---------------------------------------------------------------------------


MAX_ELEMENTS = 50_000_000  # bound on batch × targets × seq × (dim + vocab) held by one backward
TARGET_GROUP = 8  # targets per forward pass at least: later groups need a longer prefix
GROUP_ROWS = 256  # …and up to this many (targets × rows) per group: one row (grad×input) → 32+


def target_gradients(problem: Problem, embeds: torch.Tensor) -> torch.Tensor:
    """Gradients of every target score w.r.t. the input embeddings, for every row of `embeds`
    (batch, seq, dim): returns (targets, batch, seq, dim).

    Targets go in groups of consecutive positions, and the sequence goes through the model in
    matching chunks with a key–value cache: each chunk's forward pass covers only its new
    positions, and the group's batched vector–Jacobian products run back through exactly the
    prefix it can see (causality: a target's score depends on nothing after the position that
    predicts it). Backward cost thus follows each target's own prefix, as a per-target loop's
    would, while the forward pass is done once for all targets."""
    model = problem.loaded.model
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
            total = scores_at_targets(logits, problem, which).sum(0)  # (group,)
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
    vocab = problem.loaded.model.get_output_embeddings().weight.shape[0]
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


def saliency(problem: Problem) -> MethodResult:
    """L2 norm of the gradient of each target w.r.t. each source embedding."""
    grads = target_gradients(problem, embed(problem))
    return MethodResult(grads[:, 0].norm(dim=-1))  # (targets, seq)


def grad_x_input(problem: Problem) -> MethodResult:
    """Gradient · input embedding, summed over the embedding dimension."""
    x = embed(problem)
    grads = target_gradients(problem, x)
    return MethodResult((grads[:, 0] * x[0]).sum(-1))  # (targets, seq)


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
    if isinstance(baseline, int) and not isinstance(baseline, bool):
        return token_embeds(problem, baseline)
    if baseline == "zero":
        return torch.zeros_like(embed(problem))
    if baseline in ("pad", "eos"):
        tok = problem.loaded.tokenizer
        token = (
            tok.pad_token_id
            if baseline == "pad" and tok.pad_token_id is not None
            else tok.eos_token_id
        )
        return token_embeds(problem, token)
    if baseline == "mean":
        return mean_embedding_baseline(problem)
    raise ValueError(f"baseline: one of zero, pad, eos, mean or a token id; got {baseline!r}")


def token_embeds(problem: Problem, token: int) -> torch.Tensor:
    """(1, seq, dim): every position holding the embedding of `token`."""
    layer = problem.loaded.model.get_input_embeddings()
    if not 0 <= token < layer.weight.shape[0]:
        raise ValueError(f"baseline: token id {token} is outside the vocabulary")
    ids = torch.full_like(problem.ids, token)
    return layer(ids.unsqueeze(0).to(problem.loaded.device)).detach().float()


def mean_embedding_baseline(problem: Problem) -> torch.Tensor:
    """(1, seq, dim): the vocabulary's mean embedding, scaled at each position to the norm of
    that position's own embedding. The straight path then keeps a healthy norm, avoiding the
    RMSNorm singularity near zero that makes IG from a zero or pad baseline need hundreds of
    steps."""
    weight = problem.loaded.model.get_input_embeddings().weight.detach().float()  # (vocab, dim)
    special = set(problem.loaded.tokenizer.all_special_ids)
    keep = torch.tensor([i for i in range(weight.shape[0]) if i not in special])
    mean = weight[keep].mean(0)  # (dim,)
    x = embed(problem)  # (1, seq, dim)
    scale = x.norm(dim=-1, keepdim=True) / mean.norm().clamp_min(1e-12)  # (1, seq, 1)
    return mean.view(1, 1, -1) * scale


def gauss_legendre(n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights on [0, 1]: the fixed-step rule (Captum's `gausslegendre`)."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return torch.tensor((nodes + 1) / 2, dtype=torch.float32), torch.tensor(
        weights / 2, dtype=torch.float32
    )


def clenshaw_curtis(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n + 1 Clenshaw–Curtis nodes (1 − cos(kπ/n)) / 2, k = 0…n, and weights on [0, 1].

    The adaptive mode's rule: doubling n keeps every old node (they are the even k of the new
    rule), so refining a target costs only its new nodes, where Gauss–Legendre would recompute
    all of them; and it exactly integrates polynomials of degree n."""
    k = np.arange(n + 1)
    theta = k * np.pi / n
    w = np.ones(n + 1)
    for j in range(1, n // 2 + 1):
        w -= (1.0 if 2 * j == n else 2.0) / (4 * j * j - 1) * np.cos(2 * j * theta)
    w *= np.where((k == 0) | (k == n), 1.0, 2.0) / n
    return torch.tensor((1 - np.cos(theta)) / 2, dtype=torch.float32), torch.tensor(
        w / 2, dtype=torch.float32
    )


GAP_FLOOR = 0.05  # nats


def path_contributions(
    problem: Problem, x: torch.Tensor, x0: torch.Tensor, alphas: torch.Tensor
) -> torch.Tensor:
    """∇f(path(α)) · (x − x0) for every target, node α and source: (targets, nodes, seq).

    IG with any quadrature rule is the weighted sum of these over the nodes. Nodes go in
    chunks that bound the memory of one backward pass."""
    vocab = problem.loaded.model.get_output_embeddings().weight.shape[0]
    per_point = x.shape[1] * (x.shape[2] + vocab) * min(TARGET_GROUP, len(problem.targets))
    chunk = max(1, min(64, MAX_ELEMENTS // per_point))  # interpolation points per pass
    parts = []
    for start in range(0, len(alphas), chunk):
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
        sub = _sub_problem(problem, todo)
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


def _sub_problem(problem: Problem, which: list[int]) -> Problem:
    foils = [problem.foils[i] for i in which] if problem.foils is not None else None
    return replace(problem, targets=[problem.targets[i] for i in which], foils=foils)


def _interleave(old: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
    """Nodes of the doubled rule (targets, 2m − 1, seq): the m old ones at even places, the
    m − 1 fresh ones (targets, m − 1, seq) between them."""
    out = torch.empty((old.shape[0], 2 * old.shape[1] - 1, old.shape[2]))
    out[:, ::2], out[:, 1::2] = old, fresh
    return out


# --- forward-only methods -----------------------------------------------------------------------


def replacement_id(problem: Problem, replacement: str | int | None) -> int:
    """The token that stands in for an occluded one: a token id, a special token by name, or
    (None) the first of pad, unk, eos, bos that the tokenizer has."""
    tok = problem.loaded.tokenizer
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


@torch.no_grad()
def occlusion_deltas(
    problem: Problem, replacement: str | int | None = None, batch_size: int = 64
) -> torch.Tensor:
    """(targets, seq): score(original) − score(source replaced), all occlusions batched."""
    seq = problem.ids.shape[0]
    last = int(problem.positions.max())  # only sources before the last target can matter
    n = min(last, problem.n_sources)  # sources to occlude
    ids = problem.ids[: last + 1]  # (last + 1,)
    variants = ids.repeat(n, 1)  # (sources, last + 1): row s has source s replaced
    variants[torch.arange(n), torch.arange(n)] = replacement_id(problem, replacement)
    rows = torch.cat([ids.unsqueeze(0), variants])  # row 0 is the original
    if problem.loaded.model is None:  # served by an engine
        scores = served_target_scores(problem, rows)
    else:
        scores = local_target_scores(problem, rows, batch_size)  # (1 + sources, targets)
    deltas = torch.zeros((len(problem.targets), seq))
    deltas[:, :n] = (scores[:1] - scores[1:]).T
    return deltas * causal_mask(problem, seq)  # exact zeros for sources after each target


def local_target_scores(problem: Problem, rows: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Target scores (rows, targets) for rows of ids (rows, len), batched forward passes."""
    model = problem.loaded.model
    config = model.config.get_text_config()
    width = len(problem.targets) * model.get_output_embeddings().weight.shape[0]
    width += rows.shape[1] * getattr(config, "hidden_size", 1024) * 8
    batch_size = max(1, min(batch_size, MAX_ELEMENTS // width))
    outs = []
    for start in range(0, rows.shape[0], batch_size):
        chunk = rows[start : start + batch_size].to(problem.loaded.device)
        logits = predicting_logits(model, problem.positions - 1, input_ids=chunk)
        outs.append(scores_at_targets(logits, problem).cpu())
    return torch.cat(outs)


def served_target_scores(problem: Problem, rows: torch.Tensor) -> torch.Tensor:
    """Target scores (rows, targets) through the engine's teacher-forced scoring."""
    from explorer.core.remote import score_ids

    if problem.foils is not None:
        raise ValueError(
            "foil: contrastive scores need whole distributions; served models report top-k only"
        )
    scored = torch.tensor(score_ids(problem.loaded, rows.tolist()))  # (rows, len - 1): token 1..
    return scored[:, problem.positions - 1]  # log p(target) per row


def occlusion(problem: Problem, replacement: str | int | None = None) -> MethodResult:
    """Leave-one-token-out: change in the target's log-prob when a source token is replaced."""
    return MethodResult(occlusion_deltas(problem, replacement), {"replacement": replacement})


@torch.no_grad()
def attentions(problem: Problem) -> tuple[torch.Tensor, ...]:
    out = problem.loaded.model(
        input_ids=problem.ids.unsqueeze(0).to(problem.loaded.device), output_attentions=True
    )
    if not out.attentions or out.attentions[0] is None:
        raise ValueError(
            f"method: {problem.loaded.ref.label} returns no attention weights (load it with attn_implementation='eager')"
        )
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


register_method("saliency", saliency, additive=False)
register_method("grad_x_input", grad_x_input, additive=True)
register_method("integrated_gradients", integrated_gradients, additive=True)
register_method("occlusion", occlusion, additive=True, needs="forward")
register_method("attention", attention, additive=False, needs="attentions")
register_method("attention_rollout", attention_rollout, additive=False, needs="attentions")
register_method("adaptation", occlusion, additive=True, needs="forward")  # see _adaptation


# --- the public entry point ---------------------------------------------------------------------


def build_problem(
    loaded: LoadedModel, prompt: str, response: str, chat: str, targets, foil, sources="all"
) -> Problem:
    tok = loaded.tokenizer
    prefix = tok(model_input(loaded, prompt, chat), add_special_tokens=True)["input_ids"]
    cont = tok(response, add_special_tokens=False)["input_ids"]
    if not cont:
        raise ValueError("response: is empty; give the text to explain")
    if len(prefix) + len(cont) > loaded.context_length:
        raise ValueError(
            f"response: prompt and response are {len(prefix) + len(cont)} tokens, over {loaded.ref.label}'s context"
        )
    chosen = list(range(len(cont))) if targets is None else _targets(targets, len(cont))
    foils = None
    if foil is not None:
        foil_id = tok.convert_tokens_to_ids(foil) if isinstance(foil, str) else int(foil)
        if foil_id is None or foil_id == tok.unk_token_id and foil != tok.unk_token:
            raise ValueError(f"foil: {foil!r} is not a token of {loaded.ref.label}'s vocabulary")
        foils = [foil_id] * len(chosen)
    if sources not in ("all", "prompt"):
        raise ValueError(f"sources: 'all' or 'prompt', got {sources!r}")
    return Problem(loaded, torch.tensor(prefix + cont), len(prefix), chosen, foils, sources)


def _targets(targets, n: int) -> list[int]:
    chosen = list(range(n))[targets] if isinstance(targets, slice) else list(targets)
    if not chosen or any(not isinstance(t, int) or not 0 <= t < n for t in chosen):
        raise ValueError(f"targets: response token indices in [0, {n}), got {targets!r}")
    return chosen


def attribute(
    family: Family,
    prompt: str,
    response: str,
    method: str = "integrated_gradients",
    models: list[str] | None = None,
    targets: slice | list[int] | None = None,
    foil: str | int | None = None,
    chat: str = "never",
    sources: str = "all",
    align: str = "auto",
    **options: Any,
) -> Attribution:
    """Attribute every response token (or `targets`) to every earlier token, in each model.

    `sources="prompt"` attributes to prompt tokens only, as Captum's and inseq's LLM APIs do:
    cheaper, and integrated gradients then interpolate the prompt alone (the response keeps its
    embeddings), which is what those peers compute.

    `foil` makes gradient and occlusion methods contrastive: they explain log p(target) −
    log p(foil), "this token instead of that one". `adaptation` attributes the difference the
    adaptation made, log p_model − log p_base, by occlusion (exactly 0 for the base itself).

    `align="words"` (automatic when the chosen models tokenize differently) maps every model's
    tokens to the words of the text, so the matrices line up: scores are summed over a word's
    tokens (additive methods) or maxed (norm-based ones); `target_pos`/`source_pos` are then
    word indices. `align="tokens"` keeps each model's own tokens."""
    check_prompt(prompt)
    if not isinstance(response, str):
        raise TypeError(f"response: expected a string, got {type(response).__name__}")
    if method not in _METHODS:
        raise ValueError(f"method: one of {', '.join(_METHODS)}, got {method!r}")
    fn, info = _METHODS[method]
    if foil is not None and info["needs"] == "attentions":
        raise ValueError(f"foil: {method} is not contrastive; use a gradient or occlusion method")
    if family.remote and info["needs"] != "forward":
        raise ValueError(
            f"method: {method} needs the models' weights ({info['needs']}), and this family is "
            f"served by {family.base.server}; use occlusion or adaptation, or local folders"
        )
    labels = models or family.labels
    words = _use_words(family, labels, align, targets, method)
    frames, extras = [], {}
    base_problem = None
    if method == "adaptation":
        base_problem = build_problem(
            family.load(family.base.label), prompt, response, chat, targets, foil, sources
        )
        base_deltas = occlusion_deltas(base_problem, options.get("replacement"))
    for label in labels:
        problem = build_problem(family.load(label), prompt, response, chat, targets, foil, sources)
        if method == "adaptation":
            own = (
                base_deltas
                if label == family.base.label
                else occlusion_deltas(problem, options.get("replacement"))
            )
            result = MethodResult(own - base_deltas, {"against": family.base.label})
        else:
            with torch.enable_grad():
                result = fn(problem, **options)
        if words:
            frames.append(
                _word_frame(
                    label, method, problem, result.scores, prompt, response, chat, info["additive"]
                )
            )
        else:
            frames.append(_frame(label, method, problem, result.scores))
        extras[label] = result.extra
    df = pd.concat(frames, ignore_index=True)
    meta = {"prompt": prompt, "response": response, "method": method, "options": options,
            "foil": foil, "sources": sources, "additive": info["additive"], "extra": extras,
            "align": "words" if words else "tokens", "versions": library_versions()}  # fmt: skip
    return Attribution(df=df, meta=meta)


def _use_words(family: Family, labels: list[str], align: str, targets, method: str) -> bool:
    if align not in ("auto", "tokens", "words"):
        raise ValueError(f"align: 'auto', 'tokens' or 'words', got {align!r}")
    shared = family.subset([m for m in labels if m != family.base.label]).shared_tokenizer
    words = align == "words" or (align == "auto" and not shared)
    if words and targets is not None:
        raise ValueError(
            "targets: word-aligned attribution explains every response word; leave targets out"
        )
    if method == "adaptation" and (words or not family.shared_tokenizer):
        raise ValueError("method: adaptation compares token by token and needs a shared tokenizer")
    return words


def _word_frame(
    label, method, problem: Problem, scores, prompt, response, chat, additive
) -> pd.DataFrame:
    """The model's token matrix mapped onto the words of the text (see explorer.core.alignment)."""
    from explorer.core.alignment import aggregate, token_units, word_units

    loaded = problem.loaded
    units = token_units(
        loaded.tokenizer, model_input(loaded, prompt, chat), prompt, response, problem.start
    )
    words = word_units(prompt, response)
    seq = problem.n_sources
    m = aggregate(scores[:, :seq], units[problem.start + np.array(problem.targets)], units[:seq],
                  len(words.names), additive)  # fmt: skip
    first = words.first_response
    n_sources = first if problem.sources == "prompt" else len(words.names)
    names = np.array(words.names, dtype=object)
    return _grid_frame(label, method, m[first:, :n_sources], np.arange(len(names) - first),
                       names[first:], names[:n_sources], first)  # fmt: skip


def _frame(label: str, method: str, problem: Problem, scores: torch.Tensor) -> pd.DataFrame:
    tokens = np.array(
        problem.loaded.tokenizer.convert_ids_to_tokens(problem.ids.tolist()), dtype=object
    )
    seq = problem.n_sources
    matrix = scores[:, :seq].detach().float().cpu().numpy()  # (targets, sources)
    target_pos = np.array(problem.targets)
    return _grid_frame(label, method, matrix, target_pos, tokens[problem.start + target_pos],
                       tokens[:seq], problem.start)  # fmt: skip


def _grid_frame(
    label, method, matrix, target_pos, target_names, source_names, n_prompt
) -> pd.DataFrame:
    """One row per (target, source) cell of `matrix` (targets, sources): the `Attribution.df`
    layout; sources before `n_prompt` are the prompt's."""
    t_idx, s_idx = np.meshgrid(
        np.arange(len(target_pos)), np.arange(len(source_names)), indexing="ij"
    )
    t_idx, s_idx = t_idx.ravel(), s_idx.ravel()
    return pd.DataFrame(
        {
            "model": label,
            "method": method,
            "target_pos": np.asarray(target_pos)[t_idx],
            "target_token": target_names[t_idx],
            "source_pos": s_idx,
            "source_token": source_names[s_idx],
            "source_part": np.where(s_idx < n_prompt, "prompt", "response"),
            "score": matrix[t_idx, s_idx].astype(float),
        }
    )


@dataclass
class Attribution:
    """Scores per (model, target token, source token), with the text and settings that made them."""

    df: pd.DataFrame
    meta: dict[str, Any]

    KIND = "Attribution"

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.df["model"]))

    def matrix(self, model: str, normalise: str | None = None) -> pd.DataFrame:
        """Targets × sources for one model; `normalise` = None, "l1" (each target's absolute
        scores sum to 1) or "max" (each target's largest absolute score is 1)."""
        if model not in self.models:
            raise ValueError(
                f"model: {model!r} is not in this attribution ({', '.join(self.models)})"
            )
        df = self.df[self.df["model"] == model]
        m = df.pivot(index="target_pos", columns="source_pos", values="score")
        if normalise == "l1":
            m = m.div(m.abs().sum(axis=1).replace(0, 1), axis=0)
        elif normalise == "max":
            m = m.div(m.abs().max(axis=1).replace(0, 1), axis=0)
        elif normalise is not None:
            raise ValueError(f"normalise: None, 'l1' or 'max', got {normalise!r}")
        return m

    def sequence(self) -> pd.DataFrame:
        """Attribution of the whole response to each prompt token: per (model, source), the sum
        over targets (additive methods) or the max (norm-based methods)."""
        prompt = self.df[self.df["source_part"] == "prompt"]
        how = "sum" if self.meta.get("additive", True) else "max"
        out = prompt.groupby(["model", "source_pos", "source_token"], sort=False)["score"].agg(how)
        return out.reset_index()

    def diff(self, base: str | None = None) -> pd.DataFrame:
        """Each model minus the base on the same (target, source) cells."""
        base = base or self.models[0]
        ref = self.df[self.df["model"] == base].set_index(["target_pos", "source_pos"])["score"]
        rows = []
        for model in self.models:
            own = self.df[self.df["model"] == model].set_index(["target_pos", "source_pos"])
            d = own.assign(score=own["score"] - ref.reindex(own.index)).reset_index()
            rows.append(d)
        return pd.concat(rows, ignore_index=True)

    def rank_correlation(self, base: str | None = None) -> pd.DataFrame:
        """Spearman correlation of each model's sequence-level scores with the base's."""
        seq = self.sequence()
        base = base or self.models[0]
        ref = seq[seq["model"] == base].set_index("source_pos")["score"]
        rows = []
        for model in self.models:
            own = seq[seq["model"] == model].set_index("source_pos")["score"]
            rho = own.rank().corr(ref.reindex(own.index).rank())
            rows.append({"model": model, "spearman": float(rho) if pd.notna(rho) else float("nan")})
        return pd.DataFrame(rows)

    def save(self, path) -> None:
        ResultFile(self.KIND).save(path, tables={"df": self.df}, meta=self.meta)

    @classmethod
    def load(cls, path) -> Attribution:
        tables, meta = ResultFile(cls.KIND).load(path)
        return cls(df=tables["df"], meta=meta)


def attribute_samples(
    family: Family,
    samples: SampleSet,
    method: str = "grad_x_input",
    models: list[str] | None = None,
    max_samples: int | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Attribute every sample of each model under that model and summarise per prompt token:
    mean and spread of the sequence-level score across the model's own answers."""
    rows = []
    for model in models or samples.models:
        group = samples.df[samples.df["model"] == model]
        texts = [t for t in group["text"] if t.strip()][:max_samples]
        for i, text in enumerate(texts):
            attr = attribute(
                family,
                samples.prompt,
                text,
                method=method,
                models=[model],
                chat=samples.params.chat,
                **options,
            )
            rows.append(attr.sequence().assign(sample=i))
    if not rows:
        return pd.DataFrame(columns=["model", "source_pos", "source_token", "mean", "sd", "n"])
    long = pd.concat(rows, ignore_index=True)
    out = long.groupby(["model", "source_pos", "source_token"], sort=False)["score"].agg(
        ["mean", "std", "count"]
    )
    return out.reset_index().rename(columns={"std": "sd", "count": "n"}).fillna({"sd": 0.0})
