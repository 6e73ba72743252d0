"""What a Discover run will cost before it runs (seconds on this machine, memory), counted the
way `explorer.core.estimate` counts: passes from the lengths involved × pass times measured once
per model.

Per prompt: every member samples `n` responses; each descendant and the base then read the
descendant's and the base's samples (2n rows each, teacher-forced). Confirmation samples every
member `n_confirm` times on the prompts that get candidates — not known before the run, so it is
priced at its most likely bound: one prompt per proposed word (words share prompts, so fewer).
"""

from __future__ import annotations

from typing import Any

from explorer.core.discover.api import check_family
from explorer.core.discover.prompts import prompt_set
from explorer.core.estimate import (
    Counter,
    Estimate,
    activation_bytes,
    n_tokens,
    pass_timing,
    sampling_counter,
)
from explorer.core.family import Family
from explorer.core.member import model_input


def discover_estimate(
    family: Family, prompts: Any = "auto", *, n: int = 8, n_confirm: int = 128, max_new_tokens: int = 24,
    chat: str = "auto", top: int = 5, max_prompts: int = 3, models: list[str] | None = None,
) -> Estimate:  # fmt: skip
    """The expected cost of `discover` called with the same arguments."""
    family = family.subset(models)
    check_family(family)
    items = prompt_set(prompts, family.name)
    descendants = len(family.descendants)
    confirmed = min(len(items), 2 * top * descendants) if n_confirm else 0
    seconds, passes, memory = 0.0, 0.0, 0
    for label in family.labels:
        member = family.load(label)
        timing = pass_timing(member)
        reads = descendants if label == family.base.label else 1  # the base reads every pair
        c = Counter()
        for item in items:
            _add_prompt(c, member, item.prompt, n, max_new_tokens, chat, reads)
        for item in items[:confirmed]:
            c.add(sampling_counter(member, item.prompt, n_confirm, max_new_tokens, chat))
        seconds += c.seconds(timing)
        passes += c.token_passes
        memory = max(memory, member.n_bytes + activation_bytes(member, min(2 * n, 64), max_new_tokens))
    detail = (f"{len(items)} prompts × {len(family.labels)} models × {n} samples, then up to {confirmed} prompts "
              f"confirmed on {n_confirm} fresh samples each")  # fmt: skip
    return Estimate("discover", seconds, passes, memory, detail)


def _add_prompt(c: Counter, member, prompt: str, n: int, max_new_tokens: int, chat: str, reads: int) -> None:
    c.add(sampling_counter(member, prompt, n, max_new_tokens, chat))
    prefix = n_tokens(member, model_input(member, prompt, chat), special=True)
    c.forward(1, prefix, repeat=reads)
    c.forward(2 * n, max_new_tokens, repeat=reads, heads=max_new_tokens)  # the whole distribution at every position
