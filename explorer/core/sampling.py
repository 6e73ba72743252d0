"""Resampling: many answers per model, batched, reproducible, with per-token statistics.

Generation uses `transformers`' `generate` with an explicit, complete `GenerationConfig`, so a
model's own `generation_config.json` never changes the sampling silently. For every generated
token we record its log-probability under the sampling distribution (after temperature / top-k /
top-p) and under the raw model, and the entropy of the raw next-token distribution.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch

from explorer.core.errors import Cancelled
from explorer.core.family import Family
from explorer.core.results import ResultFile, library_versions
from explorer.core.store import LoadedModel

MAX_N = 4096
MAX_PROMPT_CHARS = 200_000
CHAT_MODES = ("auto", "never", "always")

ProgressFn = Callable[[str, int, int], None]  # (model label, steps done, steps total)


class CancelToken:
    """Set from any thread; long computations check it between steps and raise `Cancelled`."""

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        if self._cancelled:
            raise Cancelled("cancelled")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingParams:
    """Validated sampling settings. Defaults are pure sampling: temperature 1, no top-k/top-p."""

    n: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 24
    seed: int = 0
    chat: str = "auto"

    def __post_init__(self) -> None:
        for name in ("n", "top_k", "max_new_tokens", "seed"):
            if not _is_int(getattr(self, name)):
                raise TypeError(f"{name}: expected an integer, got {getattr(self, name)!r}")
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise TypeError(f"{name}: expected a finite number, got {value!r}")
        if not 1 <= self.n <= MAX_N:
            raise ValueError(f"n: must be between 1 and {MAX_N} samples per model, got {self.n}")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature: must be > 0 (use a small value for near-greedy), got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k: must be >= 0 (0 turns it off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: must be at least 1, got {self.max_new_tokens}")
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0, got {self.seed}")
        if self.chat not in CHAT_MODES:
            raise ValueError(f"chat: one of {', '.join(CHAT_MODES)}, got {self.chat!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_seed(seed: int, label: str) -> int:
    """Each model's own stream, so its samples do not depend on which other models ran."""
    return (seed * 1_000_003 + zlib.crc32(label.encode())) % (2**31)


def check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt: expected a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt: is empty; type some text for the models to continue")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(
            f"prompt: is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}"
        )
    return prompt


def model_input(loaded: LoadedModel, prompt: str, chat: str) -> str:
    """The exact text a model receives: the prompt, or the prompt in its chat template."""
    template = getattr(loaded.tokenizer, "chat_template", None)
    if chat == "never" or (chat == "auto" and not template):
        return prompt
    if not template:
        raise ValueError(f"chat: 'always' but {loaded.ref.label} has no chat template")
    messages = [{"role": "user", "content": prompt}]
    return loaded.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )


def encode_prompt(loaded: LoadedModel, text: str, max_new_tokens: int) -> torch.Tensor:
    """Token ids (1, seq); refuses (never truncates) a prompt that leaves no room to answer."""
    tok = loaded.tokenizer
    add_special = not text.startswith(tok.bos_token or "\0")
    ids = tok(text, return_tensors="pt", add_special_tokens=add_special)["input_ids"]  # (1, seq)
    if ids.shape[1] == 0:
        raise ValueError(f"prompt: {loaded.ref.label}'s tokenizer makes no tokens of it")
    limit = loaded.context_length
    if max_new_tokens >= limit:
        raise ValueError(
            f"max_new_tokens: {max_new_tokens} does not fit {loaded.ref.label}'s context of {limit} tokens"
        )
    if ids.shape[1] + max_new_tokens > limit:
        raise ValueError(
            f"prompt: is {ids.shape[1]} tokens for {loaded.ref.label}; with max_new_tokens="
            f"{max_new_tokens} that exceeds its context of {limit} tokens. Shorten the prompt "
            "(the explorer refuses rather than silently truncating it)."
        )
    return ids


def generation_config(params: SamplingParams, tokenizer: Any, n: int) -> Any:
    """A complete config: every field `generate` would otherwise take from the model is set."""
    from transformers import GenerationConfig

    values = dict(GenerationConfig._get_default_generation_params())
    values.update(
        do_sample=True,
        temperature=float(params.temperature),
        top_p=float(params.top_p),
        top_k=int(params.top_k),
        min_p=0.0,
        max_new_tokens=params.max_new_tokens,
        max_length=None,
        num_return_sequences=n,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=True,
    )
    return GenerationConfig(**values)


class _StepHook:
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


@dataclass
class ModelSamples:
    """Raw per-model output before it becomes DataFrame rows."""

    rows: list[dict[str, Any]]
    first_token: list[dict[str, Any]]
    model_input: str
    seconds: float


