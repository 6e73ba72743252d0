"""Sample until decided, one feature module: its slice of the state, its door into the core,
its actions and its view (a bar on the Findings tab).

From the samples on the page, resample in rounds until every label of the Findings matrix is
decided or the budget (samples per model, and optionally seconds) is spent; the labels rest on
confidence sequences (explorer.core.sequential), so the page is valid after every round and
after Stop. The budget is always asked about before the start, with its estimated time.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from explorer.app.widgets import escape
from explorer.core.errors import Cancelled

NOTE = ("Labels from confidence sequences: they hold together at 95% however often the page was "
        "looked at, and wherever deciding stopped.")  # fmt: skip


class DecideSlice(t.HasTraits):
    """The feature's part of the app state."""

    decide_budget = t.Int(1024)  # samples per model at most
    decide_seconds = t.Float(0.0)  # seconds at most (0: no limit)
    decision = t.Dict()  # the last look: rounds, per_model, undecided, cells, reason, sentence


class DecideCore:
    """The feature's calls into explorer.core (a mixin of `explorer.app.core.Core`)."""

    def decide(self, family: Any, samples: Any, behaviours: dict[str, str], budget: int, seconds: float | None,
               progress: Any, on_look: Any, cancel: Any) -> Any:  # fmt: skip
        """Rounds until decided, on the user's regexes (exact where the weights allow) or the
        page's answer clusters."""
        from explorer.core.decide import decide
        from explorer.core.exact import exact_table

        exact = exact_table(family, samples, behaviours, cancel=cancel) if behaviours and family.has_weights else None
        return decide(family, behaviours=behaviours or None, samples=samples, budget=budget, seconds=seconds,
                      exact=exact, progress=progress, on_look=on_look, cancel=cancel)  # fmt: skip

    def decide_estimate(self, family: Any, samples: Any, budget: int) -> Any:
        from explorer.core.estimate import estimate

        more = max(1, budget - int(samples.df.groupby("model").size().min()))
        return estimate(family, "sample", prompt=samples.prompt, models=samples.models, n=more,
                        max_new_tokens=samples.params.max_new_tokens, chat=samples.params.chat)  # fmt: skip

    def decided_views(self, decision: Any, behaviours: dict[str, str]) -> dict[str, Any]:
        """What the tabs show for the decided samples: the quick analysis, with the sequential
        provenance and its findings in place of fixed-n ones (scores of the earlier samples
        no longer apply)."""
        from explorer.core.analysis import analyse
        from explorer.core.findings import findings

        quick = analyse(decision.samples, behaviours or None, warn=False)
        return {**quick.as_dict(), "provenance": decision.provenance, "findings": findings(decision.provenance),
                "cross": None, "log_ratio": None, "focus": None, "focus_responses": None}  # fmt: skip


def look(decision: Any) -> dict[str, Any]:
    """A look as the state holds it (plain values)."""
    return {"rounds": decision.rounds, "per_model": decision.per_model, "undecided": decision.undecided,
            "cells": decision.cells, "reason": decision.reason, "sentence": decision.sentence()}  # fmt: skip


