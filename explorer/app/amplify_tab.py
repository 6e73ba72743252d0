"""The Amplify tab, one feature module: its slice of the state, its door into the core, its
actions and its view.

Amplified sampling (explorer.core.amplify) samples along the base → descendant logit path at
several λ, so a behaviour the descendant shows rarely becomes common enough to see; the tab
shows each behaviour's rate against λ with intervals, and the λ = 1 rate read back from the
larger λ (explorer.core.extrapolate). Behaviours are the user's regexes, or else the answer
clusters of the amplified samples themselves (what amplification made common).
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import traitlets as t

from explorer.app.widgets import chart_box, escape, show_chart, table_html
from explorer.core.errors import Cancelled
from explorer.core.params import SamplingParams, check_prompt

DEFAULT_LAMBDAS = "0, 1, 1.25, 1.5, 2, 4"
INTRO = (
    "Sample along the path from the base to a descendant: each step draws from "
    "<code>z_base + λ (z_desc − z_base)</code>. λ = 0 is the base, λ = 1 the descendant, λ &gt; 1 "
    "exaggerates what the adaptation changed, so a behaviour it added at 2% becomes common enough to "
    "see. ◆ marks the λ = 1 rate read back from the larger λ."
)


class AmplifySlice(t.HasTraits):
    """The tab's part of the app state."""

    path_descendant = t.Unicode("")  # the descendant at λ = 1 ("" : the first one selected)
    path_lambdas = t.Unicode(DEFAULT_LAMBDAS)
    path_n = t.Int(64)  # samples at each λ
    amplified = t.Any(None, allow_none=True)  # SampleSet with a `lam` column
    path_rates = t.Any(None, allow_none=True)  # DataFrame: behaviour × λ rates
    path_fits = t.Any(None, allow_none=True)  # DataFrame: the λ = 1 rate read back
    path_curve = t.Any(None, allow_none=True)  # DataFrame: the fitted lines
    path_sentences = t.List(t.Unicode())


class AmplifyCore:
    """The tab's calls into explorer.core (a mixin of `explorer.app.core.Core`)."""

    def amplify(self, family: Any, prompt: str, descendant: str, lambdas: list[float], params: SamplingParams,
                progress: Any, cancel: Any) -> Any:  # fmt: skip
        from explorer.core.amplify import amplify

        return amplify(family, prompt, descendant, lambdas, progress=progress, cancel=cancel, **params.to_dict())

    def amplify_estimate(self, family: Any, prompt: str, descendant: str, lambdas: list[float], params: SamplingParams) -> Any:
        """Each λ is one model's sampling at 0 and 1, two models' in lock-step elsewhere."""
        from explorer.core.estimate import estimate

        runs = sum(1 if lam in (0, 1) else 2 for lam in lambdas)
        return estimate(family, "sample", prompt=prompt, models=[descendant], n=params.n * runs,
                        max_new_tokens=params.max_new_tokens, chat=params.chat)  # fmt: skip

    def path_tables(self, samples: Any, behaviours: dict[str, str]) -> dict[str, Any]:
        from explorer.core.decide import cluster_behaviours
        from explorer.core.extrapolate import extrapolate, fitted_curve, rates_by_lambda, sentences

        rates = rates_by_lambda(samples, behaviours or cluster_behaviours(samples))
        fits = extrapolate(rates)
        return {"path_rates": rates, "path_fits": fits, "path_curve": fitted_curve(rates),
                "path_sentences": sentences(fits, samples.meta["amplify"]["descendant"])}  # fmt: skip


