"""The registry of attribution methods, and the gradient methods that need nothing more.

A method is one function `fn(problem, **options) -> MethodResult` registered by name with what
it needs from a model (`gradients`, `attentions` or only `forward` passes, which served members
can do), whether its scores add up over sources (`additive`, which relative targets need), and
the target it explains by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from explorer.core.attribution.attention import attention, attention_rollout
from explorer.core.attribution.gradients import embed, target_gradients
from explorer.core.attribution.ig import integrated_gradients
from explorer.core.attribution.occlusion import occlusion
from explorer.core.attribution.problem import MethodResult, Problem

NEEDS = ("gradients", "attentions", "forward")
MethodFn = Callable[..., MethodResult]


@dataclass(frozen=True)
class Method:
    name: str
    fn: MethodFn
    additive: bool
    needs: str = "gradients"
    target: str = "logprob"  # the target explained when the caller names none
    batched: bool = False  # many rows per pass (worth several threads even on a tiny model)

    @property
    def needs_weights(self) -> bool:
        return self.needs != "forward"


_METHODS: dict[str, Method] = {}


def register_method(
    name: str, fn: MethodFn, *, additive: bool, needs: str = "gradients", target: str = "logprob",
    batched: bool = False,
) -> None:  # fmt: skip
    """Add an attribution method: `fn(problem, **kwargs) -> MethodResult`.

    `additive` scores sum over sources (summed when aggregating words); others are maxed.
    `needs` says what the method needs from a model: `gradients`, `attentions` or `forward`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: a method needs a name, got {name!r}")
    if needs not in NEEDS:
        raise ValueError(f"needs: one of {', '.join(NEEDS)}, got {needs!r}")
    if not callable(fn):
        raise TypeError(f"fn: expected a callable taking a Problem, got {type(fn).__name__}")
    _METHODS[name] = Method(name, fn, additive, needs, target, batched)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise ValueError(f"method: one of {', '.join(_METHODS)}, got {name!r}")
    return _METHODS[name]


def list_methods() -> pd.DataFrame:
    """The registered methods, in registration order: name, additive, needs, default target."""
    rows = [{"method": m.name, "additive": m.additive, "needs": m.needs, "target": m.target}
            for m in _METHODS.values()]  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "additive", "needs", "target"])


def saliency(problem: Problem) -> MethodResult:
    """L2 norm of the gradient of each target w.r.t. each source embedding."""
    grads = target_gradients(problem, embed(problem))
    return MethodResult(grads[:, 0].norm(dim=-1).cpu())  # (targets, seq)


def grad_x_input(problem: Problem) -> MethodResult:
    """Gradient · input embedding, summed over the embedding dimension."""
    x = embed(problem)
    grads = target_gradients(problem, x)
    return MethodResult((grads[:, 0] * x[0]).sum(-1).cpu())  # (targets, seq)


# Gradient methods batch their targets' vector–Jacobian products (`target_gradients`): worth a
# second thread even on the zoo (fable grad×input: 48 ms with 2 threads, 56 ms with 1).
register_method("saliency", saliency, additive=False, batched=True)
register_method("grad_x_input", grad_x_input, additive=True, batched=True)
register_method("integrated_gradients", integrated_gradients, additive=True, batched=True)
register_method("occlusion", occlusion, additive=True, needs="forward", batched=True)
register_method("attention", attention, additive=False, needs="attentions")
register_method("attention_rollout", attention_rollout, additive=False, needs="attentions")
register_method("adaptation", occlusion, additive=True, needs="forward", target="log_ratio", batched=True)
