"""The Layers tab's second half: what each adaptation adds, and steering the base with it.

A mixin of the Controller: read every selected descendant's activation difference on the
bundled neutral text and the current prompt, choose the block, then sample the base steered by
one descendant's difference and label the steered base against the base (asked first when
long; Stop ends the run, the earlier reading stays).
"""

from __future__ import annotations

from typing import Any

from explorer.app.jobs import Job
from explorer.core.layers.neutral import neutral_texts
from explorer.core.params import SamplingParams
from explorer.core.patterns import compile_pattern

CLEARED_STEERING = {"diffs": None, "steered": None, "steered_table": None, "steer_model": ""}


class SteerActions:
    state: Any
    core: Any

    def read_differences(self, confirmed: bool = False) -> Job | None:
        """Every selected descendant's mean residual difference, read through its head."""
        s = self.state
        if s.family is None or not s.weights:
            self.fail("Activation differences need a loaded family whose weights are here.")
            return None
        family, models = s.family, list(s.selected)
        texts = neutral_texts() + ([s.prompt] if s.prompt.strip() else [])

        def work(job: Job) -> dict[str, Any]:
            cost = lambda: self.core.diff_estimate(family, models, texts)  # noqa: E731
            asked = self._asked(confirmed, cost, "Reading differences", lambda: self.read_differences(confirmed=True))
            if asked:
                return asked
            found = self.core.activation_diff(family, models, texts, cancel=job.cancel,
                                              progress=lambda label, done, total: job.report({"differences": done / total}))  # fmt: skip
            first = found.models[0] if found.models else ""
            return {"diffs": found, "diff_layer": found.layer, "steer_model": first, "steered": None, "steered_table": None,
                    "status": f"Read {len(found.models)} descendants' differences on {len(found.texts)} texts"}  # fmt: skip

        return self.submit("Reading differences", work)

    def set_steering(self, **values: Any) -> None:
        """The block, descendant, scale, sample count or behaviour of the next steering run."""
        known = {"diff_layer", "steer_model", "steer_scale", "steer_n", "steer_behaviour"}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"set_steering: unknown settings {sorted(unknown)}")
        self.assign(**values)

    def steer(self, confirmed: bool = False) -> Job | None:
        """Sample the base with the chosen difference added, and label it against the base."""
        s = self.state
        if s.diffs is None or s.steer_model not in s.diffs.models:
            self.fail("Read the differences first: steering adds one descendant's difference to the base.")
            return None
        behaviours = self._steering_behaviours()
        if not behaviours or not s.prompt.strip() or s.steer_n < 1:
            if not s.error:
                self.fail("Steering measures behaviours: type a regex beside Steer (or add behaviours), a prompt, and n ≥ 1.")
            return None
        family, prompt, diff = s.family, s.prompt, s.diffs
        params = SamplingParams(s.steer_n, s.temperature, s.top_p, s.top_k, s.max_new_tokens, s.seed, s.chat)
        settings = {"model": s.steer_model, "layer": s.diff_layer, "scale": s.steer_scale}

        def work(job: Job) -> dict[str, Any]:
            cost = lambda: self.core.steer_estimate(family, prompt, params)  # noqa: E731
            asked = self._asked(confirmed, cost, "Steering", lambda: self.steer(confirmed=True))
            if asked:
                return asked
            samples = self.core.steer(family, prompt, diff, params, cancel=job.cancel, **settings,
                                      progress=lambda label, step, total: job.report({label: step / total}))  # fmt: skip
            table = self.core.provenance(samples, behaviours)
            return {"steered": samples, "steered_table": table,
                    "status": f"Steered {family.base.label} with {settings['model']}'s difference at block {settings['layer']}"}  # fmt: skip

        return self.submit("Steering", work)

    def _steering_behaviours(self) -> dict[str, str]:
        """The regex typed for steering, else the run's behaviours ({} and a message if bad)."""
        typed = self.state.steer_behaviour.strip()
        if not typed:
            return dict(self.state.behaviours)
        try:
            compile_pattern(typed, "behaviour")
        except ValueError as err:
            self.fail(str(err))
            return {}
        return {typed: typed}
