"""Reductions over the vocabulary in bounded memory.

A next-token distribution is a row of `vocab` floats: 49k for SmolLM2, 150k–262k for Qwen2.5,
Llama 3 and Gemma 3. Whatever holds many such rows at once — every sample of a sampling step,
every block of a layer lens, every position of a response under two models — grows as
rows × vocab, and the temporaries of a softmax or a logsumexp multiply that: at 262k a
(64, 24, vocab) float32 tensor is 1.6 GB before its first copy. Every such reduction here goes
through `over_rows`, which runs it on a slice of rows at a time, so one slice holds at most
`CHUNK_ELEMENTS` floats per tensor whatever the vocabulary; the result is the same as on all
rows at once (each row is reduced on its own).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

CHUNK_ELEMENTS = 2**22  # floats of one slice of rows (16 MiB in float32); tests shrink it


def rows_per_chunk(width: int) -> int:
    """Rows of `width` floats that one slice holds."""
    return max(1, CHUNK_ELEMENTS // max(1, width))


def over_rows(fn: Callable[..., torch.Tensor | tuple], *tensors: torch.Tensor, lead: int | None = None,
              width: int | None = None) -> torch.Tensor | tuple:  # fmt: skip
    """`fn(*slices)` over slices of rows, the results concatenated as if `fn` ran on all rows.

    The tensors share their first `lead` dimensions (default: all but the last), which are
    flattened into rows; `width` (default: the last dimension of the first tensor) is the floats
    a row costs. `fn` returns one tensor or a tuple of tensors, each with the slice's rows
    first; they come back with the leading shape restored."""
    lead = tensors[0].dim() - 1 if lead is None else lead
    shape = tensors[0].shape[:lead]
    flat = [t.reshape(-1, *t.shape[lead:]) for t in tensors]  # (rows, …) each
    step = rows_per_chunk(width or tensors[0].shape[-1])
    n = flat[0].shape[0]
    parts = [fn(*(t[i : i + step] for t in flat)) for i in range(0, n, step)] or [fn(*flat)]
    if isinstance(parts[0], torch.Tensor):
        return _joined([p for p in parts], shape)
    return tuple(_joined([p[k] for p in parts], shape) for k in range(len(parts[0])))


def _joined(parts: list[torch.Tensor], shape: torch.Size) -> torch.Tensor:
    out = torch.cat(parts) if len(parts) > 1 else parts[0]
    return out.reshape(*shape, *out.shape[1:])


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p of `ids` (…,) under `logits` (…, vocab), without a log-softmaxed copy."""
    return over_rows(_token_logprobs, logits, ids)


def _token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    logits = logits.float()  # (rows, vocab)
    return logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def candidate_logprobs(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """log p of candidates `index` (…, K) under `logits` (…, vocab): (…, K)."""
    return over_rows(_candidate_logprobs, logits, index.to(logits.device))


def _candidate_logprobs(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    logits = logits.float()  # (rows, vocab)
    return logits.gather(-1, index) - torch.logsumexp(logits, dim=-1, keepdim=True)


def logprob_and_entropy(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p of `ids` (…,) and the entropy (nats) of each distribution, from logits (…, vocab):
    one exponential per entry serves both."""
    return over_rows(_logprob_and_entropy, logits, ids)


def _logprob_and_entropy(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.float()  # (rows, vocab)
    top = logits.amax(-1, keepdim=True)  # (rows, 1)
    shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    shifted = logits - shift  # (rows, vocab)
    e = shifted.exp()
    total = e.sum(-1)  # (rows,)
    shifted.clamp_(min=torch.finfo(shifted.dtype).min)  # −inf (filtered): finite, and its e is 0
    entropy = total.log() - torch.linalg.vecdot(e, shifted) / total  # log Σe − Σ p·(logit − shift)
    picked = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - (shift.squeeze(-1) + total.log())
    return picked, entropy.clamp_min(0)


def kl_js(logp: torch.Tensor, logq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(p‖q) and JS(p, q) per row of two (…, vocab) log-distributions.

    Entries where the two agree exactly contribute exactly 0, so a model compared with itself
    scores 0, not rounding noise."""
    return over_rows(_kl_js, logp, logq)


def _kl_js(logp: torch.Tensor, logq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = logp == logq  # (rows, vocab)
    p, q = logp.exp(), logq.exp()
    kl = torch.where(same, 0.0, p * (logp - logq)).nan_to_num().sum(-1)  # (rows,)
    logm = torch.logaddexp(logp, logq) - math.log(2)
    js_terms = 0.5 * p * (logp - logm) + 0.5 * q * (logq - logm)
    js = torch.where(same, 0.0, js_terms).nan_to_num().sum(-1)  # (rows,)
    return kl.clamp_min(0), js.clamp_min(0)
