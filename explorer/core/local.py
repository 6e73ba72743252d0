"""Members whose weights are loaded here: sampling with `generate`, teacher-forced scoring.

Generation uses `transformers`' `generate` with an explicit, complete `GenerationConfig`, so a
model's own `generation_config.json` never changes the sampling silently. For every generated
token we record its log-probability under the sampling distribution (after temperature / top-k /
top-p) and under the raw model, and the entropy of the raw next-token distribution.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from explorer.core.member import ModelSamples, encode_prompt, model_input
from explorer.core.params import CancelToken, ProgressFn, SamplingParams, check_cancel, model_seed
from explorer.core.refs import ModelRef
from explorer.core.responses import first_token_rows, response_rows

MAX_ELEMENTS = 50_000_000  # bound on the floats one batched forward pass may hold in logits


@dataclass
class LocalMember:
    """A member with its weights at hand: a transformers model (or a peft model) and tokenizer."""

    ref: ModelRef
    model: Any  # a transformers PreTrainedModel (or a peft PeftModel)
    tokenizer: Any
    n_bytes: int

    has_weights = True
    concurrent = False  # a local model already uses every core it is given

    @property
    def context_length(self) -> int:
        config = self.model.config
        return int(
            getattr(config, "max_position_embeddings", 0)
            or getattr(config, "n_positions", 0)
            or 2048
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @cached_property
    def tokenizer_key(self) -> Hashable:
        return hash(frozenset(self.tokenizer.get_vocab().items()))

    def engine(self) -> dict[str, Any] | None:
        return None

    def sample(
        self,
        prompt: str,
        params: SamplingParams,
        batch_size: int = 256,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> ModelSamples:
        return sample_local(self, prompt, params, batch_size, progress, cancel)

    @torch.no_grad()
    def continuation_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[int]],
        full: bool = False,
        cancel: CancelToken | None = None,
        batch_size: int = 64,
    ) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for start in range(0, len(prefixes), batch_size):
            check_cancel(cancel)  # thousands of samples under several models: stoppable per batch
            pre = prefixes[start : start + batch_size]
            cont = continuations[start : start + batch_size]
            logp = self._logprobs([list(p) + list(c) for p, c in zip(pre, cont, strict=True)])
            for i, (p, c) in enumerate(zip(pre, cont, strict=True)):
                dist = logp[i, len(p) - 1 : len(p) - 1 + len(c)]  # (len(c), vocab)
                out.append(dist if full else dist.gather(-1, torch.tensor(list(c)).unsqueeze(-1)).squeeze(-1))
        return out

    def _logprobs(self, rows: list[list[int]]) -> torch.Tensor:
        """Next-token log-distributions (batch, seq, vocab) for ragged rows, right-padded."""
        ids, mask = pad_right(rows, self.tokenizer.pad_token_id)
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    @torch.no_grad()
    def choice_logprobs(
        self, rows: torch.Tensor, predict_at: torch.Tensor, choices: torch.Tensor, batch_size: int = 64
    ) -> torch.Tensor:
        width = len(predict_at) * self.model.get_output_embeddings().weight.shape[0]
        width += rows.shape[1] * getattr(self.model.config.get_text_config(), "hidden_size", 1024) * 8
        batch_size = max(1, min(batch_size, MAX_ELEMENTS // width))
        outs = []
        for start in range(0, rows.shape[0], batch_size):
            chunk = rows[start : start + batch_size].to(self.device)
            logits = predicting_logits(self.model, predict_at, input_ids=chunk)  # (b, T, vocab)
            outs.append(gather_choices(logits, choices).cpu())
        return torch.cat(outs)  # (rows, targets, K)


def gather_choices(logits: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """log p of candidate tokens: logits (batch, targets, vocab), choices (targets, K) →
    (batch, targets, K)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    index = choices.to(logp.device).unsqueeze(0).expand(logp.shape[0], -1, -1)
    return logp.gather(-1, index)


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


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, seq) ids and mask from ragged rows, padded on the right (positions stay 0..n)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


