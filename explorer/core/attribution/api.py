"""`attribute` and `attribute_samples`: one method and one target, every chosen model.

The same (prompt, response) text is teacher-forced through every chosen model so the matrices
line up. Targets are the response tokens; sources are every earlier token (prompt and
response), or the prompt's only.

- `target`: `logprob` (log p(token), the default), `contrastive` when a `foil` is given ("this
  token instead of that one"), `log_ratio` for the change an adaptation made (log p_model −
  log p_base, exactly 0 for the base; the `adaptation` method is occlusion of it). New methods
  and targets are registered by name (`register_method`, `register_target`).
- `sources="prompt"` attributes to prompt tokens only, as Captum's and inseq's LLM APIs do:
  cheaper, and integrated gradients then interpolate the prompt alone (the response keeps its
  embeddings), which is what those peers compute.
- `align="words"` (automatic when the chosen models tokenize differently) maps every model's
  tokens to the words of the text, so the matrices line up: scores are summed over a word's
  tokens (additive methods) or maxed (norm-based ones); `target_pos`/`source_pos` are then word
  indices. `align="tokens"` keeps each model's own tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from explorer.core.attribution.frames import token_frame, word_frame
from explorer.core.attribution.methods import Method, get_method
from explorer.core.attribution.problem import MethodResult, Problem, build_problem
from explorer.core.attribution.result import Attribution
from explorer.core.attribution.targets import Target, get_target
from explorer.core.errors import Cancelled
from explorer.core.family import Family
from explorer.core.params import CancelToken, ProgressFn, check_cancel, check_prompt
from explorer.core.results import library_versions
from explorer.core.samples import SampleSet
from explorer.core.threads import fair_share

ALIGN = ("auto", "tokens", "words")


@dataclass
class Plan:
    """One attribution request, resolved: what to build per model and how to run it."""

    family: Family
    text: tuple[str, str, str]  # prompt, response, chat
    targets: Any
    foil: Any
    sources: str
    method: Method
    goal: Target
    options: dict[str, Any]
    cancel: CancelToken | None = None
    _base: MethodResult | None = field(default=None, repr=False)

    def problem(self, label: str) -> Problem:
        prompt, response, chat = self.text
        problem = build_problem(self.family.load(label), prompt, response, chat, self.targets,
                                self.foil, self.sources, self.goal)  # fmt: skip
        problem.cancel = self.cancel
        return problem

    def run(self, label: str, problem: Problem) -> MethodResult:
        """The method's result; for a relative target, minus the base's (exactly 0 there)."""
        if not self.goal.relative:
            return self._run(problem)
        base_label = self.family.base.label
        if self._base is None:
            self._base = self._run(problem if label == base_label else self.problem(base_label))
        own = self._base if label == base_label else self._run(problem)
        extra = {**own.extra, "against": base_label}
        if "converged" in own.extra or "converged" in self._base.extra:  # a difference of both
            pair = zip(converged(own, problem), converged(self._base, problem), strict=True)
            extra["converged"] = [a and b for a, b in pair]
        return MethodResult(own.scores - self._base.scores, extra)

    def _run(self, problem: Problem) -> MethodResult:
        with torch.enable_grad(), fair_share([problem.member.model], batched=self.method.batched):
            return self.method.fn(problem, **self.options)


def converged(result: MethodResult, problem: Problem) -> list[bool]:
    """Per target: whether the method met its own accuracy checks (True for exact methods)."""
    return list(result.extra.get("converged", [True] * len(problem.targets)))


def attribute(
    family: Family,
    prompt: str,
    response: str,
    method: str = "integrated_gradients",
    models: list[str] | None = None,
    targets: slice | list[int] | None = None,
    foil: str | int | None = None,
    chat: str = "never",
    sources: str = "all",
    align: str = "auto",
    target: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> Attribution:
    """Attribute every response token (or `targets`) to every earlier token, in each model.

    `target` names what is explained (`list_targets()`): `logprob` by default, `contrastive`
    with a `foil`, `log_ratio` for the change an adaptation made. `sources="prompt"` attributes
    to prompt tokens only (Captum's and inseq's question); `align="words"` maps every model's
    tokens onto the words of the text (automatic when the models tokenize differently).
    `progress(model, done, total)` follows each model; `cancel` stops between models and
    between passes, raising `Cancelled` whose `partial` is the Attribution of the models that
    finished (None before the first). The module docstring says more."""
    check_prompt(prompt)
    if not isinstance(response, str):
        raise TypeError(f"response: expected a string, got {type(response).__name__}")
    spec = get_method(method)
    goal = get_target(target or ("contrastive" if foil is not None else spec.target))
    labels = models or family.labels
    check_request(family, spec, goal, foil)
    words = use_words(family, labels, align, targets, goal)
    plan = Plan(family, (prompt, response, chat), targets, foil, sources, spec, goal, options, cancel)
    meta = {"prompt": prompt, "response": response, "chat": chat, "method": method, "target": goal.name,
            "options": options, "foil": foil, "sources": sources, "additive": spec.additive,
            "align": "words" if words else "tokens", "versions": library_versions()}  # fmt: skip
    return finished(plan, labels, words, progress, meta)


def finished(plan: Plan, labels: list[str], words: bool, progress, meta: dict) -> Attribution:
    """The plan run over `labels`; on Stop, `Cancelled` carries the models that finished."""
    try:
        df, extras = run_plan(plan, labels, words, progress)
    except Cancelled as err:
        if err.partial is None:
            raise
        df, extras = err.partial
        raise Cancelled(str(err), partial=Attribution(df=df, meta={**meta, "extra": extras})) from None
    return Attribution(df=df, meta={**meta, "extra": extras})


def run_plan(
    plan: Plan, labels: list[str], words: bool, progress: ProgressFn | None
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Every model's frame (one after another, stoppable between them) and its extras."""
    frames, extras = [], {}
    for i, label in enumerate(labels):
        try:
            check_cancel(plan.cancel)
            problem = plan.problem(label)
            result = plan.run(label, problem)
        except Cancelled as err:  # Stop: hand back the finished models' frames
            partial = (pd.concat(frames, ignore_index=True), extras) if frames else None
            raise Cancelled(str(err), partial=partial) from None
        done = np.asarray(converged(result, problem), dtype=bool)
        if words:
            frames.append(word_frame(label, plan.method.name, problem, result.scores, plan.text, plan.method.additive, done))
        else:
            frames.append(token_frame(label, plan.method.name, problem, result.scores, done))
        extras[label] = result.extra
        if progress:
            progress(label, i + 1, len(labels))
    return pd.concat(frames, ignore_index=True), extras


