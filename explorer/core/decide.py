"""Sample until decided: resample in rounds until every label of the run is decided, or a
budget (samples per model, or seconds) is spent.

Labels are decided on confidence sequences (`explorer.core.sequential`), so stopping at the
first look where everything is decided — or whenever the user presses Stop — keeps the
family-wise guarantee: the chance that any label on the page is wrong is at most 5%, however
many looks were taken. Each round adds about a fifth of the samples so far (at least
`MIN_ROUND`) to every model, each round with its own seed (the start's seed + round number), so
the rounds are independent draws of the same streams; a round cut short by Stop is dropped, and
the page keeps the last complete look.

The behaviours are fixed when deciding starts: the user's regexes, or the answer clusters the
page showed then (each as "this normalised answer"), so later rounds count the same things.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from explorer.core.clustering import normalise
from explorer.core.errors import Cancelled
from explorer.core.family import Family
from explorer.core.metrics import assign_clusters
from explorer.core.params import MAX_N, CancelToken, ProgressFn
from explorer.core.samples import SampleSet, combine
from explorer.core.sampling import sample
from explorer.core.sequential import sequential_provenance

MIN_ROUND = 16
GROWTH = 0.2  # each round adds this share of the samples so far
DEFAULT_BUDGET = 1024  # samples per model
TOP_CLUSTERS = 6


def round_size(total: int) -> int:
    """How many samples per model the next round adds, after `total` so far."""
    return max(MIN_ROUND, math.ceil(GROWTH * total))


def looks(start: int, budget: int) -> list[int]:
    """The sample sizes per model at which the labels are looked at, from `start` to `budget`."""
    sizes = [start]
    while sizes[-1] < budget:
        sizes.append(min(budget, sizes[-1] + round_size(sizes[-1])))
    return sizes


@dataclass
class Decision:
    """Where deciding stands: the samples so far, their sequential provenance table, how many
    labels are still undecided, and why it stopped (`reason`: "decided", "budget", "time",
    "stopped"; "" while running)."""

    samples: SampleSet
    provenance: pd.DataFrame
    behaviours: dict[str, Any]
    rounds: int = 0
    reason: str = ""
    seconds: float = 0.0
    history: list[tuple[int, int]] = field(default_factory=list)  # (samples per model, undecided) per look

    @property
    def undecided(self) -> int:
        return int((self.provenance["label"] == "inconclusive").sum())

    @property
    def cells(self) -> int:
        return int((self.provenance["label"] != "base").sum())

    @property
    def per_model(self) -> int:
        return int(self.samples.df.groupby("model").size().min())

    def sentence(self) -> str:
        done = f"{self.cells - self.undecided} of {self.cells} labels decided after {self.per_model} samples per model"
        why = {"decided": "every label is decided", "budget": "the sample budget is spent",
               "time": "the time budget is spent", "stopped": "stopped"}.get(self.reason, "deciding…")  # fmt: skip
        return f"{done} ({self.rounds} rounds): {why}."


@dataclass(frozen=True)
class ClusterIs:
    """A behaviour: the response's normalised text is `cluster` (an answer cluster, fixed)."""

    cluster: str

    def __call__(self, text: str) -> bool:
        return (normalise(text) or "(empty)") == self.cluster


def cluster_behaviours(samples: SampleSet, top: int = TOP_CLUSTERS) -> dict[str, ClusterIs]:
    """The `top` answer clusters of `samples` as fixed behaviours ("≈ sunny": the normalised
    answer is "sunny"), so that later rounds count the same answers."""
    clusters = assign_clusters(samples).value_counts(sort=True).index[:top]
    return {f"≈ {c}": ClusterIs(str(c)) for c in clusters}


def describe(behaviours: dict[str, Any]) -> dict[str, Any]:
    """Behaviours as saved with decided samples: a regex's text, a cluster as {"cluster": …}."""
    out = {}
    for name, spec in behaviours.items():
        if isinstance(spec, ClusterIs):
            out[name] = {"cluster": spec.cluster}
        elif isinstance(spec, str) or hasattr(spec, "pattern"):
            out[name] = spec if isinstance(spec, str) else spec.pattern
    return out


def decided_behaviours(samples: SampleSet) -> dict[str, Any] | None:
    """The behaviours a decided SampleSet was decided on (None: it was not decided)."""
    saved = samples.meta.get("decided", {}).get("behaviours")
    if saved is None:
        return None
    return {k: ClusterIs(v["cluster"]) if isinstance(v, dict) else v for k, v in saved.items()}


