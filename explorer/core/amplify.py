"""Amplified sampling along the base → descendant logit path.

At every step the sampler draws from `z_λ = z_base + λ (z_desc − z_base)` (Goodfire's model-diff
amplification, 2025; logit path extrapolation, 2026): λ = 0 is the base, λ = 1 the descendant,
λ > 1 exaggerates what the adaptation changed, so a behaviour the descendant shows 2% of the time
becomes common enough to see, name and measure (`explorer.core.extrapolate` reads its λ = 1 rate
back from the larger λ).

How: the descendant runs in `generate` as usual; a logits processor, called at each step before
temperature, top-k and top-p, runs the base on the same tokens with its own key–value cache
(`LockStep`) and returns the mixture. A LoRA's base logits come from the same weights with the
adapter switched off (no second copy). λ = 0 and λ = 1 need only one model: they are that
model's own samples, seeded as `fx.sample` seeds it, so they reproduce them token for token;
the mixer itself reproduces them too at those λ (tests/test_amplify.py). Needs both models'
weights and one vocabulary: a served model returns only its top log-probs per token, not the
whole next-token distribution a mixture needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch

from explorer.core.errors import Cancelled
from explorer.core.family import Family
from explorer.core.member import Member, encode_prompt, model_input
from explorer.core.params import (
    CancelToken,
    ProgressFn,
    SamplingParams,
    check_batch_size,
    check_cancel,
    check_prompt,
)
from explorer.core.samples import SampleSet
from explorer.core.sampling import sample_set
from explorer.core.teacher import cache_keyword
from explorer.core.threads import fair_share

MAX_LAMBDA = 64.0


def lambda_label(descendant: str, base: str, lam: float) -> str:
    """The name of a λ's samples in every table: the base at 0, the descendant at 1,
    "fable-rare λ=4" elsewhere."""
    if lam == 0:
        return base
    return descendant if lam == 1 else f"{descendant} λ={lam:g}"


class LockStep:
    """The base's half of the path: fed every token the descendant's `generate` chose, with its
    own cache, in the same form `generate` feeds a model (positions, one kept logit row)."""

    def __init__(self, model: Any, prompt_ids: torch.Tensor, driver_prompt: int, off: Callable[[], Any]) -> None:
        self.model, self.prompt_ids, self.driver_prompt, self.off = model, prompt_ids, driver_prompt, off
        self.keyword = cache_keyword(model) or "past_key_values"
        self.cache, self.fed, self.length = None, 0, 0

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The base's next-token logits (rows, vocab) after the driver's `input_ids` (rows, seq)."""
        rows = input_ids.shape[0]
        if self.cache is None:  # the prompt (the base's own model input), once per row as generate does
            new = self.prompt_ids.expand(rows, -1)  # (rows, prompt)
        else:
            new = input_ids[:, self.driver_prompt + self.fed :]  # (rows, tokens chosen since)
            self.fed += new.shape[1]
        positions = torch.arange(self.length, self.length + new.shape[1], device=new.device).expand(rows, -1)
        with self.off():
            out = self.model(input_ids=new, position_ids=positions, logits_to_keep=1, use_cache=True,
                             return_dict=True, **{self.keyword: self.cache})  # fmt: skip
        self.cache = out[self.keyword]
        self.length += new.shape[1]
        return out.logits[:, -1].float()  # (rows, vocab)


class PathMixer:
    """A logits processor: the descendant's logits in, `z_base + λ (z_desc − z_base)` out.

    Written so that λ = 0 returns the base's logits and λ = 1 the descendant's exactly (bit for
    bit), which is what makes the endpoints reproduce each model's own samples."""

    def __init__(self, base: LockStep, lam: float) -> None:
        self.base, self.lam = base, float(lam)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return mix(self.base.logits(input_ids), scores, self.lam)  # (rows, vocab)


