"""The controller: the app's actions. Each long one runs as a job (see `explorer.app.jobs`):
off the main thread, superseded by a newer one, stopped by Stop, its results delivered back to
the state on the main thread. Every computation goes through a `Core` (see
`explorer.app.core`), and every error lands in `state.error` as a sentence — never as a
traceback on the page."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from explorer.app.amplify_tab import PathActions
from explorer.app.attribution_checks import AttributionChecks
from explorer.app.core import Core
from explorer.app.deciding import DecideActions
from explorer.app.derived import (
    CLEARED,
    agreement_views,
    attribution_views,
    chosen_tokens,
    left_out,
    method_table,
    needs_weights,
    spread_method,
    summary,
)
from explorer.app.discover_actions import DiscoverActions
from explorer.app.jobs import Job, Runner
from explorer.app.layer_actions import LayerActions
from explorer.app.sessions import session_updates
from explorer.app.state import AppState
from explorer.app.steer_actions import CLEARED_STEERING, SteerActions
from explorer.core.errors import Cancelled, ModelLoadError
from explorer.core.params import SamplingParams, check_prompt
from explorer.core.patterns import compile_pattern

MAX_SPREAD_SAMPLES = 8


class Controller(LayerActions, SteerActions, PathActions, DecideActions, AttributionChecks):
    def __init__(self, state: AppState, store: Any = None, core: Core | None = None) -> None:
        self.state, self.store = state, store
        self.core = core or Core()
        self.runner = Runner(state)
        self._pending = None  # the work a question waits on (see `_ask`)
        self.discover = DiscoverActions(self)  # the Discover tab's actions
        self.assign(methods=method_table())

    # --- running work ---------------------------------------------------------------------------

    def assign(self, **values: Any) -> None:
        self.runner.assign(**values)

    def submit(self, name: str, work) -> Job:
        return self.runner.submit(name, work)

    @property
    def generation(self) -> int:
        return self.runner.generation

    def stop(self, abandoned: bool = False) -> None:
        """Cancel the task in flight (sampling stops within one decoding step); `abandoned`
        (nobody is watching) also skips analysing partial results."""
        self.runner.stop(abandoned)

    def abandon(self) -> None:
        """The page went away: cancel the task in flight and skip analysing partial results."""
        self.stop(abandoned=True)

    def wait(self, timeout: float = 120.0) -> bool:
        """Block until the task in flight ends (for tests and scripts); True if it ended."""
        return self.runner.wait(timeout)

    def fail(self, message: str) -> None:
        self.assign(error=message, status="")

    @staticmethod
    def cleared() -> dict[str, Any]:
        """Every result of a run, emptied (a new family, a new run)."""
        return dict(CLEARED)

    # --- family ---------------------------------------------------------------------------------

    def load_family(self, spec: str | None = None, descendants: list[str] | None = None) -> Job:
        """Load a preset, a hub id / folder / GGUF file / server address (plus descendants);
        members that fail are reported and the rest stay usable."""
        spec = (spec or self.state.preset).strip()

        def work(job: Job) -> dict[str, Any]:
            family = self.core.load_family(spec, descendants or None, self.store)
            return self._open_members(job, family, spec)

        return self.submit("Loading", work)

    def use_family(self, family: Any) -> Job:
        """Use a family made in Python exactly as if it had been loaded by its address."""
        return self.submit("Loading", lambda job: self._open_members(job, family, family.name))

    def _open_members(self, job: Job, family: Any, spec: str) -> dict[str, Any]:
        errors: dict[str, str] = {}
        for i, label in enumerate(family.labels):
            job.cancel.check()
            try:
                self.core.open(family, label)
            except (ModelLoadError, OSError, ValueError) as err:
                errors[label] = str(err)
            job.publish(progress={"loading": (i + 1) / len(family.labels)})
        if family.base.label in errors:
            raise ModelLoadError(errors[family.base.label])
        usable = [d.label for d in family.descendants if d.label not in errors]
        family = family.subset(usable)
        message = f"Loaded {family.name or family.base.label}: {len(family.labels)} models"
        if errors:
            message += f"; could not load {', '.join(errors)}"
        weights = family.has_weights
        method = self.state.method if weights or not needs_weights(self.state.method) else "occlusion"
        return {**CLEARED, **CLEARED_STEERING, "family": family, "available": usable, "selected": usable,
                "relations": {m.label: m.relation for m in family.members}, "weights": weights,
                "server": family.server or "", "method": method, "examples": self.core.examples(spec),
                "load_errors": errors, "status": message, "auto_behaviours": {},
                "error": "; ".join(f"{k}: {v}" for k, v in errors.items())}  # fmt: skip

    # --- sampling -------------------------------------------------------------------------------

    def resample(self, confirmed: bool = False) -> Job | None:
        """Sample every selected model; a click while sampling is ignored (use Stop). A run
        estimated over `state.confirm_after` seconds asks first (`confirm`)."""
        s = self.state
        if s.running == "Sampling":
            return None
        if s.family is None:
            self.fail("Load a family first.")
            return None
        if s.fresh_seed:
            self.assign(seed=random.randrange(2**31))
        try:
            params = SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                    max_new_tokens=s.max_new_tokens, seed=s.seed, chat=s.chat)  # fmt: skip
            check_prompt(s.prompt)
        except (ValueError, TypeError) as err:
            self.fail(str(err))
            return None
        family, prompt, behaviours = s.family.subset(list(s.selected)), s.prompt, dict(s.behaviours)

        def work(job: Job) -> dict:
            cost = lambda: self.core.estimate(family, "sample", prompt=prompt, n=params.n,  # noqa: E731
                                              max_new_tokens=params.max_new_tokens, chat=params.chat)  # fmt: skip
            asked = self._asked(confirmed, cost, "Sampling", lambda: self.resample(confirmed=True))
            return asked or self._sample(job, family, prompt, params, behaviours)

        return self.submit("Sampling", work)

    # --- asking before long work ----------------------------------------------------------------

    def _asked(self, confirmed: bool, cost, what: str, run) -> dict[str, Any] | None:
        """The update that asks before `run`, or None to go on (`cost()` priced only if not yet confirmed)."""
        question = "" if confirmed else self._ask(cost(), what, run)
        return {"confirm": question, "status": ""} if question else None

    def _ask(self, cost, what: str, run) -> str:
        """The question to ask before `run` ("" for none): when the estimate passes
        `state.confirm_after`, the action waits until `confirm` or `decline`."""
        seconds = cost.seconds
        if seconds is None or seconds <= self.state.confirm_after:
            return ""
        self._pending = run
        return f"{what} {cost} — Run or Cancel?"

    def confirm(self) -> Job | None:
        """Run the work the app asked about."""
        run, self._pending = self._pending, None
        self.assign(confirm="")
        return run() if run is not None else None

    def decline(self) -> None:
        self._pending = None
        self.assign(confirm="", status="Cancelled before it started: nothing changed.")

    def _sample(self, job: Job, family, prompt: str, params: SamplingParams, behaviours) -> dict:
        """Each model in turn, then the analysis; Stop keeps the models (or scores) that finished."""
        totals = {label: 0.0 for label in family.labels}
        progress = job.reporter(totals)

        done: list = []
        try:
            for label in family.labels:
                done.append(self.core.sample(family, prompt, label, params, progress, job.cancel))
        except Cancelled:
            if not done or job.abandoned:
                raise
            partial = self.core.combine(done)
            status = f"Stopped: kept the finished models ({', '.join(partial.models)})"
            return {**self._analysed(family, partial, behaviours), "status": status}
        samples = self.core.combine(done)
        auto = {} if behaviours else self._mined(job, family, samples, totals)
        job.publish(auto_behaviours=auto)
        return self._analysed_or_partial(job, family, samples, behaviours or auto, totals)

    def _mined(self, job: Job, family, samples, totals: dict) -> dict[str, str]:
        """Words to label when answers rarely repeat (see explorer.core.discover.auto)."""
        job.report({**totals, "finding words": 0.0})
        auto = self.core.mined_behaviours(family, samples, job.cancel)
        job.report({**totals, "finding words": 1.0})
        return auto

    def _analysed_or_partial(self, job: Job, family, samples, behaviours, totals: dict) -> dict:
        """The quick tables first (published at once: responses and charts appear), then the
        scoring — cross-scores and log-ratios — with progress; Stop keeps what was scored."""
        quick = self.core.analyse(samples, behaviours, None)
        job.show(**{**CLEARED, **quick.as_dict(), **left_out(quick.provenance)},
                 status=f"{summary(samples)}; scoring under each model…")  # fmt: skip

        def progress(scorer: str, done: int, total: int) -> None:
            job.report({**totals, "scoring": done / total})

        try:
            scored = self.core.add_scores(quick, family, job.cancel, progress)
        except Cancelled as err:  # Stop while scoring: keep the samples and what was scored
            if job.abandoned or err.partial is None:
                raise
            cross = err.partial.cross
            kept = f"the scores under {', '.join(cross['scorer'].unique())}" if cross is not None and len(cross) else "no cross-scores"
            return {"cross": cross, "status": f"Stopped while scoring: kept the samples and {kept}"}
        return {"cross": scored.cross, "log_ratio": scored.log_ratio, "provenance": scored.provenance,
                "findings": scored.findings, "status": summary(samples)}  # fmt: skip

    def _analysed(self, family, samples, behaviours=None) -> dict:
        """Everything the tabs show that follows from the samples, all at once."""
        analysis = self.core.analyse(samples, behaviours, family)
        return {**CLEARED, **analysis.as_dict(), **left_out(analysis.provenance)}

    # --- behaviours -----------------------------------------------------------------------------

    def add_behaviour(self, name: str, pattern: str) -> bool:
        name, pattern = name.strip(), pattern.strip()
        if not pattern:
            self.fail("behaviour: type a regular expression, e.g. \\bsunny\\b")
            return False
        try:
            compile_pattern(pattern, name or pattern)
        except ValueError as err:
            self.fail(str(err))  # "behaviours: '(' is not a valid regex (…)"
            return False
        self.assign(behaviours={**self.state.behaviours, (name or pattern): pattern}, error="")
        self._refresh_provenance()
        return True

    def remove_behaviour(self, name: str) -> None:
        self.assign(behaviours={k: v for k, v in self.state.behaviours.items() if k != name})
        self._refresh_provenance()

    def clear_behaviours(self) -> None:
        self.assign(behaviours={})
        self._refresh_provenance()

    def _refresh_provenance(self) -> None:
        if self.state.samples is not None:
            table = self.core.provenance(self.state.samples, dict(self.state.behaviours) or dict(self.state.auto_behaviours))
            self.assign(provenance=table, findings=self.core.findings(table), focus=None, focus_responses=None,
                        **left_out(table))  # fmt: skip

    def focus(self, behaviour: str, model: str) -> None:
        """Show the responses behind one finding: the descendant's and the base's samples that
        show the behaviour."""
        s = self.state
        if s.samples is None:
            return
        try:
            shown = self.core.responses_behind(s.samples, s.clusters, {**s.auto_behaviours, **s.behaviours}, behaviour,
                                               [s.samples.models[0], model])  # fmt: skip
        except ValueError as err:
            self.fail(str(err))
            return
        self.assign(focus=(behaviour, model), focus_responses=shown)

    # --- attribution ----------------------------------------------------------------------------

    def choose(self, model: str, sample: int) -> Job | None:
        """Select a response and attribute it in every sampled model, side by side."""
        s = self.state
        if s.samples is None:
            return None
        row = s.samples.row(model, sample)
        if row is None:
            self.fail(f"No sample {sample} of {model}.")
            return None
        self.assign(chosen=(model, int(sample)), chosen_tokens=chosen_tokens(s, model, int(sample)), inside=None)
        return self._attribute(row["text"])

    def set_method(self, method: str) -> Job | None:
        if not self.state.weights and needs_weights(method):
            self.fail(f"{method} needs the models' weights; this family is served by "
                      f"{self.state.server}. Use occlusion or adaptation.")  # fmt: skip
            return None
        self.assign(method=method, methods=method_table())
        s = self.state
        if s.chosen is None or s.samples is None:
            return None
        return self.choose(*s.chosen)

    def set_units(self, units: str) -> Job | None:
        """Show attributions per word or per token ("auto": words where tokens split words)."""
        self.assign(units=units)
        s = self.state
        return self.choose(*s.chosen) if s.chosen is not None and s.samples is not None else None

    def _attribute(self, response: str, confirmed: bool = False) -> Job | None:
        s = self.state
        if not response.strip():
            self.fail("This response is empty (the model ended at once): choose another to attribute.")
            return None
        samples, method, units = s.samples, s.method, s.units
        family = s.family.subset([m for m in samples.models if m != s.family.base.label])
        spread = spread_method(method)

        def work(job: Job) -> dict[str, Any]:
            cost = lambda: self.core.attribution_estimate(family, samples, response, method, spread, MAX_SPREAD_SAMPLES)  # noqa: E731
            asked = self._asked(confirmed, cost, "Attribution", lambda: self._attribute(response, confirmed=True))
            return asked or self._attributed(job, family, samples, response, method, self.core.alignment(family, samples, response, units))

        return self.submit("Attributing", work)

    def _attributed(self, job: Job, family, samples, response: str, method: str, align: str) -> dict[str, Any]:
        """The chosen response in every model, then the spread over each model's own samples,
        with progress; Stop keeps what finished (the models attributed, the samples spread)."""

        def progress(part: str):
            return lambda model, done, total: job.report({part: done / max(total, 1)})

        try:
            attr = self.core.attribute(family, samples, response, method, align=align,
                                       cancel=job.cancel, progress=progress("attribution"))  # fmt: skip
        except Cancelled as err:
            if job.abandoned or err.partial is None:
                raise
            return {**attribution_views(err.partial), "status": f"Stopped: kept the attribution in {', '.join(err.partial.models)}"}
        self._publish_attribution(job, family, attr)
        try:
            spread = self.core.attribute_samples(family, samples, spread_method(method), align=align,
                                                 max_samples=MAX_SPREAD_SAMPLES, cancel=job.cancel,
                                                 progress=progress("spread over samples"))  # fmt: skip
        except Cancelled as err:
            if job.abandoned or err.partial is None:
                raise
            n = int(err.partial["n"].max()) if len(err.partial) else 0
            return {"attribution_spread": err.partial, **agreement_views(err.partial, spread_method(method)),
                    "status": f"Stopped: kept the attribution and the spread over the first {n} samples per model"}  # fmt: skip
        return {"attribution_spread": spread, **agreement_views(spread, spread_method(method)), "status": f"Attributed with {method}"}

    # --- sessions, sweeps, downloads ------------------------------------------------------------

    def session(self):
        from explorer.core.session import Session

        s = self.state
        family = s.family.to_dict() if s.family is not None else {}
        return Session(family, s.samples, dict(s.behaviours) or dict(s.auto_behaviours), s.attribution, s.chosen, s.amplified)

    def import_session(self, path) -> bool:
        """Replace the results with a saved session's; a bad file changes nothing."""
        try:
            session = self.core.load_session(path)
        except (ValueError, FileNotFoundError, KeyError, TypeError) as err:
            self.fail(f"Import failed, nothing changed: {err}")
            return False
        self.assign(**session_updates(self, session, Path(str(path)).name))
        return True

    def open_sweep(self, folder: str) -> bool:
        """Read a sweep folder (from `family-explorer sweep`) into the Data tab."""
        from explorer.core.sweep import summary as sweep_summary

        try:
            sweep = self.core.load_sweep(folder.strip())
        except (ValueError, OSError) as err:
            self.fail(f"Could not open the sweep: {err}")
            return False
        n_prompts = len(sweep["manifest"].get("prompts", []))
        self.assign(sweep=sweep, sweep_summary=sweep_summary(sweep["provenance"]), error="",
                    status=f"Opened sweep {folder.strip()}: {n_prompts} prompts, {len(sweep['samples'])} samples")  # fmt: skip
        return True

    def prepare_downloads(self, charts: dict[str, dict]) -> bool:
        """The Data tab's files: samples, session, provenance and the given chart specs."""
        try:
            files = self.core.downloads(self.session(), {"provenance": self.state.provenance}, charts)
        except ValueError as err:
            self.fail(str(err))
            return False
        self.assign(downloads=files, error="")
        return True

