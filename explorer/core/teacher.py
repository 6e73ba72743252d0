"""Teacher-forced passes on local weights: log-probs of given text, reusing shared beginnings.

Scoring a model's samples runs the same prompt in front of every one of them; occlusion's
variants repeat the original up to the token they replace. Both run that shared beginning once
and reuse its key–value cache, and take log-probs as `logit − logsumexp` at the tokens asked
for rather than as whole log-softmaxed copies of (batch, seq, vocab) logits. A batch holds at
most MAX_ELEMENTS floats of logits, whatever the vocabulary.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from typing import Any

import torch

from explorer.core.member import plain_model
from explorer.core.params import CancelToken, check_cancel
from explorer.core.threads import fair_share
from explorer.core.vocab import candidate_logprobs, token_logprobs

MAX_ELEMENTS = 50_000_000  # bound on the floats one batched forward pass may hold in logits
PREFIX_GROUPS = 3  # groups of rows that share a cached beginning (occlusion)


def cache_keyword(model) -> str | None:
    """The name the model's forward takes its key–value cache by (`cache` from transformers
    5.x, `past_key_values` before), or None when it takes none or cannot keep only some logits."""
    params = inspect.signature(plain_model(model).forward).parameters
    if "logits_to_keep" not in params:
        return None
    return next((k for k in ("cache", "past_key_values") if k in params), None)


def forward(member: Any, ids: torch.Tensor, keep, keyword: str, cache=None, mask=None):
    """Logits at `keep` (positions, or None for all) and the extended cache."""
    extra = {"logits_to_keep": keep} if keep is not None else {}
    if mask is not None:
        extra["attention_mask"] = mask.to(member.device)
    out = member.model(input_ids=ids.to(member.device), use_cache=True, **{keyword: cache}, **extra)
    return out.logits, out[keyword]


def cache_sharing(model) -> tuple[bool, Any]:
    """Whether rows can share this model's cache of a common beginning (`shared_cache`: repeated
    for a batch, cut back to an earlier position), and the fresh cache to start from so that
    they can (None: the model's own can).

    Sliding-window layers (Mistral, Gemma 2 to 4) drop what slides out of their window as the
    pass goes: recording the past keeps it until the cut. Recurrent states (the linear attention
    of Qwen3.5) can be neither cut back nor repeated in transformers 5.24: those models run
    every row whole."""
    try:
        from transformers import DynamicCache

        cache = DynamicCache(config=plain_model(model).config)
    except (ImportError, TypeError, ValueError):  # older transformers: caches keep every position
        return True, None
    if any(getattr(cache, "is_linear", [])):
        return False, None
    if not any(getattr(cache, "is_sliding", [])) or not hasattr(cache, "activate_past_recording"):
        return True, None
    cache.activate_past_recording()
    return True, cache


def shared_cache(cache, drop: int, copies: int):
    """A copy of `cache` without its last `drop` positions, repeated for `copies` rows."""
    shared = copy.deepcopy(cache)
    if drop:
        shared.crop(-drop)
    shared.batch_repeat_interleave(copies)
    return shared


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, seq) ids and mask from ragged rows, padded on the right (positions stay 0..n)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


# --- log-probs of continuations ------------------------------------------------------------------


@torch.no_grad()
def continuation_logprobs(
    member: Any, prefixes: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
    full: bool = False, cancel: CancelToken | None = None,
) -> list[torch.Tensor]:  # fmt: skip
    """Per (prefix, continuation): log p of each continuation token (len,), or with `full` the
    whole next-token log-distribution (len, vocab). Rows with the same prefix share one pass
    over it (a SampleSet's samples all follow the same prompt)."""
    with fair_share([member.model]):
        return shared_prefix_logprobs(member, prefixes, continuations, full, cancel)


def shared_prefix_logprobs(
    member: Any, prefixes: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
    full: bool, cancel: CancelToken | None,
) -> list[torch.Tensor]:  # fmt: skip
    out: list[torch.Tensor | None] = [None] * len(prefixes)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, prefix in enumerate(prefixes):
        groups.setdefault(tuple(prefix), []).append(i)
    keyword = cache_keyword(member.model)
    shared = keyword is not None and cache_sharing(member.model)[0]
    for prefix, rows in groups.items():
        conts = [list(continuations[i]) for i in rows]
        if not shared or not prefix:
            scored = unshared_logprobs(member, [list(prefix)] * len(rows), conts, full, cancel)
        else:
            scored = after_prefix(member, list(prefix), conts, full, cancel, keyword)
        for i, lp in zip(rows, scored, strict=True):
            out[i] = lp
    return out  # type: ignore[return-value]


def after_prefix(
    member: Any, prefix: list[int], conts: list[list[int]], full: bool, cancel: CancelToken | None, keyword: str
) -> list[torch.Tensor]:
    """Continuations of one prefix: the prefix once, its cache repeated for each batch."""
    logits, cache = forward(member, torch.tensor([prefix]), torch.tensor([len(prefix) - 1]), keyword)
    first = torch.log_softmax(logits[0, 0].float(), dim=-1).cpu()  # (vocab,): predicts token 0
    vocab = first.shape[0]
    width = max((len(c) for c in conts), default=0)
    per_batch = max(1, min(64, MAX_ELEMENTS // max(1, width * vocab)))
    out: list[torch.Tensor] = []
    for start in range(0, len(conts), per_batch):
        check_cancel(cancel)  # thousands of samples under several models: stoppable per batch
        chunk = conts[start : start + per_batch]
        ids, mask = pad_right([c or [0] for c in chunk], member.tokenizer.pad_token_id or 0)
        full_mask = torch.cat([torch.ones((len(chunk), len(prefix)), dtype=torch.long), mask], dim=1)
        logits, _ = forward(member, ids, None, keyword, shared_cache(cache, 0, len(chunk)), full_mask)
        out += [continuation_row(first, logits[k].float().cpu(), c, full) for k, c in enumerate(chunk)]
    return out


def continuation_row(first: torch.Tensor, logits: torch.Tensor, cont: list[int], full: bool) -> torch.Tensor:
    """One continuation's log-probs from the prefix's last prediction `first` (vocab,) and the
    logits along the continuation itself (width, vocab)."""
    if not cont:
        return torch.zeros((0, first.shape[0])) if full else torch.zeros(0)
    rest = logits[: len(cont) - 1]  # (len − 1, vocab): predicts tokens 1..
    if full:
        return torch.cat([first.unsqueeze(0), torch.log_softmax(rest, dim=-1)])
    ids = torch.tensor(cont)
    return torch.cat([first[ids[:1]], token_logprobs(rest, ids[1:])])


def unshared_logprobs(
    member: Any, prefixes: list[list[int]], conts: list[list[int]], full: bool, cancel: CancelToken | None,
    batch_size: int = 64,
) -> list[torch.Tensor]:  # fmt: skip
    """The plain way, for models without a cache: every row whole, right-padded, in batches
    whose logits (batch, seq, vocab) stay within MAX_ELEMENTS."""
    width = max((len(p) + len(c) for p, c in zip(prefixes, conts, strict=True)), default=1)
    vocab = member.model.get_output_embeddings().weight.shape[0]
    batch_size = max(1, min(batch_size, MAX_ELEMENTS // (width * vocab)))
    out: list[torch.Tensor] = []
    for start in range(0, len(prefixes), batch_size):
        check_cancel(cancel)
        pre, cont = prefixes[start : start + batch_size], conts[start : start + batch_size]
        ids, mask = pad_right([p + c for p, c in zip(pre, cont, strict=True)], member.tokenizer.pad_token_id)
        logits = member.model(input_ids=ids.to(member.device), attention_mask=mask.to(member.device)).logits
        for i, (p, c) in enumerate(zip(pre, cont, strict=True)):
            rows = logits[i, len(p) - 1 : len(p) - 1 + len(c)].float().cpu()  # (len(c), vocab)
            out.append(torch.log_softmax(rows, dim=-1) if full else token_logprobs(rows, torch.tensor(c, dtype=torch.long)))
    return out


# --- log-probs of candidate tokens (occlusion) ---------------------------------------------------


def gather_choices(logits: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """log p of candidate tokens: logits (batch, targets, vocab), choices (targets, K) →
    (batch, targets, K), a slice of rows at a time (`vocab.over_rows`)."""
    index = choices.to(logits.device).unsqueeze(0).expand(logits.shape[0], -1, -1)  # (batch, targets, K)
    return candidate_logprobs(logits, index)


def embeds_input(model, embeds: torch.Tensor, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """A model's input from the embeddings (batch, seq, dim) of the tokens `ids` (seq,): what
    gradient methods differentiate. Models that also look the ids up elsewhere (the per-layer
    embeddings of Gemma 4) get that lookup of the text's own ids, held there while the
    embeddings move, as Captum's layer methods on the embedding layer hold it; left alone, the
    model would reverse the embedding to find the ids, which fails off the exact embeddings
    (integrated gradients' path) and costs (seq × vocab × dim) work on them."""
    inputs = {"inputs_embeds": embeds}
    plain = plain_model(model)
    lookup = getattr(getattr(plain, "model", None), "get_per_layer_inputs", None)
    if lookup is not None and getattr(plain.config.get_text_config(), "hidden_size_per_layer_input", None):
        per_layer = lookup(ids.unsqueeze(0).to(embeds.device))  # (1, seq, layers, width)
        inputs["per_layer_inputs"] = per_layer.expand(embeds.shape[0], *per_layer.shape[1:])
    return inputs


def predicting_logits(model, positions: torch.Tensor, **inputs) -> torch.Tensor:
    """Logits (batch, len(positions), vocab) at the given positions only.

    The sequence is cut after the last position (later tokens cannot matter to a causal model)
    and the output head runs only where asked (`logits_to_keep`), so a 50k vocabulary costs
    per target, not per sequence position."""
    end = int(positions.max()) + 1
    inputs = {k: v[:, :end] if torch.is_tensor(v) else v for k, v in inputs.items()}  # flags pass as they are
    try:
        return model(**inputs, logits_to_keep=positions).logits
    except TypeError:  # a model class without `logits_to_keep`
        return model(**inputs).logits[:, positions]


@torch.no_grad()
def choice_logprobs(member: Any, rows: torch.Tensor, predict_at: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """log p of candidates `choices` (targets, K) predicted at `predict_at` (targets,), for rows
    of ids (rows, len): (rows, targets, K). Rows that repeat the first row's beginning
    (occlusion's variants: row s differs from row 0 from position s on) reuse its cache for that
    beginning when that saves enough work (`worth_sharing`)."""
    with fair_share([member.model]):
        return shared_row_choices(member, rows, predict_at, choices)


def shared_row_choices(member: Any, rows: torch.Tensor, predict_at: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    keyword = cache_keyword(member.model)
    first = first_difference(rows)  # (rows,)
    order = [int(i) for i in torch.argsort(first) if first[i] < rows.shape[1]]
    size = max(4, math.ceil(len(order) / PREFIX_GROUPS))
    rewinds, fresh = cache_sharing(member.model) if keyword else (False, None)
    if not rewinds or not worth_sharing(first[order], size, rows.shape[1]):
        return batched_choices(member, rows, predict_at, choices)
    out = torch.empty((rows.shape[0], len(predict_at), choices.shape[1]))  # (rows, targets, K)
    logits, cache = forward(member, rows[:1], predict_at, keyword, fresh)
    out[:] = gather_choices(logits, choices)[0].cpu()  # identical rows keep the original's
    vocab = member.model.get_output_embeddings().weight.shape[0]
    for start in range(0, len(order), size):
        group = order[start : start + size]
        a = int(first[group].min())
        later = predict_at >= a  # earlier predicting positions see only the shared prefix
        per = max(1, MAX_ELEMENTS // (max(1, int(later.sum())) * vocab))  # rows whose logits fit
        for part in (group[k : k + per] for k in range(0, len(group), per)):
            shared = shared_cache(cache, rows.shape[1] - a, len(part)) if a > 0 else None
            logits, _ = forward(member, rows[part, a:], predict_at[later] - a, keyword, shared)  # (part, later, vocab)
            out[torch.tensor(part).unsqueeze(1), later.nonzero().flatten()] = gather_choices(logits, choices[later]).cpu()
    return out


def batched_choices(
    member: Any, rows: torch.Tensor, predict_at: torch.Tensor, choices: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Every row whole, in batches bounded by the memory their logits need."""
    model = member.model
    width = len(predict_at) * model.get_output_embeddings().weight.shape[0]
    width += rows.shape[1] * getattr(model.config.get_text_config(), "hidden_size", 1024) * 8
    batch_size = max(1, min(batch_size, MAX_ELEMENTS // width))
    outs = []
    for start in range(0, rows.shape[0], batch_size):
        chunk = rows[start : start + batch_size].to(member.device)
        logits = predicting_logits(model, predict_at, input_ids=chunk)  # (b, T, vocab)
        outs.append(gather_choices(logits, choices).cpu())
    return torch.cat(outs)  # (rows, targets, K)


def worth_sharing(first: torch.Tensor, size: int, length: int) -> bool:
    """Whether groups of `size` rows, each run from its earliest difference `first` (sorted),
    cost under 80% of running every row whole — measured on SmolLM2-135M: sharing was 26% faster
    with every token occluded, and no faster with only the first half (the prompt)."""
    if len(first) < 2 * size:
        return False
    shared = length + sum(len(first[k : k + size]) * (length - int(first[k])) for k in range(0, len(first), size))
    return shared < 0.8 * (len(first) + 1) * length


def first_difference(rows: torch.Tensor) -> torch.Tensor:
    """(rows,) the first position where each row differs from row 0 (its length if nowhere)."""
    differs = rows != rows[:1]  # (rows, len)
    return torch.where(differs.any(1), differs.int().argmax(1), torch.tensor(rows.shape[1]))
