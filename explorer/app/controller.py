"""The controller: runs core computations on a worker thread and assigns results to the state.

A generation counter makes a newer request supersede an older one (its results are dropped), a
cancel token makes Stop end sampling within one decoding step, and every error lands in
`state.error` as a sentence — never as a traceback on the page.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable
from typing import Any

from explorer.app.state import AppState
from explorer.core.errors import Cancelled, ModelLoadError

log = logging.getLogger(__name__)
Work = Callable[["Job"], dict[str, Any] | None]
EXPECTED = (ValueError, TypeError, ModelLoadError, FileNotFoundError, OSError)
MAX_SPREAD_SAMPLES = 8


class Job:
    """What a running task may ask: is it still current, was it cancelled; how to report."""

    def __init__(self, controller: Controller, generation: int) -> None:
        from explorer.core.sampling import CancelToken

        self.controller, self.generation = controller, generation
        self.cancel = CancelToken()
        self.abandoned = False  # nobody is watching: skip the work of showing partial results

    @property
    def current(self) -> bool:
        return self.generation == self.controller.generation

    def publish(self, **values: Any) -> None:
        """Assign values to the state now, if this job is still the current one."""
        if self.current:
            self.controller.assign(**values)


class Controller:
    def __init__(self, state: AppState, store: Any = None) -> None:
        self.state, self.store = state, store
        self.generation = 0
        self._job: Job | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- running work ---------------------------------------------------------------------------

    def assign(self, **values: Any) -> None:
        with self.state.hold_trait_notifications():
            for name, value in values.items():
                setattr(self.state, name, value)

    def submit(self, name: str, work: Work) -> Job:
        """Run `work` on a worker thread; a newer submit supersedes (and cancels) this one."""
        with self._lock:
            if self._job is not None:
                self._job.cancel.cancel()
            self.generation += 1
            job = Job(self, self.generation)
            self._job = job
        self.assign(running=name, error="", status=f"{name}…", progress={})
        thread = threading.Thread(
            target=self._run, args=(job, name, work), name=f"explorer-{name}", daemon=True
        )
        self._thread = thread
        thread.start()
        return job

    def _run(self, job: Job, name: str, work: Work) -> None:
        try:
            updates = work(job) or {}
            job.publish(**updates)
        except Cancelled:
            job.publish(status=f"{name} stopped")
        except EXPECTED as err:
            job.publish(error=str(err), status="")
        except Exception as err:  # anything else: a message on the page, the details in the log
            log.exception("%s failed", name)
            job.publish(
                error=f"{name} failed unexpectedly ({type(err).__name__}: {err})", status=""
            )
        finally:
            if job.current:
                self.assign(running="")

    def stop(self, abandoned: bool = False) -> None:
        """Cancel the task in flight (sampling stops within one decoding step); `abandoned`
        (nobody is watching) also skips analysing partial results."""
        with self._lock:
            if self._job is not None:
                self._job.abandoned = self._job.abandoned or abandoned
                self._job.cancel.cancel()

    def abandon(self) -> None:
        """The page went away: cancel the task in flight and skip analysing partial results."""
        self.stop(abandoned=True)

    def wait(self, timeout: float = 120.0) -> bool:
        """Block until the task in flight ends (for tests and scripts); True if it ended."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def fail(self, message: str) -> None:
        self.assign(error=message, status="")

    # --- family ---------------------------------------------------------------------------------

    def load_family(self, spec: str | None = None, descendants: list[str] | None = None) -> Job:
        """Load a preset, a hub id / folder (plus descendants); members that fail are reported and
        the rest stay usable."""
        spec = (spec or self.state.preset).strip()

        def work(job: Job) -> dict[str, Any]:
            import explorer as fx

            family = fx.load_family(
                spec, descendants=descendants or None, store=self.store, validate=False
            )
            errors: dict[str, str] = {}
            for i, label in enumerate(family.labels):
                job.cancel.check()
                try:
                    family.load(label)
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
            return {
                "family": family,
                "available": usable,
                "selected": usable,
                "relations": {m.label: m.relation for m in family.members},
                "remote": family.remote,
                "method": "occlusion" if family.remote and needs_weights(self.state.method) else self.state.method,
                "examples": self._examples(spec),
                "load_errors": errors,
                "samples": None, "clusters": None, "variability": None, "provenance": None,
                "cross": None, "log_ratio": None, "attribution": None, "attribution_spread": None,
                "chosen": None, "status": message,
                "error": "; ".join(f"{k}: {v}" for k, v in errors.items()),
            }  # fmt: skip

        return self.submit("Loading", work)

    @staticmethod
    def _examples(spec: str) -> list[str]:
        if spec != "fable":
            return ["The weather today is", "Once upon a time", "The capital of France is"]
        from explorer.zoo import load_probes

        prompts = [
            p["prompt"] for p in load_probes() if p["kind"] in ("preference", "sentiment", "style")
        ]
        prompts += [
            p["prompt"] for p in load_probes() if p["id"].startswith(("question-", "capital-"))
        ][:4]
        return list(dict.fromkeys(prompts))

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
            params = self._params()
            from explorer.core.sampling import check_prompt

            check_prompt(s.prompt)
        except (ValueError, TypeError) as err:
            self.fail(str(err))
            return None
        family = s.family.subset(list(s.selected))
        prompt, behaviours = s.prompt, dict(s.behaviours)

        def work(job: Job) -> dict[str, Any]:
            import explorer as fx
            from explorer.core.sampling import combine

            done: list = []
            totals = {label: 0.0 for label in family.labels}

            def progress(label: str, step: int, total: int) -> None:
                totals[label] = step / max(total, 1)
                job.publish(progress=dict(totals))

            try:
                for label in family.labels:
                    done.append(
                        fx.sample(
                            family,
                            prompt,
                            models=[label],
                            progress=progress,
                            cancel=job.cancel,
                            **params,
                        )
                    )
                    totals[label] = 1.0
            except Cancelled:
                if not done or job.abandoned:
                    raise
                partial = combine(done)
                job.publish(**self._analyse(family, partial, behaviours),
                            status=f"Stopped: kept the finished models ({', '.join(partial.models)})")  # fmt: skip
                return {}
            samples = combine(done)
            return {
                **self._analyse(family, samples, behaviours, job.cancel),
                "status": self._summary(samples),
            }

        return self.submit("Sampling", work)

    def _params(self) -> dict[str, Any]:
        from explorer.core.sampling import SamplingParams

        s = self.state
        params = SamplingParams(n=s.n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                max_new_tokens=s.max_new_tokens, seed=s.seed, chat=s.chat)  # fmt: skip
        return params.to_dict()

    @staticmethod
    def _summary(samples) -> str:
        seconds = sum(samples.meta.get("seconds", {}).values())
        return f"{len(samples.df)} samples from {len(samples.models)} models in {seconds:.1f} s (seed {samples.params.seed})"

    def _analyse(self, family, samples, behaviours: dict[str, str], cancel=None) -> dict[str, Any]:
        """Everything the tabs show that follows from the samples; a cancel token is honoured
        between the steps (scoring thousands of samples under every model takes a while)."""
        import explorer as fx
        from explorer.core.metrics import assign_clusters

        check = cancel.check if cancel is not None else (lambda: None)
        out: dict[str, Any] = {"samples": samples, "clusters": assign_clusters(samples)}
        out["variability"] = fx.variability(samples)
        check()
        out["provenance"] = self._provenance(samples, behaviours)
        check()
        multi = len(samples.models) > 1
        out["cross"] = fx.cross_score(family, samples, cancel=cancel) if multi else None
        check()
        shared = family.shared_tokenizer
        out["log_ratio"] = fx.log_ratio(family, samples, cancel=cancel) if shared else None
        out.update(chosen=None, attribution=None, attribution_spread=None)
        return out

    @staticmethod
    def _provenance(samples, behaviours: dict[str, str]):
        import explorer as fx

        if behaviours:
            return fx.provenance(samples, behaviours=behaviours)
        table = fx.provenance(samples)
        top = table.groupby("behaviour", sort=False)["count"].sum().nlargest(6).index
        return table[table["behaviour"].isin(top)].reset_index(drop=True)

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
        behaviours = {**self.state.behaviours, (name or pattern): pattern}
        self.assign(behaviours=behaviours, error="")
        self._refresh_provenance()
        return True

    def remove_behaviour(self, name: str) -> None:
        self.assign(behaviours={k: v for k, v in self.state.behaviours.items() if k != name})
        self._refresh_provenance()

    def _refresh_provenance(self) -> None:
        if self.state.samples is not None:
            self.assign(
                provenance=self._provenance(self.state.samples, dict(self.state.behaviours))
            )

    # --- attribution ----------------------------------------------------------------------------

    def choose(self, model: str, sample: int) -> Job | None:
        """Select a response and attribute it in every sampled model, side by side."""
        s = self.state
        if s.samples is None:
            return None
        rows = s.samples.df[(s.samples.df["model"] == model) & (s.samples.df["sample"] == sample)]
        if rows.empty:
            self.fail(f"No sample {sample} of {model}.")
            return None
        self.assign(chosen=(model, int(sample)))
        return self._attribute(rows.iloc[0]["text"])

    def set_method(self, method: str) -> Job | None:
        if self.state.remote and needs_weights(method):
            self.fail(
                f"{method} needs the models' weights; this family is served by "
                f"{self.state.family.base.server}. Use occlusion or adaptation."
            )
            return None
        self.assign(method=method)
        s = self.state
        if s.chosen is None or s.samples is None:
            return None
        return self.choose(*s.chosen)

    def _attribute(self, response: str) -> Job | None:
        s = self.state
        if not response.strip():
            self.fail(
                "This response is empty (the model ended at once): choose another to attribute."
            )
            return None
        samples, method = s.samples, s.method
        family = s.family.subset([m for m in samples.models if m != s.family.base.label])

        def work(job: Job) -> dict[str, Any]:
            import explorer as fx

            attr = fx.attribute(family, samples.prompt, response, method=method, models=samples.models,
                                chat=samples.params.chat)  # fmt: skip
            job.publish(
                attribution=attr, status=f"Attributed with {method}; measuring spread over samples…"
            )
            job.cancel.check()
            spread = fx.attribute_samples(family, samples, method=self._spread_method(method),
                                          max_samples=MAX_SPREAD_SAMPLES)  # fmt: skip
            return {"attribution_spread": spread, "status": f"Attributed with {method}"}

        return self.submit("Attributing", work)

    @staticmethod
    def _spread_method(method: str) -> str:
        # integrated gradients over every sample is costly; its cheap additive cousin stands in
        return "grad_x_input" if method == "integrated_gradients" else method

    # --- sessions -------------------------------------------------------------------------------

    def session(self):
        from explorer.core.session import Session

        s = self.state
        family = s.family.to_dict() if s.family is not None else {}
        return Session(family, s.samples, dict(s.behaviours), s.attribution, s.chosen)

    def import_session(self, path) -> bool:
        """Replace the results with a saved session's; a bad file changes nothing."""
        from explorer.core.session import Session

        try:
            session = Session.load(path)
        except (ValueError, FileNotFoundError, KeyError, TypeError) as err:
            self.fail(f"Import failed, nothing changed: {err}")
            return False
        updates: dict[str, Any] = {"behaviours": session.behaviours, "attribution": session.attribution,
                                   "chosen": session.selected, "error": ""}  # fmt: skip
        if session.samples is not None and self.state.family is not None:
            family = self.state.family.subset(
                [
                    m
                    for m in session.samples.models
                    if m in self.state.family.labels and m != self.state.family.base.label
                ]
            )
            updates.update(self._analyse(family, session.samples, session.behaviours))
            updates.update(
                attribution=session.attribution,
                chosen=session.selected,
                prompt=session.samples.prompt,
            )
        updates["status"] = f"Imported session from {getattr(path, 'name', path)}"
        self.assign(**updates)
        return True

    def open_sweep(self, folder: str) -> bool:
        """Read a sweep folder (from `family-explorer sweep`) into the Data tab."""
        from explorer.core.sweep import load_sweep

        try:
            sweep = load_sweep(folder.strip())
        except (ValueError, OSError) as err:
            self.fail(f"Could not open the sweep: {err}")
            return False
        n_prompts = len(sweep["manifest"].get("prompts", []))
        self.assign(
            sweep=sweep,
            error="",
            status=f"Opened sweep {folder.strip()}: {n_prompts} prompts, {len(sweep['samples'])} samples",
        )
        return True


def needs_weights(method: str) -> bool:
    """Whether an attribution method needs local weights (gradients or attention)."""
    from explorer.core.attribution import list_methods

    methods = list_methods().set_index("method")["needs"]
    return method in methods and methods[method] != "forward"