class DecideActions:
    """The feature's actions (a mixin of the Controller)."""

    state: Any
    core: Any

    def decide(self, confirmed: bool = False) -> Any:
        """Ask with the budget first (always), then sample in rounds until decided; Stop keeps
        the last complete look."""
        s = self.state
        if s.samples is None or s.family is None:
            self.fail("Resample first: deciding continues from the samples on the page." if s.family is not None
                      else "Load a family first: deciding samples more.")  # fmt: skip
            return None
        if not 1 <= s.decide_budget <= 4096 or s.decide_seconds < 0:
            self.fail("Budget: 1 to 4096 samples per model, and a time limit of 0 (none) or more seconds.")
            return None
        samples, behaviours = s.samples, dict(s.behaviours) or dict(s.auto_behaviours)  # mined words: a separate draw
        family = s.family.subset([m for m in samples.models if m in s.family.labels[1:]])  # the models on the page
        budget, seconds = s.decide_budget, (s.decide_seconds or None)

        def work(job: Any) -> dict[str, Any]:
            if not confirmed:
                return self._budget_question(family, samples, budget, seconds)
            return self._deciding(job, family, samples, behaviours, budget, seconds)

        return self.submit("Deciding", work)

    def _budget_question(self, family, samples, budget: int, seconds: float | None) -> dict[str, Any]:
        cost = self.core.decide_estimate(family, samples, budget)
        now = int(samples.df.groupby("model").size().min())
        limit = f", or {seconds:g} s, whichever comes first" if seconds else ""
        self._pending = lambda: self.decide(confirmed=True)
        question = (f"Sample until every label is decided: up to {budget} samples per model (now {now}){limit}; "
                    f"all {budget} would take {cost} — Run or Cancel?")  # fmt: skip
        return {"confirm": question, "status": ""}

    def _deciding(self, job: Any, family, samples, behaviours, budget: int, seconds) -> dict[str, Any]:
        totals: dict[str, float] = {}
        progress = job.reporter(totals)

        def on_look(decision) -> None:
            from explorer.core.findings import findings

            totals["decided"] = 1 - decision.undecided / max(decision.cells, 1)
            job.publish(provenance=decision.provenance, findings=findings(decision.provenance), decision=look(decision),
                        progress=dict(totals), status=f"Deciding: {decision.sentence()}")  # fmt: skip

        try:
            found = self.core.decide(family, samples, behaviours, budget, seconds, progress, on_look, job.cancel)
        except Cancelled as err:
            if job.abandoned or err.partial is None:
                raise
            found = err.partial
        status = found.sentence() + (" The labels of the last complete round stand." if found.reason == "stopped" else "")
        return {**self.core.decided_views(found, behaviours), "decision": look(found), "status": status}


class DecideBar(w.VBox):
    """The decide button with its budget, progress (labels still undecided) and Stop."""

    def __init__(self, state: Any, ctl: Any) -> None:
        self.state, self.ctl = state, ctl
        style = {"description_width": "initial"}
        self.budget = w.BoundedIntText(min=1, max=4096, description="budget: samples per model", style=style,
                                       layout=w.Layout(width="240px"))  # fmt: skip
        self.seconds = w.BoundedFloatText(min=0, max=86400, description="or seconds (0: none)", style=style,
                                          layout=w.Layout(width="210px"))  # fmt: skip
        w.link((state, "decide_budget"), (self.budget, "value"))
        w.link((state, "decide_seconds"), (self.seconds, "value"))
        self.go = w.Button(description="Sample until decided", icon="check-circle", button_style="info",
                           layout=w.Layout(width="auto"))  # fmt: skip
        self.stop = w.Button(description="Stop", icon="stop", button_style="danger")
        self.go.on_click(lambda _: ctl.decide())
        self.stop.on_click(lambda _: ctl.stop())
        self.bar = w.FloatProgress(min=0, max=1, layout=w.Layout(width="200px"))
        self.line = w.HTML()
        state.observe(self.redraw, names=["decision", "running", "samples", "family"])
        super().__init__([w.HBox([self.go, self.budget, self.seconds, self.stop], layout=w.Layout(flex_flow="row wrap",
                          align_items="center")), w.HBox([self.bar, self.line], layout=w.Layout(align_items="center"))])  # fmt: skip
        self.add_class("fx-decide")
        self.redraw()

    def redraw(self, _=None) -> None:
        s = self.state
        deciding = s.running == "Deciding"
        self.go.disabled = bool(s.running) or s.samples is None or s.family is None
        self.stop.disabled = not deciding
        current = deciding or (s.samples is not None and "decided" in s.samples.meta)
        d = s.decision if current else {}  # a later resample makes the last decision history
        self.bar.layout.visibility = "visible" if d else "hidden"
        if not d:
            self.line.value = ("<span class='fx-note'>Too many cells undecided? Sample in rounds until every label "
                               "is decided, within a budget you set.</span>" if s.samples is not None else "")  # fmt: skip
            return
        self.bar.value = 1 - d["undecided"] / max(d["cells"], 1)
        undecided = f"{d['undecided']} undecided · " if d["undecided"] else ""
        self.line.value = (f"<span class='fx-status'>{undecided}{escape(d['sentence'])}</span> "
                           f"<span class='fx-note'>{escape(NOTE)}</span>")  # fmt: skip