def parse_lambdas(text: str) -> list[float]:
    """"0, 1, 2, 4" → [0.0, 1.0, 2.0, 4.0], or a ValueError that says what to type."""
    try:
        values = [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise ValueError(f"λ: type numbers separated by commas, e.g. {DEFAULT_LAMBDAS} (got {text!r})")
    return values


class PathActions:
    """The tab's actions (a mixin of the Controller)."""

    state: Any
    core: Any

    def amplify(self, confirmed: bool = False) -> Any:
        """Sample every λ of the path to the chosen descendant; asks first when long; Stop keeps
        the λ that finished."""
        s = self.state
        try:
            family, descendant, lambdas, params = self._path_inputs()
        except (ValueError, TypeError) as err:
            self.fail(str(err))
            return None
        prompt, behaviours = s.prompt, dict(s.behaviours)

        def work(job: Any) -> dict[str, Any]:
            if not confirmed:
                cost = self.core.amplify_estimate(family, prompt, descendant, lambdas, params)
                question = self._ask(cost, "Amplified sampling", lambda: self.amplify(confirmed=True))
                if question:
                    return {"confirm": question, "status": ""}
            return self._amplified(job, family, prompt, descendant, lambdas, params, behaviours)

        return self.submit("Amplifying", work)

    def _path_inputs(self) -> tuple[Any, str, list[float], SamplingParams]:
        s = self.state
        if s.family is None:
            raise ValueError("Load a family first.")
        if not s.weights:
            raise ValueError(f"Amplified sampling needs both models' whole next-token distributions; this family is "
                             f"served by {s.server}, which returns only top log-probs.")  # fmt: skip
        descendant = s.path_descendant or next(iter(s.selected or s.available), "")
        if not descendant:
            raise ValueError("Amplified sampling needs a descendant: this family has only its base.")
        check_prompt(s.prompt)
        params = SamplingParams(n=s.path_n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                max_new_tokens=s.max_new_tokens, seed=s.seed, chat=s.chat)  # fmt: skip
        return s.family, descendant, parse_lambdas(s.path_lambdas), params

    def _amplified(self, job: Any, family, prompt, descendant, lambdas, params, behaviours) -> dict[str, Any]:
        totals: dict[str, float] = {}
        progress = job.reporter(totals)

        try:
            samples = self.core.amplify(family, prompt, descendant, lambdas, params, progress, job.cancel)
        except Cancelled as err:
            if job.abandoned or err.partial is None:
                raise
            kept = ", ".join(f"{v:g}" for v in err.partial.meta["amplify"]["lambdas"])
            return {"amplified": err.partial, **self.core.path_tables(err.partial, behaviours),
                    "status": f"Stopped: kept λ = {kept}"}  # fmt: skip
        status = f"Sampled {params.n} answers at each of λ = {', '.join(f'{v:g}' for v in sorted(set(lambdas)))} towards {descendant}"
        return {"amplified": samples, **self.core.path_tables(samples, behaviours), "status": status}


class AmplifyView(w.VBox):
    def __init__(self, state: Any, ctl: Any) -> None:
        self.state, self.ctl = state, ctl
        self.descendant = w.Dropdown(description="Towards", layout=w.Layout(width="260px"))
        self.lambdas = w.Text(description="λ", layout=w.Layout(width="260px"))
        self.n = w.BoundedIntText(min=1, max=4096, description="n per λ", layout=w.Layout(width="160px"))
        w.link((state, "path_lambdas"), (self.lambdas, "value"))
        w.link((state, "path_n"), (self.n, "value"))
        self.descendant.observe(self.on_descendant, names="value")
        self.go = w.Button(description="Amplify", icon="search-plus", button_style="primary")
        self.go.on_click(lambda _: ctl.amplify())
        self.info, self.chart, self.sentences, self.table = w.HTML(), chart_box(""), w.HTML(), w.HTML()
        folded = w.Accordion(children=[self.table], titles=("Rates at every λ (table)",), selected_index=None)
        state.observe(self.redraw, names=["amplified", "path_rates", "path_fits", "running", "weights"])
        state.observe(self.redraw_descendants, names=["available", "selected"])
        super().__init__([w.HTML(f"<div class='fx-note'>{INTRO}</div>"),
                          w.HBox([self.descendant, self.lambdas, self.n, self.go], layout=w.Layout(flex_flow="row wrap")),
                          self.info, self.chart, self.sentences, folded])  # fmt: skip
        self.add_class("fx-amplify")
        self.redraw_descendants()
        self.redraw()

    def on_descendant(self, change) -> None:
        if change["new"]:
            self.ctl.assign(path_descendant=change["new"])

    def redraw_descendants(self, _=None) -> None:
        s = self.state
        options = list(s.selected or s.available)
        with self.descendant.hold_sync():
            self.descendant.options = options
            self.descendant.value = s.path_descendant if s.path_descendant in options else (options[0] if options else None)

    def redraw(self, _=None) -> None:
        from explorer.path_charts import rate_by_lambda_chart

        s = self.state
        self.go.disabled = bool(s.running) or s.family is None or not s.weights
        if not s.weights:
            self.info.value = ("<em>Amplified sampling needs both models' whole next-token distributions and one "
                               f"vocabulary; this family is served by {escape(s.server)}.</em>")  # fmt: skip
        rates = s.path_rates
        if s.amplified is None or rates is None or rates.empty:
            if s.weights:
                self.info.value = "<em>Pick a descendant and the λ to sample at, then Amplify.</em>"
            show_chart(self.chart, None, "")
            self.sentences.value = self.table.value = ""
            return
        descendant = s.amplified.meta["amplify"]["descendant"]
        self.info.value = f"<div class='fx-note'>“{escape(s.amplified.prompt)}”, towards {escape(descendant)}.</div>"
        show_chart(self.chart, rate_by_lambda_chart(rates, s.path_fits, s.path_curve, descendant))
        self.sentences.value = "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in s.path_sentences) + "</ul>"
        self.table.value = table_html(rates[["behaviour", "model", "lam", "count", "n", "freq", "lo", "hi"]], max_rows=60)