def _token_stats(out: Any, prompt_len: int) -> tuple[torch.Tensor, ...]:
    """Generated ids and, per generated position: sampling log-prob, raw log-prob, entropy."""
    gen = out.sequences[:, prompt_len:]  # (n, steps)
    raw = torch.stack(out.logits, dim=1).float()  # (n, steps, vocab)
    proc = torch.stack(out.scores, dim=1).float()  # (n, steps, vocab)
    raw_lp = torch.log_softmax(raw, dim=-1)
    proc_lp = torch.log_softmax(proc, dim=-1)
    idx = gen.unsqueeze(-1)  # (n, steps, 1)
    sample_lp = proc_lp.gather(-1, idx).squeeze(-1)  # (n, steps)
    model_lp = raw_lp.gather(-1, idx).squeeze(-1)  # (n, steps)
    entropy = -(raw_lp.exp() * raw_lp).nan_to_num().sum(-1)  # (n, steps)
    return gen, sample_lp, model_lp, entropy, raw_lp[0, 0]


def first_token_rows(label: str, tokenizer: Any, first_lp: torch.Tensor, k: int = 20) -> list[dict]:
    """The exact distribution of the first generated token (top-k of the raw model)."""
    probs = first_lp.exp()  # (vocab,)
    top = torch.topk(probs, min(k, probs.shape[0]))
    return [
        {
            "model": label,
            "rank": rank + 1,
            "token_id": int(i),
            "token": tokenizer.convert_ids_to_tokens(int(i)),
            "prob": float(p),
        }
        for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True))
    ]


def sample_model(
    loaded: LoadedModel,
    prompt: str,
    params: SamplingParams,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> ModelSamples:
    """All `params.n` samples of one model, in batches of up to `batch_size` sequences."""
    from transformers import StoppingCriteriaList

    started = time.perf_counter()
    text = model_input(loaded, prompt, params.chat)
    ids = encode_prompt(loaded, text, params.max_new_tokens).to(loaded.device)  # (1, seq)
    tok, label = loaded.tokenizer, loaded.ref.label
    seed = model_seed(params.seed, label)
    rows, first = [], []
    n_batches = math.ceil(params.n / batch_size)
    hook = _StepHook(label, params.max_new_tokens * n_batches, progress, cancel)
    with torch.random.fork_rng(devices=[loaded.device] if loaded.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, params.n, batch_size):
            size = min(batch_size, params.n - start)
            with torch.no_grad():
                out = loaded.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    generation_config=generation_config(params, tok, size),
                    stopping_criteria=StoppingCriteriaList([hook]),
                )
            if cancel:
                cancel.check()
            hook.steps = (start // batch_size + 1) * params.max_new_tokens
            gen, sample_lp, model_lp, entropy, first_lp = _token_stats(out, ids.shape[1])
            rows += _rows(
                label, prompt, text, params, seed, start, tok, gen, sample_lp, model_lp, entropy
            )
            if not first:
                first = first_token_rows(label, tok, first_lp)
    return ModelSamples(rows, first, text, time.perf_counter() - started)


def _rows(
    label, prompt, text, params, seed, start, tok, gen, sample_lp, model_lp, entropy
) -> list[dict]:
    rows = []
    eos = tok.eos_token_id
    for i in range(gen.shape[0]):
        ids = gen[i].tolist()
        end = ids.index(eos) if eos in ids else len(ids)
        keep = ids[:end]
        rows.append(
            {
                "model": label,
                "sample": start + i,
                "seed": params.seed,
                "model_seed": seed,
                "prompt": prompt,
                "model_input": text,
                "text": tok.decode(keep, skip_special_tokens=True),
                "tokens": tok.convert_ids_to_tokens(keep),
                "token_ids": keep,
                "logprobs": sample_lp[i, :end].tolist(),
                "model_logprobs": model_lp[i, :end].tolist(),
                "entropies": entropy[i, :end].tolist(),
                "n_tokens": end,
                "finish_reason": "eos" if end < len(ids) else "length",
            }
        )
    return rows


SAMPLE_COLUMNS = [
    "model", "sample", "seed", "model_seed", "prompt", "model_input", "text", "tokens",
    "token_ids", "logprobs", "model_logprobs", "entropies", "n_tokens", "finish_reason",
]  # fmt: skip


@dataclass
class SampleSet:
    """Samples of every model for one prompt: `.df` (one row per model × sample), the exact
    first-token distributions, the parameters and everything needed to say what produced them."""

    df: pd.DataFrame
    params: SamplingParams
    prompt: str
    family: dict[str, Any]
    first_token: pd.DataFrame = field(default_factory=pd.DataFrame)
    meta: dict[str, Any] = field(default_factory=dict)

    KIND = "SampleSet"

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.df["model"]))

    def texts(self, model: str) -> list[str]:
        return self.df.loc[self.df["model"] == model, "text"].tolist()

    def save(self, path) -> None:
        """Lossless: JSON (default) or Parquet (by the `.parquet` suffix)."""
        ResultFile(self.KIND).save(
            path,
            tables={"df": self.df, "first_token": self.first_token},
            meta={
                "params": self.params.to_dict(),
                "prompt": self.prompt,
                "family": self.family,
                **self.meta,
            },
        )

    @classmethod
    def load(cls, path) -> SampleSet:
        tables, meta = ResultFile(cls.KIND).load(path)
        params = SamplingParams(**meta.pop("params"))
        return cls(
            df=tables["df"],
            params=params,
            prompt=meta.pop("prompt"),
            family=meta.pop("family"),
            first_token=tables["first_token"],
            meta=meta,
        )


