"""Weight spectra: the shape of each module's change, beyond its size.

Per descendant and weight matrix, the singular values of ΔW = W_descendant − W_base, its stable
rank ‖ΔW‖²_F / σ₁² and effective rank exp(H(σ / Σσ)) (Roy & Vetterli 2007), and intruder
dimensions (Shuttleworth et al. 2025, "LoRA vs full fine-tuning: an illusion of equivalence"):
of the tuned matrix W_base + ΔW's top `top` left singular vectors, how many have no |cosine|
of `epsilon` or more with any of W_base's — high-ranking directions new to the pre-trained
matrix. (Tested on ΔW's own directions instead, nearly every direction of every change on the
zoo counts as new — a random direction in 128 dimensions meets no basis vector above 0.3 — so
the figure would say nothing; the tuned matrix's directions are what the paper tests.) A LoRA module's
spectrum comes from its factors exactly, without forming ΔW: with B = Q_B R_B and Aᵀ = Q_A R_A
(thin QR), s·B·A = Q_B (s R_B R_Aᵀ) Q_Aᵀ, so the singular values and left vectors of ΔW are
those of an r × r matrix, rotated by Q_B; a rank-r adapter has at most r of them.
"""

from __future__ import annotations

import math
import time
import weakref

import pandas as pd
import torch

from explorer.core.family import Family
from explorer.core.layers.anatomy import anatomy
from explorer.core.layers.weights import (
    _BLOCK,
    lora_factors,
    lora_layers,
    plain_weights,
    tail_names,
    where,
)
from explorer.core.member import Member
from explorer.core.params import CancelToken, ProgressFn, check_cancel
from explorer.core.threads import fair_share

COLUMNS = ["model", "layer", "block", "module", "kind", "rank_bound", "sigma", "stable_rank",
           "effective_rank", "intruders", "intruder_share", "top"]  # fmt: skip
TOP = 10  # directions of ΔW tested for intruders, and singular values kept
EPSILON = 0.5  # a direction whose best |cosine| with W's singular vectors is below this is new
ZERO = 1e-6  # singular values below this share of the largest count as zero


def weight_spectra(
    family: Family, models: list[str] | None = None, top: int = TOP, epsilon: float = EPSILON,
    progress: ProgressFn | None = None, cancel: CancelToken | None = None,
) -> pd.DataFrame:  # fmt: skip
    """One row per descendant and changed weight matrix: `sigma` (ΔW's largest `top` singular
    values), `stable_rank`, `effective_rank`, `intruders` (how many of the tuned matrix's top
    `top` directions are new to W_base) and `intruder_share`, `kind` (`full` or `lora`, whose
    `rank_bound` is its rank). Matrices that did not move are left out; members of another shape are named in
    `df.attrs["notes"]`."""
    base = family.load(family.base.label)
    body = anatomy(base)
    n_blocks, tail = len(body.blocks), tail_names(base, body)
    reference = plain_weights(base)
    bases: dict[str, torch.Tensor] = {}  # W_base's left singular vectors, once per matrix
    frames, notes = [], []
    wanted = [m for m in (models or family.labels) if m != family.base.label]
    for i, label in enumerate(wanted):
        check_cancel(cancel)
        member = family.load(label)
        rows = cached(member, base, (top, epsilon), lambda m=member: member_spectra(m, reference, bases, (n_blocks, tail), top, epsilon))
        if isinstance(rows, str):
            notes.append(f"{label}: {rows}")
        else:
            frames.append(pd.DataFrame(rows, columns=COLUMNS[1:]).assign(model=label))
        if progress:
            progress(label, i + 1, len(wanted))
    df = pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)
    df.attrs["notes"] = notes
    return df


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {key: (base ref, rows)}


def cached(member: Member, base: Member, options: tuple, compute) -> list[dict] | str:
    """`compute()` once per pair of loaded models (weights do not change while loaded: the
    Layers tab asks again for every response and site)."""
    if not member.has_weights:
        return compute()
    kept = _CACHE.setdefault(member.model, {})
    key = (id(base.model), *options)
    if key in kept and kept[key][0]() is base.model:
        return kept[key][1]
    with fair_share([member.model]):  # small SVDs: one thread each is fastest on a tiny model
        rows = compute()
    kept[key] = (weakref.ref(base.model), rows)
    return rows


def member_spectra(member: Member, reference: dict, bases: dict, layout: tuple[int, set[str]], top: int, epsilon: float) -> list[dict] | str:
    """The rows of one descendant, or why its weights cannot be compared with the base's."""
    if not member.has_weights:
        return "is served: its weights are not here"
    own = plain_weights(member)
    if set(own) != set(reference) or any(own[n].shape != reference[n].shape for n in own):
        return "its weights do not match the base's one for one (another shape)"
    adapted = lora_layers(member)
    rows = []
    for name, weight in own.items():
        if weight.dim() != 2:
            continue
        dense = weight.float() - reference[name].float()  # (out, in); 0 where an adapter froze it
        factors = lora_product(adapted[name]) if name in adapted and not dense.any() else None
        if factors is None and not dense.any():
            continue
        sigma = low_rank_svd(*factors) if factors else torch.linalg.svdvals(dense)
        if name not in bases:
            bases[name] = torch.linalg.svd(reference[name].float(), full_matrices=False)[0]  # (out, k)
        tuned = reference[name].float() + (factors[0] @ factors[1] if factors else dense)  # (out, in)
        new = intruder_count(tuned, bases[name], top, epsilon)
        layer, module = where(name, *layout)
        rows.append(spectrum_row(layer, layout[0], module, sigma, factors, new, top, min(dense.shape)))
    return rows


