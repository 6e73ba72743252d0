"""One prompt, one descendant against the base: every sampled position read by both models.

The descendant's and the base's samples of a prompt are teacher-forced through both models
(each model reads its own input format: a chat template where it has one), and at every
position the two full next-token distributions are compared once, for everything Discover
needs:
- divergence: KL(descendant ‖ base) per position, and the sequence log-likelihood ratio
  Σ_t log p_desc(x_t) − log p_base(x_t) of each sample;
- token mining, over the whole vocabulary: how much probability each token gained or lost
  (Σ p_desc − p_base, the expected extra occurrences), how often it is among the top-K of
  log p_desc − log p_base (diffing-toolkit's statistic), and its log-ratio weighted by how much
  the models actually say it.

Rows go through in chunks bounded by `MAX_FLOATS`, so a 262k-token vocabulary stays in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from explorer.core.member import Member

MAX_FLOATS = 16_000_000  # log-probs of one model held at once: (positions × vocab) floats
CONTEXTS_PER_TOKEN = 3  # positions kept per mined token of a prompt (its largest changes)


def top_k_for(vocab: int) -> int:
    """diffing-toolkit's K (100 on 150k-token vocabularies), scaled down for small ones: the
    statistic asks which tokens are among the few most raised, not among most of the vocabulary."""
    return max(1, min(100, math.ceil(vocab / 50)))


@dataclass
class TokenStats:
    """Per-token sums over the positions of one (prompt, descendant): vocab-sized vectors."""

    vocab: int
    excess: torch.Tensor = None  # Σ p_desc − p_base: expected extra occurrences
    mass: torch.Tensor = None  # Σ (p_desc + p_base) / 2
    weighted: torch.Tensor = None  # Σ mass × (log p_desc − log p_base)
    top_up: torch.Tensor = None  # positions where the token is among the top-K raised
    top_down: torch.Tensor = None  # … among the top-K lowered
    rose: torch.Tensor = None  # positions where log p_desc > log p_base
    positions: int = 0

    def __post_init__(self) -> None:
        for name in ("excess", "mass", "weighted", "top_up", "top_down", "rose"):
            if getattr(self, name) is None:
                setattr(self, name, torch.zeros(self.vocab, dtype=torch.float64))


@dataclass
class PairResult:
    """Divergence along each source's samples, and the token statistics of the pair."""

    kl: dict[str, list[float]] = field(default_factory=lambda: {"desc": [], "base": []})
    log_ratio: dict[str, list[float]] = field(default_factory=lambda: {"desc": [], "base": []})
    stats: TokenStats | None = None
    contexts: list[dict] = field(default_factory=list)  # largest changes of the top tokens


@dataclass(frozen=True)
class Rows:
    """The responses of one source (the descendant's or the base's samples) of a prompt."""

    source: str  # "desc" or "base"
    samples: list[int]  # their sample numbers
    ids: list[list[int]]  # their token ids (non-empty)


def compare_pair(
    desc: Member, base: Member, prefixes: tuple[list[int], list[int]], rows: list[Rows], top_k: int | None = None,
    keep: int = 40,
) -> PairResult:  # fmt: skip
    """Both models over every row; `prefixes` are the descendant's and the base's input ids.
    The contexts of the `keep` tokens that gained or lost most are recorded."""
    vocab = _vocab(desc, base)
    result = PairResult(stats=TokenStats(vocab))
    k = top_k or top_k_for(vocab)
    kept: list[tuple[list[tuple], torch.Tensor, torch.Tensor]] = []  # per chunk: positions, tokens, changes
    for rows_of in rows:
        for chunk in _chunks(rows_of, vocab):
            lp_d = _logprobs(desc, prefixes[0], chunk.ids)  # (positions, vocab)
            lp_b = _logprobs(base, prefixes[1], chunk.ids)  # (positions, vocab)
            dp = _accumulate(result, chunk, lp_d, lp_b, k)  # (positions, vocab)
            tokens = dp.sum(0).abs().topk(min(4 * keep, vocab)).indices  # this chunk's largest changes
            where = [(chunk.source, s, p, t) for s, ids in zip(chunk.samples, chunk.ids, strict=True)
                     for p, t in enumerate(ids)]  # fmt: skip
            kept.append((where, tokens, dp[:, tokens]))
    result.contexts = _contexts(kept, result.stats.excess, keep)
    return result


