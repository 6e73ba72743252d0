"""`fx.discover`: what did each adaptation change, over a prompt set, without knowing what to
look for — and which of it holds up on fresh samples.

    d = fx.discover(fx.load_family("fable"))          # the zoo's probes; "general" elsewhere
    d.df        # per (prompt, descendant): KL(desc ‖ base) along both models' samples, log-ratios, rank
    d.tokens    # per descendant: tokens raised / lowered (excess and top-K rankings side by side)
    d.words     # the same as words; d.candidates: the words proposed as behaviours, per prompt
    d.findings  # the candidates labelled on fresh samples (family-wise over the whole page)

Needs the members' weights and a shared tokenizer (full next-token distributions, compared token
by token); a served family gets a sentence.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from explorer.core.discover.prompts import PromptItem, prompt_set
from explorer.core.discover.propose import behaviours_by_prompt, proposers_by_prompt
from explorer.core.discover.result import (
    Discovery,
    confirmed_tables,
    divergence_table,
    mined_tables,
    prompts_table,
)
from explorer.core.discover.stages import confirm_prompt, discover_prompt, page_intervals
from explorer.core.discover.units import Units
from explorer.core.errors import Cancelled
from explorer.core.family import Family
from explorer.core.params import CancelToken, ProgressFn, SamplingParams, check_cancel
from explorer.core.results import library_versions
from explorer.core.scoring import require_shared


@dataclass(frozen=True)
class Plan:
    """What a Discover run does: the prompts, the two stages' sampling, how words are picked."""

    items: tuple[PromptItem, ...]
    params: SamplingParams  # discovery samples per model and prompt
    confirm: SamplingParams  # fresh samples per model of each prompt with candidates (n=0: none)
    top: int = 5  # words per descendant and direction proposed as behaviours
    max_prompts: int = 3  # prompts each proposed word is confirmed on
    rank_by: str = "excess"  # or "top_k" (diffing-toolkit's ranking)

    def settings(self, family: Family) -> dict[str, Any]:
        return {"family": family.to_dict(), "prompts": [i.prompt for i in self.items], "params": self.params.to_dict(),
                "confirm": self.confirm.to_dict() if self.confirm else None, "top": self.top, "max_prompts": self.max_prompts,
                "rank_by": self.rank_by}  # fmt: skip


def discover(
    family: Family, prompts: Any = "auto", *, n: int = 8, n_confirm: int = 128, max_new_tokens: int = 24,
    temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0, chat: str = "auto",
    top: int = 5, max_prompts: int = 3, rank_by: str = "excess", models: list[str] | None = None,
    out: str | os.PathLike | None = None, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
) -> Discovery:  # fmt: skip
    """Compare every descendant with the base over `prompts` (see `prompt_set`), mine the words
    each adaptation raised or lowered, and confirm the top ones on `n_confirm` fresh samples per
    model (0: propose only). `out`: a folder that makes the run resumable. `progress(part, done,
    total)` follows "discovering" and "confirming" per prompt; Stop raises `Cancelled` whose
    `partial` is the Discovery of the prompts that finished."""
    family = family.subset(models)
    check_family(family)
    if rank_by not in ("excess", "top_k"):
        raise ValueError(f"rank_by: 'excess' or 'top_k', got {rank_by!r}")
    params = SamplingParams(n, temperature, top_p, top_k, max_new_tokens, seed, chat)
    confirm = SamplingParams(max(n_confirm, 1), temperature, top_p, top_k, max_new_tokens, seed, chat)
    plan = Plan(tuple(prompt_set(prompts, family.name)), params, confirm if n_confirm else None, top, max_prompts, rank_by)
    return run_plan(family, plan, Units(out, plan.settings(family)), progress, cancel)


def check_family(family: Family) -> None:
    if not family.descendants:
        raise ValueError("family: Discover compares descendants with their base; this family has no descendant")
    if not family.has_weights:
        raise ValueError(f"family: Discover compares full next-token distributions, which needs the weights; "
                         f"{family.server or 'a server'} reports at most the top-20 log-probs per token, so KL would "
                         "be a bound, not a value, and tokens outside the top 20 could not be mined. Load the "
                         "models locally (their folders, hub ids or GGUF files) to run Discover.")  # fmt: skip
    require_shared(family, "Discover")


def run_plan(family: Family, plan: Plan, units: Units, progress: ProgressFn | None, cancel: CancelToken | None) -> Discovery:
    started = time.perf_counter()
    total = len(plan.items)
    try:
        for index, item in enumerate(plan.items):
            check_cancel(cancel)
            if units.get("discover", index) is None:
                units.put("discover", discover_prompt(family, item, index, plan.params, cancel=cancel))
            _report(progress, "discovering", index + 1, total)
        result = assemble(family, plan, units, started)
        if plan.confirm is not None:
            _confirm_all(family, plan, units, result, progress, cancel)
    except Cancelled as err:
        raise Cancelled("cancelled", partial=assemble(family, plan, units, started)) from err
    return assemble(family, plan, units, started)


def _confirm_all(family: Family, plan: Plan, units: Units, result: Discovery, progress, cancel) -> None:
    behaviours, proposers = behaviours_by_prompt(result.candidates), proposers_by_prompt(result.candidates)
    intervals = page_intervals(proposers)
    for done, (index, found) in enumerate(sorted(behaviours.items()), start=1):
        check_cancel(cancel)
        if units.get("confirm", index) is None:
            unit = confirm_prompt(family, plan.items[index], index, found, proposers[index], plan.confirm, intervals, cancel=cancel)
            units.put("confirm", unit)
        _report(progress, "confirming", done, len(behaviours))


def _report(progress: ProgressFn | None, part: str, done: int, total: int) -> None:
    if progress:
        progress(part, done, total)


def assemble(family: Family, plan: Plan, units: Units, started: float) -> Discovery:
    """The Discovery of every unit finished so far."""
    found, checked = units.of("discover"), units.of("confirm")
    prompts = prompts_table(plan.items, found)
    if not found:
        raise Cancelled("cancelled before the first prompt finished", partial=None)
    tok = family.load(family.base.label).tokenizer
    prompt_tokens, tokens, words, candidates = mined_tables(found, tok, family.base.label, plan.rank_by, plan.top, plan.max_prompts)
    provenance, confirmed = confirmed_tables(checked, prompts_table(plan.items, checked), candidates)
    contexts = _contexts(found)
    meta = {**plan.settings(family), "planned": len(plan.items), "versions": library_versions(),
            "seconds": round(time.perf_counter() - started, 2), "confirmed_prompts": len(checked)}  # fmt: skip
    return Discovery(divergence_table(found, prompts), tokens, words, candidates, confirmed, provenance, prompt_tokens,
                     contexts, prompts, {u.index: u.samples for u in found}, {u.index: u.samples for u in checked}, meta)  # fmt: skip


def _contexts(found) -> Any:
    import pandas as pd

    frames = [u.tables["contexts"] for u in found if len(u.tables["contexts"])]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