# --- sampling ------------------------------------------------------------------------------------


def generation_config(params: SamplingParams, tokenizer: Any, n: int) -> Any:
    """A complete config: every field `generate` would otherwise take from the model is set."""
    from transformers import GenerationConfig

    values = dict(GenerationConfig._get_default_generation_params())
    values.update(
        do_sample=True, temperature=float(params.temperature), top_p=float(params.top_p),
        top_k=int(params.top_k), min_p=0.0, max_new_tokens=params.max_new_tokens, max_length=None,
        num_return_sequences=n, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        return_dict_in_generate=True, output_scores=True, output_logits=True,
    )  # fmt: skip
    return GenerationConfig(**values)


class StepHook:
    """A stopping criterion that only reports progress and honours the cancel token."""

    def __init__(
        self, label: str, total: int, progress: ProgressFn | None, cancel: CancelToken | None
    ):
        self.label, self.total, self.progress, self.cancel = label, total, progress, cancel
        self.steps = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        self.steps += 1
        if self.progress:
            self.progress(self.label, self.steps, self.total)
        stop = bool(self.cancel and self.cancel.cancelled)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def token_stats(out: Any, prompt_len: int) -> tuple[torch.Tensor, ...]:
    """Generated ids and, per generated position: sampling log-prob, raw log-prob, entropy;
    and the raw log-distribution of the first generated token."""
    gen = out.sequences[:, prompt_len:]  # (n, steps)
    raw_lp = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)  # (n, steps, vocab)
    proc_lp = torch.log_softmax(torch.stack(out.scores, dim=1).float(), dim=-1)  # (n, steps, vocab)
    idx = gen.unsqueeze(-1)  # (n, steps, 1)
    sample_lp = proc_lp.gather(-1, idx).squeeze(-1)  # (n, steps)
    model_lp = raw_lp.gather(-1, idx).squeeze(-1)  # (n, steps)
    entropy = -(raw_lp.exp() * raw_lp).nan_to_num().sum(-1)  # (n, steps)
    return gen, sample_lp, model_lp, entropy, raw_lp[0, 0]


def sample_local(
    member: LocalMember,
    prompt: str,
    params: SamplingParams,
    batch_size: int,
    progress: ProgressFn | None,
    cancel: CancelToken | None,
) -> ModelSamples:
    """All `params.n` samples of one model, in batches of up to `batch_size` sequences."""
    from transformers import StoppingCriteriaList

    started = time.perf_counter()
    text = model_input(member, prompt, params.chat)
    ids = encode_prompt(member, text, params.max_new_tokens).to(member.device)  # (1, seq)
    seed = model_seed(params.seed, member.ref.label)
    rows, first = [], []
    hook = StepHook(member.ref.label, params.max_new_tokens * math.ceil(params.n / batch_size), progress, cancel)
    with torch.random.fork_rng(devices=[member.device] if member.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, params.n, batch_size):
            size = min(batch_size, params.n - start)
            with torch.no_grad():
                out = member.model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids),
                    generation_config=generation_config(params, member.tokenizer, size),
                    stopping_criteria=StoppingCriteriaList([hook]),
                )  # fmt: skip
            check_cancel(cancel)
            hook.steps = (start // batch_size + 1) * params.max_new_tokens
            gen, sample_lp, model_lp, entropy, first_lp = token_stats(out, ids.shape[1])
            ends = [_end(g.tolist(), member.tokenizer.eos_token_id) for g in gen]
            columns = {"logprobs": sample_lp, "model_logprobs": model_lp, "entropies": entropy}
            rows += response_rows(member, (prompt, text, params, seed), start, gen, ends, columns)
            first = first or first_token_rows(member, *torch.topk(first_lp.exp(), min(20, len(first_lp))))
    return ModelSamples(rows, first, text, time.perf_counter() - started)


def _end(ids: list[int], eos: int | None) -> int:
    return ids.index(eos) if eos in ids else len(ids)