def combine(parts: list[SampleSet]) -> SampleSet:
    """One SampleSet from per-model runs of the same prompt and parameters (in order)."""
    if not parts:
        raise ValueError("parts: nothing to combine")
    first = parts[0]
    meta = {"model_inputs": {}, "seconds": {}, "versions": first.meta.get("versions", {})}
    for part in parts:
        if part.prompt != first.prompt or part.params != first.params:
            raise ValueError(
                "parts: sample sets of different prompts or parameters cannot be combined"
            )
        meta["model_inputs"].update(part.meta.get("model_inputs", {}))
        meta["seconds"].update(part.meta.get("seconds", {}))
        if "engine" in part.meta:  # served models: keep what produced them
            engine = meta.setdefault("engine", {**part.meta["engine"], "models": {}})
            engine["models"].update(part.meta["engine"]["models"])
    return SampleSet(
        df=pd.concat([p.df for p in parts], ignore_index=True),
        params=first.params,
        prompt=first.prompt,
        family=first.family,
        first_token=pd.concat([p.first_token for p in parts], ignore_index=True),
        meta=meta,
    )


def sample(
    family: Family,
    prompt: str,
    n: int = 16,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 24,
    seed: int = 0,
    chat: str = "auto",
    models: list[str] | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SampleSet:
    """Sample `n` responses from every chosen member of `family` (all by default).

    The same family, prompt, parameters and seed give the same SampleSet; a new seed resamples.
    """
    params = SamplingParams(n, temperature, top_p, top_k, max_new_tokens, seed, chat)
    check_prompt(prompt)
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")
    labels = models or family.labels
    for label in labels:
        family.ref(label)
    rows, first, inputs, seconds = [], [], {}, {}
    for label, result in zip(
        labels,
        _sample_each(family, labels, prompt, params, batch_size, progress, cancel),
        strict=True,
    ):
        rows += result.rows
        first += result.first_token
        inputs[label], seconds[label] = result.model_input, round(result.seconds, 4)
    meta = {"model_inputs": inputs, "seconds": seconds, "versions": library_versions()}
    if family.remote:
        meta["engine"] = engine_meta(family, labels)
    return SampleSet(
        df=pd.DataFrame(rows, columns=SAMPLE_COLUMNS),
        params=params,
        prompt=prompt,
        family=family.to_dict(),
        first_token=pd.DataFrame(first, columns=["model", "rank", "token_id", "token", "prob"]),
        meta=meta,
    )


def _sample_each(family, labels, prompt, params, batch_size, progress, cancel):
    """ModelSamples per label: local models one after another (each uses every core), served
    ones all at once (the server batches them)."""
    if family.remote:
        from explorer.core.remote import sample_served

        yield from sample_served(family, labels, prompt, params, progress, cancel)
        return
    for label in labels:
        if cancel:
            cancel.check()
        yield sample_model(family.load(label), prompt, params, batch_size, progress, cancel)


def engine_meta(family: Family, labels: list[str]) -> dict[str, Any]:
    """What produced a served family's results: server, engine version, served model names, and
    that per-token log-probs are the engine's raw ones and entropies are top-k lower bounds."""
    from explorer.core.remote import TOP_LOGPROBS

    first = family.load(labels[0])
    return {
        "server": first.backend.base_url,
        "engine_version": first.backend.version,
        "models": {label: family.ref(label).id for label in labels},
        "logprobs": "raw (before temperature/top-p/top-k)",
        "entropies": f"lower bound from the top-{TOP_LOGPROBS} log-probs",
        "first_token": f"top-{TOP_LOGPROBS} as reported by the engine",
    }
