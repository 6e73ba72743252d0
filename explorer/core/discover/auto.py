"""The Findings page's automatic behaviours when answers rarely repeat.

On fable, answers repeat ("sunny ."), so answer clusters make good behaviours. On real models a
cluster is a whole sentence seen once, and the labels say nothing. There, the behaviours are the
words each descendant's adaptation raised or lowered on this prompt, mined as Discover mines
them — but from a *separate* small draw (its own seeds), never from the samples being labelled:
the words are chosen without looking at those samples, so their labels keep the page's
family-wise guarantee.
"""

from __future__ import annotations

from dataclasses import replace

from explorer.core.clustering import normalise
from explorer.core.discover.api import Plan, run_plan
from explorer.core.discover.prompts import PromptItem
from explorer.core.discover.units import Units
from explorer.core.family import Family
from explorer.core.params import CancelToken
from explorer.core.samples import SampleSet

REPEAT_SHARE = 0.5  # answers "repeat" when at least this share of a model's samples has a twin
AUTO_SEEDS = 2_000_003  # the mining draw's seeds start here (the shown samples use the run's)
MINING_SAMPLES = 4  # per model


def rarely_repeat(samples: SampleSet) -> bool:
    """Whether fewer than half of the samples, in the models that have most twins, repeat an
    answer of the same model (so answer clusters would be single sentences)."""
    df = samples.df.assign(norm=samples.df["text"].astype(str).map(normalise))
    twins = df.groupby(["model", "norm"])["norm"].transform("size") > 1
    shares = twins.groupby(df["model"]).mean()
    return bool(len(shares)) and float(shares.max()) < REPEAT_SHARE


def can_mine(family: Family | None, samples: SampleSet) -> bool:
    if family is None or len(samples.models) < 2:
        return False
    kept = family.subset([m for m in samples.models if m != family.base.label])
    return bool(kept.descendants) and kept.has_weights and kept.shared_tokenizer


def mined_behaviours(family: Family, samples: SampleSet, top: int = 3, cancel: CancelToken | None = None) -> dict[str, str]:
    """Up to `top` raised and `top` lowered words per descendant on this prompt, as regexes,
    mined from `MINING_SAMPLES` fresh samples per model (empty when nothing changed enough)."""
    family = family.subset([m for m in samples.models if m != family.base.label])
    params = replace(samples.params, n=MINING_SAMPLES, seed=AUTO_SEEDS + samples.params.seed)
    plan = Plan((PromptItem(samples.prompt),), params, None, top=top, max_prompts=1)
    found = run_plan(family, plan, Units(None, {}), None, cancel)
    candidates = found.candidates.sort_values(["word_rank", "prompt_excess"], ascending=[True, False])
    return dict(zip(candidates["word"], candidates["regex"], strict=True))