def decide(
    family: Family, prompt: str | None = None, behaviours: dict[str, Any] | None = None,
    samples: SampleSet | None = None, budget: int = DEFAULT_BUDGET, seconds: float | None = None,
    exact: pd.DataFrame | None = None, progress: ProgressFn | None = None,
    on_look: Callable[[Decision], None] | None = None, cancel: CancelToken | None = None, **params: Any,
) -> Decision:  # fmt: skip
    """Resample `family` in rounds until every label is decided or `budget` samples per model
    (or `seconds`) are spent. Starts from `samples` (their prompt, parameters and models) or
    samples `prompt` first (`params` as `fx.sample` takes them: n, temperature, seed…).
    `on_look(decision)` is called after every round; Stop (`cancel`) raises `Cancelled`
    whose `partial` is the Decision at the last complete look."""
    started = time.perf_counter()
    if samples is None:
        samples = sample(family, prompt, progress=progress, cancel=cancel, **params)
    check_budget(budget)
    behaviours = behaviours or cluster_behaviours(samples)
    now = Decision(samples, sequential_provenance(samples, behaviours, exact=exact), behaviours)
    now.history.append((now.per_model, now.undecided))
    while True:
        reason = _why_stop(now, budget, seconds, time.perf_counter() - started)
        if reason:
            return _finished(now, reason, started)
        if on_look is not None:
            on_look(now)
        now = _next_round(family, now, exact, progress, cancel, started)


def check_budget(budget: Any) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_N:
        raise ValueError(f"budget: samples per model, an integer between 1 and {MAX_N}, got {budget!r}")


def _why_stop(now: Decision, budget: int, seconds: float | None, spent: float) -> str:
    if now.undecided == 0:
        return "decided"
    if now.per_model >= budget:
        return "budget"
    if seconds is not None and spent + _round_seconds(now) > seconds:
        return "time"
    return ""


def _round_seconds(now: Decision) -> float:
    """The next round's time, from the time per sample so far (0 before any is known)."""
    per_sample = sum(now.samples.meta.get("seconds", {}).values()) / max(len(now.samples.df), 1)
    return per_sample * round_size(now.per_model) * len(now.samples.models)


def _finished(now: Decision, reason: str, started: float) -> Decision:
    """`now` as the final look: why it stopped, and what it was decided on, kept with the
    samples (a saved session or report labels them the same way again)."""
    now.reason, now.seconds = reason, time.perf_counter() - started
    decided = {"behaviours": describe(now.behaviours), "reason": reason, "looks": now.history}
    now.samples = dataclasses.replace(now.samples, meta={**now.samples.meta, "decided": decided})
    return now


def _next_round(family, now: Decision, exact, progress, cancel, started: float) -> Decision:
    s = now.samples
    size = min(round_size(now.per_model), MAX_N - now.per_model)
    params = {**s.params.to_dict(), "n": size, "seed": (s.params.seed + now.rounds + 1) % 2**31}
    try:
        fresh = sample(family, s.prompt, models=s.models, progress=progress, cancel=cancel, **params)
    except Cancelled as err:
        raise Cancelled("stopped", partial=_finished(now, "stopped", started)) from err
    merged = extend(s, fresh, now.per_model)
    after = Decision(merged, sequential_provenance(merged, now.behaviours, exact=exact), now.behaviours,
                     now.rounds + 1, history=now.history)  # fmt: skip
    after.history.append((after.per_model, after.undecided))
    return after


def extend(samples: SampleSet, fresh: SampleSet, offset: int) -> SampleSet:
    """`samples` followed by a round `fresh` (numbered on from `offset`), one model after
    another as before; the parameters keep the start's seed and the total n."""
    fresh.df["sample"] = fresh.df["sample"] + offset
    parts = []
    for part in (samples, fresh):
        parts.append(SampleSet(part.df, samples.params, part.prompt, part.family, part.first_token, part.meta))
    merged = combine(parts)
    merged.df = merged.df.sort_values(["model", "sample"], key=_family_order(samples), kind="stable").reset_index(drop=True)
    merged.first_token = samples.first_token
    merged.meta["seconds"] = {m: samples.meta["seconds"].get(m, 0) + fresh.meta["seconds"].get(m, 0) for m in samples.models}
    merged.meta["rounds"] = [*samples.meta.get("rounds", [{"n": offset, "seed": samples.params.seed}]),
                             {"n": len(fresh.df) // len(fresh.models), "seed": fresh.params.seed}]  # fmt: skip
    merged.params = type(samples.params)(**{**samples.params.to_dict(), "n": offset + len(fresh.df) // len(fresh.models)})
    return merged


def _family_order(samples: SampleSet):
    order = {m: i for i, m in enumerate(samples.models)}
    return lambda column: column.map(order) if column.name == "model" else column
