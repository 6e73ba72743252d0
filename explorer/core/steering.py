"""Steering: the base sampled with a descendant's activation difference added to its residual
stream, to test whether the difference carries the descendant's behaviour.

`steer` samples the unsteered base and the steered base (the scaled difference added to one
block's output at every position, prompt and generated tokens alike) with the same parameters,
in one `SampleSet` whose rows say which is which (`model`: the base, then
"<base> + <scale>·Δ <descendant>"), so `provenance` labels the steered base against the base
as it labels any descendant: *introduced* says the difference alone brings the behaviour, with
the family-wise guarantee of every label. Kept apart from amplified sampling (which mixes two
models' logits): this one moves activations, and touches the base's own forward pass only in
the thread that steers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from explorer.core.estimate import Estimate, estimate
from explorer.core.family import Family
from explorer.core.layers.anatomy import anatomy, output_of, with_output
from explorer.core.layers.diffs import MEAN, ActivationDiff
from explorer.core.params import (
    CancelToken,
    ProgressFn,
    SamplingParams,
    check_batch_size,
    check_prompt,
)
from explorer.core.samples import SampleSet
from explorer.core.sampling import sample_members, sample_set

SCALE = 8.0  # multiples of the mean difference (see the README's steering figures)


def steer(
    family: Family, prompt: str, difference: ActivationDiff | torch.Tensor, model: str | None = None,
    layer: int | None = None, position: int = MEAN, scale: float = SCALE, n: int = 64,
    temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, max_new_tokens: int = 24,
    seed: int = 0, chat: str = "auto", with_descendant: bool = False, batch_size: int = 256,
    progress: ProgressFn | None = None, cancel: CancelToken | None = None,
) -> SampleSet:  # fmt: skip
    """`n` samples of the base and of the base steered by `scale` × `difference` at block
    `layer`: an `ActivationDiff` (with `model`, the descendant whose difference it is, when it
    holds several; `layer` and `position` default to its own) or a (hidden,) tensor with
    `layer`. `with_descendant` samples the descendant too, for its rate beside them."""
    params = SamplingParams(n, temperature, top_p, top_k, max_new_tokens, seed, chat)
    check_prompt(prompt)
    check_batch_size(batch_size)
    if not isinstance(scale, (int, float)) or scale != scale:
        raise ValueError(f"scale: a number (how many times the difference to add), got {scale!r}")
    base = family.load(family.base.label)
    body = anatomy(base)  # a served base: its sentence first
    vector, model, layer = steering_vector(difference, model, layer, position, len(body.blocks))
    if vector.shape != (body.hidden,):
        raise ValueError(f"difference: {tuple(vector.shape)} does not fit {base.ref.label}'s residual stream ({body.hidden},)")
    label = f"{base.ref.label} + {scale:g}·Δ {model or 'vector'}"
    ref = replace(base.ref, label=label, relation="steered", parent=base.ref.label, adapter=False)
    view = base.named(ref)  # the base's weights under the steered label (its own seed stream)
    others = [family.load(model)] if with_descendant and model else []
    results = sample_members([base, *others], prompt, params, batch_size, progress, cancel)
    with steering(body.blocks[layer], scale * vector):
        results += sample_members([view], prompt, params, batch_size, progress, cancel)
    steered = replace(family, descendants=(ref, *(family.ref(m.ref.label) for m in others)))
    samples = sample_set(steered, prompt, params, [base, view, *others], [results[0], results[-1], *results[1:-1]])
    samples.meta["steering"] = {"model": model, "layer": layer, "position": position, "scale": float(scale),
                                "norm": float(scale * vector.norm()), "label": label}  # fmt: skip
    return samples


def steer_estimate(family: Family, prompt: str, params: SamplingParams) -> Estimate:
    """Seconds and memory of `steer`: the base sampled twice, unsteered and steered."""
    cost = estimate(family, "sample", prompt=prompt, models=[family.base.label] * 2, n=params.n,
                    max_new_tokens=params.max_new_tokens, chat=params.chat)  # fmt: skip
    return Estimate("steering", cost.seconds, cost.token_passes, cost.memory_bytes,
                    f"{params.n} samples of the base, unsteered and steered")  # fmt: skip


def steering_vector(difference: Any, model: str | None, layer: int | None, position: int,
                    n_blocks: int) -> tuple[torch.Tensor, str | None, int]:  # fmt: skip
    """The (hidden,) vector to add, the descendant it comes from, and the block."""
    if isinstance(difference, ActivationDiff):
        if model is None:
            if len(difference.models) != 1:
                raise ValueError(f"model: name the descendant whose difference steers ({', '.join(difference.models)})")
            model = difference.models[0]
        layer = difference.layer if layer is None else layer
        check_layer(layer, n_blocks)
        vector = difference.vector(model, layer, position)
    elif isinstance(difference, torch.Tensor):
        if layer is None:
            raise ValueError("layer: give the block whose output a raw difference vector is added to")
        vector = difference.detach().float().reshape(-1)
    else:
        raise TypeError(f"difference: an ActivationDiff or a tensor, got {type(difference).__name__}")
    check_layer(layer, n_blocks)
    return vector, model, layer


def check_layer(layer: Any, n_blocks: int) -> None:
    if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < n_blocks:
        raise ValueError(f"layer: a block index in [0, {n_blocks}), got {layer!r}")


@contextmanager
def steering(module: torch.nn.Module, vector: torch.Tensor) -> Iterator[None]:
    """`vector` added to `module`'s output at every position, in this thread only (another
    thread running the same shared model meanwhile is left alone)."""
    owner = threading.get_ident()

    def add(_module, _args, out):
        if threading.get_ident() != owner:
            return None
        hidden = output_of(out)  # (batch, seq, hidden)
        return with_output(out, hidden + vector.to(hidden.device, hidden.dtype))

    handle = module.register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()
