"""A fake core for controller tests: families of stand-in members and canned samples, so the
app's logic (jobs, Stop, superseding, errors, what reaches the state) is tested in milliseconds.
It fakes only what the controller calls; the real core is tested on real models elsewhere."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from handmade import handmade

from explorer.app.core import Core
from explorer.core.analysis import analyse
from explorer.core.errors import Cancelled
from explorer.core.estimate import Estimate
from explorer.core.family import Family
from explorer.core.refs import ModelRef
from explorer.core.samples import combine

ANSWERS = {"base": ["sunny .", "rainy .", "sunny ."], "tuned": ["sunny .", "sunny .", "sunny ."]}


@dataclass
class StandIn:
    """The member protocol's capabilities only: the controller never samples through it."""

    ref: ModelRef
    has_weights: bool = True
    tokenizer_key: str = "shared"
    concurrent: bool = False


class StandInStore:
    """Hands out stand-in members (what `Family.load` asks its store for)."""

    def __init__(self, weights: bool = True) -> None:
        self.weights = weights

    def get(self, ref, parent=None) -> StandIn:
        return StandIn(ref, has_weights=self.weights)


def stand_in_family(weights: bool = True, server: str | None = None) -> Family:
    base = ModelRef(id="base", label="base", server=server)
    tuned = ModelRef(id="tuned", label="tuned", relation="finetune", parent="base", server=server)
    return Family(base=base, descendants=(tuned,), name="stand-in", store=StandInStore(weights))


class FakeCore(Core):
    """Samples come from `ANSWERS`; `block` makes a model's sampling wait for Stop."""

    def __init__(self, weights: bool = True, block: set[str] | None = None, fail: Exception | None = None):
        self.weights, self.block, self.fail = weights, block or set(), fail
        self.sampling = threading.Event()  # set while a blocked model is sampling
        self.calls: list[str] = []
        self.cost = 0.0  # seconds every estimate says

    def load_family(self, spec, descendants, store):
        if self.fail is not None:
            raise self.fail
        return stand_in_family(self.weights)

    def sample(self, family, prompt, label, params, progress, cancel):
        self.calls.append(label)
        if label in self.block:
            self.sampling.set()
            while not cancel.cancelled:
                cancel_wait(cancel)
            raise Cancelled("cancelled")
        if progress:
            progress(label, 1, 1)
        texts = ANSWERS[label][: params.n]
        one = handmade({label: texts})
        one.family, one.prompt, one.params = family.to_dict(), prompt, params
        return one

    def combine(self, parts):
        return combine(parts)

    def analyse(self, samples, behaviours, family, cancel=None, progress=None):
        return analyse(samples, behaviours, None, cancel)  # no scoring: stand-ins have no weights

    def add_scores(self, analysis, family, cancel=None, progress=None):
        return analysis

    def estimate(self, family, what, **kw):
        return Estimate(what, self.cost, 0.0, 0, "stand-ins")

    def attribution_estimate(self, family, samples, response, method, spread, max_samples):
        return Estimate("attribution", self.cost, 0.0, 0, "stand-ins")


def cancel_wait(cancel, seconds: float = 0.01) -> None:
    threading.Event().wait(seconds)
