"""The controller: the app's actions. Each long one runs as a job (see `explorer.app.jobs`):
off the main thread, superseded by a newer one, stopped by Stop, its results delivered back to
the state on the main thread. Every computation goes through a `Core` (see
`explorer.app.core`), and every error lands in `state.error` as a sentence — never as a
traceback on the page."""

from __future__ import annotations

import random
import re
from typing import Any

from explorer.app.core import Core
from explorer.app.jobs import Job, Runner
from explorer.app.state import AppState
from explorer.core.errors import Cancelled, ModelLoadError
from explorer.core.params import SamplingParams, check_prompt

MAX_SPREAD_SAMPLES = 8
CLEARED = {"samples": None, "clusters": None, "variability": None, "provenance": None,
           "cluster_counts": None, "first_tokens": None, "entropy": None, "cross": None,
           "log_ratio": None, "chosen": None, "chosen_tokens": None, "attribution": None,
           "attribution_diff": None, "attribution_note": "", "attribution_spread": None,
           "downloads": []}  # fmt: skip


class Controller:
    def __init__(self, state: AppState, store: Any = None, core: Core | None = None) -> None:
        self.state, self.store = state, store
        self.core = core or Core()
        self.runner = Runner(state)
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
        return {**CLEARED, "family": family, "available": usable, "selected": usable,
                "relations": {m.label: m.relation for m in family.members}, "weights": weights,
                "server": family.server or "", "method": method, "examples": self.core.examples(spec),
                "load_errors": errors, "status": message,
                "error": "; ".join(f"{k}: {v}" for k, v in errors.items())}  # fmt: skip

    # --- sampling -------------------------------------------------------------------------------

    def resample(self) -> Job | None:
        """Sample every selected model; a click while sampling is ignored (use Stop)."""
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
        return self.submit("Sampling", lambda job: self._sample(job, family, prompt, params, behaviours))

    def _sample(self, job: Job, family, prompt: str, params: SamplingParams, behaviours) -> dict:
        done: list = []
        totals = {label: 0.0 for label in family.labels}

        def progress(label: str, step: int, total: int) -> None:
            totals[label] = step / max(total, 1)
            job.publish(progress=dict(totals))

        try:
            for label in family.labels:
                done.append(self.core.sample(family, prompt, label, params, progress, job.cancel))
                totals[label] = 1.0
        except Cancelled:
            if not done or job.abandoned:
                raise
            partial = self.core.combine(done)
            kept = ", ".join(partial.models)
            return {**self._analysed(family, partial, behaviours), "status": f"Stopped: kept the finished models ({kept})"}
        samples = self.core.combine(done)
        return {**self._analysed(family, samples, behaviours, job.cancel), "status": summary(samples)}

    def _analysed(self, family, samples, behaviours, cancel=None) -> dict[str, Any]:
        """Everything the tabs show that follows from the samples."""
        analysis = self.core.analyse(samples, behaviours, family, cancel)
        return {**CLEARED, **analysis.as_dict()}

    # --- behaviours -----------------------------------------------------------------------------

    def add_behaviour(self, name: str, pattern: str) -> bool:
        name, pattern = name.strip(), pattern.strip()
        if not pattern:
            self.fail("behaviour: type a regular expression, e.g. \\bsunny\\b")
            return False
        try:
            re.compile(pattern)
        except re.error as err:
            self.fail(f"behaviour: {pattern!r} is not a valid regular expression ({err})")
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
            self.assign(provenance=self.core.provenance(self.state.samples, dict(self.state.behaviours)))

    # --- attribution ----------------------------------------------------------------------------

    def choose(self, model: str, sample: int) -> Job | None:
        """Select a response and attribute it in every sampled model, side by side."""
        s = self.state
        if s.samples is None:
            return None
        df = s.samples.df
        rows = df[(df["model"] == model) & (df["sample"] == sample)]
        if rows.empty:
            self.fail(f"No sample {sample} of {model}.")
            return None
        self.assign(chosen=(model, int(sample)), chosen_tokens=chosen_tokens(s, model, int(sample)))
        return self._attribute(rows.iloc[0]["text"])

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

    def _attribute(self, response: str) -> Job | None:
        s = self.state
        if not response.strip():
            self.fail("This response is empty (the model ended at once): choose another to attribute.")
            return None
        samples, method = s.samples, s.method
        family = s.family.subset([m for m in samples.models if m != s.family.base.label])

        def work(job: Job) -> dict[str, Any]:
            attr = self.core.attribute(family, samples, response, method, cancel=job.cancel)
            job.publish(**attribution_views(attr), status=f"Attributed with {method}; measuring spread over samples…")
            spread = self.core.attribute_samples(family, samples, spread_method(method),
                                                 max_samples=MAX_SPREAD_SAMPLES, cancel=job.cancel)  # fmt: skip
            return {"attribution_spread": spread, "status": f"Attributed with {method}"}

        return self.submit("Attributing", work)

    # --- sessions, sweeps, downloads ------------------------------------------------------------

    def session(self):
        from explorer.core.session import Session

        s = self.state
        family = s.family.to_dict() if s.family is not None else {}
        return Session(family, s.samples, dict(s.behaviours), s.attribution, s.chosen)

    def import_session(self, path) -> bool:
        """Replace the results with a saved session's; a bad file changes nothing."""
        try:
            session = self.core.load_session(path)
        except (ValueError, FileNotFoundError, KeyError, TypeError) as err:
            self.fail(f"Import failed, nothing changed: {err}")
            return False
        updates: dict[str, Any] = {"behaviours": session.behaviours, "error": ""}
        if session.samples is not None and self.state.family is not None:
            labels = self.state.family.labels
            kept = [m for m in session.samples.models if m in labels and m != labels[0]]
            updates.update(self._analysed(self.state.family.subset(kept), session.samples, session.behaviours))
            updates["prompt"] = session.samples.prompt
        if session.attribution is not None:
            updates.update(attribution_views(session.attribution))
        updates.update(chosen=session.selected, status=f"Imported session from {getattr(path, 'name', path)}")
        self.assign(**updates)
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


