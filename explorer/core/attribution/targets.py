"""What is attributed: a registry of target functions.

A target turns the log-probabilities of each target token's candidates — the response token
itself, and a foil for contrastive targets — into the number a method explains: log p(token)
(`logprob`), log p(token) − log p(foil) (`contrastive`), or a *relative* target, whose value
in a model is taken minus its value in the family's base (`log_ratio`: log p_model − log
p_base, the change an adaptation made). Relative targets are computed as the difference of two
attributions, which is exact for methods that are linear in the target (`additive` ones).

Add one with `register_target(name, fn)`; `fn` maps log-probs (batch, targets, K) to scores
(batch, targets), K = 2 when `foil=True` (token, foil) and 1 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

TargetFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Target:
    name: str
    fn: TargetFn
    foil: bool = False  # needs a foil token (contrastive)
    relative: bool = False  # minus the same target in the base
    description: str = ""

    @property
    def k(self) -> int:
        """Candidates per target token: the token, and its foil when contrastive."""
        return 2 if self.foil else 1


_TARGETS: dict[str, Target] = {}


def register_target(
    name: str, fn: TargetFn, *, foil: bool = False, relative: bool = False, description: str = ""
) -> None:
    """Add (or replace) a target by name; `fx.attribute(..., target=name)` then uses it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: a target needs a name, got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn: expected a callable on log-probs (batch, targets, K), got {type(fn).__name__}")
    doc = description or (fn.__doc__ or "").strip().split("\n")[0]
    _TARGETS[name] = Target(name, fn, foil, relative, doc)


def get_target(name: str) -> Target:
    if name not in _TARGETS:
        raise ValueError(f"target: one of {', '.join(_TARGETS)}, got {name!r}")
    return _TARGETS[name]


def list_targets() -> pd.DataFrame:
    return pd.DataFrame(
        [{"target": t.name, "foil": t.foil, "relative": t.relative, "description": t.description}
         for t in _TARGETS.values()]
    )  # fmt: skip


def logprob(lp: torch.Tensor) -> torch.Tensor:
    """log p(token): how strongly the model predicts each response token."""
    return lp[..., 0]


def contrastive(lp: torch.Tensor) -> torch.Tensor:
    """log p(token) − log p(foil): this token instead of that one."""
    return lp[..., 0] - lp[..., 1]


register_target("logprob", logprob)
register_target("contrastive", contrastive, foil=True)
register_target(
    "log_ratio", logprob, relative=True,
    description="log p_model − log p_base: the change the adaptation made (exactly 0 in the base)",
)  # fmt: skip
