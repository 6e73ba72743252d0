"""Attribution across the family: which source tokens drive each response token, per model.

The same (prompt, response) text is teacher-forced through every chosen model so the matrices line
up. Targets are the response tokens; sources are every earlier token (prompt and response).

Speed is the point where peers are slow: they attribute one target token at a time. Here
- gradient methods take one forward pass and a batched vector–Jacobian product over all targets
  (`torch.autograd.grad(..., is_grads_batched=True)`);
- integrated gradients evaluate all interpolation points in one batch, with Gauss–Legendre
  nodes, and an adaptive mode that picks the fewest steps whose completeness gap is within a
  tolerance;
- occlusion (and `adaptation`) run every occluded sequence in one batched teacher-forced pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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


def target_scores(
    logits: torch.Tensor, problem: Problem, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """log p(target) — or log p(target) − log p(foil) — for every target, from logits of
    (batch, seq, vocab). Returns (batch, targets); `rows` picks one target per batch row.

    Only the positions that predict a target are normalised, so memory scales with the number
    of targets, not the sequence length."""
    pred = problem.positions - 1  # the position that predicts each target
    tgt = problem.target_ids
    foils = torch.tensor(problem.foils) if problem.foils is not None else None
    if rows is not None:  # one target per row
        batch = torch.arange(len(rows))
        logp = torch.log_softmax(logits[batch, pred[rows]].float(), dim=-1)  # (batch, vocab)
        out = logp[batch, tgt[rows]]
        return out - logp[batch, foils[rows]] if foils is not None else out
    logp = torch.log_softmax(logits[:, pred].float(), dim=-1)  # (batch, targets, vocab)
    idx = torch.arange(len(pred))
    out = logp[:, idx, tgt]  # (batch, targets)
    return out - logp[:, idx, foils] if foils is not None else out


def embed(problem: Problem) -> torch.Tensor:
    """Input embeddings (1, seq, dim), detached."""
    layer = problem.loaded.model.get_input_embeddings()
    return layer(problem.ids.unsqueeze(0).to(problem.loaded.device)).detach().float()


def forward_embeds(problem: Problem, embeds: torch.Tensor) -> torch.Tensor:
    """Logits (batch, seq, vocab) from input embeddings (batch, seq, dim)."""
    model = problem.loaded.model
    dtype = model.get_input_embeddings().weight.dtype
    return model(inputs_embeds=embeds.to(dtype)).logits


def causal_mask(problem: Problem, seq: int) -> torch.Tensor:
    """(targets, seq) True where a source can influence a target (it comes before it)."""
    return torch.arange(seq).unsqueeze(0) < problem.positions.unsqueeze(1)


# --- gradient methods ---------------------------------------------------------------------------


MAX_ELEMENTS = 50_000_000  # bound on batch × targets × seq × vocab held by one backward


def target_gradients(problem: Problem, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of every target score w.r.t. the input embeddings, for every row of `embeds`
    (batch, seq, dim): returns (targets, batch, seq, dim) and the scores (batch, targets).

    One forward pass and batched vector–Jacobian products over the targets, in chunks of
    targets small enough to bound memory on large vocabularies."""
    embeds = embeds.detach().requires_grad_(True)
    scores = target_scores(forward_embeds(problem, embeds), problem)  # (batch, targets)
    n = scores.shape[1]
    vocab = problem.loaded.model.get_output_embeddings().weight.shape[0]
    per_target = embeds.shape[0] * embeds.shape[1] * vocab
    chunk = max(1, min(n, MAX_ELEMENTS // per_target))
    total = scores.sum(0)  # (targets,): the VJP with basis vectors gives each target's gradient
    eye = torch.eye(n)
    grads = []
    for start in range(0, n, chunk):
        keep = start + chunk < n
        try:
            (g,) = torch.autograd.grad(
                total,
                embeds,
                grad_outputs=eye[start : start + chunk],
                is_grads_batched=True,
                retain_graph=keep,
            )
        except RuntimeError:  # an op without a batching rule: one backward per target
            g = torch.stack(
                [
                    torch.autograd.grad(total[i], embeds, retain_graph=True)[0]
                    for i in range(start, min(n, start + chunk))
                ]
            )
        grads.append(g.float())
    return torch.cat(grads), scores.detach()  # (targets, batch, seq, dim), (batch, targets)


def saliency(problem: Problem) -> MethodResult:
    """L2 norm of the gradient of each target w.r.t. each source embedding."""
    grads, _ = target_gradients(problem, embed(problem))
    return MethodResult(grads[:, 0].norm(dim=-1))  # (targets, seq)


def grad_x_input(problem: Problem) -> MethodResult:
    """Gradient · input embedding, summed over the embedding dimension."""
    x = embed(problem)
    grads, _ = target_gradients(problem, x)
    return MethodResult((grads[:, 0] * x[0]).sum(-1))  # (targets, seq)


def baseline_embeds(problem: Problem, baseline: str) -> torch.Tensor:
    """(1, seq, dim) baseline: zeros, or every token replaced by `eos`, or by `pad` (eos when the
    tokenizer has no pad token).

    Note: models with RMSNorm (Llama and most current LMs) are singular at the zero embedding, so
    paths that start at or near zero need many steps; the adaptive mode finds how many."""
    if baseline == "zero":
        return torch.zeros_like(embed(problem))
    if baseline in ("pad", "eos"):
        tok = problem.loaded.tokenizer
        token = (
            tok.pad_token_id
            if baseline == "pad" and tok.pad_token_id is not None
            else tok.eos_token_id
        )
        ids = torch.full_like(problem.ids, token)
        layer = problem.loaded.model.get_input_embeddings()
        return layer(ids.unsqueeze(0).to(problem.loaded.device)).detach().float()
    if baseline == "mean":
        return mean_embedding_baseline(problem)
    raise ValueError(f"baseline: one of zero, pad, eos, mean; got {baseline!r}")


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
    """Nodes and weights on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return torch.tensor((nodes + 1) / 2, dtype=torch.float32), torch.tensor(
        weights / 2, dtype=torch.float32
    )


def ig_at(
    problem: Problem, x: torch.Tensor, x0: torch.Tensor, n_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG scores (targets, seq) and completeness gaps (targets,) with `n_steps` nodes."""
    alphas, weights = gauss_legendre(n_steps)
    vocab = problem.loaded.model.get_output_embeddings().weight.shape[0]
    chunk = max(1, min(64, MAX_ELEMENTS // (x.shape[1] * vocab)))  # interpolation points per pass
    total = None
    for start in range(0, n_steps, chunk):
        a = alphas[start : start + chunk].view(-1, 1, 1)  # (k, 1, 1)
        path = x0 + a * (x - x0)  # (k, seq, dim)
        grads, _ = target_gradients(problem, path)  # (targets, k, seq, dim)
        part = torch.einsum("k,tksd->tsd", weights[start : start + chunk], grads)
        total = part if total is None else total + part
    scores = (total * (x - x0)[0]).sum(-1)  # (targets, seq)
    with torch.no_grad():
        ends = target_scores(forward_embeds(problem, torch.cat([x, x0])), problem)  # (2, targets)
    delta = ends[0] - ends[1]  # (targets,) f(x) - f(baseline)
    # Relative to the larger of |Δ| and the attributions' total mass: when the baseline happens
    # to give the target almost the same score (Δ ≈ 0), a bare ratio to Δ would be meaningless.
    scale = torch.maximum(delta.abs(), scores.abs().sum(-1)).clamp_min(1e-6)
    gap = (scores.sum(-1) - delta).abs() / scale
    return scores, gap


def integrated_gradients(
    problem: Problem,
    n_steps: int | str = "adaptive",
    baseline: str = "eos",
    tolerance: float = 0.01,
    max_steps: int = 1024,
) -> MethodResult:
    """Integrated gradients along the straight path from a baseline embedding.

    `n_steps="adaptive"` (the default) doubles Gauss–Legendre steps from 8 until every target's
    completeness gap |Σ attributions − Δ| / max(|Δ|, Σ|attributions|), Δ = f(x) − f(baseline),
    is within `tolerance`, or `max_steps` is reached; the gaps and steps used are reported."""
    x, x0 = embed(problem), baseline_embeds(problem, baseline)
    if n_steps == "adaptive":
        steps = 8
        while True:
            scores, gap = ig_at(problem, x, x0, steps)
            if float(gap.max()) <= tolerance or steps >= max_steps:
                break
            steps *= 2
    else:
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps: a positive integer or 'adaptive', got {n_steps!r}")
        steps = n_steps
        scores, gap = ig_at(problem, x, x0, steps)
    return MethodResult(
        scores, {"completeness_gap": gap.tolist(), "n_steps": steps, "baseline": baseline}
    )


# --- forward-only methods -----------------------------------------------------------------------


def replacement_id(problem: Problem, replacement: str | int) -> int:
    tok = problem.loaded.tokenizer
    if isinstance(replacement, int):
        return replacement
    ids = {
        "pad": tok.pad_token_id,
        "unk": tok.unk_token_id,
        "eos": tok.eos_token_id,
        "bos": tok.bos_token_id,
    }
    if replacement not in ids or ids[replacement] is None:
        raise ValueError(
            f"replacement: one of pad, unk, eos, bos (that the tokenizer has) or a token id, got {replacement!r}"
        )
    return int(ids[replacement])


@torch.no_grad()
def occlusion_deltas(
    problem: Problem, replacement: str | int = "pad", batch_size: int = 64
) -> torch.Tensor:
    """(targets, seq): score(original) − score(source replaced), all occlusions batched."""
    seq = problem.ids.shape[0]
    last = int(problem.positions.max())  # only sources before the last target can matter
    ids = problem.ids[: last + 1]  # (last + 1,)
    variants = ids.repeat(last, 1)  # (sources, last + 1): row s has source s replaced
    variants[torch.arange(last), torch.arange(last)] = replacement_id(problem, replacement)
    rows = torch.cat([ids.unsqueeze(0), variants])  # row 0 is the original
    model = problem.loaded.model
    vocab = model.get_output_embeddings().weight.shape[0]
    batch_size = max(1, min(batch_size, MAX_ELEMENTS // (rows.shape[1] * vocab)))
    outs = []
    for start in range(0, rows.shape[0], batch_size):
        chunk = rows[start : start + batch_size].to(problem.loaded.device)
        outs.append(target_scores(model(input_ids=chunk).logits, problem).cpu())
    scores = torch.cat(outs)  # (1 + sources, targets)
    deltas = torch.zeros((len(problem.targets), seq))
    deltas[:, :last] = (scores[:1] - scores[1:]).T
    return deltas * causal_mask(problem, seq)  # exact zeros for sources after each target


def occlusion(problem: Problem, replacement: str | int = "pad") -> MethodResult:
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
    loaded: LoadedModel, prompt: str, response: str, chat: str, targets, foil
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
    return Problem(loaded, torch.tensor(prefix + cont), len(prefix), chosen, foils)


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
    **options: Any,
) -> Attribution:
    """Attribute every response token (or `targets`) to every earlier token, in each model.

    `foil` makes gradient and occlusion methods contrastive: they explain log p(target) −
    log p(foil), "this token instead of that one". `adaptation` attributes the difference the
    adaptation made, log p_model − log p_base, by occlusion (exactly 0 for the base itself)."""
    check_prompt(prompt)
    if not isinstance(response, str):
        raise TypeError(f"response: expected a string, got {type(response).__name__}")
    if method not in _METHODS:
        raise ValueError(f"method: one of {', '.join(_METHODS)}, got {method!r}")
    fn, info = _METHODS[method]
    if foil is not None and info["needs"] == "attentions":
        raise ValueError(f"foil: {method} is not contrastive; use a gradient or occlusion method")
    labels = models or family.labels
    frames, extras = [], {}
    base_problem = None
    if method == "adaptation":
        if not family.shared_tokenizer:
            raise ValueError(
                "method: adaptation compares token by token and needs a shared tokenizer"
            )
        base_problem = build_problem(
            family.load(family.base.label), prompt, response, chat, targets, foil
        )
        base_deltas = occlusion_deltas(base_problem, options.get("replacement", "pad"))
    for label in labels:
        problem = build_problem(family.load(label), prompt, response, chat, targets, foil)
        if method == "adaptation":
            own = (
                base_deltas
                if label == family.base.label
                else occlusion_deltas(problem, options.get("replacement", "pad"))
            )
            result = MethodResult(own - base_deltas, {"against": family.base.label})
        else:
            with torch.enable_grad():
                result = fn(problem, **options)
        frames.append(_frame(label, method, problem, result.scores))
        extras[label] = result.extra
    df = pd.concat(frames, ignore_index=True)
    meta = {"prompt": prompt, "response": response, "method": method, "options": options,
            "foil": foil, "additive": info["additive"], "extra": extras, "versions": library_versions()}  # fmt: skip
    return Attribution(df=df, meta=meta)


def _frame(label: str, method: str, problem: Problem, scores: torch.Tensor) -> pd.DataFrame:
    tok = problem.loaded.tokenizer
    tokens = tok.convert_ids_to_tokens(problem.ids.tolist())
    seq = len(tokens)
    t_idx, s_idx = np.meshgrid(np.arange(len(problem.targets)), np.arange(seq), indexing="ij")
    t_idx, s_idx = t_idx.ravel(), s_idx.ravel()
    target_pos = np.array(problem.targets)[t_idx]
    tokens_arr = np.array(tokens, dtype=object)
    return pd.DataFrame(
        {
            "model": label,
            "method": method,
            "target_pos": target_pos,
            "target_token": tokens_arr[problem.start + target_pos],
            "source_pos": s_idx,
            "source_token": tokens_arr[s_idx],
            "source_part": np.where(s_idx < problem.start, "prompt", "response"),
            "score": scores.detach().float().cpu().numpy().ravel().astype(float),
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