def mix(base: torch.Tensor, desc: torch.Tensor, lam: float) -> torch.Tensor:
    """`z_base + λ (z_desc − z_base)` (rows, vocab), in the descendant's width: computed from the
    nearer end, so λ = 0 gives the base's logits and λ = 1 the descendant's bit for bit."""
    width = min(base.shape[-1], desc.shape[-1])  # a padded embedding table: extra ids never occur
    near, far = desc[:, :width], base[:, :width]
    diff = near - far
    mixed = far + lam * diff if lam <= 0.5 else near + (lam - 1) * diff
    mixed = torch.nan_to_num(mixed, nan=-torch.inf)  # -inf in both models stays -inf
    if width < desc.shape[-1]:
        mixed = torch.cat([mixed, torch.full_like(desc[:, width:], -torch.inf)], dim=-1)
    return mixed


class PathNext:
    """The mixture's next-token logits after each prefix (for `explorer.core.exact`): the base's
    and the descendant's, each from its own prompt cache, mixed as the sampler mixes them."""

    def __init__(self, base: Member, desc: Member, prompt: str, params: SamplingParams, lam: float) -> None:
        from explorer.core.exact import ModelNext

        model, off = base_half(base, desc)
        self.base = ModelNext(base if model is base.model else desc, prompt, params, context=off)
        self.desc, self.lam = ModelNext(desc, prompt, params), lam

    def __call__(self, prefixes: list[tuple[int, ...]]) -> torch.Tensor:
        return mix(self.base(prefixes), self.desc(prefixes), self.lam)


def exact_along_path(family: Family, prompt: str, descendant: str, pattern: Any, lambdas: Sequence[float],
                     params: SamplingParams | None = None, max_rows: int = 256) -> pd.DataFrame:  # fmt: skip
    """The exact probability of `pattern` at each λ of the path (see explorer.core.exact): lam,
    p, lo, hi. The truth the amplified samples and the λ = 1 extrapolation are checked against."""
    from explorer.core.exact import exact_probability

    params = params or SamplingParams()
    base, desc = check_path(family, descendant)
    rows = []
    for lam in check_lambdas(lambdas):
        found = exact_probability(desc, prompt, pattern, params, max_rows, next_tokens=PathNext(base, desc, prompt, params, lam))
        rows.append({"lam": lam, "p": found.p, "lo": found.lo, "hi": found.hi})
    return pd.DataFrame(rows, columns=["lam", "p", "lo", "hi"])


def base_half(base: Member, descendant: Member) -> tuple[Any, Callable[[], Any]]:
    """The module that gives the base's logits for the lock-step, and the context it runs in: a
    LoRA's own weights with its adapter switched off, else the base's model."""
    model = descendant.model
    if descendant.ref.adapter and hasattr(model, "disable_adapter"):
        return model, adapter_switch(model)
    return base.model, contextlib.nullcontext


def adapter_switch(model: Any) -> Callable[[], Any]:
    """A context that switches a peft model's adapters off, cheaply enough for every step.

    peft's own `disable_adapter()` walks every module twice per use and resets which weights
    want gradients (measured: a third of an amplified fable-pirate run); here the adapter layers
    are found once and only their off switch is flipped, and put back as it was. Falls back to
    peft's context where its layers keep the switch elsewhere."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers or not all(hasattr(m, "_disable_adapters") for m in layers):
        return model.disable_adapter

    @contextlib.contextmanager
    def off():
        before = [m._disable_adapters for m in layers]
        for m in layers:
            m._disable_adapters = True
        try:
            yield
        finally:
            for m, was in zip(layers, before, strict=True):
                m._disable_adapters = was

    return off


def mixer_for(base: Member, descendant: Member, prompt: str, params: SamplingParams, lam: float):
    """A factory of one `PathMixer` per batch of the descendant's `generate`."""
    model, off = base_half(base, descendant)
    ids = encode_prompt(base, model_input(base, prompt, params.chat), params.max_new_tokens).to(base.device)

    def make(driver_ids: torch.Tensor) -> PathMixer:
        return PathMixer(LockStep(model, ids, driver_ids.shape[1], off), lam)

    return make