def summary(samples) -> str:
    seconds = sum(samples.meta.get("seconds", {}).values())
    return f"{len(samples.df)} samples from {len(samples.models)} models in {seconds:.1f} s (seed {samples.params.seed})"


def spread_method(method: str) -> str:
    """Integrated gradients over every sample is costly; its cheap additive cousin stands in."""
    return "grad_x_input" if method == "integrated_gradients" else method


def chosen_tokens(state: AppState, model: str, sample: int) -> dict[str, Any]:
    """The chosen response token by token: its log-ratios against the base (when the family
    shares a tokenizer) and the model's probability of each token."""
    from explorer.core.tables import token_probabilities

    ratio = None
    if state.log_ratio is not None:
        lr = state.log_ratio
        ratio = lr[(lr["model"] == model) & (lr["sample"] == sample)]
    return {"log_ratio": ratio, "prob": token_probabilities(state.samples, model, sample)}


def attribution_views(attr) -> dict[str, Any]:
    """The attribution, its difference from the base, and a sentence on what it shows."""
    diff = attr.diff()
    diff = diff[diff["model"] != attr.models[0]]
    return {"attribution": attr, "attribution_diff": diff if len(diff) else None,
            "attribution_note": attr.summary()}  # fmt: skip


def method_table() -> list[tuple[str, bool]]:
    """(method, needs weights) for every registered method, read afresh: methods registered
    after the app was made appear too."""
    from explorer.core.attribution import list_methods

    return [(row.method, row.needs != "forward") for row in list_methods().itertuples()]


def needs_weights(method: str) -> bool:
    """Whether an attribution method needs local weights (gradients or attention)."""
    return dict(method_table()).get(method, False)
