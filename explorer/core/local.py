"""Members whose weights are loaded here: sampling with `generate`, teacher-forced scoring.

Generation uses `transformers`' `generate` with an explicit, complete `GenerationConfig`, so a
model's own `generation_config.json` never changes the sampling silently. For every generated
token we record its log-probability under the sampling distribution (after temperature / top-k /
top-p) and under the raw model, and the entropy of the raw next-token distribution, step by step
(`StepStats`): memory stays that of one step whatever the vocabulary.
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

from explorer.core import vocab
from explorer.core.member import ModelSamples, encode_prompt, model_input, plain_model
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


def generation_config(params: SamplingParams, model: Any, tokenizer: Any, n: int) -> Any:
    """A complete config: every field `generate` would otherwise take from the model is set.

    Temperature, top-k and top-p are left neutral here: `StepStats` applies the same warpers
    in the same order, so that it sees the raw and the warped scores of each step. `min_p` is
    set (to 0, which removes nothing) only where the model's own config sets it: its warper
    costs a softmax over the vocabulary per step for nothing."""
    from transformers import GenerationConfig

    own_min_p = getattr(getattr(plain_model(model), "generation_config", None), "min_p", None)
    values = dict(GenerationConfig._get_default_generation_params())
    values.update(
        do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
        min_p=0.0 if own_min_p is not None else None, max_new_tokens=params.max_new_tokens,
        max_length=None, num_return_sequences=n, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        return_dict_in_generate=True,
    )  # fmt: skip
    return GenerationConfig(**values)


def warpers(params: SamplingParams) -> list[Any]:
    """The sampling warpers `generate` would make from `params`, in its order."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    chosen = []
    if params.temperature != 1.0:
        chosen.append(TemperatureLogitsWarper(float(params.temperature)))
    if params.top_k:
        chosen.append(TopKLogitsWarper(top_k=int(params.top_k)))
    if params.top_p < 1.0:
        chosen.append(TopPLogitsWarper(top_p=float(params.top_p)))
    return chosen


class StepStats:
    """Per generated token: its log-prob under the sampling distribution and under the raw
    model, and the entropy of the raw distribution; and the raw log-distribution of the first
    generated token (of the first sample) — computed step by step as `generate` runs.

    `generate` can hand back every step's scores and logits, (n, steps, vocab) twice: at a
    262k vocabulary and 64 samples of 24 tokens, 3.2 GB. Here the logits processor sees the
    raw scores, applies the warpers itself and keeps that step's two (n, vocab) tensors; the
    stopping criterion, called once the tokens are chosen, reduces them to three (n,) columns
    (`vocab.logprob_and_entropy`, a slice of rows at a time) and lets them go."""

    def __init__(self, chosen: list[Any]) -> None:
        self.warpers = chosen
        self.raw: torch.Tensor | None = None  # (n, vocab) this step's raw scores
        self.warped: torch.Tensor | None = None  # (n, vocab) …and the sampling distribution's
        self.columns: list[tuple[torch.Tensor, ...]] = []
        self.first: torch.Tensor | None = None  # (vocab,) log p of the first token, sample 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.raw = scores
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        self.warped = scores
        return scores

    def record(self, tokens: torch.Tensor) -> None:
        """The chosen tokens (n,) of the step just scored."""
        if self.raw is None:
            return
        model_lp, entropy = vocab.logprob_and_entropy(self.raw, tokens)  # (n,) each
        same = self.warped is self.raw
        sample_lp = model_lp if same else vocab.token_logprobs(self.warped, tokens)  # (n,)
        if self.first is None:
            self.first = torch.log_softmax(self.raw[0].float(), dim=-1)  # (vocab,)
        self.columns.append((sample_lp, model_lp, entropy))  # on the device: no wait per step
        self.raw = self.warped = None

    def result(self, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n, steps) sampling log-probs, raw log-probs and entropies of the first `steps`
        steps (`generate` may have run a step past the end and undone it)."""
        kept = self.columns[:steps]
        return tuple(torch.stack([c[k] for c in kept], dim=1).cpu() for k in range(3))  # type: ignore[return-value]


class StepHook:
    """A stopping criterion that reports progress, honours the cancel token and hands each
    step's chosen tokens to `StepStats`."""

    def __init__(
        self, label: str, total: int, progress: ProgressFn | None, cancel: CancelToken | None
    ):
        self.label, self.total, self.progress, self.cancel = label, total, progress, cancel
        self.steps = 0
        self.stats: StepStats | None = None
        self.stopped = False  # whether it ended a `generate` early (Stop)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        self.steps += 1
        if self.stats is not None:
            self.stats.record(input_ids[:, -1])
        if self.progress:
            self.progress(self.label, self.steps, self.total)
        stop = bool(self.cancel and self.cancel.cancelled)
        self.stopped = self.stopped or stop
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


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
    model's, see `explorer.core.amplify`); the logits it returns stand for the model's own in the log-probs and
    entropies (`StepStats` reads them after it)."""
    started = time.perf_counter()
    text = model_input(member, prompt, params.chat)
    ids = encode_prompt(member, text, params.max_new_tokens).to(member.device)  # (1, seq)
    seed = model_seed(params.seed, member.ref.label)
    rows, first = [], []
    hook = StepHook(member.ref.label, params.max_new_tokens * math.ceil(params.n / batch_size), progress, cancel)
    with torch.random.fork_rng(devices=[member.device] if member.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, params.n, batch_size):
            check_cancel(cancel)
            size = min(batch_size, params.n - start)
            gen, stats = generate_batch(member, ids, params, size, hook, mixer)
            if hook.stopped:  # cut short: a Stop pressed after the last step keeps the whole batch
                check_cancel(cancel)
            hook.steps = (start // batch_size + 1) * params.max_new_tokens
            sample_lp, model_lp, entropy = stats.result(gen.shape[1])  # (size, steps) each
            ends = [_end(g.tolist(), member.tokenizer.eos_token_id) for g in gen]
            columns = {"logprobs": sample_lp, "model_logprobs": model_lp, "entropies": entropy}
            rows += response_rows(member, (prompt, text, params, seed), start, gen, ends, columns)
            top = torch.topk(stats.first.exp(), min(20, len(stats.first)))
            first = first or first_token_rows(member, *top)
    return ModelSamples(rows, first, text, time.perf_counter() - started)


def generate_batch(member: LocalMember, ids: torch.Tensor, params: SamplingParams, size: int,
                   hook: StepHook, mixer: Callable[[torch.Tensor], Any] | None = None,
                   ) -> tuple[torch.Tensor, StepStats]:  # fmt: skip
    """`size` samples after the prompt `ids` (1, seq): the generated ids (size, steps) and
    their statistics. A mixer's processor runs first: its logits are the ones sampled from."""
    from transformers import LogitsProcessorList, StoppingCriteriaList

    hook.stats = stats = StepStats(warpers(params))
    mixing = [mixer(ids)] if mixer is not None else []
    with torch.no_grad():
        out = member.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids),
            generation_config=generation_config(params, member.model, member.tokenizer, size),
            logits_processor=LogitsProcessorList([*mixing, stats]), stopping_criteria=StoppingCriteriaList([hook]),
        )  # fmt: skip
    hook.stats = None
    return out.sequences[:, ids.shape[1] :], stats  # (size, steps)


def _end(ids: list[int], eos: int | None) -> int:
    return ids.index(eos) if eos in ids else len(ids)