def check_path(family: Family, descendant: str) -> tuple[Member, Member]:
    """The base and the descendant, refused with a sentence when no path joins them."""
    base_label = family.base.label
    if descendant == base_label or descendant not in family.labels:
        others = ", ".join(family.labels[1:]) or "none"
        raise ValueError(f"descendant: {descendant!r} is not a descendant of {base_label} in this family (one of: {others})")
    base, desc = family.load(base_label), family.load(descendant)
    if not (base.has_weights and desc.has_weights):
        raise ValueError(
            f"amplify: needs both models' weights here; {descendant} or {base_label} is served, and a "
            "server returns only the top log-probs of each token, not the whole next-token distribution "
            "a mixture of two models needs. Use local weights of both."
        )
    if base.tokenizer_key != desc.tokenizer_key:
        raise ValueError(
            f"amplify: {descendant} and {base_label} tokenize differently, so their next-token logits do "
            "not describe the same tokens and cannot be mixed (a distilled student with its own "
            "vocabulary has no logit path to its teacher)."
        )
    return base, desc


def check_lambdas(lambdas: Sequence[float]) -> list[float]:
    values = list(dict.fromkeys(float(v) for v in lambdas))
    if not values or any(v != v or not -MAX_LAMBDA <= v <= MAX_LAMBDA for v in values):
        raise ValueError(f"lambdas: give one or more numbers between {-MAX_LAMBDA:g} and {MAX_LAMBDA:g}, got {list(lambdas)!r}")
    return sorted(values)


def amplify(
    family: Family,
    prompt: str,
    descendant: str,
    lambdas: Sequence[float] = (0, 1, 2, 4),
    n: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 24,
    seed: int = 0,
    chat: str = "auto",
    batch_size: int = 256,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SampleSet:
    """`n` samples at each λ of the base → `descendant` path: a SampleSet whose `df` has a `lam`
    column and one model name per λ (the base at 0, the descendant at 1, "name λ=4" elsewhere),
    so `variability`, `provenance`, clusters and mining read it unchanged (each λ against the
    base). `rates_by_lambda` and `extrapolate` (explorer.core.extrapolate) read it along λ."""
    params = SamplingParams(n, temperature, top_p, top_k, max_new_tokens, seed, chat)
    check_prompt(prompt)
    check_batch_size(batch_size)
    values = check_lambdas(lambdas)
    base, desc = check_path(family, descendant)
    results, members = [], []
    try:
        for lam in values:
            check_cancel(cancel)
            member, result = sample_at(base, desc, prompt, params, lam, batch_size, progress, cancel)
            members.append(member)
            results.append(result)
    except Cancelled as err:  # Stop: keep the λ that finished
        done = _path_set(family, prompt, params, members, results, values, descendant) if results else None
        raise Cancelled("cancelled", partial=done) from err
    return _path_set(family, prompt, params, members, results, values, descendant)


def _path_set(family, prompt, params, members, results, values, descendant) -> SampleSet:
    samples = sample_set(family, prompt, params, members, results)
    lam_of = {m.ref.label: lam for m, lam in zip(members, values, strict=False)}
    samples.df["lam"] = samples.df["model"].map(lam_of).astype(float)
    samples.meta["amplify"] = {"base": family.base.label, "descendant": descendant, "lambdas": list(lam_of.values())}
    return samples


def sample_at(
    base: Member, desc: Member, prompt: str, params: SamplingParams, lam: float, batch_size: int,
    progress: ProgressFn | None, cancel: CancelToken | None,
) -> tuple[Member, Any]:  # fmt: skip
    """One λ's samples: the base's or the descendant's own at 0 and 1, the mixture elsewhere
    (the descendant driving, named for λ so its seed is its own)."""
    from explorer.core.local import sample_local

    if lam in (0, 1):
        member = base if lam == 0 else desc
        return member, member.sample(prompt, params, batch_size, progress, cancel)
    named = desc.named(dataclasses.replace(desc.ref, label=lambda_label(desc.ref.label, base.ref.label, lam)))
    with fair_share([desc.model]) as threads:
        result = sample_local(named, prompt, params, batch_size, progress, cancel,
                              mixer=mixer_for(base, desc, prompt, params, lam))  # fmt: skip
    result.threads = threads
    return named, result


def lambdas_of(samples: Any) -> pd.Series:
    """Each model's λ in an amplified SampleSet (a sentence says so when it is not one)."""
    if "lam" not in samples.df:
        raise ValueError("samples: not an amplified SampleSet (no `lam` column); make one with fx.amplify")
    return samples.df.groupby("model", sort=False)["lam"].first()