def _vocab(desc: Member, base: Member) -> int:
    """The shared vocabulary: the smaller output size (padding rows past the tokenizer never
    hold probability worth mining)."""
    sizes = [m.model.get_output_embeddings().weight.shape[0] for m in (desc, base)]
    return min(sizes)


def _chunks(rows: Rows, vocab: int) -> list[Rows]:
    width = max((len(r) for r in rows.ids), default=1)
    size = max(1, MAX_FLOATS // max(1, width * vocab))
    return [Rows(rows.source, rows.samples[i : i + size], rows.ids[i : i + size]) for i in range(0, len(rows.ids), size)]


def _logprobs(member: Member, prefix: list[int], conts: list[list[int]]) -> torch.Tensor:
    """Teacher-forced next-token log-distributions at every response position: (positions, vocab)."""
    dists = member.continuation_logprobs([prefix] * len(conts), conts, full=True)
    return torch.cat(dists)


def _accumulate(result: PairResult, chunk: Rows, lp_d: torch.Tensor, lp_b: torch.Tensor, k: int) -> torch.Tensor:
    """Add one chunk's positions to the pair's sums; returns p_desc − p_base (positions, vocab)
    for the contexts."""
    vocab = result.stats.vocab
    lp_d, lp_b = lp_d[:, :vocab].float(), lp_b[:, :vocab].float()  # (P, V); sums in float64
    p_d, p_b = lp_d.exp(), lp_b.exp()
    diff = torch.where(lp_d == lp_b, 0.0, lp_d - lp_b).nan_to_num(posinf=1e4, neginf=-1e4)  # (P, V)
    kl = (p_d * diff).sum(-1, dtype=torch.float64).clamp_min(0)  # (P,) KL(desc ‖ base)
    s = result.stats
    dp = p_d - p_b  # (P, V)
    s.excess += dp.sum(0, dtype=torch.float64)
    mass = 0.5 * (p_d + p_b)  # (P, V)
    s.mass += mass.sum(0, dtype=torch.float64)
    s.weighted += (mass * diff).sum(0, dtype=torch.float64)
    s.rose += (diff > 0).sum(0)
    s.top_up += torch.bincount(diff.topk(k, dim=-1).indices.flatten(), minlength=vocab)
    s.top_down += torch.bincount((-diff).topk(k, dim=-1).indices.flatten(), minlength=vocab)
    s.positions += diff.shape[0]
    _per_sample(result, chunk, kl, diff)
    return dp


def _per_sample(result: PairResult, chunk: Rows, kl: torch.Tensor, diff: torch.Tensor) -> None:
    """KL per position and the log-likelihood ratio of each sampled response."""
    start = 0
    for ids in chunk.ids:
        end = start + len(ids)
        taken = diff[torch.arange(start, end), torch.tensor(ids)]  # (len,) at the sampled tokens
        result.log_ratio[chunk.source].append(float(taken.sum(dtype=torch.float64)))
        result.kl[chunk.source] += kl[start:end].tolist()
        start = end


def _contexts(kept: list[tuple[list[tuple], torch.Tensor, torch.Tensor]], excess: torch.Tensor, keep: int) -> list[dict]:
    """For the `keep` tokens with the largest |excess|, the positions where their probability
    changed most in their direction: where a reader can see the change happen."""
    rows = []
    for token in excess.abs().topk(min(keep, len(excess))).indices.tolist():
        sign = 1.0 if excess[token] >= 0 else -1.0
        found = []  # (change, source, sample, position, sampled id)
        for where, tokens, changes in kept:
            column = (tokens == token).nonzero().flatten()
            if len(column):
                values = changes[:, column[0]]  # (positions,)
                best = (values * sign).topk(min(CONTEXTS_PER_TOKEN, len(values))).indices.tolist()
                found += [(float(values[i]), *where[i]) for i in best]
        found.sort(key=lambda f: -sign * f[0])
        rows += [{"token_id": token, "source": src, "sample": smp, "position": pos, "sampled_id": sid, "dp": dp}
                 for dp, src, smp, pos, sid in found[:CONTEXTS_PER_TOKEN]]  # fmt: skip
    return rows