def intruder_count(tuned: torch.Tensor, basis: torch.Tensor, top: int, epsilon: float) -> int:
    """How many of `tuned`'s top left singular vectors have no |cosine| ≥ `epsilon` with any
    column of `basis` (W_base's left singular vectors)."""
    left = torch.linalg.svd(tuned, full_matrices=False)[0][:, :top]  # (out, top)
    return int(((basis.T @ left).abs().amax(0) < epsilon).sum())


def spectrum_row(layer, n_blocks, module, sigma, factors, intruders, top, full_rank) -> dict:
    kept = sigma[sigma > ZERO * max(float(sigma[0]), 1e-30)] if len(sigma) else sigma
    k = min(top, full_rank)
    return {"layer": layer, "block": "embed" if layer < 0 else ("head" if layer == n_blocks else str(layer)),
            "module": module, "kind": "lora" if factors else "full",
            "rank_bound": factors[0].shape[1] if factors else full_rank,
            "sigma": kept[:top].tolist(), "stable_rank": stable_rank(kept), "effective_rank": effective_rank(kept),
            "intruders": intruders, "intruder_share": intruders / k,
            "top": float(kept[0]) if len(kept) else 0.0}  # fmt: skip


def stable_rank(sigma: torch.Tensor) -> float:
    """‖ΔW‖²_F / σ₁²: how many directions carry the change's energy (1 for a rank-1 change)."""
    return float((sigma**2).sum() / sigma[0] ** 2) if len(sigma) and sigma[0] > 0 else 0.0


def effective_rank(sigma: torch.Tensor) -> float:
    """exp of the entropy of σ / Σσ (Roy & Vetterli 2007): at most the number of nonzero σ."""
    if not len(sigma) or sigma.sum() <= 0:
        return 0.0
    p = sigma / sigma.sum()
    p = p[p > 0]
    return float(math.exp(float(-(p * p.log()).sum())))


def lora_product(module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A LoRA layer's change as two factors, left (out, r) @ right (r, in), over its active
    adapters (scales folded into the left factor; an embedding's change, and a Conv1D's, is
    (B A)ᵀ, as their weights are stored)."""
    lefts, rights = [], []
    for adapter in module.active_adapters:
        a, b = lora_factors(module, adapter)  # (r, in), (out, r); for an embedding (r, vocab), (dim, r)
        if a is None:
            continue
        scale = float(module.scaling[adapter])
        turned = getattr(module, "fan_in_fan_out", False)  # GPT-2's Conv1D stores its weight (in, out)
        if turned or (hasattr(module, "lora_embedding_A") and adapter in module.lora_embedding_A):
            lefts.append(scale * a.T)  # (vocab, r) or (in, r)
            rights.append(b.T)  # (r, dim) or (r, out)
        else:
            lefts.append(scale * b)
            rights.append(a)
    if not lefts:
        return None
    return torch.cat(lefts, dim=1), torch.cat(rights, dim=0)


def low_rank_svd(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Singular values (r,) of left @ right, (out, r) @ (r, in), from r × r work: with thin
    QRs left = Q_l R_l and rightᵀ = Q_r R_r, the product is Q_l (R_l R_rᵀ) Q_rᵀ, and Q_l, Q_r
    have orthonormal columns."""
    _, r_l = torch.linalg.qr(left)  # (r, r)
    _, r_r = torch.linalg.qr(right.T)  # (r, r)
    return torch.linalg.svdvals(r_l @ r_r.T)  # (r,)


_SVD_SECONDS: dict[int, float] = {}


def spectra_seconds(base: Member, member: Member) -> float:
    """About how long `weight_spectra` takes for one descendant: its changed matrices (a LoRA's
    adapted ones; for a full fine-tune, all) × the SVDs each needs (W, the tuned matrix, and ΔW's
    values for a full change) × one SVD of the base's largest block matrix, timed once."""
    matrices = [w for n, w in plain_weights(base).items() if w.dim() == 2 and _BLOCK.search(n)]
    if not matrices or not member.has_weights:
        return 0.0
    key = id(base.model)
    if key not in _SVD_SECONDS:
        largest = max(matrices, key=lambda w: w.numel()).float()
        with fair_share([base.model]):
            began = time.perf_counter()
            torch.linalg.svd(largest, full_matrices=False)
            _SVD_SECONDS[key] = time.perf_counter() - began
    adapted = len(lora_layers(member))
    return _SVD_SECONDS[key] * (2 * adapted if adapted else 3 * len(matrices))
