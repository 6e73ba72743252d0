"""The member protocol: what every family member offers, whether its weights are loaded here
(`explorer.core.local`) or it is served by an inference engine (`explorer.core.served`).

Analyses are written against this protocol only; which kind a member is gets decided once, in
`explorer.core.members.open_member`. Capabilities are asked, never inferred from the kind:
`has_weights` (gradients and attention need them), `concurrent` (many members may be asked at
once because a server batches them).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from explorer.core.params import CancelToken, ProgressFn, SamplingParams
from explorer.core.refs import ModelRef


@dataclass
class ModelSamples:
    """Raw per-model output of sampling, before it becomes DataFrame rows."""

    rows: list[dict[str, Any]]
    first_token: list[dict[str, Any]]
    model_input: str
    seconds: float
    threads: int | None = None  # torch threads it ran with (None: not computed here)


@runtime_checkable
class Member(Protocol):
    """One model of a family, ready to sample and score."""

    ref: ModelRef
    tokenizer: Any

    @property
    def context_length(self) -> int: ...

    @property
    def n_bytes(self) -> int: ...

    @property
    def model(self) -> torch.nn.Module | None:
        """The weights as a torch module when they are at hand, else None."""

    @property
    def has_weights(self) -> bool: ...

    @property
    def concurrent(self) -> bool: ...

    @property
    def tokenizer_key(self) -> Hashable:
        """Equal for members that map text to the same token ids."""

    def sample(
        self,
        prompt: str,
        params: SamplingParams,
        batch_size: int = 256,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> ModelSamples: ...

    def continuation_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[int]],
        full: bool = False,
        cancel: CancelToken | None = None,
    ) -> list[torch.Tensor]:
        """Per (prefix, continuation): teacher-forced log p of each continuation token (len,),
        or with `full` the whole next-token log-distribution (len, vocab)."""

    def choice_logprobs(
        self, rows: torch.Tensor, predict_at: torch.Tensor, choices: torch.Tensor
    ) -> torch.Tensor:
        """For rows of ids (rows, len): log p of each candidate token `choices` (targets, K)
        as predicted at positions `predict_at` (targets,). Returns (rows, targets, K)."""

    def engine(self) -> dict[str, Any] | None:
        """What produced this member's results when it is not plain local weights."""


def plain_model(model: Any) -> Any:
    """The transformers model inside a peft wrapper (the model itself when it has none): where
    its blocks, forward signature and parameter names are."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_input(member: Member, prompt: str, chat: str) -> str:
    """The exact text a model receives: the prompt, or the prompt in its chat template."""
    template = getattr(member.tokenizer, "chat_template", None)
    if chat == "never" or (chat == "auto" and not template):
        return prompt
    if not template:
        raise ValueError(f"chat: 'always' but {member.ref.label} has no chat template")
    messages = [{"role": "user", "content": prompt}]
    return member.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )


def encode_prompt(member: Member, text: str, max_new_tokens: int) -> torch.Tensor:
    """Token ids (1, seq); refuses (never truncates) a prompt that leaves no room to answer."""
    tok = member.tokenizer
    add_special = not text.startswith(tok.bos_token or "\0")
    ids = tok(text, return_tensors="pt", add_special_tokens=add_special)["input_ids"]  # (1, seq)
    label, limit = member.ref.label, member.context_length
    if ids.shape[1] == 0:
        raise ValueError(f"prompt: {label}'s tokenizer makes no tokens of it")
    if max_new_tokens >= limit:
        raise ValueError(
            f"max_new_tokens: {max_new_tokens} does not fit {label}'s context of {limit} tokens"
        )
    if ids.shape[1] + max_new_tokens > limit:
        raise ValueError(
            f"prompt: is {ids.shape[1]} tokens for {label}; with max_new_tokens="
            f"{max_new_tokens} that exceeds its context of {limit} tokens. Shorten the prompt "
            "(the explorer refuses rather than silently truncating it)."
        )
    return ids


def sample_row(member: Member, params: SamplingParams, seed: int, **values: Any) -> dict:
    """One row of `SampleSet.df` (the columns every backend fills the same way)."""
    return {"model": member.ref.label, "seed": params.seed, "model_seed": seed, **values}
