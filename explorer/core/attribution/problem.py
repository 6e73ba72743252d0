"""One model's attribution problem: the text as ids, the targets, and what is explained."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from explorer.core.attribution.targets import Target, get_target
from explorer.core.member import Member, model_input
from explorer.core.params import CancelToken
from explorer.core.teacher import gather_choices

SOURCES = ("all", "prompt")


@dataclass
class Problem:
    """One model's view of the text: ids (seq,), where the response starts, targets, foils."""

    member: Member
    ids: torch.Tensor  # (seq,)
    start: int  # index of the first response token in `ids`
    targets: list[int]  # response indices (0-based) to explain
    foils: list[int] | None = None  # contrastive foil token id per target
    sources: str = "all"  # "all": every earlier token; "prompt": prompt tokens only (as peers do)
    target: Target = field(default_factory=lambda: get_target("logprob"))
    cancel: CancelToken | None = None  # long methods check it between passes

    @property
    def n_sources(self) -> int:
        """Source positions reported: the prompt's, or the whole sequence's."""
        return self.start if self.sources == "prompt" else int(self.ids.shape[0])

    @property
    def positions(self) -> torch.Tensor:
        """Positions in `ids` of the target tokens (seq index)."""
        return torch.tensor([self.start + t for t in self.targets])

    @property
    def target_ids(self) -> torch.Tensor:
        return self.ids[self.positions]

    @property
    def choices(self) -> torch.Tensor:
        """(targets, K) candidate ids per target: the token, then its foil when contrastive."""
        columns = [self.target_ids]
        if self.target.foil:
            columns.append(torch.tensor(self.foils))
        return torch.stack(columns, dim=1)

    def subset(self, which: list[int]) -> Problem:
        foils = [self.foils[i] for i in which] if self.foils is not None else None
        return replace(self, targets=[self.targets[i] for i in which], foils=foils)


@dataclass
class MethodResult:
    scores: torch.Tensor  # (targets, seq): attribution of each target to each source position
    extra: dict[str, Any] = field(default_factory=dict)


def score_logits(logits: torch.Tensor, problem: Problem, which: torch.Tensor | None = None) -> torch.Tensor:
    """Target scores (batch, targets) from logits taken at the positions that predict the
    targets (batch, targets, vocab); `which` selects a subset of the targets."""
    which = torch.arange(len(problem.targets)) if which is None else which
    return problem.target.fn(gather_choices(logits, problem.choices[which]))


def target_scores(logits: torch.Tensor, problem: Problem) -> torch.Tensor:
    """Target scores (batch, targets) from full logits (batch, seq, vocab)."""
    return score_logits(logits[:, problem.positions - 1], problem)


def causal_mask(problem: Problem, seq: int) -> torch.Tensor:
    """(targets, seq) True where a source can influence a target (it comes before it)."""
    return torch.arange(seq).unsqueeze(0) < problem.positions.unsqueeze(1)


def build_problem(
    member: Member, prompt: str, response: str, chat: str, targets=None, foil=None,
    sources: str = "all", target: Target | None = None,
) -> Problem:  # fmt: skip
    tok = member.tokenizer
    prefix = tok(model_input(member, prompt, chat), add_special_tokens=True)["input_ids"]
    cont = tok(response, add_special_tokens=False)["input_ids"]
    if not cont:
        raise ValueError("response: is empty; give the text to explain")
    if len(prefix) + len(cont) > member.context_length:
        raise ValueError(
            f"response: prompt and response are {len(prefix) + len(cont)} tokens, over {member.ref.label}'s context"
        )
    if sources not in SOURCES:
        raise ValueError(f"sources: 'all' or 'prompt', got {sources!r}")
    chosen = list(range(len(cont))) if targets is None else _targets(targets, len(cont))
    target = target or get_target("contrastive" if foil is not None else "logprob")
    foils = [foil_id(member, foil)] * len(chosen) if target.foil else None
    return Problem(member, torch.tensor(prefix + cont), len(prefix), chosen, foils, sources, target)


def foil_id(member: Member, foil: str | int | None) -> int:
    tok = member.tokenizer
    if foil is None:
        raise ValueError("foil: a contrastive target needs a foil token (foil='…')")
    token = tok.convert_tokens_to_ids(foil) if isinstance(foil, str) else int(foil)
    if token is None or token == tok.unk_token_id and foil != tok.unk_token:
        raise ValueError(f"foil: {foil!r} is not a token of {member.ref.label}'s vocabulary")
    return token


def _targets(targets, n: int) -> list[int]:
    chosen = list(range(n))[targets] if isinstance(targets, slice) else list(targets)
    if not chosen or any(not isinstance(t, int) or not 0 <= t < n for t in chosen):
        raise ValueError(f"targets: response token indices in [0, {n}), got {targets!r}")
    return chosen