def check_request(family: Family, spec: Method, goal: Target, foil: Any) -> None:
    """Refuse, in a sentence, a method/target/foil combination that cannot be computed."""
    if foil is not None and not goal.foil:
        raise ValueError(f"foil: the {goal.name} target takes no foil; use target='contrastive'")
    if foil is not None and spec.needs == "attentions":
        raise ValueError(f"foil: {spec.name} is not contrastive; use a gradient or occlusion method")
    if goal.relative and not spec.additive:
        raise ValueError(
            f"target: {goal.name} is a difference of two attributions, which needs an additive "
            f"method (grad_x_input, integrated_gradients, occlusion); {spec.name} is not additive"
        )
    if spec.needs_weights and not family.has_weights:
        raise ValueError(
            f"method: {spec.name} needs the models' weights ({spec.needs}), and this family is "
            f"served by {family.server}; use occlusion or adaptation, or local folders"
        )


def use_words(family: Family, labels: list[str], align: str, targets, goal: Target) -> bool:
    if align not in ALIGN:
        raise ValueError(f"align: 'auto', 'tokens' or 'words', got {align!r}")
    shared = family.subset([m for m in labels if m != family.base.label]).shared_tokenizer
    words = align == "words" or (align == "auto" and not shared)
    if words and targets is not None:
        raise ValueError(
            "targets: word-aligned attribution explains every response word; leave targets out"
        )
    if goal.relative and not family.shared_tokenizer:
        raise ValueError(f"target: {goal.name} compares token by token and needs a shared tokenizer")
    return words


def attribute_samples(
    family: Family,
    samples: SampleSet,
    method: str = "grad_x_input",
    models: list[str] | None = None,
    max_samples: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Attribute every sample of each model under that model and summarise per prompt token:
    mean and spread of the sequence-level score across the model's own answers.

    `progress(model, done, total)` counts samples; `cancel` stops within the sample in flight,
    raising `Cancelled` whose `partial` is the spread over the samples that finished."""
    jobs = [(model, i, text) for model in models or samples.models
            for i, text in enumerate([t for t in samples.texts(model) if t.strip()][:max_samples])]  # fmt: skip
    rows = []
    for done, (model, i, text) in enumerate(jobs):
        try:
            check_cancel(cancel)
            attr = attribute(family, samples.prompt, text, method=method, models=[model],
                             chat=samples.params.chat, cancel=cancel, **options)  # fmt: skip
        except Cancelled as err:  # Stop: the spread over the samples that finished
            raise Cancelled(str(err), partial=summarise_spread(rows) if rows else None) from None
        rows.append(attr.sequence().assign(sample=i))
        if progress:
            progress(model, done + 1, len(jobs))
    return summarise_spread(rows)


def summarise_spread(rows: list[pd.DataFrame]) -> pd.DataFrame:
    """Mean, sd and count per (model, prompt token) of per-sample sequence attributions, and
    every sample's score in sample order (`scores`, what `agreement` compares models with)."""
    if not rows:
        return pd.DataFrame(columns=["model", "source_pos", "source_token", "mean", "sd", "n", "scores"])
    long = pd.concat(rows, ignore_index=True)
    out = long.groupby(["model", "source_pos", "source_token"], sort=False)["score"].agg(["mean", "std", "count", list])
    return out.reset_index().rename(columns={"std": "sd", "count": "n", "list": "scores"}).fillna({"sd": 0.0})
