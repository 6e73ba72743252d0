"""The Layers tab's actions: look inside every model at the chosen response.

A mixin of the Controller (which holds the state, the runner and the core): the lens of every
sampled model, each same-shape descendant patched into the base, and the weight diff — asked
first when the estimate is long, with progress per donor, and Stop keeping what finished.
"""

from __future__ import annotations

from typing import Any

from explorer.app.jobs import Job
from explorer.core.errors import Cancelled
from explorer.core.layers import SITES


class LayerActions:
    state: Any
    core: Any

    def set_layer_site(self, site: str) -> Job | None:
        """Patch block outputs, attention outputs or MLP outputs; re-runs a shown result."""
        if site not in SITES:
            self.fail(f"Unknown site {site!r}: one of {', '.join(SITES)}.")
            return None
        self.assign(layer_site=site)
        return self.look_inside() if self.state.inside is not None else None

    def look_inside(self, confirmed: bool = False) -> Job | None:
        s = self.state
        if s.chosen is None or s.samples is None:
            self.fail("Pick a response in the Responses tab first: the Layers tab looks inside every model at it.")
            return None
        if not s.weights:
            self.fail(f"The layer-wise tools need the models' weights; this family is served by {s.server}.")
            return None
        response = s.samples.row(*s.chosen)["text"]
        if not response.strip():
            self.fail("This response is empty (the model ended at once): choose another to look inside.")
            return None
        samples, site, family = s.samples, s.layer_site, s.family

        def work(job: Job) -> dict[str, Any]:
            cost = lambda: self.core.inside_estimate(family, samples, response)  # noqa: E731
            asked = self._asked(confirmed, cost, "Looking inside", lambda: self.look_inside(confirmed=True))
            return asked or self._inside(job, family, samples, response, site)

        return self.submit("Looking inside", work)

    def _inside(self, job: Job, family, samples, response: str, site: str) -> dict[str, Any]:
        def progress(part: str, done: int, total: int) -> None:
            job.report({part if part == "layer lens" else f"patching {part}": done / max(total, 1)})

        try:
            found = self.core.inside(family, samples, response, site, cancel=job.cancel, progress=progress)
        except Cancelled as err:
            if job.abandoned or err.partial is None:
                raise
            kept = ", ".join(err.partial.patches) or "no donor yet"
            return {"inside": err.partial, "status": f"Stopped: kept the lens, the weights and the patching of {kept}"}
        return {"inside": found, "status": f"Looked inside {len(samples.models)} models ({site} outputs patched)"}
