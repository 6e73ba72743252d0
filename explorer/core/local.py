"""Members whose weights are loaded here: sampling with `generate`, teacher-forced scoring.

Generation uses `transformers`' `generate` with an explicit, complete `GenerationConfig`, so a
model's own `generation_config.json` never changes the sampling silently. For every generated
token we record its log-probability under the sampling distribution (after temperature / top-k /
top-p) and under the raw model, and the entropy of the raw next-token distribution.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from explorer.core.member import ModelSamples, encode_prompt, model_input
from explorer.core.params import CancelToken, ProgressFn, SamplingParams, check_cancel, model_seed
from explorer.core.refs import ModelRef
from explorer.core.responses import first_token_rows, response_rows
from explorer.core.teacher import choice_logprobs, continuation_logprobs
from explorer.core.threads import fair_share

PREFIX_GROUPS = 3  # groups of rows that share a cached beginning (occlusion)


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

    def named(self, ref: ModelRef) -> LocalMember:
        """The same weights and tokenizer under the identity `ref` (a family's label,
        relation and parent): cached weights are shared between families, identity never."""
        if ref == self.ref:
            return self
        view = copy.copy(self)  # keeps what was measured once (tokenizer_key)
        view.ref = ref
        return view

    def sample(
        self,
        prompt: str,
        params: SamplingParams,
        batch_size: int = 256,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> ModelSamples:
        with fair_share([self.model]) as threads:
            result = sample_local(self, prompt, params, batch_size, progress, cancel)
        result.threads = threads
        return result

    def continuation_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[int]],
        full: bool = False,
        cancel: CancelToken | None = None,
    ) -> list[torch.Tensor]:
        return continuation_logprobs(self, prefixes, continuations, full, cancel)

    def choice_logprobs(self, rows: torch.Tensor, predict_at: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
        return choice_logprobs(self, rows, predict_at, choices)


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
    and the raw log-distribution of the first generated token.

    Log-probs come from one logsumexp per position rather than whole log-softmaxed copies of
    the (n, steps, vocab) logits: with a 49k vocabulary those copies cost as much as a tenth
    of the generation itself."""
    gen = out.sequences[:, prompt_len:]  # (n, steps)
    idx = gen.unsqueeze(-1)  # (n, steps, 1)
    raw = torch.stack(out.logits, dim=1).float()  # (n, steps, vocab)
    raw_lse = torch.logsumexp(raw, dim=-1)  # (n, steps)
    model_lp = raw.gather(-1, idx).squeeze(-1) - raw_lse  # (n, steps)
    entropy = raw_lse - (torch.softmax(raw, dim=-1) * raw).sum(-1)  # (n, steps)
    first_lp = torch.log_softmax(raw[0, 0], dim=-1)  # (vocab,)
    del raw
    proc = torch.stack(out.scores, dim=1).float()  # (n, steps, vocab), -inf where filtered
    sample_lp = proc.gather(-1, idx).squeeze(-1) - torch.logsumexp(proc, dim=-1)  # (n, steps)
    return gen, sample_lp, model_lp, entropy.clamp_min(0), first_lp


def sample_local(
    member: LocalMember,
    prompt: str,
    params: SamplingParams,
    batch_size: int,
    progress: ProgressFn | None,
    cancel: CancelToken | None,
    mixer: Callable[[torch.Tensor], Any] | None = None,
) -> ModelSamples:
    """All `params.n` samples of one model, in batches of up to `batch_size` sequences.

    `mixer(prompt_ids)`, when given, makes a logits processor per batch that replaces the
    model's logits before temperature, top-k and top-p (amplified sampling mixes in another
    model's, see `explorer.core.amplify`); it records the logits it returned (`.raw`), which
    then stand for the model's own in the log-probs and entropies."""
    started = time.perf_counter()
    text = model_input(member, prompt, params.chat)
    ids = encode_prompt(member, text, params.max_new_tokens).to(member.device)  # (1, seq)
    seed = model_seed(params.seed, member.ref.label)
    rows, first = [], []
    hook = StepHook(member.ref.label, params.max_new_tokens * math.ceil(params.n / batch_size), progress, cancel)
    with torch.random.fork_rng(devices=[member.device] if member.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, params.n, batch_size):
            out = _generate(member, ids, params, min(batch_size, params.n - start), hook, mixer)
            check_cancel(cancel)
            hook.steps = (start // batch_size + 1) * params.max_new_tokens
            gen, sample_lp, model_lp, entropy, first_lp = token_stats(out, ids.shape[1])
            ends = [_end(g.tolist(), member.tokenizer.eos_token_id) for g in gen]
            columns = {"logprobs": sample_lp, "model_logprobs": model_lp, "entropies": entropy}
            rows += response_rows(member, (prompt, text, params, seed), start, gen, ends, columns)
            first = first or first_token_rows(member, *torch.topk(first_lp.exp(), min(20, len(first_lp))))
    return ModelSamples(rows, first, text, time.perf_counter() - started)


@torch.no_grad()
def _generate(member: LocalMember, ids: torch.Tensor, params: SamplingParams, size: int, hook: StepHook, mixer) -> Any:
    """One batch of `size` samples from `generate`; with a mixer, its logits are the raw ones."""
    from transformers import LogitsProcessorList, StoppingCriteriaList

    mixing = mixer(ids) if mixer is not None else None
    out = member.model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids),
        generation_config=generation_config(params, member.tokenizer, size),
        stopping_criteria=StoppingCriteriaList([hook]),
        logits_processor=LogitsProcessorList([mixing] if mixing is not None else []),
    )  # fmt: skip
    if mixing is not None:  # the mixed logits are this sampler's own
        out.logits = tuple(mixing.raw[: len(out.scores)])
    return out


def _end(ids: list[int], eos: int | None) -> int:
    return ids.index(eos) if eos in ids else len(ids)
